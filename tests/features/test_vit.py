"""DINO / CLIP / DINOv2 through transformers: features are the model's own hidden states, reshaped.

Tiny random models are saved with save_pretrained and loaded through the
extractor's from_pretrained; the reference runs the model's own forward with
output_hidden_states and normalises the pixels itself.
"""

from __future__ import annotations

import pytest
import torch

from vidprop.config import ExtractorConfig
from vidprop.errors import ConfigError, ModelLoadError
from vidprop.features.vit import VitExtractor, save_random_vit

MEAN_STD = {  # written out here, independently of the package's table
    "dino": ([0.485, 0.456, 0.406], [0.228, 0.224, 0.225]),  # DINO's video script (0.228, not 0.229)
    "clip": ([0.48145466, 0.4578275, 0.40821073], [0.26862954, 0.26130258, 0.27577711]),
    "dinov2": ([0.485, 0.456, 0.406], [0.229, 0.224, 0.225]),
}


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    root = tmp_path_factory.mktemp("vits")
    return {k: save_random_vit(root / k, k, seed=i) for i, k in enumerate(("dino", "clip", "dinov2"))}


def pixels(images: torch.Tensor, kind: str) -> torch.Tensor:
    mean, std = (torch.tensor(v).view(1, 3, 1, 1) for v in MEAN_STD[kind])
    return (images.float() / 255 - mean) / std


def grid(tokens: torch.Tensor, h: int, w: int) -> torch.Tensor:
    """(B, 1 + h*w, C) -> (B, C, h, w), class token dropped."""
    return tokens[:, 1:].transpose(1, 2).reshape(tokens.shape[0], -1, h, w)


@pytest.mark.parametrize("kind,layer,final_norm,size", [
    ("dino", -1, True, (24, 40)),     # last block, after the final layer norm; patch 8
    ("clip", 1, False, (28, 42)),     # a chosen block (the middle of 3), no final norm; patch 14
    ("dinov2", -1, True, (42, 28)),   # last block, after the final norm; patch 14, portrait
])
def test_features_are_the_models_own_hidden_states(models, kind, layer, final_norm, size):
    cfg = ExtractorConfig(backbone=kind, model=str(models[kind]), layer=layer, final_norm=final_norm, batch_size=2)
    ext = VitExtractor.from_pretrained(config=cfg)
    H, W = size
    p = ext.stride
    imgs = torch.randint(0, 256, (3, 3, H, W), dtype=torch.uint8, generator=torch.Generator().manual_seed(1))
    got = ext.extract(imgs)  # batches of 2 + 1
    assert got.shape == (3, ext.channels, H // p, W // p)

    model = ext.model
    kwargs = {} if kind == "dinov2" else {"interpolate_pos_encoding": True}
    with torch.no_grad():
        out = model(pixel_values=pixels(imgs, kind), output_hidden_states=True, **kwargs)
    if final_norm:  # the model's own normalised output of its last block
        ref = grid(out.last_hidden_state, H // p, W // p)
    else:  # hidden_states[0] is the embedding output, [i + 1] block i's output
        ref = grid(out.hidden_states[layer + 1], H // p, W // p)
    torch.testing.assert_close(got, ref, rtol=1e-5, atol=1e-5)


def test_the_forward_stops_after_the_chosen_block(models):
    ext = VitExtractor.from_pretrained(config=ExtractorConfig(backbone="clip", model=str(models["clip"]), layer=0,
                                                              final_norm=False))
    ran = []
    for i, blk in enumerate(ext.blocks):
        blk.register_forward_pre_hook(lambda _m, _a, i=i: ran.append(i))
    ext.extract(torch.zeros(1, 3, 28, 28, dtype=torch.uint8))
    assert ran == [0]


def test_bad_settings_and_sizes(models, tmp_path):
    with pytest.raises(ConfigError, match="layer must be in"):
        VitExtractor.from_pretrained(config=ExtractorConfig(backbone="dino", model=str(models["dino"]), layer=5))
    with pytest.raises(ConfigError, match="no final layer norm"):
        VitExtractor.from_pretrained(config=ExtractorConfig(backbone="clip", model=str(models["clip"])))
    ext = VitExtractor.from_pretrained(config=ExtractorConfig(backbone="dinov2", model=str(models["dinov2"])))
    with pytest.raises(ValueError, match="multiples of 14"):
        ext.extract(torch.zeros(1, 3, 32, 28, dtype=torch.uint8))
    with pytest.raises(ModelLoadError, match="does not exist"):
        VitExtractor.from_pretrained(config=ExtractorConfig(backbone="dino", model=str(tmp_path / "nope")))
    (tmp_path / "empty").mkdir()
    with pytest.raises(ModelLoadError, match="not a complete transformers folder"):
        VitExtractor.from_pretrained(config=ExtractorConfig(backbone="dino", model=str(tmp_path / "empty")))
