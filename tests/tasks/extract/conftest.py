"""Fixtures of the extract tests: savers on the tiny random SD, a folder of images, a frame folder."""

from __future__ import annotations

import cv2
import numpy as np
import pytest
from PIL import Image

from vidprop.config import load_preset
from vidprop.tasks.extract import (
    FeatureSaver,
)


@pytest.fixture(scope="module")
def saver(tiny_sd_path):
    """DIFT-script settings at 64x64 (stride 16 -> 4x4 features), ensemble 2, loaded once."""
    cfg = load_preset("dift").override(extractor={"model": str(tiny_sd_path), "ensemble": 2},
                                       frames={"width": 64, "height": 64})
    return FeatureSaver.from_pretrained(config=cfg)


@pytest.fixture(scope="module")
def video_saver(tiny_sd_path):
    """Video settings: short side 64 (stride 8), ensemble 1."""
    cfg = load_preset("davis").override(extractor={"model": str(tiny_sd_path), "ensemble": 1},
                                        frames={"short_side": 64})
    return FeatureSaver.from_pretrained(config=cfg)


def _smooth(rng, h, w):
    img = cv2.resize(rng.random((6, 8, 3)), (w, h), interpolation=cv2.INTER_CUBIC).clip(0, 1) * 255
    return img.astype(np.uint8)


@pytest.fixture()
def images(tmp_path):
    rng = np.random.default_rng(0)
    d = tmp_path / "imgs"
    d.mkdir()
    for name, (h, w) in {"a": (50, 70), "b": (64, 64), "c": (40, 90)}.items():
        Image.fromarray(_smooth(rng, h, w)).save(d / f"{name}.png")
    return d


@pytest.fixture()
def frame_folder(tmp_path):
    rng = np.random.default_rng(1)
    d = tmp_path / "walk" / "frames"
    d.mkdir(parents=True)
    base = _smooth(rng, 72, 128)
    for i in range(11):
        Image.fromarray(np.roll(base, 3 * i, axis=1)).save(d / f"f{i:03d}.png")
    return d
