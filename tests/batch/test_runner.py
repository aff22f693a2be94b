"""`vidprop batch` end to end on the tiny model: rows as the single-video commands write them, failures,
resuming, refusals, and the Ray engine (byte-identical outputs, a killed worker survived)."""

from __future__ import annotations

import json
import os
import shutil
import signal
import time
from pathlib import Path

import numpy as np
import pytest

from vidprop.batch import RowRunner, read_manifest, run_batch
from vidprop.batch.runner import STATE_DIR
from vidprop.cli import main
from vidprop.engine import EngineOptions
from vidprop.errors import InputError
from vidprop.io.atomic import PARTIAL_MARKER
from vidprop.io.masks import write_indexed_png
from vidprop.io.synthetic import SyntheticScene, write_frame_folder, write_video

FAST = ["--short-side", "32", "--ensemble", "1", "--no-progress"]
NAMES = ["v0", "v1", "v2", "v3"]


@pytest.fixture(scope="module")
def footage(tmp_path_factory):
    """Four short videos (one a frame folder, one corrupt) with their first-frame masks, and a manifest."""
    d = tmp_path_factory.mktemp("batch")
    rows = []
    for k, name in enumerate(NAMES):
        sc = SyntheticScene(width=64, height=48, num_frames=4, num_objects=2, seed=k)
        video = write_frame_folder(sc, d / name, ext=".png") if k == 2 else write_video(sc, d / f"{name}.mp4")
        write_indexed_png(d / f"{name}_mask.png", sc.frame(0)[1])
        rows.append({"video": video.name, "mask": f"{name}_mask.png"})
    (d / "v3.mp4").write_bytes(b"\x00\x00\x00\x18ftypmp42 this is not a video")  # corrupt
    rows[1]["topk"] = 3  # a per-row setting
    rows[1]["overlay"] = False
    manifest = d / "videos.jsonl"
    manifest.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return d, manifest


def _files(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()
            and STATE_DIR not in p.parts and p.name != "batch_report.json"}


def _report(out: Path) -> dict:
    return json.loads((out / "batch_report.json").read_text())


@pytest.fixture(scope="module")
def sequential(footage, tiny_sd_path, tmp_path_factory):
    """The sequential engine's run of the manifest through the CLI: (out, exit code, stderr).

    With one torch thread, as the Ray workers of the test below (1 CPU each): CPU float sums depend on the
    thread count, so only runs with the same count can be compared byte for byte.
    """
    import contextlib
    import io

    import torch

    d, manifest = footage
    out = tmp_path_factory.mktemp("seq") / "out"
    err = io.StringIO()
    saved = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        with contextlib.redirect_stderr(err):
            rc = main(["batch", str(manifest), "--out", str(out), "--model", str(tiny_sd_path), *FAST])
    finally:
        torch.set_num_threads(saved)
    return out, rc, err.getvalue()


def test_rows_are_written_as_the_single_video_command_writes_them(footage, sequential, tiny_sd_path, tmp_path,
                                                                 torch_threads):
    from vidprop.config import load_preset
    from vidprop.tasks.segment import Segmenter, segment_video

    d, _ = footage
    out, rc, err = sequential
    assert rc == 1  # one row failed
    single = tmp_path / "single"
    with torch_threads(1):  # as the batch run
        # the row with its own topk and overlay columns = `vidprop segment` with those flags
        assert main(["segment", str(d / "v1.mp4"), "--mask", str(d / "v1_mask.png"), "--out", str(single), "--topk",
                     "3", "--no-overlay", "--model", str(tiny_sd_path), *FAST]) == 0
        # the others = segment_video with the same settings (what `vidprop segment` calls)
        cfg = load_preset("davis-fast").override(frames={"short_side": 32},
                                                 extractor={"model": str(tiny_sd_path), "ensemble": 1})
        seg = Segmenter.from_pretrained(config=cfg)
        segment_video(d / "v0.mp4", d / "v0_mask.png", single, segmenter=seg, progress=False)
        segment_video(d / "v2", d / "v2_mask.png", single, segmenter=seg, progress=False)
        segment_video(d / "v1.mp4", d / "v1_mask.png", tmp_path / "k15", segmenter=seg, progress=False, overlay=False)
    want = _files(single)
    assert sorted(want) == sorted([f"v0/{i:05d}.png" for i in range(4)] + ["v0/overlay.mp4", "v0/source.json"]
                                  + [f"v1/{i:05d}.png" for i in range(4)] + ["v1/source.json"]
                                  + [f"v2/{i:05d}.png" for i in range(4)] + ["v2/overlay.mp4", "v2/source.json"])
    assert _files(out) == want  # byte for byte; nothing for the corrupt video
    # the row's topk was applied, not the batch's: with the preset's topk the masks differ
    assert any(_files(tmp_path / "k15")[f"v1/{i:05d}.png"] != want[f"v1/{i:05d}.png"] for i in range(1, 4))


def test_report_and_one_line_per_failed_row(footage, sequential):
    d, manifest = footage
    out, rc, err = sequential
    rep = _report(out)
    assert (rep["task"], rep["videos"], rep["done"], rep["skipped"], rep["failed"]) == ("segment", 4, 3, 0, 1)
    assert rep["frames"] == 12 and rep["engine"]["kind"] == "sequential"
    rows = rep["rows"]
    assert [r["name"] for r in rows] == NAMES and [r["line"] for r in rows] == [1, 2, 3, 4]
    assert [r["status"] for r in rows] == ["done", "done", "done", "failed"]
    for r in rows[:3]:
        assert r["frames"] == 4 and r["error"] is None and r["attempts"] == 1 and r["seconds"] > 0
        assert r["frames_per_second"] == pytest.approx(4 / r["seconds"], rel=0.01)
        assert r["output"] == str(out.resolve() / r["name"])
    assert "v3.mp4" in rows[3]["error"] and rows[3]["frames"] == 0 and rows[3]["output"] is None
    failures = [line for line in err.splitlines() if line.startswith("ERROR")]
    assert len(failures) == 1 and f"{manifest}: line 4 (v3): " in failures[0] and "v3.mp4" in failures[0]
    assert not list(out.glob(".*partial*"))


def test_rerun_skips_complete_rows_redoes_the_rest_and_refuses_to_replace(footage, sequential, tiny_sd_path,
                                                                          tmp_path, capsys):
    d, manifest = footage
    out = tmp_path / "out"
    shutil.copytree(sequential[0], out)
    stamps = {p: p.stat().st_mtime_ns for p in out.rglob("*.png")}
    # a worker killed mid-row earlier left a temporary folder (its marker names a process that is gone):
    # removed when the row runs again
    import socket
    import subprocess

    dead = subprocess.Popen(["true"])
    dead.wait()
    (out / ".v3.partial-abcd1234").mkdir()
    (out / ".v3.partial-abcd1234" / "00000.png").write_bytes(b"half")
    (out / ".v3.partial-abcd1234" / PARTIAL_MARKER).write_text(f"{dead.pid} {socket.gethostname()}\n")
    args = ["batch", str(manifest), "--out", str(out), "--model", str(tiny_sd_path), *FAST]
    assert main(args) == 1
    cap = capsys.readouterr()
    assert "0 done, 3 skipped (complete), 1 failed" in cap.out
    assert {p: p.stat().st_mtime_ns for p in stamps} == stamps  # nothing rewritten
    assert not (out / ".v3.partial-abcd1234").exists()
    rep = _report(out)
    assert [r["status"] for r in rep["rows"]] == ["skipped", "skipped", "skipped", "failed"]
    assert [r["frames"] for r in rep["rows"]] == [4, 4, 4, 0]
    # other settings into the same folder: refused before any work, one line, nothing written
    before = _files(out)
    assert main(["-q", *args, "--topk", "5"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "line 1: " in err[0] and "already exists and was not written by this batch" in err[0]
    assert "(and 1 more)" in err[0] and "--overwrite" in err[0]  # v0 and v2; v1 sets its own topk: still complete
    assert _files(out) == before
    # a folder the batch did not write is never replaced silently
    other = tmp_path / "other"
    (other / "v2").mkdir(parents=True)
    assert main(["-q", "batch", str(manifest), "--out", str(other), "--model", str(tiny_sd_path), *FAST]) == 2
    assert "line 3: " in capsys.readouterr().err and not (other / "v0").exists()
    # --overwrite recomputes: the new setting changes the masks
    assert main(["-q", *args, "--topk", "1", "--overwrite"]) == 1
    assert _report(out)["done"] == 3
    assert _files(out) != before


def test_malformed_manifest_is_refused_before_any_work(footage, tiny_sd_path, tmp_path, capsys):
    d, _ = footage
    bad = tmp_path / "bad.jsonl"
    bad.write_text(json.dumps({"video": str(d / "v0.mp4"), "mask": str(d / "v0_mask.png")}) + "\n"
                   + json.dumps({"video": str(d / "v1.mp4"), "mask": str(d / "v1_mask.png"), "topk": 0}) + "\n")
    out = tmp_path / "out"
    assert main(["-q", "batch", str(bad), "--out", str(out), "--model", str(tiny_sd_path), *FAST]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and f"{bad}: line 2: " in err[0] and "topk must be >= 1" in err[0]
    assert not out.exists()
    good = tmp_path / "good.jsonl"
    good.write_text(bad.read_text().splitlines()[0] + "\n")
    assert main(["-q", "batch", str(good), "--out", str(out), "--model", str(tmp_path / "no-model"), *FAST]) == 2
    assert "no-model" in capsys.readouterr().err and not out.exists()  # a model that does not load: nothing written
    for flags, message in ((["--crop", "64"], "--crop is for --task track"),
                           (["--workers", "2"], "--workers: only with --engine ray")):
        assert main(["-q", "batch", str(bad), "--out", str(out), *flags]) == 2
        assert message in capsys.readouterr().err


def test_track_rows_and_folder_input(footage, tiny_sd_path, tmp_path):
    """A folder of videos with keypoint files beside them, each as `vidprop track` writes it."""
    from vidprop.config import load_preset
    from vidprop.tasks.track import Tracker, track_video

    d, _ = footage
    folder = tmp_path / "in"
    folder.mkdir()
    shutil.copy(d / "v0.mp4", folder / "a.mp4")
    (folder / "a.json").write_text(json.dumps({"keypoints": {"p": [20, 15], "q": [40.5, 30]}}))
    shutil.copytree(d / "v2", folder / "b")
    (folder / "b_keypoints.json").write_text(json.dumps({"keypoints": [[10, 10]]}))
    out = tmp_path / "out"
    assert main(["-q", "batch", str(folder), "--out", str(out), "--task", "track", "--model", str(tiny_sd_path),
                 "--crop", "32", "--ensemble", "1", "--no-progress", "--no-overlay"]) == 0
    cfg = load_preset("jhmdb").override(frames={"size": 32}, extractor={"model": str(tiny_sd_path), "ensemble": 1})
    tracker = Tracker.from_pretrained(config=cfg)
    single = tmp_path / "single"
    f = folder.resolve()
    track_video(f / "a.mp4", f / "a.json", single, tracker=tracker, overlay=False, progress=False)
    track_video(f / "b", f / "b_keypoints.json", single, tracker=tracker, overlay=False, progress=False)
    assert _files(out) == _files(single) and sorted(_files(out)) == [
        "a/keypoints.csv", "a/keypoints.json", "a/source.json", "b/keypoints.csv", "b/keypoints.json", "b/source.json"]
    assert _report(out)["task"] == "track"


# ---------------------------------------------------------------- Ray
def _killing_runner(marker: Path, victim: str) -> type:
    """A RowRunner whose process is SIGKILLed while writing ``victim``'s frames, on the first attempt only.

    Its extractor delegates to the real one and kills the process when asked for the third frame's
    features: the first masks are then being written into the row's temporary folder.
    """
    from vidprop.tasks.segment import Segmenter

    current: dict[str, str] = {}

    class KillingExtractor:
        def __init__(self, inner):
            self.inner, self.calls = inner, 0

        def __getattr__(self, name):
            return getattr(self.inner, name)

        def extract(self, images, **kw):
            self.calls += 1
            if self.calls == 3 and current.get("row") == victim and not marker.exists():
                marker.write_text(str(os.getpid()))
                time.sleep(0.3)  # the writer thread writes the first masks into the temporary folder
                os.kill(os.getpid(), signal.SIGKILL)
            return self.inner.extract(images, **kw)

    class KillingRunner(RowRunner):
        def load(self, config):
            seg = super().load(config)
            return Segmenter(KillingExtractor(seg.extractor), seg.config)

        def __call__(self, job):
            current["row"] = job.row.name
            self._loaded.extractor.calls = 0
            return super().__call__(job)

    return KillingRunner


@pytest.mark.ray
def test_ray_engine_same_bytes_survives_a_killed_worker_and_resumes(ray_local, footage, sequential, tiny_sd_path,
                                                                    tmp_path):
    d, manifest = footage
    out = tmp_path / "out"
    overrides = {"frames": {"mode": "short_side", "short_side": 32},
                 "extractor": {"model": str(tiny_sd_path), "ensemble": 1}}
    marker = tmp_path / "killed"
    engine = EngineOptions(kind="ray", workers=2, retries=2)  # one logical GPU per worker (the session has 2)
    rep = run_batch(manifest, out, overrides=overrides, engine=engine, progress=False,
                    runner=_killing_runner(marker, "v0"))
    assert marker.exists() and int(marker.read_text()) != os.getpid()  # a worker process was killed mid-row
    assert [r.status for r in rep.results] == ["done", "done", "done", "failed"]
    assert rep.results[0].attempts == 2 and rep.results[1].attempts == 1
    assert rep.engine == {"kind": "ray", "workers": 2, "gpus_per_worker": 1.0, "cpus_per_worker": 1.0,
                          "startup_seconds": rep.engine["startup_seconds"],
                          # the killed process: its row ran again on a new worker, counted as one of its retries
                          "workers_lost": 0, "worker_processes_died": 1, "workers_left": 0,
                          "workers_joined_late": 0, "rows_requeued": 1}
    # the killed process finished no row: v0 was redone in another worker process (which one, and whether one
    # worker did every row while the replacement started, depends on the machine's load)
    killed = int(marker.read_text())
    assert all(r.worker and not r.worker.endswith(f":{killed}") for r in rep.results[:3])
    # complete, identical to the sequential engine, nothing half-written or duplicated
    assert _files(out) == _files(sequential[0])
    assert sorted(p.name for p in out.iterdir()) == [STATE_DIR, "batch_report.json", "v0", "v1", "v2"]
    assert _report(out)["rows"][3]["error"] == _report(sequential[0])["rows"][3]["error"]
    # re-run on Ray without the corrupt row: everything is complete, nothing rewritten, no worker started
    stamps = {p: p.stat().st_mtime_ns for p in out.rglob("*.png")}
    rep = run_batch(read_manifest(manifest)[:3], out, overrides=overrides, engine=engine, progress=False)
    assert [r.status for r in rep.results] == ["skipped", "skipped", "skipped"]
    assert rep.engine == {"kind": "ray"}
    assert {p: p.stat().st_mtime_ns for p in stamps} == stamps


class _FakeTask:
    """Stands in for a loaded Segmenter (no model): rows below never reach segment_video."""

    def __init__(self, config):
        self.config, self.extractor = config, None


class _OutOfMemoryOnB(RowRunner):
    loads: list = []

    def load(self, config):
        self.loads.append(config.extractor.ensemble)
        return _FakeTask(config)

    def _run(self, task, job, replace):
        assert task.config == job.config
        if job.row.name == "b":
            raise MemoryError()
        if job.row.name == "c":
            raise RuntimeError("CUDA out of memory. Tried to allocate 2.00 GiB")
        (job.out / job.row.name).mkdir()
        return 7


def test_a_failing_row_does_not_stop_the_others_and_errors_are_one_line(tmp_path, caplog):
    from vidprop.batch.manifest import BatchRow
    from vidprop.batch.runner import describe_error
    from vidprop.errors import InputError

    rows = [BatchRow(where=f"m.jsonl: line {i + 1}", line=i + 1, video=tmp_path / f"{n}.mp4", name=n,
                     mask=tmp_path / "m.png", settings=s)
            for i, (n, s) in enumerate([("a", {}), ("b", {"ensemble": 3}), ("c", {}), ("d", {"ensemble": 3})])]
    _OutOfMemoryOnB.loads = []
    rep = run_batch(rows, tmp_path / "out", progress=False, runner=_OutOfMemoryOnB)
    assert [r.status for r in rep.results] == ["done", "failed", "failed", "done"]
    assert rep.results[1].error == "out of memory (MemoryError)"
    assert rep.results[2].error == "out of memory (RuntimeError: CUDA out of memory. Tried to allocate 2.00 GiB)"
    assert [r.frames for r in rep.results] == [7, 0, 0, 7] and not rep.ok
    # rows run grouped by extractor settings: a, c with the preset's ensemble, then b, d with 3: two loads
    assert _OutOfMemoryOnB.loads == [8, 3]
    errors = [r.getMessage() for r in caplog.records if r.levelname == "ERROR"]
    assert errors == ["m.jsonl: line 3 (c): out of memory (RuntimeError: CUDA out of memory. Tried to allocate 2.00 GiB)",
                      "m.jsonl: line 2 (b): out of memory (MemoryError)"]
    state = json.loads((tmp_path / "out" / STATE_DIR / "rows" / "b.json").read_text())
    assert state["state"] == "failed" and state["error"] == "out of memory (MemoryError)"
    assert describe_error(InputError("x.mp4: cannot open\nthis video")) == "x.mp4: cannot open this video"
    assert describe_error(KeyError("k")) == "KeyError: 'k'"


def test_several_annotations_are_passed_to_segment_video_when_it_takes_them(tmp_path, monkeypatch):
    """The `masks` column: a folder -> masks=, FRAME:PATH items -> annotations={frame: path} (an index or a
    frame file's name, as `segment --mask FRAME:PATH`)."""
    import vidprop.tasks.segment as segmod
    from vidprop.batch.manifest import read_manifest

    m = tmp_path / "m.jsonl"
    m.write_text(json.dumps({"video": "a.mp4", "masks": ["0:a0.png", "00040:sub/a40.png"]}) + "\n"
                 + json.dumps({"video": "b.mp4", "masks": "ann/b", "frames": "10:", "max_frames": 5}) + "\n")
    calls = {}

    def fake_segment_video(video, mask, out, *, segmenter, name=None, overwrite=False, overlay=True,
                           resize_mask=False, backend="auto", frames=None, max_frames=None, progress=True,
                           annotations=None, masks=None):
        calls[name] = (mask, annotations, masks, frames, max_frames)
        (Path(out) / name).mkdir(parents=True)
        return type("R", (), {"num_frames": 3})()

    monkeypatch.setattr(segmod, "segment_video", fake_segment_video)

    class NoModel(RowRunner):
        def load(self, config):
            return _FakeTask(config)

    rep = run_batch(read_manifest(m), tmp_path / "out", progress=False, runner=NoModel)
    assert [r.status for r in rep.results] == ["done", "done"]
    base = tmp_path.resolve()
    assert calls == {"a": (None, {"0": base / "a0.png", "00040": base / "sub/a40.png"}, None, None, None),
                     "b": (None, None, base / "ann/b", "10:", 5)}


def test_masks_column_runs_as_segment_with_annotations_at_several_frames(footage, tmp_path):
    """A row with FRAME:PATH annotations writes what segment_video writes with them (a backbone-free extractor)."""
    from tests.tasks.test_segment import ColourStats
    from vidprop.config import load_preset
    from vidprop.tasks.segment import Segmenter, segment_video

    d, _ = footage
    sc = SyntheticScene(width=64, height=48, num_frames=4, num_objects=2, seed=0)  # v0's scene
    write_indexed_png(tmp_path / "f2.png", np.where(sc.frame(2)[1] == 2, 2, 0).astype(np.uint8))  # a correction
    m = tmp_path / "m.jsonl"
    m.write_text(json.dumps({"video": str(d / "v0.mp4"), "masks": [f"0:{d / 'v0_mask.png'}", "2:f2.png"],
                             "overlay": False}) + "\n")

    class ColourRunner(RowRunner):
        def load(self, config):
            return Segmenter(ColourStats(), config)

    overrides = {"frames": {"mode": "short_side", "short_side": 32}}
    rep = run_batch(m, tmp_path / "out", overrides=overrides, progress=False, runner=ColourRunner)
    assert [r.status for r in rep.results] == ["done"] and rep.results[0].frames == 4
    cfg = load_preset("davis-fast").override(**overrides)
    segment_video(d / "v0.mp4", None, tmp_path / "ref", segmenter=Segmenter(ColourStats(), cfg), overlay=False,
                  annotations={"0": d / "v0_mask.png", "2": tmp_path / "f2.png"}, progress=False)
    assert _files(tmp_path / "out") == _files(tmp_path / "ref")
    assert "v0/annotations.json" in _files(tmp_path / "out")


def test_a_feature_cache_serves_every_row(footage, tmp_path):
    """--feature-cache: the rows' features are extracted into the cache once; the outputs are those without it."""
    from tests.tasks.test_segment import ColourStats
    from vidprop.tasks.segment import Segmenter

    d, _ = footage
    m = tmp_path / "m.jsonl"
    m.write_text(json.dumps({"video": str(d / "v0.mp4"), "mask": str(d / "v0_mask.png"), "overlay": False}) + "\n")

    class ColourRunner(RowRunner):
        def load(self, config):
            return Segmenter(ColourStats(), config)

    overrides = {"frames": {"mode": "short_side", "short_side": 32}}
    for out, cache in (("a", tmp_path / "cache"), ("b", tmp_path / "cache"), ("ref", None)):
        rep = run_batch(m, tmp_path / out, overrides=overrides, progress=False, runner=ColourRunner,
                        feature_cache=cache)
        assert [r.status for r in rep.results] == ["done"]
    (entry,) = [p for p in (tmp_path / "cache").iterdir() if p.is_dir()]
    assert entry.name.startswith("v0-") and (entry / "index.json").is_file()
    assert _files(tmp_path / "a") == _files(tmp_path / "b") == _files(tmp_path / "ref")


def test_a_part_of_each_video_and_what_counts_as_other_settings(footage, tiny_sd_path, tmp_path, capsys):
    """--max-frames / --frames (and the columns) run a part of each video, as `segment --max-frames` does;
    a rerun with another part is other settings, adding --resize-mask is not (it never changes a result)."""
    d, _ = footage
    manifest = tmp_path / "m.jsonl"
    manifest.write_text(json.dumps({"video": str(d / "v0.mp4"), "mask": str(d / "v0_mask.png")}) + "\n"
                        + json.dumps({"video": str(d / "v2"), "mask": str(d / "v2_mask.png"), "frames": "1:"}) + "\n")
    out = tmp_path / "out"
    args = ["-q", "batch", str(manifest), "--out", str(out), "--model", str(tiny_sd_path), *FAST]
    assert main([*args, "--max-frames", "2"]) == 0
    assert sorted(p.name for p in (out / "v0").glob("*.png")) == ["00000.png", "00001.png"]
    assert sorted(p.name for p in (out / "v2").glob("*.png")) == ["00001.png", "00002.png"]  # frames 1.. of 2
    assert [r["frames"] for r in _report(out)["rows"]] == [2, 2]
    single = tmp_path / "single"
    assert main(["-q", "segment", str(d / "v0.mp4"), "--mask", str(d / "v0_mask.png"), "--out", str(single),
                 "--model", str(tiny_sd_path), "--max-frames", "2", *FAST]) == 0
    assert _files(single / "v0") == _files(out / "v0")  # as the single-video command writes it
    capsys.readouterr()
    assert main([*args, "--max-frames", "2", "--resize-mask"]) == 0
    assert "0 done, 2 skipped (complete)" in capsys.readouterr().out
    assert main([*args, "--max-frames", "2", "--frames", "0:"]) == 0  # the same part, written another way
    assert "0 done, 2 skipped (complete)" in capsys.readouterr().out
    assert main([*args, "--max-frames", "3"]) == 2
    assert "already exists and was not written by this batch with these settings" in capsys.readouterr().err
    assert main([*args, "--frames", "x"]) == 2
    assert "--frames 'x': expected START:END" in capsys.readouterr().err


def test_direction_formats_and_labels_reach_every_row(footage, tmp_path):
    """--direction both, --format and --labels: a row writes what segment_video writes with them."""
    from tests.tasks.test_segment import ColourStats
    from vidprop.config import load_preset
    from vidprop.errors import ConfigError
    from vidprop.tasks.segment import Segmenter, segment_video

    d, _ = footage
    sc = SyntheticScene(width=64, height=48, num_frames=4, num_objects=2, seed=0)  # v0's scene
    write_indexed_png(tmp_path / "f2.png", sc.frame(2)[1])
    (tmp_path / "labels.json").write_text('{"1": "car", "2": {"name": "dog", "color": [1, 2, 3]}}')
    m = tmp_path / "m.jsonl"
    m.write_text(json.dumps({"video": str(d / "v0.mp4"), "masks": ["2:f2.png"], "overlay": False}) + "\n")

    class ColourRunner(RowRunner):
        def load(self, config):
            return Segmenter(ColourStats(), config)

    overrides = {"frames": {"mode": "short_side", "short_side": 32}}
    opts = {"direction": "both", "formats": "png,coco,cvat-video", "labels": tmp_path / "labels.json"}
    rep = run_batch(m, tmp_path / "out", overrides=overrides, progress=False, runner=ColourRunner, **opts)
    assert [r.status for r in rep.results] == ["done"] and rep.results[0].frames == 4
    cfg = load_preset("davis-fast").override(**overrides)
    segment_video(d / "v0.mp4", None, tmp_path / "ref", segmenter=Segmenter(ColourStats(), cfg), overlay=False,
                  annotations={"2": tmp_path / "f2.png"}, progress=False, **opts)
    got = _files(tmp_path / "out")
    assert got == _files(tmp_path / "ref")
    assert {"v0/coco.json", "v0/cvat-video.xml", "v0/labels.json"} <= set(got)
    assert b'label="dog"' in got["v0/cvat-video.xml"]
    assert json.loads(got["v0/annotations.json"])["direction"] == "both"
    with pytest.raises(ConfigError, match="for --task segment"):
        run_batch(m, tmp_path / "t", task="track", progress=False, direction="both")


def test_a_full_disk_on_one_row_fails_that_row_with_the_reason_and_the_others_go_on(footage, tiny_sd_path, tmp_path,
                                                                                    monkeypatch, capsys):
    import errno

    from vidprop.tasks import segment as segmod

    d, manifest = footage
    real = segmod.write_indexed_png

    def full_for_v1(path, mask):
        if Path(path).parent.name.startswith(".v1.partial-"):
            raise OSError(errno.ENOSPC, "No space left on device")
        real(path, mask)

    monkeypatch.setattr(segmod, "write_indexed_png", full_for_v1)
    out = tmp_path / "out"
    rc = main(["batch", str(manifest), "--out", str(out), "--model", str(tiny_sd_path), *FAST])
    err = capsys.readouterr().err
    assert rc == 1 and "Traceback" not in err
    rep = _report(out)
    assert [r["status"] for r in rep["rows"]] == ["done", "failed", "done", "failed"]
    reason = (f"{out.resolve() / 'v1'}: could not be written: no space left on device (the partial folder was "
              "removed); free some space or choose another output folder, then run the same command again")
    assert rep["rows"][1]["error"] == reason
    assert f"{manifest}: line 2 (v1): {reason}" in err
    assert sorted(p.name for p in out.iterdir()) == [".vidprop-batch", "batch_report.json", "v0", "v2"]


class _Warns(RowRunner):
    """Rows that log a warning (twice: kept once) and, for row "b", fail after one."""

    def load(self, config):
        return _FakeTask(config)

    def _run(self, task, job, replace):
        import logging

        log = logging.getLogger("vidprop.tasks.segment")
        log.warning("frames 0..%d come before the first annotation", len(job.row.name))
        log.warning("frames 0..%d come before the first annotation", len(job.row.name))
        log.info("not a warning")
        if job.row.name == "b":
            raise InputError(f"{job.row.name}: broken")
        (job.out / job.row.name).mkdir()
        return 3


def _warning_rows(tmp_path):
    from vidprop.batch.manifest import BatchRow

    return [BatchRow(where=f"m.jsonl: line {i + 1}", line=i + 1, video=tmp_path / f"{n}.mp4", name=n,
                     mask=tmp_path / "m.png") for i, n in enumerate(["a", "b"])]


def test_a_rows_warnings_reach_the_report_once(tmp_path, caplog):
    rep = run_batch(_warning_rows(tmp_path), tmp_path / "out", progress=False, runner=_Warns)
    assert [r.warnings for r in rep.results] == [("frames 0..1 come before the first annotation",)] * 2
    rows = _report(tmp_path / "out")["rows"]
    assert [r["warnings"] for r in rows] == [["frames 0..1 come before the first annotation"]] * 2
    assert [r["status"] for r in rows] == ["done", "failed"]
    # in this process the row's own log line was the only one: not said again by the driver
    said = [r.getMessage() for r in caplog.records if r.levelname == "WARNING" and "first annotation" in r.getMessage()]
    assert len(said) == 4


@pytest.mark.ray
def test_a_ray_rows_warnings_reach_the_drivers_log_and_the_report(ray_local, tmp_path, caplog):
    from vidprop.engine import EngineOptions

    rep = run_batch(_warning_rows(tmp_path), tmp_path / "out", progress=False, runner=_Warns,
                    engine=EngineOptions(kind="ray", workers=1, gpus_per_worker=0, cpus_per_worker=1))
    assert [r.status for r in rep.results] == ["done", "failed"]
    said = [r.getMessage() for r in caplog.records if r.levelname == "WARNING" and r.name == "vidprop.batch.runner"]
    assert said == ["m.jsonl: line 1 (a): frames 0..1 come before the first annotation",
                    "m.jsonl: line 2 (b): frames 0..1 come before the first annotation"]
    assert [r["warnings"] for r in _report(tmp_path / "out")["rows"]] == [
        ["frames 0..1 come before the first annotation"]] * 2


class _LeavesALostWorkersPartial(RowRunner):
    """Runs like :class:`tests.batch.cheap_runner.CheapRunner`; while running the last row it leaves the temporary
    folder a worker lost mid-row on the first row would leave (its process died only after the row ran again)."""

    def load(self, config):
        from tests.batch.cheap_runner import CheapRunner

        return CheapRunner.load(self, config)

    def _run(self, task, job, replace):
        import socket
        import subprocess

        if job.row.name == "c1":
            dead = subprocess.Popen(["true"])
            dead.wait()
            stale = job.out / ".c0.partial-deadbeef"
            stale.mkdir()
            (stale / PARTIAL_MARKER).write_text(f"{dead.pid} {socket.gethostname()}\n")
            alive = job.out / ".c0.partial-0a11ve00"  # a live process's folder is never touched
            alive.mkdir()
            (alive / PARTIAL_MARKER).write_text(f"{os.getpid()} {socket.gethostname()}\n")
        return super()._run(task, job, replace)


def test_a_partial_folder_left_after_its_row_ran_is_removed_when_the_run_ends(tmp_path):
    for k in range(2):
        sc = SyntheticScene(width=64, height=48, num_frames=3, num_objects=1, seed=70 + k)
        write_video(sc, tmp_path / f"c{k}.mp4")
        write_indexed_png(tmp_path / f"c{k}.png", sc.frame(0)[1])
    manifest = tmp_path / "videos.jsonl"
    manifest.write_text("".join(json.dumps({"video": f"c{k}.mp4", "mask": f"c{k}.png"}) + "\n" for k in range(2)))
    out = tmp_path / "out"
    rep = run_batch(manifest, out, overrides={"frames": {"mode": "short_side", "short_side": 48},
                                              "extractor": {"device": "cpu"}},
                    overlay=False, progress=False, runner=_LeavesALostWorkersPartial)
    assert [r.status for r in rep.results] == ["done", "done"]
    assert sorted(p.name for p in out.glob(".*partial*")) == [".c0.partial-0a11ve00"]
