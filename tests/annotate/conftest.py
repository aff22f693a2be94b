"""Shared fixtures: a tiny random SAM 2 saved in transformers' format, a segmenter on colour statistics."""

from __future__ import annotations

import pytest

from tests.tasks.test_segment import ColourStats
from vidprop.annotate.prompts import ClickToMask
from vidprop.annotate.tiny_sam import save_random_sam2
from vidprop.config import load_preset
from vidprop.tasks.segment import Segmenter


@pytest.fixture(scope="session")
def sam_path(tmp_path_factory):
    return save_random_sam2(tmp_path_factory.mktemp("models") / "tiny-sam2", seed=0)


@pytest.fixture(scope="session")
def sam(sam_path):
    return ClickToMask.load(sam_path, device="cpu")


@pytest.fixture(scope="session")
def colour_segmenter():
    """Protocol A on colour statistics (a backbone-free extractor: the propagator never knows what made its features)."""
    cfg = load_preset("davis-fast").override(frames={"short_side": 64}, propagation={"n_last_frames": 3})
    return Segmenter(ColourStats(), cfg)
