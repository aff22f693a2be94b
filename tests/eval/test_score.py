"""``vidprop score`` against hand-computed J and F."""

from __future__ import annotations

import csv
import json

import numpy as np
import pytest

from vidprop.cli import main
from vidprop.errors import InputError
from vidprop.eval.score import score_result
from vidprop.io.masks import write_indexed_png


def _square(y, x, n=4, size=20, oid=1):
    m = np.zeros((size, size), np.uint8)
    m[y : y + n, x : x + n] = oid
    return m


@pytest.fixture
def case(tmp_path):
    """Frame 0: the annotation; 1: exact; 2: one pixel to the right; 3: two pixels; 4: far away."""
    gt, res = tmp_path / "gt", tmp_path / "res"
    gt.mkdir(), res.mkdir()
    preds = [_square(2, 2), _square(2, 2), _square(2, 3), _square(2, 4), _square(12, 12)]
    for t, p in enumerate(preds):
        write_indexed_png(gt / f"{t:05d}.png", _square(2, 2))
        write_indexed_png(res / f"{t:05d}.png", p)
    return gt, res


def test_score_is_the_hand_computed_j_and_f(case):
    gt, res = case
    s = score_result(res, gt)
    assert s.frames == ("00001", "00002", "00003", "00004") and s.skipped == ("00000",)  # the annotation is not scored
    # J: 16/16; shifted 1: 12 shared of 20; shifted 2: 8 of 24; disjoint: 0.
    np.testing.assert_allclose(s.j[0], [1.0, 12 / 20, 8 / 24, 0.0])
    # F on a 20x20 frame: tolerance ceil(0.008 * hypot(20, 20)) = 1 pixel (a plus-shaped disk).  Boundaries
    # (seg2bmap) are 16-pixel rings; one pixel off: every boundary pixel within 1 of the other's: F = 1;
    # two off: 10 of 16 each way: P = R = F = 0.625; disjoint: 0.
    np.testing.assert_allclose(s.f[0], [1.0, 1.0, 0.625, 0.0])
    j_mean, f_mean = np.mean([1, 0.6, 1 / 3, 0]), np.mean([1, 1, 0.625, 0])
    assert s.j_mean == pytest.approx(j_mean) and s.f_mean == pytest.approx(f_mean)
    assert s.jf_mean == pytest.approx((j_mean + f_mean) / 2)
    assert s.objects[0].j_recall == pytest.approx(0.5)  # J > 0.5 on frames 1 and 2
    assert s.summary().startswith(f"J&F {(j_mean + f_mean) / 2:.4f} (J {j_mean:.4f}, F {f_mean:.4f}) over 1 object")
    assert score_result(res, gt, all_frames=True).frames[0] == "00000"


def test_annotated_frames_come_from_the_run_record(case):
    gt, res = case
    (res / "annotations.json").write_text(json.dumps({"annotations": [{"frame": 2, "name": "00002", "ids": [1]}]}))
    s = score_result(res, gt)
    assert s.frames == ("00000", "00001", "00003", "00004")


def test_cli_prints_one_summary_line_and_writes_csvs(case, capsys):
    gt, res = case
    assert main(["score", str(res), "--gt", str(gt)]) == 0
    out = capsys.readouterr().out
    assert sum(line.startswith("J&F ") for line in out.splitlines()) == 1
    rows = list(csv.DictReader(open(res / "score-frames.csv")))
    assert [(r["frame"], r["object"], float(r["J"])) for r in rows][1] == ("00002", "1", 0.6)
    objs = list(csv.DictReader(open(res / "score-objects.csv")))
    assert objs[0]["object"] == "1" and float(objs[0]["F-Mean"]) == pytest.approx(0.65625)


def test_bad_inputs(case, tmp_path):
    gt, res = case
    (res / "00003.png").unlink()
    with pytest.raises(InputError, match="00003.png is missing"):
        score_result(res, gt)
    with pytest.raises(InputError, match="no such ground-truth folder"):
        score_result(res, tmp_path / "nope")
    assert main(["score", str(res), "--gt", str(tmp_path / "nope")]) == 2
