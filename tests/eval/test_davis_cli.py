"""`vidprop eval davis`: scoring from the command line, errors, and propagation end to end (tiny SD)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import yaml
from PIL import Image

from tests.eval.test_davis import hand_dataset, make_davis
from vidprop.cli import main
from vidprop.errors import ConfigError
from vidprop.io.masks import write_indexed_png

HAND_TABLES = (
    "--------------------------- Global results for val ---------------------------\n"
    " J&F-Mean   J-Mean  J-Recall   J-Decay   F-Mean  F-Recall   F-Decay\n"
    " 0.542063 0.544444  0.555556 -0.133333 0.539683  0.555556 -0.119048\n"
    "\n---------- Per sequence results for val ----------\n"
    "Sequence   J-Mean   F-Mean\n"
    "  blob_1 0.633333 0.619048\n"
    "  pair_1 1.000000 1.000000\n"
    "  pair_2 0.000000 0.000000\n"
)


@pytest.fixture
def hand(tmp_path):
    make_davis(tmp_path / "DAVIS", tmp_path / "res", hand_dataset())
    return tmp_path / "DAVIS", tmp_path / "res"


def _run(capsys, args):
    rc = main(args)
    cap = capsys.readouterr()
    return rc, cap.out, cap.err


def test_score_only_prints_the_toolkit_tables_and_writes_csvs(hand, capsys):
    root, res = hand
    (res / "global_results-val.csv").write_text("J&F-Mean,J-Mean\n0.999,0.999\n")  # stale: never shown
    rc, out, err = _run(capsys, ["eval", "davis", "--root", str(root), "--results", str(res), "--score-only",
                                 "--workers", "2", "--no-progress"])
    assert rc == 0, err
    assert out.startswith(HAND_TABLES)
    assert "0.999" not in out
    assert (res / "global_results-val.csv").read_text().splitlines()[1] == "0.542,0.544,0.556,-0.133,0.540,0.556,-0.119"
    assert (res / "per-sequence_results-val.csv").read_text().splitlines()[1:] == [
        "blob_1,0.633,0.619", "pair_1,1.000,1.000", "pair_2,0.000,0.000"]
    assert Image.open(res / "per-sequence_jf-val.png").format == "PNG"
    assert f"wrote {res / 'global_results-val.csv'}" in out


def test_score_only_reports_into_out_and_takes_a_subset(hand, tmp_path, capsys):
    root, res = hand
    report = tmp_path / "report"
    rc, out, _ = _run(capsys, ["eval", "davis", "--root", str(root), "--results", str(res), "--out", str(report),
                               "--sequences", "pair", "--no-summary", "--no-progress"])
    assert rc == 0
    assert (report / "per-sequence_results-val.csv").read_text().splitlines()[1:] == [
        "pair_1,1.000,1.000", "pair_2,0.000,0.000"]
    assert not (report / "per-sequence_jf-val.png").exists()
    assert not (res / "global_results-val.csv").exists()


@pytest.mark.parametrize(
    "damage, message",
    [
        (lambda root, res: (res / "blob" / "00002.png").unlink(), "blob/00002.png is missing"),
        (lambda root, res: Image.open(res / "pair" / "00001.png").convert("RGB").save(res / "pair" / "00001.png"),
         "pair/00001.png: RGB image with 3 channels"),
        (lambda root, res: write_indexed_png(res / "pair" / "00003.png", np.full((12, 12), 7, np.uint8)),
         "pair/00003.png holds object id 7"),
        (lambda root, res: write_indexed_png(res / "blob" / "00001.png", np.zeros((9, 10), np.uint8)),
         "blob/00001.png is 10x9 but its annotation is 10x10"),
        (lambda root, res: (root / "ImageSets" / "2017" / "val.txt").unlink(), "ImageSets/2017/val.txt"),
    ],
)
def test_bad_input_is_one_line_and_nonzero_exit(hand, capsys, damage, message):
    root, res = hand
    damage(root, res)
    rc, out, err = _run(capsys, ["eval", "davis", "--root", str(root), "--results", str(res), "--no-progress",
                                 "--workers", "1"])
    assert rc != 0
    lines = [ln for ln in err.splitlines() if not ln.startswith("INFO:")]
    assert len(lines) == 1 and lines[0].startswith("vidprop: error: ") and message in lines[0], err
    assert "Global results" not in out
    assert not (res / "global_results-val.csv").exists()


def test_usage_errors_are_one_line(hand, capsys):
    root, _ = hand
    rc, _, err = _run(capsys, ["eval", "davis", "--root", str(root), "--score-only"])
    assert rc != 0 and err.strip().splitlines()[-1] == "vidprop: error: --score-only needs the masks to score: --results DIR"
    rc, _, err = _run(capsys, ["eval", "davis", "--root", str(root)])
    assert rc != 0 and "--out DIR is needed" in err.strip().splitlines()[-1]


def test_help_teaches(capsys):
    with pytest.raises(SystemExit) as exc:
        main(["eval", "davis", "--help"])
    assert exc.value.code == 0
    text = capsys.readouterr().out
    for needle in ("examples:", "vidprop eval davis --root DAVIS/ --set val --out runs/dift-val",
                   "--results runs/dift-val --score-only", "--sequences", "--workers", "config.yaml",
                   "global_results-<set>.csv", "--model", "--device", "--dtype", "--config", "--overwrite"):
        assert needle in text, needle


# ------------------------------------------------------------------ propagation, end to end


def write_scene_davis(root, names, *, frames: int, objects, seed: int):
    """A DAVIS layout (ImageSets/2017/val.txt, JPEGImages/480p, Annotations/480p) of synthetic 96x64 scenes:
    sequence i has ``objects[i]`` objects and seed ``seed + i``."""
    from vidprop.io.synthetic import SyntheticScene

    (root / "ImageSets" / "2017").mkdir(parents=True)
    (root / "ImageSets" / "2017" / "val.txt").write_text("\n".join(names) + "\n")
    for i, name in enumerate(names):
        scene = SyntheticScene(width=96, height=64, num_frames=frames, num_objects=objects[i], seed=seed + i)
        (root / "JPEGImages" / "480p" / name).mkdir(parents=True)
        (root / "Annotations" / "480p" / name).mkdir(parents=True)
        for t, (img, mask) in enumerate(scene.frames()):
            Image.fromarray(img).save(root / "JPEGImages" / "480p" / name / f"{t:05d}.jpg", quality=95)
            write_indexed_png(root / "Annotations" / "480p" / name / f"{t:05d}.png", mask)
    return root


@pytest.fixture(scope="module")
def scene_davis(tmp_path_factory):
    """Two short sequences of real synthetic footage (96x64 JPEG frames) with their masks."""
    return write_scene_davis(tmp_path_factory.mktemp("scene") / "DAVIS", ["alpha", "beta"], frames=5,
                             objects=[1, 2], seed=10)


def test_propagate_then_score_end_to_end_and_resume(scene_davis, tiny_sd_path, tmp_path, capsys):
    out = tmp_path / "run"
    fast = ["--model", str(tiny_sd_path), "--short-side", "64", "--ensemble", "1", "--no-progress",
            "--workers", "1"]
    rc, text, err = _run(capsys, ["eval", "davis", "--root", str(scene_davis), "--out", str(out), *fast])
    assert rc == 0, err
    for name in ("alpha", "beta"):
        pngs = sorted((out / name).glob("*.png"))
        assert [p.stem for p in pngs] == [f"{t:05d}" for t in range(5)]
        assert all(Image.open(p).size == (96, 64) for p in pngs)
    assert not list(out.glob(".*partial*"))
    rec = yaml.safe_load((out / "config.yaml").read_text())
    assert rec["model"] == str(tiny_sd_path) and rec["set"] == "val" and rec["sequences"] == ["alpha", "beta"]
    assert rec["config"]["frames"]["short_side"] == 64 and rec["config"]["extractor"]["ensemble"] == 1
    assert rec["vidprop_version"] and rec["date"] and "revision" in rec
    assert "Global results for val" in text
    lines = text.splitlines()
    names = [ln.split()[0] for ln in lines[lines.index("---------- Per sequence results for val ----------") + 2:]
             if ln.strip() and not ln.startswith("wrote")]
    assert names == ["alpha_1", "beta_1", "beta_2"]
    jf = float((out / "global_results-val.csv").read_text().splitlines()[1].split(",")[0])
    assert 0.0 <= jf <= 1.0

    # resume: complete sequences are skipped (files untouched); an incomplete one is redone
    stamp = {p: p.stat().st_mtime_ns for p in out.glob("*/*.png")}
    rc, text2, _ = _run(capsys, ["eval", "davis", "--root", str(scene_davis), "--out", str(out), *fast])
    assert rc == 0 and {p: p.stat().st_mtime_ns for p in out.glob("*/*.png")} == stamp
    assert text2.splitlines()[:3] == text.splitlines()[:3]
    (out / "beta" / "00003.png").unlink()
    rc, _, _ = _run(capsys, ["eval", "davis", "--root", str(scene_davis), "--out", str(out), *fast])
    assert rc == 0 and (out / "beta" / "00003.png").exists()
    assert all(p.stat().st_mtime_ns == stamp[p] for p in (out / "alpha").glob("*.png"))

    # resuming with other settings is refused before any work
    (out / "alpha" / "00004.png").unlink()
    rc, _, err = _run(capsys, ["eval", "davis", "--root", str(scene_davis), "--out", str(out), *fast, "--topk", "3"])
    assert rc != 0 and "made with other settings" in err.strip().splitlines()[-1]
    assert not (out / "alpha" / "00004.png").exists()



# ------------------------------------------------------------------ the published run's per-sequence context


@pytest.fixture(scope="module")
def shooting_davis(tmp_path_factory):
    """A synthetic DAVIS layout with a sequence named `shooting` (the one DIFT's script treats apart)."""
    return write_scene_davis(tmp_path_factory.mktemp("shooting") / "DAVIS", ["shooting", "beta"], frames=4,
                             objects=[1, 1], seed=20)


@pytest.fixture
def context_sizes(monkeypatch):
    """Record the n_last_frames of every Propagator the segment task builds (in its session), in order."""
    import vidprop.tasks.session as segmod

    seen: list[int] = []

    class Recording(segmod.Propagator):
        def __init__(self, config=None):
            super().__init__(config)
            seen.append(self.config.n_last_frames)

    monkeypatch.setattr(segmod, "Propagator", Recording)
    return seen


@pytest.mark.parametrize("preset, shooting_context, note", [
    ("davis", 10, "preset davis: NOT the published protocol"),  # --ensemble 1 below: not the paper's run
    ("davis-fast", 28, "preset davis-fast: NOT the published protocol"),
])
def test_published_preset_gives_shooting_ten_context_frames(shooting_davis, tiny_sd_path, tmp_path, capsys,
                                                             context_sizes, preset, shooting_context, note):
    out = tmp_path / preset
    rc, text, err = _run(capsys, ["eval", "davis", "--root", str(shooting_davis), "--out", str(out),
                                  "--config", preset, "--model", str(tiny_sd_path), "--short-side", "64",
                                  "--ensemble", "1", "--no-progress", "--workers", "1"])
    assert rc == 0, err
    assert context_sizes == [shooting_context, 28]  # shooting, then beta
    rec = yaml.safe_load((out / "config.yaml").read_text())
    assert rec["preset"] == preset and rec["config"]["propagation"]["n_last_frames"] == 28
    if preset == "davis":
        assert rec["per_sequence"]["shooting"]["propagation"]["n_last_frames"] == 10
        assert rec["config"]["sequences"] == {"shooting": {"propagation": {"n_last_frames": 10}}}
        assert rec["config"]["extractor"]["dtype"] == "float32"
    else:
        assert rec["per_sequence"] == {} and rec["config"]["sequences"] == {}
    assert not rec["published"]
    assert text.splitlines()[0].startswith(note)


def test_a_flag_overrides_the_per_sequence_setting(shooting_davis, tiny_sd_path, tmp_path, capsys, context_sizes):
    rc, _, err = _run(capsys, ["eval", "davis", "--root", str(shooting_davis), "--out", str(tmp_path / "r"),
                               "--model", str(tiny_sd_path), "--short-side", "64", "--ensemble", "1",
                               "--n-last", "3", "--sequences", "shooting", "--no-progress", "--workers", "1"])
    assert rc == 0, err
    assert context_sizes == [3]


# ------------------------------------------------------------------ on Ray workers
def colour_segmenter(cfg):
    """A Segmenter on backbone-free features (built in each Ray worker: no model to load)."""
    from tests.tasks.test_segment import ColourStats
    from vidprop.tasks.segment import Segmenter

    return Segmenter(ColourStats(), cfg)


@pytest.mark.ray
def test_ray_engine_writes_the_same_masks(ray_local, scene_davis, tmp_path, torch_threads):
    import functools

    from vidprop.config import load_preset
    from vidprop.engine import EngineOptions
    from vidprop.eval.davis import run_davis

    cfg = load_preset("davis").override(frames={"short_side": 64}, propagation={"n_last_frames": 3})
    build = functools.partial(colour_segmenter, cfg)
    with torch_threads(1):  # as each Ray worker below: CPU float sums depend on the thread count
        run_davis(scene_davis, tmp_path / "seq", config=cfg, segmenter=build(), progress=False, score=False)
    run_davis(scene_davis, tmp_path / "ray", config=cfg, segmenter=build, progress=False, score=False,
              engine=EngineOptions(kind="ray", workers=2, gpus_per_worker=1, cpus_per_worker=1))
    pngs = sorted(p.relative_to(tmp_path / "seq") for p in (tmp_path / "seq").glob("*/*.png"))
    assert len(pngs) == 10
    assert sorted(p.relative_to(tmp_path / "ray") for p in (tmp_path / "ray").glob("*/*.png")) == pngs
    for p in pngs:
        assert (tmp_path / "ray" / p).read_bytes() == (tmp_path / "seq" / p).read_bytes(), p
    # scoring reads only these masks: the scores are the same too
    rec = {k: yaml.safe_load((tmp_path / k / "config.yaml").read_text()) for k in ("seq", "ray")}
    for r in rec.values():
        r.pop("date"), r.pop("root")
    assert rec["ray"] == rec["seq"]
    with pytest.raises(ConfigError, match="a Segmenter object stays in this process"):
        run_davis(scene_davis, tmp_path / "x", config=cfg, segmenter=build(), engine=EngineOptions(kind="ray"))


def test_engine_flags_reach_the_runner(scene_davis, tmp_path, capsys, monkeypatch):
    import vidprop.eval.davis as davis

    seen = {}
    monkeypatch.setattr(davis, "run_davis", lambda *a, **k: seen.update(k))
    _run(capsys, ["eval", "davis", "--root", str(scene_davis), "--out", str(tmp_path), "--engine", "ray",
                  "--workers", "3", "--gpus-per-worker", "0.5", "--address", "auto", "--no-progress"])
    e = seen["engine"]
    assert (e.kind, e.workers, e.gpus_per_worker, e.address, seen["workers"]) == ("ray", 3, 0.5, "auto", 3)
    rc, _, err = _run(capsys, ["eval", "davis", "--root", str(scene_davis), "--out", str(tmp_path),
                               "--gpus-per-worker", "1"])
    assert rc == 2 and "--gpus-per-worker: only with --engine ray" in err


# ------------------------------------------------------------------ a full disk
def test_a_sequence_that_fills_the_disk_fails_alone_and_the_others_are_written(scene_davis, tmp_path, monkeypatch):
    import errno

    from vidprop.config import load_preset
    from vidprop.errors import WriteError
    from vidprop.eval.davis import run_davis
    from vidprop.tasks import segment as segmod

    real = segmod.write_indexed_png

    def full_for_alpha(path, mask):
        if Path(path).parent.name.startswith(".alpha.partial-"):
            raise OSError(errno.ENOSPC, "No space left on device")
        real(path, mask)

    monkeypatch.setattr(segmod, "write_indexed_png", full_for_alpha)
    cfg = load_preset("davis").override(frames={"short_side": 64}, propagation={"n_last_frames": 3})
    out = tmp_path / "run"
    with pytest.raises(WriteError) as info:
        run_davis(scene_davis, out, config=cfg, segmenter=colour_segmenter(cfg), progress=False)
    assert str(info.value) == (
        f"1 of 2 sequence(s) could not be written, nothing scored: {out / 'alpha'}: could not be written: no space "
        "left on device (the partial folder was removed); free some space or choose another output folder, then "
        "run the same command again; the other sequences are complete and a re-run redoes only these")
    assert sorted(p.name for p in out.iterdir()) == ["beta", "config.yaml"]
    assert len(list((out / "beta").glob("*.png"))) == 5


def test_a_run_that_failed_before_any_result_does_not_bind_the_corrected_one(scene_davis, tmp_path):
    """A size the frames cannot take fails at the first sequence and leaves only config.yaml: the corrected
    re-run (other settings) runs, and records its own settings."""
    from vidprop.config import load_preset
    from vidprop.errors import ConfigError
    from vidprop.eval.davis import run_davis

    out = tmp_path / "run"
    bad = load_preset("davis").override(frames={"short_side": 99968}, propagation={"n_last_frames": 3})
    with pytest.raises(ConfigError, match="the model input would be 149952x99968"):
        run_davis(scene_davis, out, config=bad, segmenter=colour_segmenter(bad), progress=False, score=False)
    assert [p.name for p in out.iterdir()] == ["config.yaml"]
    good = bad.override(frames={"short_side": 64})
    run_davis(scene_davis, out, config=good, segmenter=colour_segmenter(good), progress=False, score=False)
    assert sorted(p.name for p in out.iterdir()) == ["alpha", "beta", "config.yaml"]
    assert yaml.safe_load((out / "config.yaml").read_text())["config"]["frames"]["short_side"] == 64
    # with results there, other settings are refused as before
    (out / "alpha" / "00004.png").unlink()
    other = good.override(propagation={"topk": 3})
    with pytest.raises(ConfigError, match="holds results made with other settings"):
        run_davis(scene_davis, out, config=other, segmenter=colour_segmenter(other), progress=False, score=False)


def test_the_scoring_benchmarks_synthetic_layout_is_one_eval_davis_propagates_on(tmp_path):
    from vidprop.bench.davis_scoring import make_synthetic_davis
    from vidprop.config import load_preset
    from vidprop.eval.davis import run_davis

    names = make_synthetic_davis(tmp_path / "DAVIS", tmp_path / "pred", num_sequences=2, num_frames=3, height=160,
                                 width=240)
    cfg = load_preset("davis").override(frames={"short_side": 64}, propagation={"n_last_frames": 3})
    run_davis(tmp_path / "DAVIS", tmp_path / "run", config=cfg, segmenter=colour_segmenter(cfg), progress=False,
              score=False)
    for name in names:
        assert len(list((tmp_path / "run" / name).glob("*.png"))) == 3
