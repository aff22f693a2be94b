"""Propagating every sequence of a DAVIS set into a results folder (resumable), then scoring it."""

from __future__ import annotations

import datetime as _dt
import logging
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from vidprop.errors import ConfigError, InputError
from vidprop.eval.davis.dataset import VOID_LABEL, DavisSequence, find_sequences, read_ids, read_set
from vidprop.eval.davis.scoring import DavisScores, score_davis
from vidprop.io.atomic import atomic_file
from vidprop.progress import progress_bar

__all__ = ["sequence_is_complete", "run_davis", "run_note"]

log = logging.getLogger(__name__)


def sequence_is_complete(out_dir: str | Path, seq: DavisSequence) -> bool:
    """True when ``out_dir/<seq>/`` holds one PNG per frame of the sequence."""
    folder = Path(out_dir) / seq.name
    if not folder.is_dir():
        return False
    have = {p.stem for p in folder.glob("*.png")}
    return all(p.stem in have for p in seq.images)


_EXECUTION_KEYS = ("device", "batch_size", "channels_last", "compile")


def _comparable(cfg: dict) -> dict:
    from vidprop.config import with_defaults

    cfg = {k: (dict(v) if isinstance(v, dict) else v) for k, v in with_defaults(cfg).items()}
    for key in _EXECUTION_KEYS:
        cfg.get("extractor", {}).pop(key, None)
    for key in ("name", "description", "published"):
        cfg.pop(key, None)
    cfg.setdefault("sequences", {})
    return cfg


def _protocol_note(cfg: Any) -> str:
    """One line saying whether ``cfg`` is a published protocol."""
    if cfg.published:
        return f"preset {cfg.name}: the published protocol" + (f" ({cfg.description})" if cfg.description else "")
    return f"preset {cfg.name}: NOT the published protocol" + (
        f" ({cfg.description})" if cfg.description else " (settings changed from a preset, or a custom config)")


def run_note(results: str | Path) -> str | None:
    """The protocol line of the run whose ``config.yaml`` is in ``results`` (None when there is none)."""
    import yaml

    path = Path(results) / "config.yaml"
    try:
        doc = yaml.safe_load(path.read_text()) if path.is_file() else None
    except (OSError, yaml.YAMLError):
        return None
    if not isinstance(doc, dict):
        return None
    return doc.get("protocol_note")


def run_davis(
    root: str | Path,
    out: str | Path,
    set: str = "val",
    *,
    sequences: Sequence[str] | None = None,
    config: Any = "davis",
    model: str | None = None,
    device: str | None = None,
    dtype: str | None = None,
    overwrite: bool = False,
    workers: int | None = None,
    progress: bool = True,
    score: bool = True,
    segmenter: Any = None,
) -> DavisScores | None:
    """Propagate every sequence's first annotation into ``out/<seq>/``, then score.

    Resumable: a sequence whose ``out/<seq>/`` already holds one PNG per frame
    is skipped (``overwrite`` recomputes it); a sequence being written lives
    in a temporary folder until complete.  Before any work,
    ``out/config.yaml`` records the effective settings, model id and
    revision, vidprop version, set and date; resuming with other settings is
    an error.  Returns the scores (None for test-dev, which has no public
    ground truth, or with ``score=False``).
    """
    import yaml

    from vidprop import __version__
    from vidprop.config import TaskConfig, load_preset

    cfg = config if isinstance(config, TaskConfig) else load_preset(config)
    cfg = cfg.override(extractor={"model": model, "device": device, "dtype": dtype})
    if segmenter is not None:
        cfg = segmenter.config
    names = list(sequences) if sequences else read_set(root, set)
    seqs = find_sequences(root, names, need="first")
    out = Path(out)
    todo = [s for s in seqs if overwrite or not sequence_is_complete(out, s)]
    log.info("DAVIS %s: %d sequence(s), %d to propagate into %s", set, len(seqs), len(todo), out)
    cfg_path = out / "config.yaml"
    if todo:
        if cfg_path.is_file() and not overwrite:
            try:
                old = yaml.safe_load(cfg_path.read_text()) or {}
            except yaml.YAMLError as exc:
                raise InputError(f"{cfg_path}: not valid YAML ({exc})") from exc
            if isinstance(old, dict) and "config" in old and _comparable(old["config"]) != _comparable(cfg.to_dict()):
                raise ConfigError(
                    f"{out} holds results made with other settings ({cfg_path}); "
                    "choose another --out or pass --overwrite to recompute every sequence"
                )
        if segmenter is None:
            from vidprop.tasks.segment import Segmenter

            segmenter = Segmenter.from_pretrained(config=cfg, device=device, dtype=dtype)
            cfg = segmenter.config
        ext = getattr(segmenter, "extractor", None)
        record = {
            "vidprop_version": __version__,
            "date": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
            "benchmark": "DAVIS-2017 semi-supervised",
            "set": set,
            "root": str(Path(root).resolve()),
            "sequences": names,
            "model": cfg.extractor.model,
            "revision": getattr(ext, "model_revision", None) or cfg.extractor.revision,
            "preset": cfg.name,
            "published": cfg.published,
            "protocol_note": _protocol_note(cfg),
            "config": cfg.to_dict(),
            "per_sequence": {
                n: {k: v for k, v in cfg.for_sequence(n).to_dict().items() if k in ("frames", "propagation")}
                for n in names if cfg.sequence_changes(n)
            },
        }
        with atomic_file(cfg_path, overwrite=True) as tmp:
            tmp.write_text(yaml.safe_dump(record, sort_keys=False))
        _propagate(root, out, todo, segmenter, overwrite=overwrite, progress=progress)
    if set == "test-dev" or not score:
        if set == "test-dev":
            log.info("test-dev has no public ground truth: masks written to %s, nothing scored", out)
        return None
    return score_davis(root, out, set, sequences=names if sequences else None, workers=workers, progress=progress)


def _propagate(root: str | Path, out: Path, todo: Sequence[DavisSequence], segmenter: Any, *,
               overwrite: bool, progress: bool) -> None:
    from vidprop.tasks.segment import segment_video

    bar = progress_bar(todo, desc="DAVIS propagate", unit="seq", enabled=progress, leave=True)
    for seq in bar:
        bar.set_postfix_str(seq.name)
        first = read_ids(seq.annotations[0], "annotation")
        first = np.where(first == VOID_LABEL, 0, first).astype(np.uint8)
        if not first.any():
            raise InputError(f"sequence {seq.name}: the first annotation {seq.annotations[0]} holds no object")
        target = out / seq.name
        replace = overwrite or target.exists()  # an existing folder here is incomplete (or to be redone)
        if target.exists() and not overwrite:
            log.warning("%s is incomplete; recomputing it", target)
        res = segment_video(seq.frames_dir, first, out, name=seq.name, segmenter=segmenter, overlay=False,
                            overwrite=replace, progress=False)
        if res.num_frames != len(seq.images):
            raise InputError(f"sequence {seq.name}: wrote {res.num_frames} masks for {len(seq.images)} frames")
        log.info("%s: %d masks (%s)", seq.name, res.num_frames, res.profile)
