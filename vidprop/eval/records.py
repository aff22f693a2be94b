"""What a video benchmark run records beside its results, and how a resumed run is checked against it.

``OUT/config.yaml`` is written before any video is propagated: the vidprop
version, the date, the benchmark and its dataset, the model and its revision,
the preset, whether that is a published protocol, and the full effective
settings.  Running again into the same folder resumes it only when the
settings that decide results are the same (:func:`~vidprop.config.comparable_config`: the
run-time fields (device, batch size, channels-last, compile) and the preset's
name and description may differ); otherwise the run is refused unless
``overwrite``.

    check_run_settings(out / "config.yaml", cfg, "sequence", overwrite)
    write_run_record(out / "config.yaml", run_record("DAVIS-2017 semi-supervised", cfg, revision, root=root,
                                                     set="val", sequences=names))
"""

from __future__ import annotations

import datetime as _dt
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


def run_record(benchmark: str, cfg: TaskConfig, revision: str | None, *, root: str | Path,
               **fields: Any) -> dict[str, Any]:
    """The record of a run: version, date, benchmark, dataset ``root``, ``fields`` (set, videos, device ...),
    then the model, its ``revision`` (as loaded; else the configured one), the preset and the settings."""
    from vidprop import __version__

    return {
        "vidprop_version": __version__,
        "date": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "benchmark": benchmark,
        "root": str(Path(root).resolve()),
        **fields,
        "model": cfg.extractor.model,
        "revision": revision or cfg.extractor.revision,
        "preset": cfg.name,
        "published": cfg.published,
        "protocol_note": protocol_note(cfg),
        "config": cfg.to_dict(),
    }


def write_run_record(path: str | Path, record: dict[str, Any]) -> None:
    """Write ``record`` as YAML to ``path`` (atomically; the folder is created)."""
    import yaml

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_file(path, overwrite=True) as tmp:
        tmp.write_text(yaml.safe_dump(record, sort_keys=False))
