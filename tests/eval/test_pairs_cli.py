"""`vidprop eval spair` / `eval hpatches` from the command line on the tiny random SD: protocols, keypoint
files, the precision written with the results, and errors (one line, non-zero exit)."""

from __future__ import annotations

import json

import numpy as np
import pytest

from tests.eval.same_results import assert_same_results
from tests.eval.pair_data import make_hpatches, make_spair
from vidprop.cli import main

FAST = ["--size", "64", "--ensemble", "1", "--no-progress"]


def test_eval_spair_both_protocols(tmp_path, tiny_sd_path, capsys):
    root = make_spair(tmp_path / "SPair-71k")
    out = tmp_path / "runs"
    rc = main(["-q", "eval", "spair", "--root", str(root), "--out", str(out), "--limit", "2",
               "--pck-protocol", "both", "--model", str(tiny_sd_path), *FAST])
    assert rc == 0
    printed = capsys.readouterr().out
    assert "(dift, float32)" in printed
    assert printed.index("dift protocol: distance <= alpha * max(h, w) of the TARGET box") < printed.index(
        "hedlin protocol: images and points rescaled to 512x512")
    assert "compare to: DIFT (Tang et al. 2023)" in printed and "45.4 @0.1" in printed
    s = json.loads((out / "summary.json").read_text())
    assert s["protocol"] == "dift" and list(s["protocols"]) == ["dift", "hedlin"] and s["dtype"] == "float32"
    assert s["overall"]["pairs"] == 2 and s["protocols"]["hedlin"]["overall"]["points"] == 6


def test_eval_hpatches_with_keypoint_files(tmp_path, tiny_sd_path, capsys):
    root = make_hpatches(tmp_path / "hpatches")
    kp = tmp_path / "kp"
    kp.mkdir()
    rng = np.random.default_rng(0)
    for seq in ("i_room", "v_wall"):
        for i in range(1, 7):
            np.savetxt(kp / f"{seq}-{i}.kp", rng.uniform(5, 85, (40, 2)))
    out = tmp_path / "runs"
    rc = main(["-q", "eval", "hpatches", "--root", str(root), "--out", str(out), "--keypoints", str(kp),
               "--limit", "1", "--dtype", "float32", "--model", str(tiny_sd_path), *FAST])
    assert rc == 0
    assert f"1 sequences, keypoints from {kp}, float32" in capsys.readouterr().out
    s = json.loads((out / "summary.json").read_text())
    assert s["keypoints"]["source"] == "files" and s["dtype"] == "float32" and s["accuracy"]["all"]["pairs"] == 5
    (kp / "v_wall-3.kp").write_text("1 2 3\n")
    rc = main(["-q", "eval", "hpatches", "--root", str(root), "--out", str(tmp_path / "runs2"), "--keypoints",
               str(kp), "--model", str(tiny_sd_path), *FAST])
    lines = capsys.readouterr().err.strip().splitlines()
    assert rc != 0 and len(lines) == 1 and "v_wall-3.kp: a keypoint file must hold rows of 2" in lines[0]
    assert not (tmp_path / "runs2").exists()


def test_eval_spair_hedlin_protocol_without_source_boxes_fails_before_loading(tmp_path, capsys):
    root = make_spair(tmp_path / "SPair-71k")
    for f in (root / "PairAnnotation" / "test").glob("*.json"):
        d = json.loads(f.read_text())
        del d["src_bndbox"]
        f.write_text(json.dumps(d))
    rc = main(["-q", "eval", "spair", "--root", str(root), "--out", str(tmp_path / "o"), "--pck-protocol", "hedlin",
               "--model", str(tmp_path / "no-model"), *FAST])
    lines = capsys.readouterr().err.strip().splitlines()
    assert rc != 0 and len(lines) == 1 and "no src_bndbox, which the hedlin PCK protocol needs" in lines[0]


@pytest.mark.ray
def test_ray_engine_gives_the_same_pairs_and_scores(ray_local, tmp_path, torch_threads):
    """Categories (SPair) and sequences (HPatches) spread over 2 Ray workers: every row and score as in-process."""
    import functools

    from tests.eval.pair_data import PatchMatcher
    from vidprop.engine import EngineOptions
    from vidprop.eval.hpatches import run_hpatches
    from vidprop.eval.spair import run_spair

    spair, hp = make_spair(tmp_path / "SPair-71k"), make_hpatches(tmp_path / "hpatches")
    engine = EngineOptions(kind="ray", workers=2, cpus_per_worker=1)
    runs = {"spair": (run_spair, spair, "semantic", {"protocols": "both"}),
            "hpatches": (run_hpatches, hp, "geometric", {"max_keypoints": 100})}
    for name, (run, root, preset, kw) in runs.items():
        with torch_threads(1):  # as each Ray worker (1 CPU): CPU float sums depend on the thread count
            run(PatchMatcher(preset), root, tmp_path / name / "seq", **kw)
        run(functools.partial(PatchMatcher, preset), root, tmp_path / name / "ray", engine=engine, **kw)
        seq, ray = tmp_path / name / "seq", tmp_path / name / "ray"
        assert_same_results(seq, ray)
    # Hedlin et al.'s method on SPair: each worker builds its attention matcher from a callable
    from tests.eval.pair_data import ShiftAttention

    run_spair(None, spair, tmp_path / "att" / "seq", attention=ShiftAttention((2.0, -1.0)), protocols="both")
    run_spair(None, spair, tmp_path / "att" / "ray", attention=functools.partial(ShiftAttention, (2.0, -1.0)),
              protocols="both", engine=engine)
    seq, ray = tmp_path / "att" / "seq", tmp_path / "att" / "ray"
    assert assert_same_results(seq, ray)["method"] == "attention"


def test_engine_flags_reach_the_pair_runners(tmp_path, capsys, stub_runner):
    import vidprop.eval.hpatches as hpatches
    import vidprop.eval.spair as spair_module
    from tests.conftest import RunnerCalled
    from vidprop.config import TaskConfig
    from vidprop.features.attention import AttentionMatcher

    spair, hp = make_spair(tmp_path / "SPair-71k"), make_hpatches(tmp_path / "hpatches")
    stub_runner(spair_module, "run_spair")
    calls = stub_runner(hpatches, "run_hpatches")
    for cmd, root in (("spair", spair), ("hpatches", hp)):
        with pytest.raises(RunnerCalled):
            main(["-q", "eval", cmd, "--root", str(root), "--out", str(tmp_path / cmd), "--engine", "ray",
                  "--workers", "3"])
        (m, *_), k = calls[f"run_{cmd}"]
        e = k["engine"]
        assert isinstance(m, TaskConfig) and (e.kind, e.workers) == ("ray", 3)  # the workers load the model
    with pytest.raises(RunnerCalled):  # the attention method: each worker builds the matcher, nothing loads here
        main(["-q", "eval", "spair", "--root", str(spair), "--out", str(tmp_path / "att"), "--method", "attention",
              "--engine", "ray", "--model", str(tmp_path / "no-model")])
    att = calls["run_spair"][1]["attention"]
    assert att.func == AttentionMatcher.from_pretrained and att.args[0] == str(tmp_path / "no-model")
