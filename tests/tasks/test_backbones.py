"""Every backbone behind the one switch: Segmenter and PairMatcher end to end on tiny random weights."""

from __future__ import annotations

import numpy as np
import pytest

from vidprop.config import BACKBONES, load_preset
from vidprop.io.masks import write_indexed_png
from vidprop.io.synthetic import SyntheticScene, write_video
from vidprop.tasks.match import PairMatcher
from vidprop.tasks.segment import Segmenter, segment_video

STRIDES = {"sd": 8, "adm": 4, "dino": 8, "clip": 14, "dinov2": 14, "sd+dinov2": 16, "cleandift": 16}


@pytest.fixture(scope="module")
def clip(tmp_path_factory):
    d = tmp_path_factory.mktemp("clip")
    scene = SyntheticScene(width=96, height=64, num_frames=4, num_objects=2, seed=1)
    write_video(scene, d / "clip.mp4")
    write_indexed_png(d / "mask.png", scene.frame(0)[1])
    return d, scene


@pytest.mark.parametrize("backbone", BACKBONES)
def test_segment_runs_with_every_backbone(backbone, tiny_backbones, clip, tmp_path):
    folder, scene = clip
    cfg = load_preset("davis").override(frames={"short_side": 64}, extractor=tiny_backbones[backbone])
    seg = Segmenter.from_pretrained(config=cfg)
    assert seg.extractor.stride == STRIDES[backbone]
    assert seg.config.extractor.backbone == backbone
    w, h = seg.config.frames.target_size(96, 64)
    assert w % seg.extractor.multiple == 0 and h % seg.extractor.multiple == 0  # frames fitted to the backbone
    res = segment_video(folder / "clip.mp4", folder / "mask.png", tmp_path, segmenter=seg, overlay=False, progress=False)
    assert res.num_frames == 4
    from vidprop.io.masks import read_mask

    masks = [read_mask(res.output_dir / f"{n}.png")[0] for n in res.frame_names]
    np.testing.assert_array_equal(masks[0], scene.frame(0)[1])
    assert all(m.shape == (64, 96) and set(np.unique(m)) <= {0, 1, 2} for m in masks)


@pytest.mark.parametrize("backbone", BACKBONES)
def test_match_runs_with_every_backbone(backbone, tiny_backbones):
    cfg = load_preset("semantic").override(frames={"width": 64, "height": 64}, extractor=tiny_backbones[backbone])
    m = PairMatcher.from_pretrained(config=cfg)
    rng = np.random.default_rng(0)
    src = (rng.random((48, 80, 3)) * 255).astype(np.uint8)
    res = m.match_semantic(src, src[:, ::-1].copy(), [(5, 7), (60, 30)], category="cat")
    assert res.target_points.shape == (2, 2)
    assert np.all((0 <= res.target_points[:, 0]) & (res.target_points[:, 0] < 80))
    assert np.all((0 <= res.target_points[:, 1]) & (res.target_points[:, 1] < 48))
    assert np.all(np.abs(res.scores) <= 1 + 1e-6)
    assert m.joint == (backbone == "sd+dinov2")
