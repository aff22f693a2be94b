"""`vidprop eval pf-willow` and `vidprop eval cub` end to end on the tiny random SD (wiring, output, errors)."""

from __future__ import annotations

import json

import torch

from tests.eval.cub_release import write_release
from tests.eval.label_matcher import paint
from vidprop.cli import main

FAST = ["--size", "64", "--ensemble", "1", "--no-progress"]
ATTN = ["--size", "64", "--steps", "1", "--rounds", "1", "--crops", "4", "--no-progress"]


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
    assert rc == 0 and "PF-WILLOW: 1 pairs, 10 points (dift, float32)" in text
    assert "dift protocol: distance <= alpha * max(w, h)" in text and "PCK per image (the mean over pairs) (as published)" in text
    assert "compare to: DIFT" in text and "hedlin" not in text
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
    assert rc == 0 and "CUB-200-2011 (Neural Congealing's 14 subsets): 2 pairs, 4 points" in text
    assert "PCK mean over subsets of per-point PCK (as published)" in text and "PCK per point" in text

    # errors: one line, before the model is loaded
    for args, message in ((["pf-willow", "--root", str(tmp_path / "none")], "test_pairs.csv"),
                          (["pf-willow", "--root", str(tmp_path / "none"), "--method", "attention", "--pck-protocol",
                            "both"], "test_pairs.csv"),
                          (["cub", "--root", str(tmp_path / "none"), "--classes", "2"], "or be the CUB_200_2011 release"),
                          (["cub", "--root", str(tmp_path / "cub"), "--subsets", "3"], "not found")):
        rc = main(["-q", "eval", *args, "--out", str(tmp_path / "x"), *FAST])
        err = capsys.readouterr().err.strip().splitlines()
        assert rc != 0 and len(err) == 1 and message in err[0]


def test_attention_on_the_cub_release_with_both_protocols(tiny_sd_path, tmp_path, capsys):
    # one class, two test images, two parts visible in both: two points optimised (1 step, 1 round)
    def im(size, kps):
        return {"cls": 1, "train": 0, "size": size, "box": (2, 3, 30, 20), "d": [0, 0], "kps": kps}

    write_release(tmp_path / "data", [im((64, 48), [(10, 12, 1), (40, 30, 1)]), im((48, 64), [(20, 22, 1), (30, 40, 1)])])
    out = tmp_path / "att"
    rc = main(["-q", "eval", "cub", "--root", str(tmp_path / "data"), "--out", str(out), "--classes", "1",
               "--method", "attention", "--pck-protocol", "both", "--model", str(tiny_sd_path), *ATTN])
    text = capsys.readouterr().out
    assert rc == 0 and "CUB-200-2011 (the release, test images of classes 1-1): 1 pairs, 2 points (attention, float32)" in text
    assert text.index("hedlin protocol:") < text.index("dift protocol:")  # the method's own first
    assert "61.6 @0.05, 77.5 @0.1" in text and "note: classes 1-1; Hedlin et al.'s published run used classes 1-3" in text
    s = json.loads((out / "summary.json").read_text())
    assert s["method"] == "attention" and s["protocol"] == "hedlin" and list(s["protocols"]) == ["hedlin", "dift"]
    assert s["attention"]["steps"] == 1 and s["attention"]["rounds"] == 1 and s["model"] == str(tiny_sd_path)
    assert s["points_matched_this_run"] == 2
    rows = (out / "pairs.csv").read_text().splitlines()
    assert rows[0].split(",")[4:] == [f"{p}:correct@{a}" for p in ("hedlin", "dift") for a in ("0.05", "0.1", "0.15")]
    cfg = (out / "config.yaml").read_text()
    assert "method: attention" in cfg and "- hedlin\n- dift" in cfg


def test_engine_flags_reach_the_runners(tmp_path, capsys, stub_runner):
    """--engine ray hands the runners what builds the model (a TaskConfig, or the attention matcher's loader:
    each Ray worker loads it once) and the engine options."""
    import pytest

    import vidprop.eval.cub as cub
    import vidprop.eval.pfwillow as pfwillow
    from tests.conftest import RunnerCalled
    from vidprop.config import TaskConfig
    from vidprop.features.attention import AttentionMatcher

    willow = tmp_path / "PF-WILLOW"
    paint(willow / "duck(S)" / "a.png", (64, 48), {1: [(4, 4)]})
    paint(willow / "duck(S)" / "b.png", (64, 48), {1: [(4, 4)]})
    kp = ",".join(["4"] * 20)
    (willow / "test_pairs.csv").write_text(f"PF-dataset/duck(S)/a.png,PF-dataset/duck(S)/b.png,{kp},{kp}\n")
    subsets = tmp_path / "cub"
    for k in range(2):
        paint(subsets / "cub_subset_0" / "images" / f"img_{k:03d}.png", (40, 40), {1: [(10, 12)]})
    (subsets / "cub_subset_0" / "pck").mkdir()
    torch.save(torch.tensor([[[10, 12, 1]]] * 2, dtype=torch.float32), subsets / "cub_subset_0" / "pck" / "keypoints.pt")
    stub_runner(pfwillow, "run_pfwillow")
    calls = stub_runner(cub, "run_cub")
    for cmd, root, runner in (("pf-willow", willow, "run_pfwillow"), ("cub", subsets, "run_cub")):
        with pytest.raises(RunnerCalled):
            main(["-q", "eval", cmd, "--root", str(root), "--out", str(tmp_path / cmd), "--engine", "ray",
                  "--workers", "3", "--gpus-per-worker", "0.5"])
        (m, *_), k = calls[runner]
        e = k["engine"]
        assert isinstance(m, TaskConfig) and (e.kind, e.workers, e.gpus_per_worker) == ("ray", 3, 0.5)
        with pytest.raises(RunnerCalled):  # the attention method too: each worker builds the matcher (nothing loads here)
            main(["-q", "eval", cmd, "--root", str(root), "--out", str(tmp_path / "att"), "--method", "attention",
                  "--engine", "ray", "--model", str(tmp_path / "no-model"), "--steps", "3"])
        att, e = calls[runner][1]["attention"], calls[runner][1]["engine"]
        assert att.func == AttentionMatcher.from_pretrained and att.args[0] == str(tmp_path / "no-model")
        assert att.args[1].steps == 3 and e.kind == "ray"
        assert main(["-q", "eval", cmd, "--root", str(root), "--out", str(tmp_path / "w"), "--workers", "2"]) == 2
        assert "--workers: only with --engine ray" in capsys.readouterr().err
    assert not (tmp_path / "att").exists() and not (tmp_path / "w").exists()
