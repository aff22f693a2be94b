"""JHMDB: split and dataset reading, PCK against hand-computed values, the resumable runner, `eval jhmdb`."""

from __future__ import annotations

import csv
import logging

import numpy as np
import torch
import pytest
import yaml
from PIL import Image
from scipy.io import savemat

from vidprop.cli import main
from vidprop.config import load_preset
from vidprop.errors import InputError
from vidprop.eval import jhmdb
from vidprop.eval.jhmdb import evaluate_jhmdb, find_videos, pck_distances, pck_scores, read_split
from vidprop.propagation.keypoints import heatmaps_to_keypoints, keypoints_to_heatmaps

J = 15


@pytest.fixture(autouse=True)
def _restore_vidprop_logging():
    """main() configures the "vidprop" logger for a CLI process; put it back for the tests that follow."""
    logger = logging.getLogger("vidprop")
    saved = (list(logger.handlers), logger.level, logger.propagate)
    yield
    logger.handlers[:], logger.level, logger.propagate = saved[0], saved[1], saved[2]


def make_jhmdb(root, videos):
    """videos: key -> (frames list of (H, W, 3) uint8, gt (T, 15, 2) 0-based pixels); writes the JHMDB layout."""
    for key, (frames, gt) in videos.items():
        d = root / "Rename_Images" / key
        d.mkdir(parents=True)
        for t, f in enumerate(frames):
            Image.fromarray(f).save(d / f"{t + 1:05d}.png")
        m = root / "joint_positions" / key
        m.mkdir(parents=True)
        savemat(m / "joint_positions.mat", {"pos_img": np.asarray(gt, float).transpose(2, 1, 0) + 1})  # 1-based
    return root


def blank(T, W, H):
    return [np.full((H, W, 3), 40 * t, np.uint8) for t in range(T)]


# ---------------------------------------------------------------- PCK by hand
# Video A: 80 x 40 frames, grid 10 x 20 -> pixels = grid * (80/20, 40/10) = grid * 4.
# Video B: 40 x 40 frames, grid 10 x 10 -> pixels = grid * 4.
def hand_case():
    gt_a = np.full((3, J, 2), 500.0)  # joints never counted sit far away: they must not enter the boxes
    pred_a = np.full((3, J, 2), -1.0)
    pred_a[0] = 7.0  # frame 0: visible garbage, skipped
    # frame 1: j0 gt (10, 10) pred (3, 2.5)*4 = (12, 10): d = 2; j1 vanished; j2 gt (10, 42) pred (10, 42): d = 0
    gt_a[1, 0], pred_a[1, 0] = (10, 10), (3, 2.5)
    gt_a[1, 1] = (60, 30)
    gt_a[1, 2], pred_a[1, 2] = (10, 42), (2.5, 10.5)
    # box of the counted gt joints {j0, j2}: 0 x 32 -> reference 0.6 * 32 = 19.2
    # frame 2: j0 (0, 0) vs (3, 4): d = 5; j1 (30, 40) vs (30, 40): 0; j2 (0, 40) vs (13, 40): 13
    gt_a[2, 0], pred_a[2, 0] = (0, 0), (0.75, 1)
    gt_a[2, 1], pred_a[2, 1] = (30, 40), (7.5, 10)
    gt_a[2, 2], pred_a[2, 2] = (0, 40), (3.25, 10)
    # box 30 x 40 -> diagonal 50 -> reference 30
    gt_b = np.full((2, J, 2), 500.0)
    pred_b = np.full((2, J, 2), -1.0)
    # frame 1: j0 (20, 20) vs (20, 23): d = 3; j3 (20, 0) vs (20, 0): 0; box 0 x 20 -> reference 12
    gt_b[1, 0], pred_b[1, 0] = (20, 20), (5, 5.75)
    gt_b[1, 3], pred_b[1, 3] = (20, 0), (5, 0)
    return (gt_a, pred_a, (80, 40), (10, 20)), (gt_b, pred_b, (40, 40), (10, 10))


EXPECTED_DISTS = {0: [2 / 19.2, 5 / 30, 3 / 12], 1: [0.0], 2: [0.0, 13 / 30], 3: [0.0]}
# PCK@a per counted joint (j0, j1, j2, j3), then the mean over these 4 joints
EXPECTED_PCK = {
    0.1: ([0, 100, 50, 100], 62.5),
    0.2: ([200 / 3, 100, 50, 100], (200 / 3 + 250) / 4),
    0.3: ([100, 100, 50, 100], 87.5),
    0.4: ([100, 100, 50, 100], 87.5),
    0.5: ([100, 100, 100, 100], 100.0),
}


def test_pck_distances_and_scores_by_hand():
    (ga, pa, sa, gra), (gb, pb, sb, grb) = hand_case()
    da, db = pck_distances(pa, ga, sa, gra), pck_distances(pb, gb, sb, grb)
    dists = [np.concatenate([da[j], db[j]]) for j in range(J)]
    for j in range(J):
        np.testing.assert_allclose(dists[j], EXPECTED_DISTS.get(j, []), rtol=1e-12)
    per, mean = pck_scores(dists)
    for i, a in enumerate(jhmdb.ALPHAS):
        joints, m = EXPECTED_PCK[a]
        np.testing.assert_allclose(per[:4, i], joints)
        assert np.isnan(per[4:, i]).all()  # never counted
        assert mean[i] == pytest.approx(m)


def test_zero_reference_counts_as_a_miss():
    gt = np.zeros((2, 2, 2))
    pred = np.full((2, 2, 2), -1.0)
    pred[1, 0] = (0, 0)  # the only counted joint: box of one point, reference 0; d = 0 -> 0/0
    d = pck_distances(pred, gt, (10, 10), (10, 10))
    assert len(d[0]) == 1 and not (d[0] <= 0.5).any()
    assert pck_scores(d)[1][0] == 0.0


def test_scoring_a_synthetic_dataset_from_saved_predictions(tmp_path, monkeypatch):
    """PCK of a JHMDB-layout dataset (PNG + .mat) whose predictions are already on disk: no model is loaded."""
    (ga, pa, sa, gra), (gb, pb, sb, grb) = hand_case()
    root = make_jhmdb(tmp_path / "JHMDB", {"run/a_1": (blank(3, *sa), ga), "wave/b_2": (blank(2, *sb), gb)})
    split = tmp_path / "split.txt"
    split.write_text("# test split\nrun/a_1\n\nwave/b_2/\n")
    out = tmp_path / "runs"
    for key, pred, size, grid in (("run/a_1", pa, sa, gra), ("wave/b_2", pb, sb, grb)):
        p = out / "predictions" / f"{key}.npz"
        p.parent.mkdir(parents=True, exist_ok=True)
        np.savez(p, coords=pred, grid=np.array(grid), size=np.array(size))
    monkeypatch.setattr(jhmdb.Tracker, "from_pretrained", classmethod(lambda *a, **k: pytest.fail("model loaded")))
    res = evaluate_jhmdb(root, split, out, config=load_preset("jhmdb"))
    assert res.num_videos == 2 and res.num_resumed == 2
    assert res.counts.tolist() == [3, 1, 2, 1] + [0] * 11
    for i, a in enumerate(res.alphas):
        assert res.mean[i] == pytest.approx(EXPECTED_PCK[a][1])
    assert res.pck(0.1) == 62.5
    rows = list(csv.reader(open(out / "pck.csv")))
    assert rows[0] == ["joint", "count", "pck@0.1", "pck@0.2", "pck@0.3", "pck@0.4", "pck@0.5"]
    assert rows[1] == ["neck", "3", "0.0000", "66.6667", "100.0000", "100.0000", "100.0000"]
    assert rows[-1] == ["mean", "7", "62.5000", "79.1667", "87.5000", "87.5000", "100.0000"]
    assert rows[5][2] == "nan" and len(rows) == 17
    # a subset: only video B -> j0 [0.25], j3 [0]
    res_b = evaluate_jhmdb(root, split, out, config=load_preset("jhmdb"), videos=["wave/b_2"])
    assert res_b.num_videos == 1 and res_b.pck(0.2) == 50.0 and res_b.pck(0.3) == 100.0


def test_split_and_dataset_errors(tmp_path):
    gt = np.zeros((2, J, 2))
    root = make_jhmdb(tmp_path / "J", {"c/v": (blank(2, 16, 16), gt)})
    bad = tmp_path / "bad.txt"
    bad.write_text("c/v\nc v x\n")
    with pytest.raises(InputError, match=r"bad.txt: line 2: expected '<class>/<video>'"):
        read_split(bad)
    dup = tmp_path / "dup.txt"
    dup.write_text("c/v\n\nc/v\n")
    with pytest.raises(InputError, match=r"dup.txt: line 3: c/v is listed twice \(first on line 1\)"):
        read_split(dup)
    with pytest.raises(InputError, match=r"split.txt lists a video that is not under .*Rename_Images/c/missing does not exist"):
        find_videos(root, ["c/v", "c/missing"], "split.txt")
    with pytest.raises(InputError, match="not a JHMDB folder"):
        find_videos(tmp_path, ["c/v"])
    (root / "joint_positions" / "c" / "v" / "joint_positions.mat").unlink()
    with pytest.raises(InputError, match=r"joint_positions/c/v/joint_positions.mat does not exist"):
        find_videos(root, ["c/v"])
    savemat(root / "joint_positions" / "c" / "v" / "joint_positions.mat", {"pos_img": np.zeros((2, J, 3))})
    (v,) = find_videos(root, ["c/v"])
    with pytest.raises(InputError, match=r"joint_positions.mat: 'pos_img' has 3 frames but the video has 2"):
        v.ground_truth()


# ---------------------------------------------------------------- end to end, tiny model
def _scene_dataset(tmp_path):
    from vidprop.io.synthetic import SyntheticScene

    videos = {}
    for key, seed, T in (("walk/clip_a", 1, 4), ("jump/clip_b", 2, 3)):
        sc = SyntheticScene(width=80, height=48, num_frames=T, num_objects=1, seed=seed)
        rng = np.random.default_rng(seed)
        base = rng.uniform([4, 4], [76, 44], size=(J, 2))
        (cy, cx), = sc.positions(0)
        gt = np.stack([base + np.subtract(sc.positions(t)[0][::-1], (cx, cy)) for t in range(T)])
        gt[:, 14] = (-30.0, 10.0)  # a joint outside the frame, as JHMDB has: drawn as the protocol does
        videos[key] = ([f for f, _ in sc.frames()], gt)
    root = make_jhmdb(tmp_path / "JHMDB", videos)
    split = tmp_path / "split.txt"
    split.write_text("walk/clip_a\njump/clip_b\n")
    return root, split, videos


def test_eval_jhmdb_cli_end_to_end_and_resume(tmp_path, tiny_sd_path, capsys, monkeypatch):
    root, split, videos = _scene_dataset(tmp_path)
    out = tmp_path / "run"
    args = ["eval", "jhmdb", "--root", str(root), "--split", str(split), "--out", str(out),
            "--model", str(tiny_sd_path), "--crop", "64", "--ensemble", "2", "--no-progress"]
    assert main(["-q", *args]) == 0
    text = capsys.readouterr().out
    assert "2 videos (0 resumed)" in text and text.splitlines()[0].split()[:3] == ["joint", "n", "PCK@0.1"]
    for key, (frames, gt) in videos.items():
        z = np.load(out / "predictions" / f"{key}.npz")
        assert z["coords"].shape == (len(frames), J, 2)
        assert z["grid"].tolist() == [8, 8] and z["size"].tolist() == [80, 48]  # 64 / stride 8
        # frame 0's prediction is its given labels: gt * (64 / 80 / 8, 64 / 48 / 8), drawn and decoded
        g0 = gt[0] * np.array([64 / 80 / 8, 64 / 48 / 8])
        np.testing.assert_allclose(z["coords"][0], heatmaps_to_keypoints(keypoints_to_heatmaps(g0, (8, 8))))
        assert (z["coords"][0, 14] == -1).all()  # x = -30 px -> grid -3: patch fully outside
    rows = list(csv.reader(open(out / "pck.csv")))
    assert len(rows) == 17 and rows[-1][0] == "mean"
    assert all(0 <= float(v) <= 100 for v in rows[-1][2:])
    meta = yaml.safe_load((out / "config.yaml").read_text())
    assert meta["model"] == str(tiny_sd_path) and meta["vidprop_version"] == "0.1.0"
    assert meta["config"]["frames"]["mode"] == "square" and meta["config"]["frames"]["size"] == 64
    assert meta["config"]["propagation"]["protocol"] == "crw" and meta["config"]["extractor"]["ensemble"] == 2
    # re-run: every video is complete, nothing recomputed, no model loaded, same scores
    stamps = {p: p.stat().st_mtime_ns for p in (out / "predictions").rglob("*.npz")}
    monkeypatch.setattr(jhmdb.Tracker, "from_pretrained", classmethod(lambda *a, **k: pytest.fail("model loaded")))
    assert main(["-q", *args]) == 0
    assert "2 videos (2 resumed)" in capsys.readouterr().out
    assert {p: p.stat().st_mtime_ns for p in stamps} == stamps
    assert list(csv.reader(open(out / "pck.csv"))) == rows
    # other settings into the same folder: refused, one line
    assert main(["-q", *args, "--topk", "5"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "holds results made with other settings" in err[0]


def test_eval_jhmdb_cli_bad_inputs_write_nothing(tmp_path, capsys):
    root, split, videos = _scene_dataset(tmp_path)
    out = tmp_path / "run"
    base = ["-q", "eval", "jhmdb", "--root", str(root), "--out", str(out), "--model", "/nonexistent/model"]
    missing = tmp_path / "missing.txt"
    missing.write_text("walk/clip_a\nwalk/nope\n")
    assert main([*base, "--split", str(missing)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "Rename_Images/walk/nope does not exist" in err[0]
    # a .mat whose frame count disagrees with the frames: caught before the model is loaded
    savemat(root / "joint_positions" / "jump" / "clip_b" / "joint_positions.mat", {"pos_img": np.zeros((2, J, 7))})
    assert main([*base, "--split", str(split)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "clip_b/joint_positions.mat: 'pos_img' has 7 frames but the video has 3" in err[0]
    savemat(root / "joint_positions" / "jump" / "clip_b" / "joint_positions.mat", {"pos": np.zeros((2, J, 3))})
    assert main([*base, "--split", str(split)]) == 2
    assert "has no 'pos_img' array" in capsys.readouterr().err
    assert main([*base, "--split", str(split), "--videos", "walk/other"]) == 2
    assert "--videos: walk/other is not listed in" in capsys.readouterr().err
    assert not out.exists()


# ---------------------------------------------------------------- CRW's script: box from -1, border joints, extra frames
def test_reference_box_max_starts_at_minus_one():
    # every counted joint of frame 1 lies left of and above the frame: the script's max stays at -1
    gt = np.zeros((2, 2, 2))
    gt[1, 0], gt[1, 1] = (-5.0, -9.0), (-3.0, -6.0)
    pred = np.full((2, 2, 2), -1.0)
    pred[1, 0] = pred[1, 1] = (0.0, 0.0)  # visible, at pixel (0, 0) (grid = size: scale 1)
    d = pck_distances(pred, gt, (10, 10), (10, 10))
    # box: x from -5 to max(-3, -1) = -1 -> 4; y from -9 to max(-6, -1) = -1 -> 8; reference 0.6 * hypot(4, 8)
    ref = 0.6 * np.hypot(4.0, 8.0)
    np.testing.assert_allclose(d[0], [np.hypot(5, 9) / ref])
    np.testing.assert_allclose(d[1], [np.hypot(3, 6) / ref])


def test_more_frames_than_ground_truth_columns_scores_the_first_ones(tmp_path, caplog):
    gt = np.zeros((2, J, 2))
    root = make_jhmdb(tmp_path / "J", {"c/v": (blank(3, 16, 16), gt)})  # 3 frames, 2 columns
    savemat(root / "joint_positions" / "c" / "v" / "joint_positions.mat",
            {"pos_img": np.zeros((2, J, 2)) + 1})
    (v,) = find_videos(root, ["c/v"])
    with caplog.at_level(logging.WARNING, logger="vidprop.eval.jhmdb"):
        g = v.ground_truth()
    assert g.shape == (2, J, 2)
    assert "3 frames but 2 ground-truth columns" in caplog.text and "scoring the first 2 frames" in caplog.text


def _border_dataset(tmp_path, extra_frames: int = 0):
    """One clip whose frame-0 joints lie near the left/top border (and one outside), with extra frames."""
    from vidprop.io.synthetic import SyntheticScene

    T = 3
    sc = SyntheticScene(width=64, height=64, num_frames=T + extra_frames, num_objects=1, seed=4)
    rng = np.random.default_rng(5)
    base = rng.uniform([20, 20], [60, 60], size=(J, 2))
    # grid units at crop 64, stride 8: pixel / 8. Joints at grid x = -2.0, -0.7, 0.3, 0.9, 1.2 and y near 0
    base[0:5, 0] = np.array([-2.0, -0.7, 0.3, 0.9, 1.2]) * 8
    base[5:8, 1] = np.array([-0.6, 0.7, 1.4]) * 8
    gt = np.stack([base] * T)
    root = make_jhmdb(tmp_path / "JHMDB", {"c/border": ([f for f, _ in sc.frames()], gt)})
    split = tmp_path / "split.txt"
    split.write_text("c/border\n")
    savemat(root / "joint_positions" / "c" / "border" / "joint_positions.mat",
            {"pos_img": gt.transpose(2, 1, 0) + 1})  # T columns, T + extra frames
    return root, split, gt


@pytest.mark.parametrize("rule", ["crw", "ideal"])
def test_pipeline_draws_border_joints_as_the_reference(tmp_path, tiny_sd_path, capsys, rule):
    """eval jhmdb end to end (tiny model): frame 0's labels are exactly the plain reference drawing of the
    ground truth (CRW's rule by default), the extra frame is not scored, and the rule is recorded."""
    from tests.propagation.test_keypoints import crw_draw_reference
    from vidprop.propagation.keypoints import draw_gaussian

    root, split, gt = _border_dataset(tmp_path, extra_frames=1)
    out = tmp_path / "run"
    args = ["-q", "eval", "jhmdb", "--root", str(root), "--split", str(split), "--out", str(out),
            "--model", str(tiny_sd_path), "--crop", "64", "--ensemble", "1", "--no-progress"]
    if rule != "crw":
        args += ["--keypoint-rule", rule]
    assert main(args) == 0, capsys.readouterr().err
    z = np.load(out / "predictions" / "c" / "border.npz")
    assert z["coords"].shape == (3, J, 2)  # 4 frames in the folder, 3 ground-truth columns
    g0 = gt[0] / 8.0  # crop 64 = frame size: pixels / stride
    maps = np.zeros((1 + J, 8, 8))
    for j, (x, y) in enumerate(g0):
        if rule == "crw":
            maps[1 + j] = crw_draw_reference(8, 8, x, y)
        else:
            draw_gaussian(maps[1 + j], x, y, rule="ideal")
    maps[0] = maps[1:].sum(axis=0) == 0
    expected = heatmaps_to_keypoints(torch.from_numpy(maps).float())
    np.testing.assert_allclose(z["coords"][0], expected, atol=1e-6)
    if rule == "crw":
        assert (z["coords"][0, 0] == -1).all()  # grid x = -2.0: no channel at all
    else:
        assert (z["coords"][0, 0] >= 0).all()
    meta = yaml.safe_load((out / "config.yaml").read_text())
    assert meta["config"]["propagation"]["keypoint_rule"] == rule


def colour_tracker(cfg):
    """A Tracker on backbone-free features (built in each Ray worker: no model to load)."""
    from tests.tasks.test_segment import ColourStats
    from vidprop.tasks.track import Tracker

    return Tracker(ColourStats(), cfg)


@pytest.mark.ray
def test_ray_engine_writes_the_same_predictions(ray_local, tmp_path, torch_threads):
    import functools

    from vidprop.engine import EngineOptions

    root, split, videos = _scene_dataset(tmp_path)
    cfg = load_preset("jhmdb").override(frames={"size": 64})
    build = functools.partial(colour_tracker, cfg)
    with torch_threads(1):  # as each Ray worker (1 CPU): CPU float sums depend on the thread count
        seq = evaluate_jhmdb(root, split, tmp_path / "seq", config=cfg, tracker=build())
    ray = evaluate_jhmdb(root, split, tmp_path / "ray", config=cfg, tracker=build,
                         engine=EngineOptions(kind="ray", workers=2, cpus_per_worker=1))
    for key in videos:
        a = (tmp_path / "seq" / "predictions" / f"{key}.npz").read_bytes()
        assert (tmp_path / "ray" / "predictions" / f"{key}.npz").read_bytes() == a
    assert (tmp_path / "ray" / "pck.csv").read_text() == (tmp_path / "seq" / "pck.csv").read_text()
    np.testing.assert_array_equal(ray.mean, seq.mean)
    meta = {k: yaml.safe_load((tmp_path / k / "config.yaml").read_text()) for k in ("seq", "ray")}
    assert meta["ray"]["config"] == meta["seq"]["config"] and meta["ray"]["device"] == "cpu"


# ---------------------------------------------------------------- frames resized as CRW resizes them
def crw_load_and_resize(path, size):
    """ajabri/videowalk code/data/jhmdb.py load_image + resize, written plainly: (H, W, 3) RGB in [0, 1]."""
    import cv2

    img = cv2.imread(str(path)).astype(np.float32)
    img = img / 255.0
    img = img[:, :, ::-1].copy()
    return cv2.resize(img, (size, size))


class RecordingColours:
    """A backbone-free extractor that keeps every model input it is given."""

    stride = 8
    channels = 3
    device = torch.device("cpu")
    dtype = torch.float32

    def __init__(self):
        self.inputs = []

    def extract(self, images, *, indices=None):
        self.inputs.extend(images.clone())
        return torch.nn.functional.avg_pool2d(images.float() / 255, 8)


@pytest.mark.parametrize("preset_dtype", ["float32", "uint8"])
def test_jhmdb_frames_are_resized_as_floats_as_crw_does(tmp_path, preset_dtype):
    from vidprop.tasks.track import Tracker

    root, split, videos = _scene_dataset(tmp_path)
    (video,) = find_videos(root, ["walk/clip_a"])
    cfg = load_preset("jhmdb").override(frames={"size": 64})
    assert cfg.frames.resize_dtype == "float32"  # the preset follows CRW
    cfg = cfg.override(frames={"resize_dtype": preset_dtype})
    ext = RecordingColours()
    jhmdb.predict_video(Tracker(ext, cfg), video, video.ground_truth(), tmp_path / "p.npz")
    assert len(ext.inputs) == len(video.frames)
    worst = 0.0
    for got, path in zip(ext.inputs, video.frames):
        ref = crw_load_and_resize(path, 64)  # (64, 64, 3) in [0, 1]
        got = got.permute(1, 2, 0).double().numpy() / 255.0
        worst = max(worst, float(np.abs(got - ref).max()))
    if preset_dtype == "float32":
        assert ext.inputs[0].dtype == torch.float32 and worst <= 1e-6
    else:  # OpenCV's uint8 resize (fixed-point weights, rounded to whole grey levels) is up to ~1 level away
        assert ext.inputs[0].dtype == torch.uint8 and 0.3 / 255 < worst <= 1.0 / 255
class SlowColour:
    """ColourStats taking 0.3 s per call: a video lasts long enough to lose a machine while it runs."""

    def __init__(self):
        from tests.tasks.test_segment import ColourStats

        self.inner = ColourStats()
        self.stride, self.channels, self.device, self.dtype = 8, 6, torch.device("cpu"), torch.float32

    def extract(self, images, **kw):
        import time

        time.sleep(0.3)
        return self.inner.extract(images, **kw)


def slow_colour_tracker(cfg):
    from vidprop.tasks.track import Tracker

    return Tracker(SlowColour(), cfg)


@pytest.mark.ray
def test_ray_engine_on_a_cluster_that_loses_its_machines(ray_cluster, tmp_path, torch_threads, deadline):
    """A machine lost mid-run: its video runs on the worker left, the same predictions as the sequential run;
    every machine lost: one line, the videos done kept, and the re-run resumes from them."""
    import functools
    import threading
    import time

    from vidprop.engine import EngineOptions, NoWorkersLeftError
    from vidprop.io.synthetic import SyntheticScene

    videos = {}
    for k in range(6):
        sc = SyntheticScene(width=80, height=48, num_frames=4, num_objects=1, seed=k)
        gt = np.stack([np.random.default_rng(k).uniform([4, 4], [76, 44], size=(J, 2))] * 4)
        videos[f"c{k % 2}/clip_{k}"] = ([f for f, _ in sc.frames()], gt)
    root = make_jhmdb(tmp_path / "JHMDB", videos)
    split = tmp_path / "split.txt"
    split.write_text("".join(f"{key}\n" for key in videos))
    cfg = load_preset("jhmdb").override(frames={"size": 64})
    build = functools.partial(slow_colour_tracker, cfg)
    with torch_threads(1):
        evaluate_jhmdb(root, split, tmp_path / "seq", config=cfg, tracker=build())
    engine = EngineOptions(kind="ray", workers=2, cpus_per_worker=1, gpus_per_worker=0, retries=0,
                           placement_timeout=8)

    def remove_after(node, out, n):
        def watch():
            while len(list((out / "predictions").rglob("*.npz"))) < n:
                time.sleep(0.05)
            ray_cluster.remove_node(node)
        t = threading.Thread(target=watch, daemon=True)
        t.start()
        return t

    def same(out):
        return {key: (out / "predictions" / f"{key}.npz").read_bytes() == (tmp_path / "seq" / "predictions" / f"{key}.npz").read_bytes()
                for key in videos if (out / "predictions" / f"{key}.npz").exists()}

    ray_cluster.add_node(num_cpus=1)
    lose = ray_cluster.add_node(num_cpus=1)
    ray_cluster.wait_for_nodes()
    watcher = remove_after(lose, tmp_path / "one", 2)
    with deadline(240):
        evaluate_jhmdb(root, split, tmp_path / "one", config=cfg, tracker=build, engine=engine)
    watcher.join(timeout=30)
    assert lose not in ray_cluster.worker_nodes
    assert same(tmp_path / "one") == {key: True for key in videos}
    assert (tmp_path / "one" / "pck.csv").read_text() == (tmp_path / "seq" / "pck.csv").read_text()
    # every machine lost: one line; the videos done are kept and a re-run resumes from them
    for node in list(ray_cluster.worker_nodes):
        ray_cluster.remove_node(node)
    only = ray_cluster.add_node(num_cpus=1)
    ray_cluster.wait_for_nodes()
    watcher = remove_after(only, tmp_path / "all", 2)
    with deadline(240), pytest.raises(NoWorkersLeftError) as err:
        evaluate_jhmdb(root, split, tmp_path / "all", config=cfg, tracker=build, engine=engine)
    assert "\n" not in str(err.value) and str(err.value).startswith("no Ray worker is left")
    kept = same(tmp_path / "all")
    assert 2 <= len(kept) < len(videos) and all(kept.values())
    ray_cluster.add_node(num_cpus=1)
    ray_cluster.wait_for_nodes()
    with deadline(240):
        evaluate_jhmdb(root, split, tmp_path / "all", config=cfg, tracker=build, engine=engine)
    assert same(tmp_path / "all") == {key: True for key in videos}
    assert (tmp_path / "all" / "pck.csv").read_text() == (tmp_path / "seq" / "pck.csv").read_text()
