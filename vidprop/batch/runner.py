"""``run_batch``: every row of a manifest through ``segment_video`` / ``track_video``, on one engine.

Each row runs exactly as ``vidprop segment`` / ``vidprop track`` would run that
video with the row's settings, and writes the same ``OUT/<name>/`` (the same
functions do it, atomically: the folder appears only once complete).

Bookkeeping lives in ``OUT/.vidprop-batch/rows/<name>.json``: the row's
*fingerprint* (its inputs and every setting that changes its outputs), its
state (``running``, ``done``, ``failed``), attempts, frames and seconds.
A row is *complete* when its state is ``done`` with the fingerprint the row
has now and ``OUT/<name>/`` exists; a re-run skips complete rows and redoes
the others.  An existing ``OUT/<name>/`` that this batch did not write with
these settings is never replaced without ``overwrite`` (refused before any
work).  A worker killed mid-row leaves only a temporary folder, removed when
the row runs again.

``OUT/batch_report.json`` (:mod:`vidprop.batch.report`) records every row,
rewritten as rows finish.  On Ray, a row whose worker's machine is lost runs
again on another worker (:mod:`vidprop.ray_pool`); when no worker is left the
run stops with :class:`~vidprop.engine.NoWorkersLeftError`, the report
written, and a re-run resumes.
"""

from __future__ import annotations

import contextlib
import dataclasses
import datetime as _dt
import functools
import logging
import os
import socket
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping, Sequence

from vidprop.batch.manifest import TASKS, BatchRow, Task, check_names, read_input
from vidprop.batch.report import REPORT_NAME, BatchReport, ReportWriter, RowResult
from vidprop.batch.row_warnings import kept_warnings
from vidprop.batch.rows import (
    STATE_DIR,
    RowJob,
    dispatch_order,
    plan_rows,
    read_state,
    row_config,
    segment_outputs,
    state_path,
    write_state,
)
from vidprop.config import TaskConfig
from vidprop.engine import EngineOptions, NoWorkersLeftError, open_engine
from vidprop.errors import ConfigError, InputError, VidpropError
from vidprop.io.atomic import remove_stale_partials
from vidprop.progress import progress_bar

__all__ = ["RowJob", "RowResult", "RowRunner", "BatchReport", "run_batch", "row_config", "describe_error",
           "REPORT_NAME", "STATE_DIR"]

log = logging.getLogger(__name__)

DEFAULT_PRESETS = {"segment": "davis-fast", "track": "jhmdb"}


# ====================================================================== results
def describe_error(exc: BaseException) -> str:
    """One line saying what went wrong (a VidpropError's message; out-of-memory said as such)."""
    name = type(exc).__name__
    text = str(exc)
    if isinstance(exc, VidpropError):
        msg = text
    elif isinstance(exc, MemoryError) or "OutOfMemory" in name or "out of memory" in text.lower():
        msg = f"out of memory ({name}: {text})" if text else f"out of memory ({name})"
    else:
        msg = f"{name}: {text}" if text else name
    return " ".join(msg.split())


# ====================================================================== the worker
class RowRunner:
    """A worker: holds one loaded task (the model stays loaded) and runs rows.

    Built once per worker process with the batch's task and its first row's
    settings.  A row with other extractor settings (``ensemble``, ``t``, ...)
    loads the model again on that worker; rows are dispatched grouped by
    extractor settings so this happens at most once per group.  Subclasses
    may override :meth:`load` (e.g. a custom feature extractor).
    """

    def __init__(self, task: Task, config: TaskConfig) -> None:
        if task not in TASKS:
            raise ConfigError(f"task must be segment or track, got {task!r}")
        self.task = task
        self._key: Any = None
        self._loaded: Any = None
        self.worker_id = f"{socket.gethostname()}:{os.getpid()}"
        self.task_for(config)

    def load(self, config: TaskConfig) -> Any:
        """A Segmenter or Tracker for ``config`` (loads the model)."""
        if self.task == "segment":
            from vidprop.tasks.segment import Segmenter

            return Segmenter.from_pretrained(config=config)
        from vidprop.tasks.track import Tracker

        return Tracker.from_pretrained(config=config)

    def task_for(self, config: TaskConfig) -> Any:
        """The loaded task with ``config``'s frame and propagation settings (reloads for other extractor settings)."""
        if config.extractor != self._key:
            if self._loaded is not None:
                log.info("worker %s: other extractor settings, loading the model again", self.worker_id)
            self._loaded = None  # free the previous model first
            self._loaded = self.load(config)
            self._key = config.extractor
        base = self._loaded
        from vidprop.tasks.base import fit_to_extractor

        fitted = fit_to_extractor(config, base.extractor)  # as from_pretrained does
        if base.config == fitted:
            return base
        return type(base)(base.extractor, fitted)

    def info(self) -> dict[str, Any]:
        ext = self._loaded.extractor
        return {"config": self._loaded.config, "model_revision": getattr(ext, "model_revision", None),
                "device": str(getattr(ext, "device", "")), "worker": self.worker_id}

    def __call__(self, job: RowJob) -> RowResult:
        with kept_warnings() as kept:
            res = self._call(job)
        return dataclasses.replace(res, warnings=tuple(kept)) if kept else res

    def _call(self, job: RowJob) -> RowResult:
        t0 = time.perf_counter()
        row = job.row
        out_dir = job.out / row.name
        state_file = state_path(job.out, row.name)
        prev = read_state(state_file) or {}
        # a state left by this very run with this fingerprint: a retry after this worker's process died
        ours = prev.get("fingerprint") == job.fingerprint and prev.get("run") == job.run_id
        attempt = int(prev.get("attempt", 0)) + 1 if ours else 1
        state = {"fingerprint": job.fingerprint, "run": job.run_id, "attempt": attempt, "worker": self.worker_id}
        write_state(state_file, state="running", **state)
        remove_stale_partials(out_dir)  # what a killed attempt left (its process is gone), even if this one fails
        replace = job.replace or (ours and out_dir.exists())
        try:
            frames = self._run(self.task_for(job.config), job, replace)
        except Exception as exc:  # noqa: BLE001 - every failure is this row's, reported; the others go on
            if not isinstance(exc, VidpropError):
                log.debug("%s failed", row.where, exc_info=True)
            _release_memory(exc)
            error = describe_error(exc)
            try:
                write_state(state_file, state="failed", error=error, **state)
            except VidpropError as state_exc:  # a full disk fails this too: the row's own error is the one told
                log.warning("%s: %s", row.where, state_exc)
            return RowResult(job.index, row.name, "failed", error=error, seconds=time.perf_counter() - t0,
                             attempts=attempt, worker=self.worker_id)
        seconds = time.perf_counter() - t0
        write_state(state_file, state="done", frames=frames, seconds=round(seconds, 3), **state)
        return RowResult(job.index, row.name, "done", frames=frames, seconds=seconds, attempts=attempt,
                         worker=self.worker_id)

    def _run(self, task: Any, job: RowJob, replace: bool) -> int:
        """Write the row's outputs with ``task`` (a Segmenter or Tracker); returns the frames written."""
        row = job.row
        if job.task == "segment":
            from vidprop.tasks.segment import segment_video

            kwargs: dict[str, Any] = {}
            if isinstance(row.masks, Path):  # an annotations folder
                kwargs["masks"] = row.masks
            elif row.masks is not None:  # FRAME:PATH items: frame index or frame file name -> annotation
                kwargs["annotations"] = {frame: Path(path) for frame, _, path in (m.partition(":") for m in row.masks)}
            if job.direction != "forward":
                kwargs["direction"] = job.direction
            if job.formats != ("png",):
                kwargs["formats"] = job.formats
            if job.labels is not None:
                kwargs["labels"] = Path(job.labels)
            res = segment_video(row.video, row.mask, job.out, segmenter=task, name=row.name, overwrite=replace,
                                overlay=job.overlay, resize_mask=job.resize_mask, backend=job.backend,
                                frames=job.frames, max_frames=job.max_frames, progress=False, **kwargs,
                                **_cache_kwargs(job))
        else:
            from vidprop.tasks.track import track_video

            res = track_video(row.video, row.keypoints, job.out, tracker=task, name=row.name, overwrite=replace,
                              overlay=job.overlay, backend=job.backend, frames=job.frames, max_frames=job.max_frames,
                              progress=False, **_cache_kwargs(job))
        return int(res.num_frames)


def _cache_kwargs(job: RowJob) -> dict[str, Any]:
    """``feature_cache=`` for the task function, only when the batch has one."""
    return {"feature_cache": job.feature_cache} if job.feature_cache is not None else {}


def _release_memory(exc: BaseException) -> None:
    if "out of memory" in str(exc).lower() or "OutOfMemory" in type(exc).__name__:
        with contextlib.suppress(Exception):
            import torch

            if torch.cuda.is_available():
                torch.cuda.empty_cache()


# ====================================================================== the driver
def run_batch(
    source: str | Path | Sequence[BatchRow],
    out: str | Path,
    *,
    task: Task = "segment",
    config: TaskConfig | str | None = None,
    overrides: Mapping[str, Mapping[str, Any]] | None = None,
    overlay: bool = True,
    resize_mask: bool = False,
    backend: str = "auto",
    frames: str | None = None,
    max_frames: int | None = None,
    overwrite: bool = False,
    engine: EngineOptions | None = None,
    progress: bool = True,
    runner: type[RowRunner] = RowRunner,
    direction: str = "forward",
    formats: Sequence[str] | str = ("png",),
    labels: str | Path | None = None,
    feature_cache: str | Path | None = None,
) -> BatchReport:
    """Run every row of ``source`` (a manifest, a folder of videos, or rows) into ``out``.

    ``config``: the preset or TaskConfig of every row (default ``davis-fast`` for
    segment, ``jhmdb`` for track); ``overrides``: config sections the batch
    changes for every row (``{"propagation": {"topk": 10}}``), before a row's
    own columns.  ``overlay``, ``resize_mask``, ``backend``, ``frames``
    ("START:END") and ``max_frames`` (a part of each video, as ``--frames`` /
    ``--max-frames``) are defaults a row may change.  Segment only, for every
    row: ``direction``, ``formats`` and ``labels`` (a ``--labels`` file), as
    ``vidprop segment`` takes them.  A failing row is reported (``results``, the report file
    and one log line) and the others go on; a malformed input, a model that
    does not load or an output folder that would be replaced without
    ``overwrite`` raises before any row runs.  Returns the report, also
    written to ``out/batch_report.json``.
    """
    if task not in TASKS:
        raise ConfigError(f"task must be segment or track, got {task!r}")
    outputs = segment_outputs(task, direction, formats, labels)
    started = _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")
    t0 = time.perf_counter()
    rows, source_name = _read_rows(source, task)
    out = Path(out).resolve()  # workers on other machines get the same absolute path
    options = engine or EngineOptions()
    base = config if config is not None else DEFAULT_PRESETS[task]
    if frames is not None or max_frames is not None:
        from vidprop.io.driver import parse_frame_range

        parse_frame_range(frames, max_frames)  # a bad value fails before any work
    jobs, skipped = plan_rows(rows, out, task, base, overrides, overlay, resize_mask, backend, overwrite,
                              uuid.uuid4().hex, frames, max_frames, outputs)
    jobs = _with_feature_cache(jobs, feature_cache)
    results: dict[int, RowResult] = dict(skipped)
    engine_info: dict[str, Any] = {"kind": options.kind}
    if options.address:
        engine_info["address"] = options.address
    report = BatchReport(out=out, task=task, rows=rows, results=[], engine=engine_info, started=started,
                         source=source_name)
    if skipped:
        log.info("%d of %d videos are complete in %s; skipping them", len(skipped), len(rows), out)
    bar = progress_bar(total=len(rows), desc=f"batch {task}", unit="video", enabled=progress, leave=True)
    run = _BatchRun(results, engine_info, ReportWriter(report, results, t0), bar, t0, options.kind)
    try:
        if skipped:
            bar.update(len(skipped))
        if jobs:
            _run_jobs(jobs, runner, task, options, out, run)
    except NoWorkersLeftError as exc:
        missing = len(rows) - len(results)
        raise NoWorkersLeftError(f"{exc}; {missing} of {len(rows)} videos not run, see {out / REPORT_NAME}") from None
    finally:
        bar.close()
        report.finished = len(results) == len(rows)
        run.writer.write()
    log.info("batch: %s", report.summary())
    return report


def _read_rows(source: str | Path | Sequence[BatchRow], task: Task) -> tuple[list[BatchRow], str]:
    """The batch's rows and the name of their source; none is an InputError."""
    if isinstance(source, (str, Path)):
        rows, source_name = read_input(source, task), str(source)
    else:
        rows, source_name = list(source), "<rows>"
        check_names(rows)
    if not rows:
        raise InputError("the batch has no videos")
    return rows, source_name


def _with_feature_cache(jobs: list[RowJob], feature_cache: str | Path | None) -> list[RowJob]:
    """``jobs`` reading every row's features from (extracted once into) ``feature_cache``, checked writable."""
    if feature_cache is None:
        return jobs
    from vidprop.tasks.feature_cache import FeatureCache

    cache_root = Path(feature_cache).expanduser().resolve()
    FeatureCache(cache_root).check_writable()
    return [dataclasses.replace(j, feature_cache=str(cache_root)) for j in jobs]


@dataclass
class _BatchRun:
    """What changes while rows finish: the results by row index, the engine's record, the report writer, the
    progress bar (``t0``: the batch's start) and the frames written so far."""

    results: dict[int, RowResult]
    engine_info: dict[str, Any]
    writer: ReportWriter
    bar: Any
    t0: float
    kind: str
    frames: int = 0

    def row_finished(self, job: RowJob, res: RowResult, stats: Any) -> None:
        """Record one finished row: log it, advance the bar, rewrite the report."""
        self.results[job.index] = res
        if self.kind != "sequential":  # logged in the worker's process: said here too
            for warning in res.warnings:
                log.warning("%s (%s): %s", job.row.where, job.row.name, warning)
        if res.status == "failed":
            log.error("%s (%s): %s", job.row.where, job.row.name, res.error)
        self.frames += res.frames if res.status == "done" else 0
        self.bar.update(1)
        elapsed = time.perf_counter() - self.t0
        failed = sum(r.status == "failed" for r in self.results.values())
        self.bar.set_postfix_str(f"{self.frames} frames, {self.frames / elapsed:.2f} frames/s"
                                 + (f", {failed} failed" if failed else ""))
        if stats is not None:
            self.engine_info.update(stats.as_dict())
        self.writer.row_finished()


def _run_jobs(jobs: list[RowJob], runner: type[RowRunner], task: Task, options: EngineOptions, out: Path,
              run: _BatchRun) -> None:
    """Run ``jobs`` on an engine of ``runner`` workers (built with the first row's settings), recording each row
    as it finishes."""
    order = dispatch_order(jobs)
    factory = functools.partial(runner, task, order[0].config)
    wants_gpu = not str(order[0].config.extractor.device).startswith("cpu")
    t_run = time.perf_counter()
    with open_engine(factory, options, max_rows=len(order), wants_gpu=wants_gpu) as eng:
        p = eng.placement
        if options.kind == "ray":
            run.engine_info.update(workers=p.workers, gpus_per_worker=p.gpus_per_worker,
                                   cpus_per_worker=p.cpus_per_worker)
        run.engine_info["startup_seconds"] = round(time.perf_counter() - t_run, 3)
        stats = getattr(eng, "stats", None)
        out.mkdir(parents=True, exist_ok=True)  # only once the workers are ready: a bad model writes nothing
        run.writer.write()  # every row pending (or skipped) until it finishes
        try:
            for outcome in eng.map(order):
                job = order[outcome.index]
                if outcome.error is not None:  # the worker itself failed (died every attempt, or a bug)
                    res = RowResult(job.index, job.row.name, "failed", error=describe_error(outcome.error))
                else:
                    res = outcome.value
                run.row_finished(job, res, stats)
        finally:
            if stats is not None:
                run.engine_info.update(stats.as_dict())
    # the workers are gone: what a worker lost mid-row left (its process may have died only after the
    # row ran again elsewhere) is removed now, if it was on this host and its process no longer exists
    for job in order:
        remove_stale_partials(job.out / job.row.name)
