"""`vidprop eval pf-willow` and `vidprop eval cub` end to end on the tiny random SD (wiring, output, errors)."""

from __future__ import annotations

import json

import torch

from tests.eval.label_matcher import paint
from vidprop.cli import main

FAST = ["--size", "64", "--ensemble", "1", "--no-progress"]


def test_pfwillow_and_cub_end_to_end(tiny_sd_path, tmp_path, capsys):
    willow = tmp_path / "PF-WILLOW"
    xs, ys = list(range(4, 44, 4)), [10, 12, 14, 16, 18, 20, 22, 24, 26, 28]
    for name in ("a", "b"):
        paint(willow / "duck(S)" / f"{name}.png", (64, 48), {i + 1: [(x, y)] for i, (x, y) in enumerate(zip(xs, ys))})
    kp = ",".join(str(v) for v in xs + ys)
    (willow / "test_pairs.csv").write_text("imageA,imageB," + ",".join(["k"] * 40) + "\n"
                                           f"PF-dataset/duck(S)/a.png,PF-dataset/duck(S)/b.png,{kp},{kp}\n")
    out = tmp_path / "w"
    rc = main(["-q", "eval", "pf-willow", "--root", str(willow), "--out", str(out), "--model", str(tiny_sd_path), *FAST])
    text = capsys.readouterr().out
    assert rc == 0 and "PF-WILLOW: 1 pairs, 10 points" in text and "PCK per image (paper)" in text
    s = json.loads((out / "summary.json").read_text())
    assert s["config"]["extractor"]["model"] == str(tiny_sd_path) and s["config"]["frames"]["width"] == 64

    cub = tmp_path / "cub" / "cub_subset_0"
    for k in range(2):
        paint(cub / "images" / f"img_{k:03d}.png", (40, 40), {1: [(10, 12)], 2: [(30, 25)]})
    (cub / "pck").mkdir()
    torch.save(torch.tensor([[[10, 12, 1], [30, 25, 1]]] * 2, dtype=torch.float32), cub / "pck" / "keypoints.pt")
    rc = main(["-q", "eval", "cub", "--root", str(tmp_path / "cub"), "--out", str(tmp_path / "c"),
               "--model", str(tiny_sd_path), *FAST])
    text = capsys.readouterr().out
    assert rc == 0 and "CUB-200-2011: 2 pairs, 4 points" in text and "PCK mean of subsets" in text

    # errors: one line, before the model is loaded
    for args, message in ((["pf-willow", "--root", str(tmp_path / "none")], "test_pairs.csv"),
                          (["cub", "--root", str(tmp_path / "cub"), "--subsets", "3"], "not found")):
        rc = main(["-q", "eval", *args, "--out", str(tmp_path / "x"), *FAST])
        err = capsys.readouterr().err.strip().splitlines()
        assert rc != 0 and len(err) == 1 and message in err[0]
