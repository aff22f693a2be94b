"""batch_report.json is rewritten as rows finish (a killed driver leaves a true report), never costing more than
a tenth of the run."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest

from tests.batch.cheap_runner import CheapRunner
from vidprop.batch import run_batch
from vidprop.batch.manifest import BatchRow
from vidprop.batch.report import BatchReport, ReportWriter, RowResult
from vidprop.io.masks import write_indexed_png
from vidprop.io.synthetic import SyntheticScene, write_video


class PeekRunner(CheapRunner):
    """Reads the report on disk as each row starts."""

    seen: list = []

    def _run(self, task, job, replace):
        doc = json.loads((job.out / "batch_report.json").read_text())
        self.seen.append((job.row.name, doc["finished"], [r["status"] for r in doc["rows"]], doc["done"]))
        return super()._run(task, job, replace)


def test_the_report_on_disk_is_true_while_the_run_goes_on(tmp_path):
    lines = []
    for k in range(3):
        sc = SyntheticScene(width=64, height=32, num_frames=3, num_objects=1, seed=k)
        write_video(sc, tmp_path / f"c{k}.mp4")
        write_indexed_png(tmp_path / f"c{k}.png", sc.frame(0)[1])
        lines.append(json.dumps({"video": f"c{k}.mp4", "mask": f"c{k}.png"}))
    (tmp_path / "m.jsonl").write_text("\n".join(lines) + "\n")
    PeekRunner.seen = []
    out = tmp_path / "out"
    rep = run_batch(tmp_path / "m.jsonl", out, overrides={"frames": {"mode": "short_side", "short_side": 32}},
                    overlay=False, progress=False, runner=PeekRunner)
    assert rep.count("done") == 3
    # as row k starts, the report on disk says rows before it are done and the others pending, run not finished
    assert PeekRunner.seen == [
        ("c0", False, ["pending", "pending", "pending"], 0),
        ("c1", False, ["done", "pending", "pending"], 1),
        ("c2", False, ["done", "done", "pending"], 2),
    ]
    doc = json.loads((out / "batch_report.json").read_text())
    assert doc["finished"] is True and [r["status"] for r in doc["rows"]] == ["done"] * 3
    assert doc["updated"] >= doc["started"]
    assert not [p for p in out.iterdir() if p.name.startswith(".batch_report")]  # no temporary file left


class SlowToWrite(BatchReport):
    writes = 0

    def write(self) -> Path:
        time.sleep(0.02)
        type(self).writes += 1
        return self.out / "batch_report.json"


def test_a_large_report_is_rewritten_at_most_once_per_ten_write_times(tmp_path):
    rows = [BatchRow(where=f"line {i}", video=tmp_path / f"{i}.mp4", name=f"v{i}", mask=tmp_path / "m.png")
            for i in range(4)]
    results: dict[int, RowResult] = {}
    SlowToWrite.writes = 0
    rep = SlowToWrite(out=tmp_path, task="segment", rows=rows, results=[])
    writer = ReportWriter(rep, results, time.perf_counter())
    writer.write()
    for i in range(4):  # rows finishing faster than ten write times apart: not rewritten each time
        results[i] = RowResult(i, f"v{i}", "done")
        writer.row_finished()
    assert SlowToWrite.writes == 1
    assert writer.cost >= 0.02
    time.sleep(10 * writer.cost + 0.05)  # more than ten write times later: rewritten
    writer.row_finished()
    assert SlowToWrite.writes == 2 and [r.status for r in rep.results] == ["done"] * 4


def test_a_run_whose_engine_loses_every_worker_leaves_a_true_report_and_resumes(tmp_path, monkeypatch):
    """run_batch's side of NoWorkersLeftError (the pool's side runs on a simulated cluster in test_node_loss)."""
    import contextlib

    import vidprop.batch.runner as runner_mod
    from vidprop.engine import NoWorkersLeftError

    lines = []
    for k in range(4):
        sc = SyntheticScene(width=64, height=32, num_frames=3, num_objects=1, seed=k)
        write_video(sc, tmp_path / f"c{k}.mp4")
        write_indexed_png(tmp_path / f"c{k}.png", sc.frame(0)[1])
        lines.append(json.dumps({"video": f"c{k}.mp4", "mask": f"c{k}.png"}))
    (tmp_path / "m.jsonl").write_text("\n".join(lines) + "\n")
    real_open = runner_mod.open_engine

    class GivesUpAfterTwo:
        def __init__(self, eng):
            self.eng, self.placement, self.info = eng, eng.placement, eng.info

        def map(self, items):
            rows = self.eng.map(items)
            yield next(rows)
            yield next(rows)
            raise NoWorkersLeftError("no Ray worker is left (1 lost with their machines): 2 of 4 rows not done")

    @contextlib.contextmanager
    def failing_open(*args, **kw):
        with real_open(*args, **kw) as eng:
            yield GivesUpAfterTwo(eng)

    monkeypatch.setattr(runner_mod, "open_engine", failing_open)
    out = tmp_path / "out"
    kw = dict(overrides={"frames": {"mode": "short_side", "short_side": 32}}, overlay=False, progress=False,
              runner=CheapRunner)
    with pytest.raises(NoWorkersLeftError) as err:
        run_batch(tmp_path / "m.jsonl", out, **kw)
    assert str(err.value) == ("no Ray worker is left (1 lost with their machines): 2 of 4 rows not done; "
                              f"2 of 4 videos not run, see {out / 'batch_report.json'}")
    doc = json.loads((out / "batch_report.json").read_text())
    assert doc["finished"] is False and [r["status"] for r in doc["rows"]] == ["done", "done", "pending", "pending"]
    assert [r["output"] for r in doc["rows"]][2:] == [None, None] and (out / "c1" / "00000.png").is_file()
    assert not (out / "c2").exists()
    monkeypatch.setattr(runner_mod, "open_engine", real_open)
    rep = run_batch(tmp_path / "m.jsonl", out, **kw)
    assert [r.status for r in rep.results] == ["skipped", "skipped", "done", "done"]
    assert json.loads((out / "batch_report.json").read_text())["finished"] is True
