"""`vidprop track` end to end with the tiny random SD: files, formats, overlay video, bad input."""

from __future__ import annotations

import csv
import json
import logging

import numpy as np
import pytest

from vidprop.cli import main
from vidprop.io.synthetic import SyntheticScene, write_video

T = 6


@pytest.fixture(autouse=True)
def _restore_vidprop_logging():
    """main() configures the "vidprop" logger for a CLI process; put it back for the tests that follow."""
    logger = logging.getLogger("vidprop")
    saved = (list(logger.handlers), logger.level, logger.propagate)
    yield
    logger.handlers[:], logger.level, logger.propagate = saved[0], saved[1], saved[2]


@pytest.fixture(scope="module")
def clip(tmp_path_factory):
    d = tmp_path_factory.mktemp("clip")
    scene = SyntheticScene(width=96, height=64, num_frames=T, num_objects=1, seed=3)
    write_video(scene, d / "moving.mp4", lossless=True)
    (cy, cx), = scene.positions(0)
    kp = d / "first.json"
    kp.write_text(json.dumps({
        "keypoints": {"centre": [cx, cy], "edge": [cx + 5, cy - 4], "gone": [120, 10], "hidden": None},
        "skeleton": [["centre", "edge"], ["edge", "gone"]],
    }))
    return d / "moving.mp4", kp, (cx, cy)


def test_track_writes_json_csv_and_a_playable_overlay(clip, tmp_path, tiny_sd_path, capsys):
    video, kp, (cx, cy) = clip
    out = tmp_path / "res"
    rc = main(["track", str(video), "--keypoints", str(kp), "--out", str(out), "--model", str(tiny_sd_path),
               "--crop", "64", "--ensemble", "2", "--no-progress"])
    assert rc == 0
    cap = capsys.readouterr()
    assert f"wrote keypoints of {T} frames to {out / 'moving'}" in cap.out
    assert "keypoint 'gone' at (120, 10) lies outside the 96x64 frame" in cap.err
    d = out / "moving"
    assert sorted(p.name for p in d.iterdir()) == ["keypoints.csv", "keypoints.json", "overlay.mp4", "source.json"]

    doc = json.loads((d / "keypoints.json").read_text())
    assert doc["joints"] == ["centre", "edge", "gone", "hidden"]
    assert doc["skeleton"] == [["centre", "edge"], ["edge", "gone"]]
    assert (doc["width"], doc["height"], doc["model"]) == (96, 64, str(tiny_sd_path))
    assert [f["frame"] for f in doc["frames"]] == list(range(T))
    first = doc["frames"][0]["keypoints"]
    assert first["centre"] == pytest.approx([cx, cy], abs=1e-3) and first["edge"] == pytest.approx([cx + 5, cy - 4], abs=1e-3)
    for f in doc["frames"]:
        assert f["keypoints"]["gone"] is None and f["keypoints"]["hidden"] is None  # vanished in every frame
        for j in ("centre", "edge"):
            x, y = f["keypoints"][j]
            if f["frame"]:  # decoded on the 8 x 8 grid of the 64 crop: x = gx * 96/8 <= 84, y = gy * 64/8 <= 56
                assert 0 <= x <= 84 and 0 <= y <= 56

    rows = list(csv.DictReader(open(d / "keypoints.csv")))
    assert list(rows[0]) == ["frame", "joint", "x", "y", "visible"]
    assert len(rows) == T * 4
    by = {(int(r["frame"]), r["joint"]): r for r in rows}
    for t in range(T):
        for j in ("centre", "edge"):
            r = by[t, j]
            assert r["visible"] == "1"
            assert [float(r["x"]), float(r["y"])] == pytest.approx(doc["frames"][t]["keypoints"][j], abs=1e-3)
        assert by[t, "gone"] == {"frame": str(t), "joint": "gone", "x": "", "y": "", "visible": "0"}

    import av

    with av.open(str(d / "overlay.mp4")) as c:
        s = c.streams.video[0]
        assert s.codec_context.name == "h264" and (s.width, s.height) == (96, 64)
        frames = [f.to_ndarray(format="rgb24") for f in c.decode(s)]
    assert len(frames) == T
    from vidprop.io.video import open_video

    original = next(iter(open_video(video)))
    x, y = round(cx), round(cy)
    # the point is drawn at the given position on frame 0; far from the points the frame is unchanged
    assert np.abs(frames[0][y, x].astype(int) - original[y, x].astype(int)).max() > 40
    assert np.abs(frames[0][2:8, 2:8].astype(int) - original[2:8, 2:8].astype(int)).mean() < 12


def test_track_bad_keypoint_file_is_one_line_and_writes_nothing(clip, tmp_path, capsys):
    video, _, _ = clip
    bad = tmp_path / "bad.json"
    bad.write_text('{"keypoints": {\n  "a": [1, 2],\n  "b": [3]\n}}')
    rc = main(["track", str(video), "--keypoints", str(bad), "--out", str(tmp_path / "o"), "--model", "/nope"])
    assert rc == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err == [f'vidprop: error: {bad}: keypoints["b"]: expected [x, y] (two numbers) or null, got [3]']
    assert not (tmp_path / "o").exists()
    bad.write_text('{"keypoints": {\n  "a": [1, 2]\n  "b": [3, 4]\n}}')
    assert main(["track", str(video), "--keypoints", str(bad), "--out", str(tmp_path / "o")]) == 2
    assert "line 3, column 3: not valid JSON" in capsys.readouterr().err


def test_track_refuses_to_overwrite(clip, tmp_path, capsys):
    video, kp, _ = clip
    (tmp_path / "o" / "moving").mkdir(parents=True)
    assert main(["track", str(video), "--keypoints", str(kp), "--out", str(tmp_path / "o"), "--model", "/nope"]) == 2
    assert "already exists; pass --overwrite" in capsys.readouterr().err


def test_track_help_documents_the_keypoint_file(capsys):
    with pytest.raises(SystemExit):
        main(["track", "--help"])
    text = capsys.readouterr().out
    assert '"skeleton": [["head", "neck"]' in text and "frame,joint,x,y,visible" in text


def test_track_a_part_of_the_video(clip, tmp_path, tiny_sd_path):
    video, kp, _ = clip
    out = tmp_path / "res"
    assert main(["track", str(video), "--keypoints", str(kp), "--out", str(out), "--model", str(tiny_sd_path),
                 "--crop", "64", "--ensemble", "1", "--no-progress", "--no-overlay", "--frames", "2:", "--max-frames",
                 "3"]) == 0
    doc = json.loads((out / "moving" / "keypoints.json").read_text())
    assert [f["frame"] for f in doc["frames"]] == [2, 3, 4] and doc["frames"][0]["name"] == "00002"
    with open(out / "moving" / "keypoints.csv") as f:
        assert sorted({int(r["frame"]) for r in csv.DictReader(f)}) == [2, 3, 4]


def test_track_a_huge_crop_is_refused_before_the_model_loads(clip, tmp_path, capsys):
    video, kp, _ = clip
    rc = main(["track", str(video), "--keypoints", str(kp), "--out", str(tmp_path / "o"), "--model", "/nope",
               "--device", "cpu", "--crop", "99968"])
    err = capsys.readouterr().err.strip().splitlines()
    assert rc == 2 and len(err) == 1 and err[0].startswith(
        "vidprop: error: --crop 99968: the model input would be 99968x99968 (from "), err
    assert not (tmp_path / "o").exists()
