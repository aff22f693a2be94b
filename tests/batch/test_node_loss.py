"""`vidprop batch` on a simulated Ray cluster that loses machines: every row done once, the same bytes as the
sequential run, a complete report; with every machine lost, one line, a true report, and a re-run that resumes.

Rows run the real ``segment_video`` with a stand-in backbone (:mod:`tests.batch.cheap_runner`), so a row
takes about a second and no model loads.
"""

from __future__ import annotations

import json
import threading
import time
from pathlib import Path

import pytest
import torch

from tests.batch.cheap_runner import CheapRunner, SlowCheapRunner
from vidprop.batch import run_batch
from vidprop.batch.runner import STATE_DIR
from vidprop.engine import EngineOptions, NoWorkersLeftError
from vidprop.io.masks import write_indexed_png
from vidprop.io.synthetic import SyntheticScene, write_video

pytestmark = pytest.mark.ray

CLIPS = 8
OVERRIDES = {"frames": {"mode": "short_side", "short_side": 64}, "extractor": {"device": "cpu"}}


@pytest.fixture(scope="module")
def clips(tmp_path_factory) -> Path:
    d = tmp_path_factory.mktemp("clips")
    lines = []
    for k in range(CLIPS):
        sc = SyntheticScene(width=96, height=64, num_frames=5, num_objects=2, seed=40 + k)
        write_video(sc, d / f"c{k}.mp4")
        write_indexed_png(d / f"c{k}.png", sc.frame(0)[1])
        lines.append(json.dumps({"video": f"c{k}.mp4", "mask": f"c{k}.png"}))
    (d / "videos.jsonl").write_text("\n".join(lines) + "\n")
    return d / "videos.jsonl"


@pytest.fixture(scope="module")
def sequential(clips, tmp_path_factory) -> Path:
    """The sequential run, with one torch thread as the Ray workers (1 CPU each) have."""
    out = tmp_path_factory.mktemp("seq") / "out"
    saved = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        rep = run_batch(clips, out, overrides=OVERRIDES, overlay=False, progress=False, runner=CheapRunner)
    finally:
        torch.set_num_threads(saved)
    assert rep.count("done") == CLIPS
    return out


def _files(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()
            and STATE_DIR not in p.parts and p.name != "batch_report.json"}


def _report(out: Path) -> dict:
    return json.loads((out / "batch_report.json").read_text())


def _remove_after(cluster, node, out: Path, rows_done: int) -> threading.Thread:
    """Remove ``node`` from the cluster once ``rows_done`` rows of the batch in ``out`` are done (mid-run)."""
    errors: list[BaseException] = []

    def watch() -> None:
        try:
            while True:
                states = [json.loads(p.read_text()).get("state") for p in (out / STATE_DIR / "rows").glob("*.json")]
                if sum(s == "done" for s in states) >= rows_done:
                    cluster.remove_node(node)
                    return
                time.sleep(0.05)
        except BaseException as exc:  # noqa: BLE001 - re-raised by the test
            errors.append(exc)

    t = threading.Thread(target=watch, daemon=True)
    t.errors = errors  # type: ignore[attr-defined]
    t.start()
    return t


def _engine(workers: int) -> EngineOptions:
    return EngineOptions(kind="ray", workers=workers, cpus_per_worker=1, gpus_per_worker=0, retries=0,
                         placement_timeout=30)  # room for a cold first start of the workers (a fresh venv compiles on import)


def test_losing_a_node_mid_run_moves_its_rows_same_bytes_complete_report(ray_cluster, clips, sequential, tmp_path,
                                                                         deadline):
    ray_cluster.add_node(num_cpus=1)
    lose = ray_cluster.add_node(num_cpus=1)
    ray_cluster.wait_for_nodes()
    out = tmp_path / "out"
    watcher = _remove_after(ray_cluster, lose, out, rows_done=2)
    t0 = time.monotonic()
    with deadline(240):
        rep = run_batch(clips, out, overrides=OVERRIDES, overlay=False, progress=False, runner=SlowCheapRunner,
                        engine=_engine(2))
    watcher.join(timeout=30)
    assert not watcher.is_alive() and not watcher.errors and lose not in ray_cluster.worker_nodes
    assert [r.status for r in rep.results] == ["done"] * CLIPS  # retries=0: the lost machine's row was not a try
    assert _files(out) == _files(sequential)  # every row once, byte for byte the sequential run's
    assert not list(out.glob(".*partial*"))
    doc = _report(out)
    assert doc["finished"] is True and doc["done"] == CLIPS and doc["pending"] == 0 and doc["failed"] == 0
    assert doc["engine"]["workers_lost"] == 1 and doc["engine"]["rows_requeued"] >= 1
    assert doc["engine"]["worker_processes_died"] == 0
    assert time.monotonic() - t0 < 180


def test_losing_every_node_stops_with_one_line_a_true_report_and_a_rerun_resumes(ray_cluster, clips, sequential,
                                                                                 tmp_path, deadline):
    only = ray_cluster.add_node(num_cpus=1)
    ray_cluster.wait_for_nodes()
    out = tmp_path / "out"
    watcher = _remove_after(ray_cluster, only, out, rows_done=2)
    with deadline(240), pytest.raises(NoWorkersLeftError) as err:
        run_batch(clips, out, overrides=OVERRIDES, overlay=False, progress=False, runner=SlowCheapRunner,
                  engine=_engine(1))
    watcher.join(timeout=30)
    assert not watcher.errors
    message = str(err.value)
    assert "\n" not in message and message.startswith("no Ray worker is left")
    assert f"see {out / 'batch_report.json'}" in message and "run the same command again to resume" in message
    doc = _report(out)  # true: the rows done are done (their folders complete), the others pending
    statuses = [r["status"] for r in doc["rows"]]
    assert doc["finished"] is False and set(statuses) == {"done", "pending"} and statuses.count("done") >= 2
    assert f"{CLIPS - statuses.count('done')} of {CLIPS} videos not run" in message
    want = _files(sequential)
    for r in doc["rows"]:
        if r["status"] == "done":
            assert {k: v for k, v in _files(out).items() if k.startswith(r["name"] + "/")} == \
                {k: v for k, v in want.items() if k.startswith(r["name"] + "/")}
    # a machine comes back: the same command resumes, skipping the rows done
    ray_cluster.add_node(num_cpus=1)
    ray_cluster.wait_for_nodes()
    with deadline(240):
        rep = run_batch(clips, out, overrides=OVERRIDES, overlay=False, progress=False, runner=CheapRunner,
                        engine=_engine(1))
    assert [r.status for r in rep.results] == ["skipped" if s == "done" else "done" for s in statuses]
    assert _files(out) == want and not list(out.glob(".*partial*"))
    assert _report(out)["finished"] is True
