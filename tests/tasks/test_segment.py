"""The Segmenter API: the run profile that `segment --profile` and `bench segment` print."""

from __future__ import annotations

import time

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from vidprop.config import load_preset
from vidprop.io.masks import read_mask, write_indexed_png
from vidprop.io.synthetic import SyntheticScene, write_video
from vidprop.io.source import read_source_record
from vidprop.tasks.segment import Segmenter, segment_video


@pytest.fixture(scope="module")
def clip(tmp_path_factory):
    d = tmp_path_factory.mktemp("clip")
    scene = SyntheticScene(width=96, height=64, num_frames=5, num_objects=2, seed=1)
    write_video(scene, d / "clip.mp4")
    write_indexed_png(d / "mask.png", scene.frame(0)[1])
    return d


def test_profile_splits_the_wall_time_of_a_run(clip, tiny_sd_path, tmp_path):
    cfg = load_preset("davis").override(frames={"short_side": 64}, extractor={"ensemble": 1})
    seg = Segmenter.from_pretrained(str(tiny_sd_path), config=cfg)
    assert seg.extractor.config.ensemble == 1
    t_outer = time.perf_counter()
    res = segment_video(clip / "clip.mp4", clip / "mask.png", tmp_path, segmenter=seg, progress=False)
    t_outer = time.perf_counter() - t_outer
    prof = seg.last_profile
    assert prof.frames == res.num_frames == 5
    assert set(prof.seconds) == {"decode", "extract", "propagate", "postprocess", "write"}
    assert set(prof.background) == {"decode+resize", "write"}
    assert all(v >= 0 for v in [*prof.seconds.values(), *prof.background.values()])
    assert prof.background["write"] > 0 and prof.background["decode+resize"] > 0
    # the main-thread stages are disjoint parts of the run's wall time, which is inside the call's
    assert sum(prof.seconds.values()) <= prof.total <= t_outer
    assert prof.fps == pytest.approx(5 / prof.total)
    assert res.profile.startswith(f"5 frames in {prof.total:.2f}s, {prof.fps:.2f} frames/s; decode ")


class ColourStats:
    """A backbone-free extractor: per 8x8 cell, the mean and spread of R, G, B (centred over channels).

    On the synthetic scenes the objects' colours differ from the background,
    so these features separate them: the propagator, which never knows what
    made its features, must then follow the objects.
    """

    stride = 8
    channels = 6
    device = torch.device("cpu")
    dtype = torch.float32

    def extract(self, images, *, indices=None):
        x = images.float() / 255  # (B, 3, H, W)
        mean = F.avg_pool2d(x, 8)
        spread = (F.avg_pool2d(x * x, 8) - mean * mean).clamp_min(0).sqrt()
        f = torch.cat([mean, spread], 1)  # (B, 6, H/8, W/8)
        return f - f.mean(1, keepdim=True)


def _mean_iou(res, scene):
    ious = []
    for t, stem in enumerate(res.frame_names[1:], start=1):
        pred, _ = read_mask(res.output_dir / f"{stem}.png")
        gt = scene.frame(t)[1]
        for k in scene.object_ids:
            union = ((pred == k) | (gt == k)).sum()
            if union:
                ious.append(((pred == k) & (gt == k)).sum() / union)
    return float(np.mean(ious))


def test_features_that_separate_the_objects_are_followed(tmp_path):
    scene = SyntheticScene(width=320, height=192, num_frames=12, num_objects=2, seed=4, object_ids=(3, 8))
    write_video(scene, tmp_path / "scene.mp4", lossless=True)
    write_indexed_png(tmp_path / "mask.png", scene.frame(0)[1])
    seg = Segmenter(ColourStats(), load_preset("davis").override(frames={"short_side": 192}))
    res = segment_video(tmp_path / "scene.mp4", tmp_path / "mask.png", tmp_path / "out", segmenter=seg, progress=False)
    assert res.num_frames == 12
    assert _mean_iou(res, scene) > 0.8  # 0.88 when written; random features give about 0.06
    rec = read_source_record(res.output_dir)  # where `vidprop view` finds the original frames
    assert rec["video"] == str((tmp_path / "scene.mp4").resolve()) and rec["kind"] == "video"
    assert (rec["frames"], rec["width"], rec["height"], rec["task"]) == (12, 320, 192, "segment")


@pytest.mark.weights
def test_real_weights_follow_moving_objects(real_model_path, tmp_path):
    """With real SD 2.1 weights, the DAVIS preset tracks two textured objects (mean IoU over frames > 0.7)."""
    scene = SyntheticScene(width=320, height=192, num_frames=12, num_objects=2, seed=4)
    write_video(scene, tmp_path / "scene.mp4", lossless=True)
    write_indexed_png(tmp_path / "mask.png", scene.frame(0)[1])
    cfg = load_preset("davis").override(frames={"short_side": 192}, extractor={"ensemble": 2})
    seg = Segmenter.from_pretrained(str(real_model_path), config=cfg)
    res = segment_video(tmp_path / "scene.mp4", tmp_path / "mask.png", tmp_path / "out", segmenter=seg, progress=False)
    assert _mean_iou(res, scene) > 0.7
