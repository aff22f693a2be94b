"""HPatches: the protocol against hand-computed cases, the reader and the runner on a tiny synthetic layout."""

from __future__ import annotations

import logging
import math

import numpy as np
import pytest
import torch

from tests.eval.pair_data import PatchMatcher
from vidprop.config import load_preset
from vidprop.errors import ConfigError, InputError
from vidprop.eval.hpatches import (
    HIGH_RES_SEQUENCES,
    corner_error,
    homography_accuracy,
    hpatches_differences,
    hpatches_keypoints,
    read_hpatches,
    read_keypoint_file,
    run_hpatches,
)


def test_corner_error_and_homography_accuracy():
    shift = np.array([[1, 0, 3.0], [0, 1, 4.0], [0, 0, 1]])
    assert corner_error(shift, np.eye(3), 640, 480) == pytest.approx(5.0)
    assert corner_error(np.eye(3), np.eye(3), 640, 480) == 0.0
    assert corner_error(None, np.eye(3), 640, 480) == math.inf
    scale = np.diag([2.0, 2.0, 1.0])  # corners (0,0),(0,9),(19,0),(19,9) move by 0, 9, 19, |(19,9)|
    assert corner_error(scale, np.eye(3), 20, 10) == pytest.approx((0 + 9 + 19 + math.hypot(19, 9)) / 4)
    acc = homography_accuracy([0.5, 2.0, 4.0, 10.0, math.inf],
                              ["illumination", "illumination", "viewpoint", "viewpoint", "viewpoint"])
    assert acc["all"] == {"pairs": 5, "1px": 20.0, "3px": 40.0, "5px": 60.0}
    assert acc["illumination"] == {"pairs": 2, "1px": 50.0, "3px": 100.0, "5px": 100.0}
    assert acc["viewpoint"]["3px"] == 0.0 and acc["viewpoint"]["5px"] == pytest.approx(100 / 3)
    # "all" is the i_ and v_ pairs only
    acc = homography_accuracy([0.5, 0.5, 10.0], ["illumination", "other", "viewpoint"])
    assert acc["all"] == {"pairs": 2, "1px": 50.0, "3px": 50.0, "5px": 50.0}


def test_read_hpatches_and_errors(hpatches_root, tmp_path):
    seqs = read_hpatches(hpatches_root)
    assert [s.name for s in seqs] == ["i_room", "v_wall"] and [s.kind for s in seqs] == ["illumination", "viewpoint"]
    assert len(seqs[1].images) == 6 and seqs[1].homographies[0][0, 2] == -1
    assert len(read_hpatches(hpatches_root, limit=1)) == 1
    (hpatches_root / "v_wall" / "H_1_3").write_text("1 2 3\n")
    with pytest.raises(InputError, match="H_1_3: a homography file must hold 3x3 numbers"):
        read_hpatches(hpatches_root)
    with pytest.raises(InputError, match="no such folder"):
        read_hpatches(tmp_path / "missing")


def test_run_hpatches_scores_and_counts_failures(hpatches_root, tmp_path):
    m = PatchMatcher("geometric")
    s = run_hpatches(m, hpatches_root, tmp_path / "out", max_keypoints=200)
    assert s["images_encoded_this_run"] == 12 and len(m.calls) == 12  # image 1 of each sequence once
    acc = s["accuracy"]
    assert acc["viewpoint"] == {"pairs": 5, "1px": 100.0, "3px": 100.0, "5px": 100.0}
    assert acc["illumination"]["pairs"] == 5 and acc["illumination"]["1px"] == 80.0  # the blank image fails
    rows = (tmp_path / "out" / "pairs.csv").read_text().splitlines()
    assert len(rows) == 11 and rows[5].endswith(",inf")
    # resumable per sequence: a finished one is read back (its "inf" too), the missing one recomputed
    (tmp_path / "out" / "parts" / "v_wall.csv").unlink()
    again = run_hpatches(m, hpatches_root, tmp_path / "out", max_keypoints=200)
    assert again["images_encoded_this_run"] == 6 and again["accuracy"] == acc
    assert (tmp_path / "out" / "pairs.csv").read_text().splitlines() == rows
    with pytest.raises(ConfigError, match="other settings"):
        run_hpatches(m, hpatches_root, tmp_path / "out", max_keypoints=100)


def test_hpatches_scores_exact_corner_errors_also_when_resumed(hpatches_root, tmp_path, monkeypatch):
    """An error a hair above 3 px is wrong at 3 px, in the first run and when read back from its part."""
    import itertools

    import vidprop.eval.hpatches as hpatches

    errors = itertools.cycle([3.00004, 0.5, 2.99996, 7.0, 1.0])  # each sequence's 5 pairs
    monkeypatch.setattr(hpatches, "corner_error", lambda *a: next(errors))
    out = tmp_path / "out"
    s = run_hpatches(PatchMatcher("geometric"), hpatches_root, out, max_keypoints=50)
    assert s["accuracy"]["all"]["3px"] == 60.0 and s["accuracy"]["all"]["1px"] == 40.0
    (out / "parts" / "v_wall.csv").unlink()  # i_room is read back from its part
    again = run_hpatches(PatchMatcher("geometric"), hpatches_root, out, max_keypoints=50)
    assert again["accuracy"] == s["accuracy"]


def test_keypoint_files_are_read_as_dift_reads_them(tmp_path):
    """float32 'x y' rows; duplicates removed with np.unique over rows, which sorts them by x then y."""
    f = tmp_path / "i_room-1.kp"
    f.write_text("12.5 3.25\n0.1 40\n12.5 3.25\n0.1 7\n300.123456789 2\n")
    kps = read_keypoint_file(f)
    expected = np.array([[0.1, 7], [0.1, 40], [12.5, 3.25], [300.123456789, 2]], dtype=np.float32)
    assert kps.dtype == np.float64
    np.testing.assert_array_equal(kps, expected.astype(np.float64))  # float32 values, sorted, 4 of 5 rows
    np.testing.assert_array_equal(hpatches_keypoints(tmp_path, "i_room", 1), kps)
    (tmp_path / "one.kp").write_text("5 6\n")
    assert read_keypoint_file(tmp_path / "one.kp").tolist() == [[5.0, 6.0]]
    (tmp_path / "bad.kp").write_text("1 2 3\n4 5 6\n")
    with pytest.raises(InputError, match="bad.kp: a keypoint file must hold rows of 2 finite numbers"):
        read_keypoint_file(tmp_path / "bad.kp")
    (tmp_path / "empty.kp").write_text("")
    with pytest.raises(InputError, match="empty.kp: no keypoints"):
        read_keypoint_file(tmp_path / "empty.kp")
    with pytest.raises(InputError, match="v_x-2.kp: keypoint file not found"):
        hpatches_keypoints(tmp_path, "v_x", 2)


def test_high_resolution_and_other_sequences_are_left_out(hpatches_root, caplog):
    import shutil

    assert len(HIGH_RES_SEQUENCES) == 8 and "i_dc" in HIGH_RES_SEQUENCES and "v_talent" in HIGH_RES_SEQUENCES
    for name in ("i_dc", "v_talent", "x_extra"):
        shutil.copytree(hpatches_root / "v_wall", hpatches_root / name)
    with caplog.at_level(logging.WARNING, logger="vidprop.eval.hpatches"):
        seqs = read_hpatches(hpatches_root)
    assert [s.name for s in seqs] == ["i_room", "v_wall"]
    assert "high-resolution sequence(s) the standard HPatches download removes" in caplog.text
    assert "i_dc, v_talent" in caplog.text and "x_extra" in caplog.text
    assert [s.name for s in read_hpatches(hpatches_root, include_high_res=True)] == ["i_dc", "i_room", "v_talent",
                                                                                      "v_wall"]


def test_run_hpatches_with_keypoint_files_and_the_precision_it_ran_in(hpatches_root, tmp_path):
    kp_dir = tmp_path / "superpoint-1k"
    kp_dir.mkdir()
    rng = np.random.default_rng(2)
    base = np.stack([rng.uniform(8, 100, 80), rng.uniform(8, 70, 80)], axis=1).round(1)
    for seq in ("i_room", "v_wall"):
        for i in range(1, 7):
            dx, dy = (i - 1, -(i % 3)) if (seq == "v_wall" and i > 1) else (0, 0)
            pts = np.concatenate([base - [dx, dy], base[:5] - [dx, dy]])  # 5 rows twice; H_1_i moves by -(dx, dy)
            np.savetxt(kp_dir / f"{seq}-{i}.kp", pts, fmt="%.4f")
    m = PatchMatcher("geometric", dtype=torch.float16)
    s = run_hpatches(m, hpatches_root, tmp_path / "out", keypoints=kp_dir)
    assert s["keypoints"] == {"source": "files", "folder": str(kp_dir)} and s["dtype"] == "float16"
    assert s["high_res_sequences"] == "excluded"
    assert s["published"] is False and s["differences_from_published"] == [
        "features computed in float16 instead of the authors' float32"]
    assert s["accuracy"]["viewpoint"] == {"pairs": 5, "1px": 100.0, "3px": 100.0, "5px": 100.0}
    rows = [r.split(",") for r in (tmp_path / "out" / "pairs.csv").read_text().splitlines()[1:]]
    assert {(r[3], r[4]) for r in rows} == {("80", "80")}  # duplicates removed
    (kp_dir / "v_wall-4.kp").unlink()
    with pytest.raises(InputError, match="v_wall-4.kp: keypoint file not found"):
        run_hpatches(m, hpatches_root, tmp_path / "out2", keypoints=kp_dir)
    geo = load_preset("geometric")
    assert geo.extractor.dtype == "float32" and geo.published  # published-number runs: the authors' float32
    assert not geo.override(extractor={"dtype": "float16"}).published
    assert hpatches_differences(geo, kp_dir, False, "lmeds", 3) == []
    assert hpatches_differences(geo, None, True, "ransac", 3, limit=2) == [
        "only the first 2 sequence(s)", "SIFT keypoints instead of the SuperPoint keypoint files",
        "the 8 high-resolution sequences included",
        "cosine matches and ransac at 3 px instead of the preset's cosine and lmeds at 3 px"]
    adm = load_preset("hpatches-adm")  # DIFT_adm's published command: --metric l2 --mode ransac
    assert adm.published and (adm.matching.distance, adm.matching.homography, adm.matching.threshold) == ("l2", "ransac", 3.0)
    assert hpatches_differences(adm, kp_dir, False, "ransac", 3, distance="l2") == []
    assert hpatches_differences(adm, kp_dir, False, "lmeds", 3, distance="cosine") == [
        "cosine matches and lmeds at 3 px instead of the preset's l2 and ransac at 3 px"]


def test_hpatches_adm_runs_difts_published_matching_l2_and_ransac(hpatches_root, tmp_path, monkeypatch):
    """The preset's matching section reaches the matcher: L2 mutual neighbours and RANSAC at 3 px (DIFT_adm's command)."""
    import vidprop.tasks.match as match

    seen = []
    real = match.geometric_match_features

    def spy(*a, **kw):
        seen.append((kw["distance"], kw["method"], kw["threshold"]))
        return real(*a, **kw)

    monkeypatch.setattr(match, "geometric_match_features", spy)
    s = run_hpatches(PatchMatcher("hpatches-adm"), hpatches_root, tmp_path / "adm", max_keypoints=100)
    assert set(seen) == {("l2", "ransac", 3.0)} and len(seen) == 10
    assert s["distance"] == "l2" and s["homography"] == {"method": "ransac", "threshold": 3.0}
    seen.clear()
    s = run_hpatches(PatchMatcher("hpatches-adm"), hpatches_root, tmp_path / "cos", max_keypoints=100,
                     distance="cosine", method="lmeds")
    assert set(seen) == {("cosine", "lmeds", 3.0)}
    assert "cosine matches and lmeds at 3 px instead of the preset's l2 and ransac at 3 px" in s["differences_from_published"]
