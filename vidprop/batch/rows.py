"""A batch's rows before they run: each row's settings and fingerprint, its bookkeeping file, and the plan
(what is complete already, what to run, in which order).  See :mod:`vidprop.batch.runner`."""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping, Sequence

from vidprop.batch.manifest import BatchRow, Task
from vidprop.batch.report import RowResult
from vidprop.config import TaskConfig, comparable_config, load_preset
from vidprop.errors import ConfigError, OutputExistsError
from vidprop.io.atomic import atomic_file

__all__ = ["STATE_DIR", "RowJob", "state_path", "read_state", "write_state", "fingerprint", "row_config",
           "plan_rows", "segment_outputs", "dispatch_order"]

STATE_DIR = ".vidprop-batch"


# ====================================================================== rows
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


# ====================================================================== state files
def state_path(out: Path, name: str) -> Path:
    """The bookkeeping file of row ``name`` of a batch into ``out``."""
    return out / STATE_DIR / "rows" / f"{name}.json"


def read_state(path: Path) -> dict[str, Any] | None:
    """A row's bookkeeping (None when missing or unreadable)."""
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def write_state(path: Path, **data: Any) -> None:
    """Write a row's bookkeeping (atomically; the folder is created)."""
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


# ====================================================================== the plan
def plan_rows(rows: Sequence[BatchRow], out: Path, task: Task, base: TaskConfig | str,
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
        state = read_state(state_path(out, row.name)) or {}
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


def segment_outputs(task: Task, direction: str, formats: Sequence[str] | str,
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


def dispatch_order(jobs: list[RowJob]) -> list[RowJob]:
    """Rows grouped by extractor settings (first appearance order), so a worker reloads its model rarely."""
    groups: dict[Any, list[RowJob]] = {}
    for j in jobs:
        groups.setdefault(j.config.extractor, []).append(j)
    return [j for g in groups.values() for j in g]
