"""Propagating every sequence of a DAVIS set into a results folder (resumable), then scoring it."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from vidprop.engine import EngineOptions
from vidprop.errors import InputError
from vidprop.eval.davis.dataset import VOID_LABEL, DavisSequence, find_sequences, read_ids, read_set
from vidprop.eval.davis.scoring import DavisScores, score_davis
from vidprop.eval.records import run_record
from vidprop.eval.video_worker import SegmenterWorker, UnwrittenUnits, segment_run, segmenting_engine
from vidprop.progress import progress_bar

__all__ = ["sequence_is_complete", "run_davis", "run_note", "published_reference", "SequenceWorker",
           "propagate_sequence"]

log = logging.getLogger(__name__)


def sequence_is_complete(out_dir: str | Path, seq: DavisSequence) -> bool:
    """True when ``out_dir/<seq>/`` holds one PNG per frame of the sequence."""
    folder = Path(out_dir) / seq.name
    if not folder.is_dir():
        return False
    have = {p.stem for p in folder.glob("*.png")}
    return all(p.stem in have for p in seq.images)


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
    ref = doc.get("published_reference")
    note = doc.get("protocol_note")
    if isinstance(ref, dict) and ref.get("note"):
        return f"{note}\n{ref['note']}" if note else str(ref["note"])
    return note


def published_reference(cfg: Any) -> dict[str, Any] | None:
    """The published DAVIS-2017 number a run of ``cfg`` compares with, when its backbone has one (DINOv3)."""
    if cfg.extractor.backbone != "dinov3":
        return None
    from vidprop.features.dinov3 import published_davis, published_note

    side = cfg.frames.short_side if cfg.frames.mode == "short_side" else None
    size, score = published_davis(cfg.extractor.model, side or 0)
    return {"model_size": size, "short_side": side, "jf": score.jf if score else None,
            "source": score.source if score else None,
            "note": published_note(cfg.extractor.model, side or 0, cfg.name)}


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
    engine: EngineOptions | None = None,
) -> DavisScores | None:
    """Propagate every sequence's first annotation into ``out/<seq>/``, then score.

    Resumable: a sequence whose ``out/<seq>/`` already holds one PNG per frame
    is skipped (``overwrite`` recomputes it); a sequence being written lives
    in a temporary folder until complete.  Before any work,
    ``out/config.yaml`` records the effective settings, model id and
    revision, vidprop version, set and date; resuming with other settings is
    an error.  Returns the scores (None for test-dev, which has no public
    ground truth, or with ``score=False``).

    ``engine``: where sequences are propagated (default: one after the other
    in this process); with ``EngineOptions(kind="ray")`` they are spread over
    Ray workers that each load the model once.  The masks are the same either
    way.  ``workers`` is the number of scoring processes.  ``segmenter``: a
    loaded Segmenter (in this process only), or a picklable callable that
    returns one, called once in each worker (a custom feature extractor on
    Ray); default: ``Segmenter.from_pretrained`` with ``config``.
    """
    run = segment_run(config, model, device, dtype, segmenter, engine, root, out)
    root, out = run.root, run.out
    names = list(sequences) if sequences else read_set(root, set)
    seqs = find_sequences(root, names, need="first")
    todo = [s for s in seqs if overwrite or not sequence_is_complete(out, s)]
    log.info("DAVIS %s: %d sequence(s), %d to propagate into %s", set, len(seqs), len(todo), out)

    def record(cfg: Any, revision: str | None) -> dict[str, Any]:
        doc = run_record("DAVIS-2017 semi-supervised", root, cfg, revision=revision, set=set, sequences=names)
        ref = published_reference(cfg)
        if ref is not None:
            doc["published_reference"] = ref
        doc["per_sequence"] = {
            n: {k: v for k, v in cfg.for_sequence(n).to_dict().items() if k in ("frames", "propagation")}
            for n in names if cfg.sequence_changes(n)
        }
        return doc

    if todo:
        with segmenting_engine(run, SequenceWorker, len(todo), "sequence", record, overwrite=overwrite,
                               device=device, dtype=dtype) as eng:
            _propagate(root, eng, todo, progress=progress)
    if set == "test-dev" or not score:
        if set == "test-dev":
            log.info("test-dev has no public ground truth: masks written to %s, nothing scored", out)
        return None
    return score_davis(root, out, set, sequences=names if sequences else None, workers=workers, progress=progress)


class SequenceWorker(SegmenterWorker):
    """Propagates DAVIS sequences into one results folder."""

    def __call__(self, seq: DavisSequence) -> tuple[int, str]:
        return propagate_sequence(self.out, seq, self.segmenter, overwrite=self.overwrite)


def propagate_sequence(out: Path, seq: DavisSequence, segmenter: Any, *, overwrite: bool) -> tuple[int, str]:
    """Propagate one sequence's first annotation into ``out/<seq>/``; returns (masks written, profile)."""
    from vidprop.tasks.segment import segment_video

    first = read_ids(seq.annotations[0], "annotation")
    if segmenter.config.for_sequence(seq.name).propagation.void_label == "background":
        first = np.where(first == VOID_LABEL, 0, first)
    first = first.astype(np.uint8)  # "object": 255 stays a label, as DIFT's and DINO's DAVIS scripts keep it
    if not np.where(first == VOID_LABEL, 0, first).any():
        raise InputError(f"sequence {seq.name}: the first annotation {seq.annotations[0]} holds no object")
    target = out / seq.name
    replace = overwrite or target.exists()  # an existing folder here is incomplete (or to be redone)
    if target.exists() and not overwrite:
        log.warning("%s is incomplete; recomputing it", target)
    res = segment_video(seq.frames_dir, first, out, name=seq.name, segmenter=segmenter, overlay=False,
                        overwrite=replace, progress=False)
    if res.num_frames != len(seq.images):
        raise InputError(f"sequence {seq.name}: wrote {res.num_frames} masks for {len(seq.images)} frames")
    return res.num_frames, res.profile


def _propagate(root: str | Path, engine: Any, todo: Sequence[DavisSequence], *, progress: bool) -> None:
    """Every sequence of ``todo`` on the engine.  A sequence that could not be written (a full disk) is
    logged and the others go on, then one WriteError names them; any other failure stops the run."""
    unwritten = UnwrittenUnits("sequence", len(todo))
    bar = progress_bar(total=len(todo), desc="DAVIS propagate", unit="seq", enabled=progress, leave=True)
    try:
        for outcome in engine.map(todo):
            seq = todo[outcome.index]
            if outcome.error is not None:
                if unwritten.take(seq.name, outcome.error):
                    bar.update(1)
                    continue
                raise outcome.error
            n, profile = outcome.value
            log.info("%s: %d masks (%s)", seq.name, n, profile)
            bar.update(1)
            bar.set_postfix_str(seq.name)
    finally:
        bar.close()
    unwritten.raise_if_any()
