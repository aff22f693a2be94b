"""DINOv3: a tiny random DINOv3ViTModel saved and loaded through from_pretrained; its features; the gated repo."""

from __future__ import annotations

import json

import pytest
import torch
import torch.nn.functional as F

from vidprop.config import ExtractorConfig, load_preset
from vidprop.errors import ModelLoadError
from vidprop.features.dinov3 import (
    DINOV3_MODELS,
    Dinov3Extractor,
    GatedModelError,
    is_gated_error,
    model_size,
    published_davis,
    published_note,
    save_random_dinov3,
)
from vidprop.features.registry import build_extractor


@pytest.fixture(scope="module")
def tiny_dinov3(tmp_path_factory):
    return save_random_dinov3(tmp_path_factory.mktemp("dinov3") / "tiny", seed=5)


def _plain_features(model, images):
    """The notebook's features from transformers' output: ImageNet normalisation, last_hidden_state,
    CLS + registers skipped, (D, h, w), L2-normalised per cell."""
    x = images.float() / 255.0
    mean = torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1)
    std = torch.tensor([0.229, 0.224, 0.225]).view(1, 3, 1, 1)
    with torch.no_grad():
        out = model(pixel_values=(x - mean) / std).last_hidden_state  # (B, 1 + R + h*w, D)
    B, _, H, W = images.shape
    h, w = H // 16, W // 16
    R = model.config.num_register_tokens
    assert out.shape[1] == 1 + R + h * w
    patches = out[:, 1 + R :].transpose(1, 2).reshape(B, -1, h, w)
    return F.normalize(patches, dim=1)


def test_tiny_model_round_trips_and_features_equal_last_hidden_state(tiny_dinov3):
    from transformers import DINOv3ViTModel

    cfg = json.loads((tiny_dinov3 / "config.json").read_text())
    assert (cfg["model_type"], cfg["num_register_tokens"], cfg["patch_size"]) == ("dinov3_vit", 4, 16)
    ext = build_extractor(ExtractorConfig(backbone="dinov3", model=str(tiny_dinov3), dtype="float32"), device="cpu")
    assert isinstance(ext, Dinov3Extractor)
    assert (ext.stride, ext.multiple, ext.channels, ext.prefix_tokens, ext.dtype) == (16, 16, 32, 5, torch.float32)
    assert not ext.model.training  # RoPE jitters in train mode
    plain = DINOv3ViTModel.from_pretrained(str(tiny_dinov3)).eval()
    g = torch.Generator().manual_seed(0)
    for H, W in ((48, 80), (64, 32)):  # any grid: RoPE follows it
        images = torch.randint(0, 256, (2, 3, H, W), generator=g, dtype=torch.uint8)
        feats = ext.extract(images)
        assert feats.shape == (2, 32, H // 16, W // 16)
        torch.testing.assert_close(feats, _plain_features(plain, images), atol=1e-6, rtol=1e-5)
        torch.testing.assert_close(feats.norm(dim=1), torch.ones(2, H // 16, W // 16), atol=1e-6, rtol=0)
    # frames in batches of one give the same features
    one = Dinov3Extractor.from_pretrained(str(tiny_dinov3), config=ExtractorConfig(backbone="dinov3", batch_size=1),
                                          device="cpu")
    torch.testing.assert_close(one.extract(images), ext.extract(images), atol=1e-6, rtol=1e-5)
    with pytest.raises(ValueError, match="multiples of 16"):
        ext.extract(torch.zeros(1, 3, 40, 48, dtype=torch.uint8))


class GatedRepoError(OSError):
    """Stand-in for huggingface_hub.errors.GatedRepoError (same name; building the real one needs an HTTP response)."""


def _refuse(*_args, **_kwargs):
    try:
        raise GatedRepoError("401 Client Error. Cannot access gated repo for url https://huggingface.co/...")
    except GatedRepoError as exc:  # transformers wraps it in an OSError
        raise OSError("You are trying to access a gated repo.\nMake sure to have access to it at "
                      "https://huggingface.co/facebook/dinov3-vitl16-pretrain-lvd1689m.") from exc


def test_gated_repo_gives_one_line(monkeypatch):
    from transformers import DINOv3ViTModel

    monkeypatch.setattr(DINOv3ViTModel, "from_pretrained", _refuse)
    with pytest.raises(GatedModelError) as info:
        Dinov3Extractor.from_pretrained(config=load_preset("davis-dinov3").extractor, device="cpu")
    msg = str(info.value)
    assert isinstance(info.value, ModelLoadError) and "\n" not in msg
    assert "https://huggingface.co/facebook/dinov3-vitl16-pretrain-lvd1689m" in msg
    assert "accept the DINOv3 licence" in msg and "hf auth login" in msg and "HF_TOKEN" in msg and "local folder" in msg
    # the real exception type is recognised too, through transformers' wrapping
    from huggingface_hub.errors import GatedRepoError as Real

    real = Real.__new__(Real)
    Exception.__init__(real, "403 Forbidden")
    wrapped = OSError("could not load")
    wrapped.__cause__ = real
    assert is_gated_error(wrapped) and not is_gated_error(OSError("no file named config.json"))


def test_offline_hub_line_says_the_repo_is_gated(monkeypatch):
    from transformers import DINOv3ViTModel

    from vidprop.features.hub import HubUnavailableError

    def not_cached(*_a, **_k):
        raise OSError("We couldn't connect to 'https://huggingface.co' to load the files")

    monkeypatch.setattr(DINOv3ViTModel, "from_pretrained", not_cached)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(HubUnavailableError) as info:
        Dinov3Extractor.from_pretrained(device="cpu")
    msg = str(info.value)
    assert "\n" not in msg and "HF_HUB_OFFLINE=1" in msg and "hf download facebook/dinov3-vitl16" in msg
    assert msg.endswith("(the repo is gated: accept the DINOv3 licence on "
                        "https://huggingface.co/facebook/dinov3-vitl16-pretrain-lvd1689m and log in there first)")


def test_missing_folder_and_wrong_ids_are_refused_before_loading(tmp_path):
    with pytest.raises(ModelLoadError, match="does not exist"):
        Dinov3Extractor.from_pretrained(str(tmp_path / "none"), device="cpu")
    with pytest.raises(Exception, match="not a DINOv3 ViT/16 backbone"):
        Dinov3Extractor.from_pretrained("facebook/dinov3-convnext-large-pretrain-lvd1689m", device="cpu")


def test_model_sizes_and_published_numbers(tiny_dinov3, tmp_path):
    assert [model_size(m) for m in DINOV3_MODELS.values()] == ["S", "S+", "B", "L", "H+", "7B"]
    assert model_size("/models/dinov3-vith16plus-pretrain-lvd1689m") == "H+"
    assert model_size(str(tiny_dinov3)) is None  # hidden size 32: no released size
    folder = tmp_path / "my-model"
    folder.mkdir()
    (folder / "config.json").write_text(json.dumps({"model_type": "dinov3_vit", "hidden_size": 1024, "patch_size": 16}))
    assert model_size(str(folder)) == "L"
    (folder / "config.json").write_text(json.dumps({"model_type": "dinov3_vit", "hidden_size": 384,
                                                    "use_gated_mlp": True}))
    assert model_size(str(folder)) == "S+"
    expected = {"S": 72.7, "S+": 75.5, "B": 77.2, "L": 79.9, "H+": 79.3, "7B": 79.7}
    for size, model in DINOV3_MODELS.items():
        assert published_davis(model, 960)[1].jf == expected[size]
    assert published_davis(DINOV3_MODELS["7B"], 1440)[1].jf == 83.3
    assert published_davis(DINOV3_MODELS["7B"], 480)[1].jf == 71.1
    assert published_davis(DINOV3_MODELS["L"], 480) == ("L", None)
    note = published_note(DINOV3_MODELS["L"], 960, "davis-dinov3")
    assert "J&F 79.9" in note and "davis-dinov3 is the authors' notebook" in note
    assert "no published DAVIS" in published_note(str(tiny_dinov3), 960, "davis-dinov3")


@pytest.mark.weights
def test_real_vitl16_gives_1024_channels_and_matches_a_shifted_copy():
    """With the real ViT-L/16 (VIDPROP_TEST_DINOV3=/path/to/dinov3-vitl16-pretrain-lvd1689m; skipped otherwise)."""
    import os

    import numpy as np

    from vidprop.io.synthetic import SyntheticScene

    path = os.environ.get("VIDPROP_TEST_DINOV3")
    if not path or not os.path.isdir(path):
        pytest.skip("real DINOv3 weights are not available (set VIDPROP_TEST_DINOV3 to a local folder)")
    ext = Dinov3Extractor.from_pretrained(path, config=load_preset("davis-dinov3").extractor, device="cpu")
    assert model_size(path) == "L" and ext.channels == 1024 and ext.prefix_tokens == 5
    img = SyntheticScene(width=320, height=256, seed=2).frame(0)[0]
    moved = np.roll(img, 64, axis=1)  # 4 cells of stride 16
    f = ext.extract(torch.from_numpy(np.stack([img, moved])).permute(0, 3, 1, 2))  # (2, 1024, 16, 20)
    sim = torch.einsum("chw,cyx->hwyx", f[1], f[0]).reshape(16, 20, -1).argmax(-1)
    assert ((sim[:, 8:16] % 20) == torch.arange(4, 12)).float().mean() > 0.5
