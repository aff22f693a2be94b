"""PF-WILLOW: a tiny synthetic release (test_pairs.csv + image folders), PCK computed by hand."""

from __future__ import annotations

import pytest

from tests.eval.label_matcher import LabelMatcher, paint
from vidprop.errors import InputError
from vidprop.eval.pfwillow import category_prompt_name, keypoint_box, read_pfwillow, run_pfwillow

XS = [10, 14, 18, 22, 26, 30, 34, 38, 42, 50]
YS = [20, 40, 25, 30, 35, 22, 28, 33, 38, 26]  # box 40 x 20 -> thresholds 2 / 4 / 6 px at alpha .05 / .1 / .15
OFFSETS = {  # per image: how far above each ground-truth point its prediction spot is painted
    "car(G)/a.png": [0] * 10,
    "car(G)/b.png": [0, 1, 2, 3, 4, 5, 6, 7, 0, 0],
    "car(G)/c.png": [10, 10, 10, 10, 10, 0, 0, 0, 0, 0],
    "winebottle(M)/e.png": [0] * 10,
    "winebottle(M)/f.png": [0] * 10,
}
PAIRS = [("car(G)/a.png", "car(G)/b.png"), ("car(G)/b.png", "car(G)/c.png"), ("winebottle(M)/e.png", "winebottle(M)/f.png")]


@pytest.fixture()
def willow(tmp_path):
    root = tmp_path / "PF-WILLOW"
    for name, d in OFFSETS.items():
        paint(root / name, (64, 48), {i + 1: [(x, y - di), (x, y)] for i, (x, y, di) in enumerate(zip(XS, YS, d))})
    kp = [str(v) for v in XS + YS]
    lines = ["imageA,imageB," + ",".join(f"XA{i}" for i in range(20)) + "," + ",".join(f"XB{i}" for i in range(20))]
    lines += [f"PF-dataset/{a},PF-dataset/{b}," + ",".join(kp + kp) for a, b in PAIRS]
    (root / "test_pairs.csv").write_text("\n".join(lines) + "\n")
    return root


def test_reader_and_helpers(willow):
    pairs = read_pfwillow(willow)
    assert [p.category for p in pairs] == ["car(G)", "car(G)", "winebottle(M)"]
    assert pairs[0].src_path == willow / "car(G)" / "a.png" and pairs[0].src_kps.shape == (10, 2)
    assert tuple(pairs[0].trg_kps[9]) == (50, 26)
    assert keypoint_box(pairs[0].trg_kps) == (10, 20, 50, 40)
    assert [category_prompt_name(c) for c in ("car(G)", "winebottle(wC)", "duck(S)")] == ["car", "wine bottle", "duck"]
    assert len(read_pfwillow(willow, limit=1)) == 1
    assert [p.name for p in read_pfwillow(willow, categories=["winebottle(M)"])] == ["0003"]
    # a file without the header row reads the same
    (willow / "test_pairs.csv").write_text("\n".join((willow / "test_pairs.csv").read_text().splitlines()[1:]) + "\n")
    assert [(p.name, p.category) for p in read_pfwillow(willow)] == [(q.name, q.category) for q in pairs]


def test_pck_per_image_by_hand(willow, tmp_path):
    m = LabelMatcher(10)
    s = run_pfwillow(m, willow, tmp_path / "run")
    # errors per pair = the target's offsets: a->b 0,1,...,7,0,0; b->c 10 x5, 0 x5; e->f all 0
    # correct @.05 (<=2): 5, 5, 10   @.1 (<=4): 7, 5, 10   @.15 (<=6): 9, 5, 10   of 10 points each
    o = s["overall"]
    assert o["pairs"] == 3 and o["points"] == 30
    assert o["per_image"] == pytest.approx({"0.05": 100 * 2 / 3, "0.1": 100 * (0.7 + 0.5 + 1) / 3, "0.15": 80.0})
    assert o["per_point"] == pytest.approx({"0.05": 100 * 20 / 30, "0.1": 100 * 22 / 30, "0.15": 100 * 24 / 30})
    assert s["per_category"]["car(G)"]["per_image"]["0.1"] == pytest.approx(60.0)
    assert m.calls == 5 and m.prompts.count("a photo of a car") == 3 and m.prompts.count("a photo of a wine bottle") == 2
    rows = (tmp_path / "run" / "pairs.csv").read_text().splitlines()
    assert rows[0] == "pair,category,points,correct@0.05,correct@0.1,correct@0.15,pck@0.05,pck@0.1,pck@0.15"
    assert rows[1] == "0001,car(G),10,5,7,9,50.00,70.00,90.00"
    assert (tmp_path / "run" / "config.yaml").is_file()


def test_bad_release(tmp_path, willow):
    with pytest.raises(InputError, match="test_pairs.csv"):
        read_pfwillow(tmp_path)
    (willow / "test_pairs.csv").write_text("imageA,imageB,x\nPF-dataset/car(G)/a.png,PF-dataset/car(G)/b.png,1\n")
    with pytest.raises(InputError, match="line 2: expected 42 columns"):
        read_pfwillow(willow)
    row = ",".join(["PF-dataset/car(G)/zz.png", "PF-dataset/car(G)/b.png"] + ["1"] * 40)
    (willow / "test_pairs.csv").write_text("h\n" + row + "\n")
    with pytest.raises(InputError, match="zz.png not found"):
        read_pfwillow(willow)
