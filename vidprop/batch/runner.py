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
import datetime as _dt
import functools
import hashlib
import json
import logging
import os
import socket
import time
import uuid
import dataclasses
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping, Sequence

from vidprop.batch.manifest import TASKS, BatchRow, Task, check_names, read_input
from vidprop.batch.report import REPORT_NAME, BatchReport, ReportWriter, RowResult
from vidprop.batch.row_warnings import kept_warnings
from vidprop.config import TaskConfig, comparable_config, load_preset
from vidprop.engine import EngineOptions, NoWorkersLeftError, open_engine
from vidprop.errors import ConfigError, InputError, OutputExistsError, VidpropError
from vidprop.io.atomic import atomic_file, remove_stale_partials
from vidprop.progress import progress_bar

__all__ = ["RowJob", "RowResult", "RowRunner", "BatchReport", "run_batch", "row_config", "describe_error",
           "REPORT_NAME", "STATE_DIR"]

log = logging.getLogger(__name__)

STATE_DIR = ".vidprop-batch"
DEFAULT_PRESETS = {"segment": "davis-fast", "track": "jhmdb"}


# ====================================================================== rows and results
@dataclass(frozen=True)
class RowJob:
    """What a worker needs to run one row (picklable: it travels to Ray workers)."""

    index: int
    row: BatchRow
    task: Task
    config: TaskConfig
    out: Path
    fingerprint: str
    run_id: str
    replace: bool
    overlay: bool
    resize_mask: bool
    backend: str
    frames: str | None = None  # "START:END" of the video, as --frames
    max_frames: int | None = None
    direction: str = "forward"  # segment: as segment --direction
    formats: tuple[str, ...] = ("png",)  # segment: as segment --format
    labels: str | None = None  # segment: as segment --labels
    feature_cache: str | None = None  # a folder of cached features (--feature-cache)


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


# ====================================================================== state files
def _state_path(out: Path, name: str) -> Path:
    return out / STATE_DIR / "rows" / f"{name}.json"


def _read_state(path: Path) -> dict[str, Any] | None:
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def _write_state(path: Path, **data: Any) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_file(path) as tmp:
        tmp.write_text(json.dumps(data, indent=1) + "\n")


def _frame_span(frames: str | None, max_frames: int | None) -> list[int | None]:
    """[start, stop, max_frames] of a row's part of the video ("0:10" and ":10" are the same part)."""
    from vidprop.io.driver import parse_frame_range

    r = parse_frame_range(frames, max_frames)
    return [r.start, r.stop, r.max_frames]


def fingerprint(job_task: Task, row: BatchRow, cfg: TaskConfig, overlay: bool,
                frames: str | None = None, max_frames: int | None = None,
                outputs: Mapping[str, Any] | None = None) -> str:
    """A hash of everything that decides a row's outputs: its inputs and effective settings.

    Not ``resize_mask``: it never changes a written result (a mask of the frames' size is used as it is
    with or without it, and one of another size fails without it), so adding it to fix one row's mask
    does not make the rows already done count as other settings.
    """
    doc = {
        "task": job_task,
        "video": str(row.video.resolve()),
        "mask": str(row.mask.resolve()) if row.mask else None,
        "masks": (str(row.masks.resolve()) if isinstance(row.masks, Path) else list(row.masks)) if row.masks else None,
        "keypoints": str(row.keypoints.resolve()) if row.keypoints else None,
        "config": comparable_config(cfg),
        "overlay": overlay,
        "frames": _frame_span(frames, max_frames),
    }
    if outputs:  # segment's direction / formats / labels, only when not the defaults (older fingerprints stay)
        doc["outputs"] = dict(outputs)
    return hashlib.sha256(json.dumps(doc, sort_keys=True, default=str).encode()).hexdigest()[:32]


def row_config(base: TaskConfig | str, overrides: Mapping[str, Mapping[str, Any]] | None, row: BatchRow) -> TaskConfig:
    """The row's settings: its ``config`` (else the batch's preset), the batch's overrides, then the row's columns."""
    try:
        if row.config is not None:
            cfg = load_preset(row.config)
        else:
            cfg = base if isinstance(base, TaskConfig) else load_preset(base)
        cfg = cfg.override(**{k: dict(v) for k, v in (overrides or {}).items() if v})
        changes = row.config_changes()
        return cfg.override(**changes) if changes else cfg
    except ConfigError as exc:
        raise ConfigError(f"{row.where}: {exc}") from None


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
        state_path = _state_path(job.out, row.name)
        prev = _read_state(state_path) or {}
        # a state left by this very run with this fingerprint: a retry after this worker's process died
        ours = prev.get("fingerprint") == job.fingerprint and prev.get("run") == job.run_id
        attempt = int(prev.get("attempt", 0)) + 1 if ours else 1
        state = {"fingerprint": job.fingerprint, "run": job.run_id, "attempt": attempt, "worker": self.worker_id}
        _write_state(state_path, state="running", **state)
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
                _write_state(state_path, state="failed", error=error, **state)
            except VidpropError as state_exc:  # a full disk fails this too: the row's own error is the one told
                log.warning("%s: %s", row.where, state_exc)
            return RowResult(job.index, row.name, "failed", error=error, seconds=time.perf_counter() - t0,
                             attempts=attempt, worker=self.worker_id)
        seconds = time.perf_counter() - t0
        _write_state(state_path, state="done", frames=frames, seconds=round(seconds, 3), **state)
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
def _plan(rows: Sequence[BatchRow], out: Path, task: Task, base: TaskConfig | str,
          overrides: Mapping[str, Mapping[str, Any]] | None, overlay: bool, resize_mask: bool, backend: str,
          overwrite: bool, run_id: str, frames: str | None = None,
          max_frames: int | None = None,
          outputs: Mapping[str, Any] | None = None) -> tuple[list[RowJob], dict[int, RowResult]]:
    """Settings of every row, what is complete already, what to run; conflicts refused before any work."""
    jobs: list[RowJob] = []
    skipped: dict[int, RowResult] = {}
    conflicts: list[BatchRow] = []
    for i, row in enumerate(rows):
        cfg = row_config(base, overrides, row)
        ov = bool(row.option("overlay", overlay))
        rm = bool(row.option("resize_mask", resize_mask))
        fr, mf = row.option("frames", frames), row.option("max_frames", max_frames)
        fp = fingerprint(task, row, cfg, ov, fr, mf, outputs)
        out_dir = out / row.name
        state = _read_state(_state_path(out, row.name)) or {}
        owned = state.get("fingerprint") == fp
        if not overwrite and owned and state.get("state") == "done" and out_dir.is_dir():
            skipped[i] = RowResult(i, row.name, "skipped", frames=int(state.get("frames", 0)),
                                   seconds=float(state.get("seconds", 0.0)), attempts=int(state.get("attempt", 0)),
                                   worker=state.get("worker"))
            continue
        if out_dir.exists() and not owned and not overwrite:
            conflicts.append(row)
            continue
        jobs.append(RowJob(index=i, row=row, task=task, config=cfg, out=out, fingerprint=fp, run_id=run_id,
                           replace=out_dir.exists(), overlay=ov, resize_mask=rm,
                           backend=str(row.option("backend", backend)), frames=fr, max_frames=mf,
                           **(outputs or {})))
    if conflicts:
        c = conflicts[0]
        more = f" (and {len(conflicts) - 1} more)" if len(conflicts) > 1 else ""
        raise OutputExistsError(f"{c.where}: {out / c.name} already exists and was not written by this batch with "
                                f"these settings{more}; pass --overwrite (overwrite=True) to replace it")
    return jobs, skipped


def _segment_outputs(task: Task, direction: str, formats: Sequence[str] | str,
                     labels: str | Path | None) -> dict[str, Any]:
    """The segment output options that differ from the defaults, checked before any work."""
    from vidprop.io.annotations import DIRECTIONS
    from vidprop.io.exports import parse_formats
    from vidprop.io.formats.labels import read_labels

    fmts = parse_formats(formats)
    out: dict[str, Any] = {}
    if direction != "forward":
        if direction not in DIRECTIONS:
            raise ConfigError(f"direction must be one of {', '.join(DIRECTIONS)}, got {direction!r}")
        out["direction"] = direction
    if fmts != ("png",):
        out["formats"] = fmts
    if labels is not None:
        read_labels(labels)  # a bad file fails before any row
        out["labels"] = str(Path(labels).resolve())
    if out and task != "segment":
        raise ConfigError(f"{', '.join(out)} are for --task segment")
    return out


def _dispatch_order(jobs: list[RowJob]) -> list[RowJob]:
    """Rows grouped by extractor settings (first appearance order), so a worker reloads its model rarely."""
    groups: dict[Any, list[RowJob]] = {}
    for j in jobs:
        groups.setdefault(j.config.extractor, []).append(j)
    return [j for g in groups.values() for j in g]


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
    outputs = _segment_outputs(task, direction, formats, labels)
    started = _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")
    t0 = time.perf_counter()
    if isinstance(source, (str, Path)):
        rows, source_name = read_input(source, task), str(source)
    else:
        rows, source_name = list(source), "<rows>"
        check_names(rows)
    if not rows:
        raise InputError("the batch has no videos")
    out = Path(out).resolve()  # workers on other machines get the same absolute path
    options = engine or EngineOptions()
    base = config if config is not None else DEFAULT_PRESETS[task]
    run_id = uuid.uuid4().hex
    if frames is not None or max_frames is not None:
        from vidprop.io.driver import parse_frame_range

        parse_frame_range(frames, max_frames)  # a bad value fails before any work
    jobs, skipped = _plan(rows, out, task, base, overrides, overlay, resize_mask, backend, overwrite, run_id,
                          frames, max_frames, outputs)
    if feature_cache is not None:  # every row's features are read from (extracted once into) this folder
        from dataclasses import replace as _replace

        from vidprop.features.cache import FeatureCache

        cache_root = Path(feature_cache).expanduser().resolve()
        FeatureCache(cache_root).check_writable()
        jobs = [_replace(j, feature_cache=str(cache_root)) for j in jobs]
    results: dict[int, RowResult] = dict(skipped)
    engine_info: dict[str, Any] = {"kind": options.kind}
    if options.address:
        engine_info["address"] = options.address
    report = BatchReport(out=out, task=task, rows=rows, results=[], engine=engine_info, started=started,
                         source=source_name)
    if skipped:
        log.info("%d of %d videos are complete in %s; skipping them", len(skipped), len(rows), out)
    bar = progress_bar(total=len(rows), desc=f"batch {task}", unit="video", enabled=progress, leave=True)
    writer = ReportWriter(report, results, t0)
    frames = 0
    try:
        if skipped:
            bar.update(len(skipped))
        if jobs:
            order = _dispatch_order(jobs)
            first = order[0].config
            wants_gpu = not str(first.extractor.device).startswith("cpu")
            factory = functools.partial(runner, task, first)
            t_run = time.perf_counter()
            with open_engine(factory, options, max_rows=len(order), wants_gpu=wants_gpu) as eng:
                p = eng.placement
                if options.kind == "ray":
                    engine_info.update(workers=p.workers, gpus_per_worker=p.gpus_per_worker,
                                       cpus_per_worker=p.cpus_per_worker)
                engine_info["startup_seconds"] = round(time.perf_counter() - t_run, 3)
                stats = getattr(eng, "stats", None)
                out.mkdir(parents=True, exist_ok=True)  # only once the workers are ready: a bad model writes nothing
                writer.write()  # every row pending (or skipped) until it finishes
                try:
                    for outcome in eng.map(order):
                        job = order[outcome.index]
                        if outcome.error is not None:  # the worker itself failed (died every attempt, or a bug)
                            res = RowResult(job.index, job.row.name, "failed", error=describe_error(outcome.error))
                        else:
                            res = outcome.value
                        results[job.index] = res
                        if options.kind != "sequential":  # logged in the worker's process: said here too
                            for warning in res.warnings:
                                log.warning("%s (%s): %s", job.row.where, job.row.name, warning)
                        if res.status == "failed":
                            log.error("%s (%s): %s", job.row.where, job.row.name, res.error)
                        frames += res.frames if res.status == "done" else 0
                        bar.update(1)
                        elapsed = time.perf_counter() - t0
                        failed = sum(r.status == "failed" for r in results.values())
                        bar.set_postfix_str(f"{frames} frames, {frames / elapsed:.2f} frames/s"
                                            + (f", {failed} failed" if failed else ""))
                        if stats is not None:
                            engine_info.update(stats.as_dict())
                        writer.row_finished()
                finally:
                    if stats is not None:
                        engine_info.update(stats.as_dict())
            # the workers are gone: what a worker lost mid-row left (its process may have died only after the
            # row ran again elsewhere) is removed now, if it was on this host and its process no longer exists
            for job in order:
                remove_stale_partials(job.out / job.row.name)
    except NoWorkersLeftError as exc:
        missing = len(rows) - len(results)
        raise NoWorkersLeftError(f"{exc}; {missing} of {len(rows)} videos not run, see {out / REPORT_NAME}") from None
    finally:
        bar.close()
        report.finished = len(results) == len(rows)
        writer.write()
    log.info("batch: %s", report.summary())
    return report

