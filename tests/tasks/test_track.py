"""Tracker: grid mapping, frame 0, vanished joints, and a known translation tracked end to end.

The feature extractor here is a stand-in whose features are the raw 8x8
pixel patches (mean removed): on a scene that translates by exactly one
feature cell per frame the correct match of every cell is known, so the
tracked coordinates can be checked against the true motion.
"""

from __future__ import annotations

import json
import logging

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from vidprop.config import load_preset
from vidprop.errors import InputError, OutputExistsError
from vidprop.io.keypoints import KeypointSet
from vidprop.io.source import read_source_record
from vidprop.propagation.keypoints import heatmaps_to_keypoints, keypoints_to_heatmaps
from vidprop.propagation.propagator import Propagator
from vidprop.tasks.segment import resize_frame
from vidprop.tasks.track import Tracker, track_video


class PatchExtractor:
    """features = the 8x8 RGB patches of the frame, mean removed: (B, 192, H/8, W/8)."""

    stride = 8
    channels = 192
    device = torch.device("cpu")
    dtype = torch.float32

    def __init__(self, fail_at: int | None = None) -> None:
        self.fail_at = fail_at
        self.calls: list[int] = []

    def extract(self, images, *, indices=None):
        self.calls.extend(indices)
        if self.fail_at is not None and self.fail_at in indices:
            raise RuntimeError("extractor failed")
        x = images.float() / 255.0
        x = x - x.mean(dim=(2, 3), keepdim=True)
        B, _, H, W = x.shape
        return F.unfold(x, kernel_size=8, stride=8).view(B, 192, H // 8, W // 8)


def panning_frames(T=6, width=192, height=128, step=(12, 8), seed=0):
    """A random texture rolled by ``step`` = (dx, dy) pixels per frame (one 8-px cell after a 128 crop)."""
    rng = np.random.default_rng(seed)
    base = rng.integers(0, 256, size=(height, width, 3), dtype=np.uint8)
    return [np.roll(base, shift=(step[1] * t, step[0] * t), axis=(0, 1)) for t in range(T)]


def make_tracker(crop=128, extractor=None, **prop):
    cfg = load_preset("jhmdb").override(frames={"size": crop}, propagation=prop or None)
    return Tracker(extractor or PatchExtractor(), cfg)


def test_known_translation_is_tracked():
    frames = panning_frames()
    pts = np.array([[30.0, 20.0], [100.5, 41.0], [61.0, 70.3]])
    out = list(make_tracker().run(frames, pts))
    assert len(out) == 6
    # frame 0: the given keypoints; the grid follows the 128 crop at stride 8
    np.testing.assert_array_equal(out[0].xy, pts)
    assert out[0].grid == (16, 16)
    # grid units = (x * 128 / 192 / 8, y * 128 / 128 / 8); frame 0's grid_xy decodes its own labels
    g = np.stack([pts[:, 0] * 128 / 192 / 8, pts[:, 1] / 8], axis=1)
    np.testing.assert_allclose(out[0].grid_xy, heatmaps_to_keypoints(keypoints_to_heatmaps(g, (16, 16))))
    for t, fr in enumerate(out[1:], start=1):
        assert fr.visible.all()
        # the scene moves one cell per frame in both axes = (12, 8) pixels; the decoded heatmap stays
        # within a quarter cell of frame 0's decoding moved by t cells (top-3 ties among the Gaussian's
        # equal neighbours are broken by tiny weights)
        np.testing.assert_allclose(fr.grid_xy, out[0].grid_xy + t, atol=0.25)
        # pixels = grid * (W / grid_w, H / grid_h)
        np.testing.assert_allclose(fr.xy, fr.grid_xy * (192 / 16, 128 / 16))


class _Records(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.messages: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.messages.append(record.getMessage())


@pytest.fixture
def warnings_of_track():
    """Warnings logged by vidprop.tasks.track (a handler of its own: independent of the CLI's logging set-up)."""
    rec = _Records()
    logger = logging.getLogger("vidprop.tasks.track")
    logger.addHandler(rec)
    try:
        yield rec.messages
    finally:
        logger.removeHandler(rec)


def test_outside_points_vanish_with_a_warning_or_are_drawn(warnings_of_track):
    frames = panning_frames(T=3)
    ks = KeypointSet(("in", "left", "absent"), np.array([[30.0, 20.0], [-2.0, 40.0], [np.nan, np.nan]]))
    out = list(make_tracker().run(frames, ks))
    assert warnings_of_track == [
        "keypoint 'left' at (-2, 40) lies outside the 192x128 frame; it is treated as vanished"
    ]
    for fr in out:
        assert fr.visible.tolist() == [True, False, False]
        assert np.isnan(fr.xy[1:]).all() and (fr.grid_xy[1:] == -1).all()
    # outside="draw" (the JHMDB protocol): x = -2 px -> grid -0.167, ul = int(-1.67) = -1: partly inside, drawn
    warnings_of_track.clear()
    drawn = list(make_tracker().run(frames, ks, outside="draw"))
    assert warnings_of_track == []
    assert drawn[0].visible.tolist() == [True, True, False]
    np.testing.assert_array_equal(drawn[0].xy[1], [-2.0, 40.0])
    assert drawn[2].visible[1]


def test_bad_inputs():
    tr = make_tracker()
    with pytest.raises(InputError, match=r"\(J, 2\)"):
        tr.run(panning_frames(T=1), np.zeros((3,)))
    with pytest.raises(InputError, match="no keypoints"):
        tr.run(panning_frames(T=1), np.zeros((0, 2)))
    with pytest.raises(InputError, match="no frames"):
        list(tr.run([], np.zeros((1, 2))))
    frames = panning_frames(T=2)
    frames.append(np.zeros((64, 64, 3), np.uint8))
    with pytest.raises(InputError, match="frame 2 is 64x64, the first frame was 192x128"):
        list(tr.run(frames, np.array([[30.0, 20.0]])))


def test_queue_gets_unnormalised_soft_labels():
    """A second tracker fed by hand with the first one's soft maps gives identical output."""
    frames = panning_frames(T=4)
    tr = make_tracker()
    out = list(tr.run(frames, np.array([[30.0, 20.0], [80.0, 60.0]])))
    small = np.stack([resize_frame(f, (128, 128), as_float=True) for f in frames])  # the jhmdb preset: as floats (CRW)
    # a contiguous (B, 3, H, W) batch, the layout the tasks give their extractor (as `vidprop extract` does)
    x = torch.from_numpy(small).permute(0, 3, 1, 2).contiguous()
    feats = PatchExtractor().extract(x, indices=list(range(4)))
    g = np.array([[30.0 * 128 / 192 / 8, 20.0 / 8], [80.0 * 128 / 192 / 8, 60.0 / 8]])
    prop = Propagator(tr.config.propagation)
    prop.reset(feats[0], keypoints_to_heatmaps(g, (16, 16)))
    for t in range(1, 4):
        np.testing.assert_allclose(out[t].grid_xy, heatmaps_to_keypoints(prop.step(feats[t])), atol=1e-9)


def test_track_video_writes_everything_or_nothing(tmp_path):
    from PIL import Image

    folder = tmp_path / "clip"
    folder.mkdir()
    for t, f in enumerate(panning_frames(T=4)):
        Image.fromarray(f).save(folder / f"{t + 1:05d}.png")
    ks = KeypointSet(("a", "b"), np.array([[30.0, 20.0], [80.0, 60.0]]), ((0, 1),))
    # an extractor failing on frame 2: no output folder, no partial leftovers
    with pytest.raises(RuntimeError, match="extractor failed"):
        track_video(folder, ks, tmp_path / "out", tracker=make_tracker(extractor=PatchExtractor(fail_at=2)),
                    progress=False)
    assert not (tmp_path / "out" / "clip").exists()
    assert not [p for p in (tmp_path / "out").iterdir()]
    res = track_video(folder, ks, tmp_path / "out", tracker=make_tracker(), progress=False)
    assert res.num_frames == 4 and res.output_dir == tmp_path / "out" / "clip"
    assert sorted(p.name for p in res.output_dir.iterdir()) == ["keypoints.csv", "keypoints.json", "overlay.mp4", "source.json"]
    rec = read_source_record(res.output_dir)
    assert (rec["video"], rec["kind"], rec["frames"], rec["task"]) == (str(folder.resolve()), "frames", 4, "track")
    doc = json.loads(res.json.read_text())
    assert [f["name"] for f in doc["frames"]] == ["00001", "00002", "00003", "00004"]
    assert doc["frames"][0]["keypoints"] == {"a": [30.0, 20.0], "b": [80.0, 60.0]}
    assert doc["skeleton"] == [["a", "b"]] and doc["width"] == 192 and doc["height"] == 128
    a1, a3 = (np.array(doc["frames"][t]["keypoints"]["a"]) for t in (1, 3))
    assert np.abs(a3 - a1 - 2 * np.array([12, 8])).max() <= 3.0  # two frames: two cells of (12, 8) px
    with pytest.raises(OutputExistsError):
        track_video(folder, ks, tmp_path / "out", tracker=make_tracker(), progress=False)
