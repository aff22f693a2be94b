"""What a benchmark run records beside its results, and how a resumed video run is checked against it.

``OUT/config.yaml`` is written before any video is propagated: the vidprop
version, the date, the benchmark and its dataset, the model and its revision,
the preset, whether that is a published protocol, and the full effective
settings.  Running again into the same folder resumes it only when the
settings that decide results are the same (:func:`~vidprop.config.comparable_config`: the
run-time fields (device, batch size, channels-last, compile) and the preset's
name and description may differ); otherwise the run is refused unless
``overwrite``.

    check_run_settings(out / "config.yaml", cfg, "sequence", overwrite)
    write_run_record(out / "config.yaml", run_record("DAVIS-2017 semi-supervised", root, cfg, revision=revision,
                                                     set="val", sequences=names))
"""

from __future__ import annotations

import dataclasses
import datetime as _dt
import json
import logging
from pathlib import Path
from typing import Any

from vidprop.config import TaskConfig, comparable_config
from vidprop.errors import ConfigError, InputError
from vidprop.io.atomic import atomic_file

log = logging.getLogger(__name__)

__all__ = ["holds_results", "check_run_settings", "protocol_note", "run_record", "write_run_record"]


def holds_results(folder: str | Path, record: str = "config.yaml") -> bool:
    """Whether a run's folder holds any result: an entry other than its ``record`` and hidden ones (partial
    folders of unfinished units, state).  A run that failed before its first unit leaves only the record."""
    folder = Path(folder)
    if not folder.is_dir():
        return False
    return any(p.name != record and not p.name.startswith(".") for p in folder.iterdir())


def check_run_settings(cfg_path: str | Path, cfg: TaskConfig, unit: str, overwrite: bool) -> None:
    """Refuse to resume a results folder whose ``config.yaml`` holds other settings than ``cfg``.

    A ``config.yaml`` alone (a run that failed before any result, e.g. on a size its frames refused) binds
    nothing: the record is replaced.  ``unit``: what the run redoes with ``--overwrite`` ("sequence",
    "video"), for the message.
    """
    import yaml

    cfg_path = Path(cfg_path)
    if overwrite or not cfg_path.is_file():
        return
    if not holds_results(cfg_path.parent, cfg_path.name):
        log.info("%s: no results beside it (an earlier run stopped before any); recording this run's settings",
                 cfg_path)
        return
    try:
        old = yaml.safe_load(cfg_path.read_text()) or {}
    except yaml.YAMLError as exc:
        raise InputError(f"{cfg_path}: not valid YAML ({exc}); remove it or pass --overwrite") from None
    if isinstance(old, dict) and isinstance(old.get("config"), dict) and \
            comparable_config(old["config"]) != comparable_config(cfg):
        raise ConfigError(f"{cfg_path.parent} holds results made with other settings ({cfg_path}); "
                          f"choose another --out or pass --overwrite to recompute every {unit}")


def protocol_note(cfg: TaskConfig) -> str:
    """One line saying whether ``cfg`` is a published protocol."""
    if cfg.published:
        return f"preset {cfg.name}: the published protocol" + (f" ({cfg.description})" if cfg.description else "")
    return f"preset {cfg.name}: NOT the published protocol" + (
        f" ({cfg.description})" if cfg.description else " (settings changed from a preset, or a custom config)")


def run_record(benchmark: str, root: str | Path, model: Any, /, *, revision: str | None = None,
               **fields: Any) -> dict[str, Any]:
    """What a run is, written to its ``config.yaml`` before any work: the benchmark, its dataset ``root``,
    ``fields`` (set, videos, pairs, device ...), the vidprop version and the date, and the model:

    * a TaskConfig (the video benchmarks): the model, its ``revision`` (as loaded; else the configured
      one), the preset, whether it is published and the settings, after ``fields``;
    * a PairMatcher (the pair benchmarks): its backbone, model, weights, revision and preset before
      ``fields``, its TaskConfig after them;
    * Hedlin et al.'s AttentionMatcher (it has ``settings``, no ``config``): its model and precision
      before ``fields``, its settings after them.
    """
    from vidprop import __version__

    stamp = {"vidprop_version": __version__, "date": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")}
    where = {"benchmark": benchmark, "root": str(Path(root).resolve())}
    if isinstance(model, TaskConfig):
        return {**stamp, **where, **fields, **_task_fields(model, revision)}
    if getattr(model, "config", None) is None and hasattr(model, "settings"):
        head, tail = _attention_fields(model)
    else:
        head, tail = _matcher_fields(model)
    return {**where, **stamp, **head, **fields, **tail}


def _task_fields(cfg: TaskConfig, revision: str | None) -> dict[str, Any]:
    return {
        "model": cfg.extractor.model,
        "revision": revision or cfg.extractor.revision,
        "preset": cfg.name,
        "published": cfg.published,
        "protocol_note": protocol_note(cfg),
        "config": cfg.to_dict(),
    }


def _matcher_fields(matcher: Any) -> tuple[dict[str, Any], dict[str, Any]]:
    cfg = matcher.config
    return {
        "backbone": cfg.extractor.backbone,
        "model": cfg.extractor.model,
        "weights": cfg.extractor.weights,
        "revision": getattr(matcher.extractor, "model_revision", None) or cfg.extractor.revision,
        "preset": cfg.name,
        "published": bool(getattr(cfg, "published", False)),
    }, {"config": cfg.to_dict()}


def _attention_fields(matcher: Any) -> tuple[dict[str, Any], dict[str, Any]]:
    settings = matcher.settings
    return {
        "method": "attention",
        "model": None if getattr(matcher, "model_id", None) is None else str(matcher.model_id),
        "dtype": str(getattr(matcher, "dtype", "")).replace("torch.", "") or None,
    }, {"attention": json.loads(json.dumps(dataclasses.asdict(settings) if dataclasses.is_dataclass(settings)
                                           else settings))}


def write_run_record(path: str | Path, record: dict[str, Any]) -> None:
    """Write ``record`` as YAML to ``path`` (atomically; the folder is created)."""
    import yaml

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_file(path, overwrite=True) as tmp:
        tmp.write_text(yaml.safe_dump(record, sort_keys=False))
