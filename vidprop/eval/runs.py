"""Resumable, recorded benchmark runs of image pairs, one group (category, subset) at a time.

A run folder holds:

    OUT/config.yaml         written before any work: what ran (settings, model, revision, vidprop
                            version, date, benchmark, dataset root; :func:`~vidprop.eval.records.run_record`)
    OUT/parts/<group>.csv   one file per finished group (written atomically)
    OUT/pairs.csv, OUT/summary.json   the results, written at the end

Running again into the same folder with the same settings skips the finished
groups; other settings are refused unless ``overwrite`` (which starts over).
"""

from __future__ import annotations

import csv
import json
import logging
import re
import shutil
from pathlib import Path
from typing import Any, Sequence

from vidprop.eval.records import holds_results
from vidprop.errors import ConfigError, InputError
from vidprop.io.atomic import atomic_file

__all__ = ["start_run", "load_part", "save_part", "write_results"]

log = logging.getLogger(__name__)


def _what(record: dict[str, Any]) -> dict[str, Any]:
    """The fields that must match to resume (not the date, version or run-time settings)."""
    keep = {k: v for k, v in record.items() if k not in ("date", "vidprop_version", "revision")}
    cfg = json.loads(json.dumps(keep.get("config", {})))
    for key in ("device", "batch_size", "channels_last", "compile"):
        cfg.get("extractor", {}).pop(key, None)
    keep["config"] = cfg
    if isinstance(keep.get("attention"), dict):
        keep["attention"] = {k: v for k, v in keep["attention"].items() if k != "batch_size"}
    return json.loads(json.dumps(keep))


def start_run(out: str | Path, record: dict[str, Any], *, overwrite: bool) -> None:
    """Begin or resume a run in ``out``: check an existing record matches, else write it."""
    import yaml

    out = Path(out)
    path = out / "config.yaml"
    if path.is_file() and not overwrite and holds_results(out):  # a record alone: a run that stopped before any
        try:
            old = yaml.safe_load(path.read_text()) or {}
        except yaml.YAMLError as exc:
            raise InputError(f"{path}: not valid YAML ({exc})") from exc
        if not isinstance(old, dict) or _what(old) != _what(record):
            raise ConfigError(f"{out} holds results made with other settings ({path}); choose another --out "
                              "or pass --overwrite to start over")
        log.info("resuming the run in %s", out)
        return
    if overwrite and (out / "parts").exists():
        shutil.rmtree(out / "parts")
    out.mkdir(parents=True, exist_ok=True)
    with atomic_file(path, overwrite=True) as tmp:
        tmp.write_text(yaml.safe_dump(record, sort_keys=False))


def _part_path(out: Path, group: str) -> Path:
    return Path(out) / "parts" / (re.sub(r"[^A-Za-z0-9._()+-]+", "_", group) + ".csv")


def load_part(out: str | Path, group: str) -> list[list[str]] | None:
    """The rows saved for a finished ``group`` (header dropped), or None."""
    path = _part_path(Path(out), group)
    if not path.is_file():
        return None
    with open(path, newline="") as f:
        rows = list(csv.reader(f))
    return rows[1:]


def save_part(out: str | Path, group: str, header: Sequence[str], rows: Sequence[Sequence[Any]]) -> None:
    path = _part_path(Path(out), group)
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_file(path, overwrite=True) as tmp:
        with open(tmp, "w", newline="") as f:
            w = csv.writer(f)
            w.writerow(header)
            w.writerows(rows)


def write_results(out: str | Path, header: Sequence[str], rows: Sequence[Sequence[Any]], summary: dict[str, Any]) -> None:
    """``pairs.csv`` and ``summary.json``, each written atomically."""
    out = Path(out)
    with atomic_file(out / "pairs.csv", overwrite=True) as tmp:
        with open(tmp, "w", newline="") as f:
            w = csv.writer(f)
            w.writerow(header)
            w.writerows(rows)
    with atomic_file(out / "summary.json", overwrite=True) as tmp:
        tmp.write_text(json.dumps(summary, indent=2, allow_nan=True) + "\n")
