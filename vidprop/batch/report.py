"""``OUT/batch_report.json``: how every row of a batch ended, rewritten (atomically) as rows finish.

Per row: the manifest line, name, video, status (``done``, ``skipped`` =
complete from an earlier run, ``failed``, ``pending`` = not finished when the
report was written), error, frames, seconds, frames/s, attempts, the worker
(``host:pid``) and the output folder; totals, the engine, ``updated`` (when it
was written) and ``finished`` (false while the run goes on, or when it was
stopped: a killed driver leaves a report that is true as of ``updated``).
"""

from __future__ import annotations

import datetime as _dt
import json
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from vidprop.batch.manifest import BatchRow, Task
from vidprop.io.atomic import atomic_file

__all__ = ["REPORT_NAME", "RowResult", "BatchReport", "ReportWriter"]

REPORT_NAME = "batch_report.json"


@dataclass(frozen=True)
class RowResult:
    """How a row ended."""

    index: int
    name: str
    status: str  # done, skipped, failed, pending
    error: str | None = None
    frames: int = 0
    seconds: float = 0.0
    attempts: int = 0
    worker: str | None = None
    #: vidprop's warnings while the row ran (also from a Ray worker, whose log the driver does not see).
    warnings: tuple[str, ...] = ()

    @property
    def fps(self) -> float:
        return self.frames / self.seconds if self.seconds > 0 else 0.0


@dataclass
class BatchReport:
    """The outcome of a batch run (also written to ``OUT/batch_report.json``)."""

    out: Path
    task: Task
    rows: list[BatchRow]
    results: list[RowResult]
    engine: dict[str, Any] = field(default_factory=dict)
    seconds: float = 0.0
    started: str = ""
    source: str = ""
    finished: bool = False  # False while the run goes on (or when it was stopped): pending rows were not done

    def count(self, status: str) -> int:
        return sum(r.status == status for r in self.results)

    @property
    def failed(self) -> list[RowResult]:
        return [r for r in self.results if r.status == "failed"]

    @property
    def frames(self) -> int:
        """Frames computed in this run (skipped rows not counted)."""
        return sum(r.frames for r in self.results if r.status == "done")

    @property
    def ok(self) -> bool:
        return all(r.status in ("done", "skipped") for r in self.results)

    def summary(self) -> str:
        fps = self.frames / self.seconds if self.seconds > 0 else 0.0
        return (f"{len(self.results)} videos: {self.count('done')} done, {self.count('skipped')} skipped (complete), "
                f"{self.count('failed')} failed" + (f", {self.count('pending')} not run" if self.count("pending") else "")
                + f"; {self.frames} frames in {self.seconds:.1f}s ({fps:.2f} frames/s)")

    def to_dict(self) -> dict[str, Any]:
        from vidprop import __version__

        rows = []
        for row, r in zip(self.rows, self.results):
            rows.append({
                "line": row.line,
                "name": row.name,
                "video": str(row.video),
                "status": r.status,
                "error": r.error,
                "frames": r.frames,
                "seconds": round(r.seconds, 3),
                "frames_per_second": round(r.fps, 3),
                "attempts": r.attempts,
                "worker": r.worker,
                "warnings": list(r.warnings),
                "output": str(self.out / row.name) if r.status in ("done", "skipped") else None,
            })
        return {
            "vidprop_version": __version__,
            "task": self.task,
            "input": self.source,
            "out": str(self.out),
            "started": self.started,
            "updated": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
            "finished": self.finished,
            "seconds": round(self.seconds, 3),
            "engine": self.engine,
            "videos": len(self.results),
            "done": self.count("done"),
            "skipped": self.count("skipped"),
            "failed": self.count("failed"),
            "pending": self.count("pending"),
            "frames": self.frames,
            "frames_per_second": round(self.frames / self.seconds, 3) if self.seconds > 0 else 0.0,
            "rows": rows,
        }

    def write(self) -> Path:
        path = self.out / REPORT_NAME
        with atomic_file(path) as tmp:
            tmp.write_text(json.dumps(self.to_dict(), indent=2) + "\n")
        return path


class ReportWriter:
    """Rewrites ``OUT/batch_report.json`` (atomically) as rows finish, so a killed driver leaves a true report.

    A report of many rows takes a while to write: it is rewritten when a row finishes only once ten times
    the last write's duration has passed since it, so writing it never takes more than a tenth of the run.
    """

    def __init__(self, report: BatchReport, results: dict[int, RowResult], t0: float) -> None:
        self.report, self.results, self.t0 = report, results, t0
        self.last = self.cost = 0.0

    def write(self) -> None:
        rep = self.report
        t = time.perf_counter()
        rep.results = [self.results.get(i) or RowResult(i, r.name, "pending") for i, r in enumerate(rep.rows)]
        rep.seconds = t - self.t0
        if not rep.out.is_dir():  # no worker became ready: nothing was written, no report either
            return
        rep.write()
        self.last, self.cost = time.perf_counter(), time.perf_counter() - t

    def row_finished(self) -> None:
        if time.perf_counter() - self.last >= 10 * self.cost:
            self.write()
