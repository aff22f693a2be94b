"""The Segmenter API: the run profile that `segment --profile` and `bench segment` print."""

from __future__ import annotations

import time

import pytest

from vidprop.io.masks import write_indexed_png
from vidprop.io.synthetic import SyntheticScene, write_video
from vidprop.tasks.segment import Segmenter, segment_video


@pytest.fixture(scope="module")
def clip(tmp_path_factory):
    d = tmp_path_factory.mktemp("clip")
    scene = SyntheticScene(width=96, height=64, num_frames=5, num_objects=2, seed=1)
    write_video(scene, d / "clip.mp4")
    write_indexed_png(d / "mask.png", scene.frame(0)[1])
    return d


def test_profile_splits_the_wall_time_of_a_run(clip, tiny_sd_path, tmp_path):
    seg = Segmenter.from_pretrained(str(tiny_sd_path), config="davis")
    seg.config = seg.config.override(frames={"short_side": 64}, extractor={"ensemble": 1})
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
