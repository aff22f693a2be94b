"""DINO / CLIP / DINOv2 through transformers: features are the model's own hidden states, reshaped.

Tiny random models are saved with save_pretrained and loaded through the
extractor's from_pretrained; the reference runs the model's own forward with
output_hidden_states and normalises the pixels itself.
"""

from __future__ import annotations

import math

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


# ---- the published position-table resizing, written out plainly from each reference ----------------------------


def dino_reference_table(pos_embed, x_w, x_h, patch):
    """facebookresearch/dino vision_transformer.py interpolate_pos_encoding (its ``w`` is the image height)."""
    n = pos_embed.shape[1] - 1
    npatch = (x_w // patch) * (x_h // patch)
    if npatch == n and x_w == x_h:
        return pos_embed
    side = math.sqrt(n)
    w0, h0 = x_w // patch + 0.1, x_h // patch + 0.1
    grid_ = pos_embed[:, 1:].reshape(1, int(side), int(side), -1).permute(0, 3, 1, 2)
    out = torch.nn.functional.interpolate(grid_, scale_factor=(w0 / side, h0 / side), mode="bicubic")
    out = out.permute(0, 2, 3, 1).reshape(1, -1, pos_embed.shape[-1])
    return torch.cat((pos_embed[:, 0].unsqueeze(0), out), dim=1)


def clip_reference_table(positional_embedding, height, width, patch):
    """Tsingularity/dift src/models/clip.py interpolate_pos_encoding, for a (1 + N, C) open_clip table."""
    pos = positional_embedding.unsqueeze(0)
    n = pos.shape[1] - 1
    if (height // patch) * (width // patch) == n and height == width:
        return pos
    h0, w0 = height // patch + 0.1, width // patch + 0.1
    grid_ = pos[:, 1:].reshape(1, int(math.sqrt(n)), int(math.sqrt(n)), -1).permute(0, 3, 1, 2)
    out = torch.nn.functional.interpolate(grid_, scale_factor=(h0 / math.sqrt(n), w0 / math.sqrt(n)),
                                          mode="bicubic", align_corners=False)
    out = out.permute(0, 2, 3, 1).reshape(1, -1, pos.shape[-1])
    return torch.cat((pos[:, 0].unsqueeze(0), out), dim=1)


def dinov2_reference_table(pos_embed, x_w, x_h, patch, offset=0.1):
    """facebookresearch/dinov2 models/vision_transformer.py interpolate_pos_encoding (float32, no antialias)."""
    previous = pos_embed.dtype
    n = pos_embed.shape[1] - 1
    if (x_w // patch) * (x_h // patch) == n and x_w == x_h:
        return pos_embed
    pos = pos_embed.float()
    m = int(math.sqrt(n))
    w0, h0 = x_w // patch, x_h // patch
    grid_ = pos[:, 1:].reshape(1, m, m, -1).permute(0, 3, 1, 2)
    out = torch.nn.functional.interpolate(grid_, mode="bicubic", antialias=False,
                                          scale_factor=(float(w0 + offset) / m, float(h0 + offset) / m))
    out = out.permute(0, 2, 3, 1).reshape(1, -1, pos.shape[-1])
    return torch.cat((pos[:, 0].unsqueeze(0), out), dim=1).to(previous)


def reference_table(kind, module, height, width, patch):
    if kind == "clip":
        return clip_reference_table(module.position_embedding.weight, height, width, patch)
    if kind == "dino":
        return dino_reference_table(module.position_embeddings, height, width, patch)
    return dinov2_reference_table(module.position_embeddings, height, width, patch)


def reference_model(path, kind):
    """The model loaded plainly, its embedding module computing the table by the reference above."""
    from transformers import CLIPVisionModel, Dinov2Model, ViTModel

    klass = {"dino": ViTModel, "clip": CLIPVisionModel, "dinov2": Dinov2Model}[kind]
    model = klass.from_pretrained(str(path), **({"add_pooling_layer": False} if kind == "dino" else {})).eval()
    module = model.embeddings
    patch = model.config.patch_size
    module.interpolate_pos_encoding = lambda emb, h, w: reference_table(kind, module, h, w, patch)
    return model


@pytest.mark.parametrize("kind,layer,final_norm,size", [
    ("dino", -1, True, (24, 40)),     # last block, after the final layer norm; patch 8
    ("dino", -1, True, (48, 64)),
    ("clip", 1, False, (28, 42)),     # a chosen block (the middle of 3), no final norm; patch 14
    ("clip", 1, False, (56, 70)),
    ("dinov2", -1, True, (42, 28)),   # last block, after the final norm; patch 14, portrait
    ("dinov2", -1, True, (70, 56)),
])
def test_features_are_the_models_own_hidden_states_with_the_published_table(models, kind, layer, final_norm, size):
    cfg = ExtractorConfig(backbone=kind, model=str(models[kind]), layer=layer, final_norm=final_norm, batch_size=2)
    ext = VitExtractor.from_pretrained(config=cfg)
    H, W = size
    p = ext.stride
    imgs = torch.randint(0, 256, (3, 3, H, W), dtype=torch.uint8, generator=torch.Generator().manual_seed(1))
    got = ext.extract(imgs)  # batches of 2 + 1
    assert got.shape == (3, ext.channels, H // p, W // p)

    model = reference_model(models[kind], kind)
    kwargs = {} if kind == "dinov2" else {"interpolate_pos_encoding": True}
    with torch.no_grad():
        out = model(pixel_values=pixels(imgs, kind), output_hidden_states=True, **kwargs)
    if final_norm:  # the model's own normalised output of its last block
        ref = grid(out.last_hidden_state, H // p, W // p)
    else:  # hidden_states[0] is the embedding output, [i + 1] block i's output
        ref = grid(out.hidden_states[layer + 1], H // p, W // p)
    torch.testing.assert_close(got, ref, rtol=1e-5, atol=1e-5)

    # transformers' own resizing (an exact output size) gives other features: the test can tell them apart
    from transformers import CLIPVisionModel, Dinov2Model, ViTModel

    klass = {"dino": ViTModel, "clip": CLIPVisionModel, "dinov2": Dinov2Model}[kind]
    plain = klass.from_pretrained(str(models[kind]), **({"add_pooling_layer": False} if kind == "dino" else {})).eval()
    with torch.no_grad():
        other = plain(pixel_values=pixels(imgs, kind), output_hidden_states=True, **kwargs)
    other = grid(other.last_hidden_state if final_norm else other.hidden_states[layer + 1], H // p, W // p)
    assert (other - got).abs().max() > 1e-4


@pytest.mark.parametrize("kind", ["dino", "clip", "dinov2"])
def test_native_square_size_keeps_the_table(models, kind):
    ext = VitExtractor.from_pretrained(config=ExtractorConfig(backbone=kind, model=str(models[kind]),
                                                              final_norm=kind != "clip"))
    side = ext.model.config.image_size
    from vidprop.features.posembed import resize_pos_table

    module = ext.model.embeddings
    table = module.position_embedding.weight.unsqueeze(0) if kind == "clip" else module.position_embeddings
    g = side // ext.stride
    assert resize_pos_table(table, (g, g), ext.pos_rule) is table
    # same count of patches, not square: resized (as the references do)
    assert resize_pos_table(table, (1, g * g), ext.pos_rule).shape == table.shape


def test_dinov2_table_is_resized_in_float32_and_given_back_in_the_models_dtype():
    from vidprop.features.posembed import POS_RULES, resize_pos_table

    table = torch.randn(1, 1 + 16, 8, generator=torch.Generator().manual_seed(0)).half()
    got = resize_pos_table(table, (3, 7), POS_RULES["dinov2"])
    assert got.dtype == torch.float16
    torch.testing.assert_close(got, dinov2_reference_table(table, 42, 98, 14), rtol=0, atol=0)


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
