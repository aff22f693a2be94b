"""Scoring a results folder against DAVIS annotations: per sequence, then over every object."""

from __future__ import annotations

import logging
import os
from concurrent.futures import FIRST_EXCEPTION, ProcessPoolExecutor, wait
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

import cv2
import numpy as np

from vidprop.errors import ConfigError, InputError
from vidprop.eval.davis.dataset import SETS, VOID_LABEL, DavisSequence, find_sequences, read_ids, read_set
from vidprop.eval.davis.metrics import BOUND_TH, jf_frame, boundary_radius, db_statistics, disk
from vidprop.progress import progress_bar

__all__ = ["ObjectMeans", "ObjectScore", "object_score", "SequenceScore", "DavisScores", "score_sequence", "score_davis"]

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ObjectScore:
    """J and F statistics of one object (one row of the toolkit's per-object lists)."""

    sequence: str
    object_id: int
    j_mean: float
    j_recall: float
    j_decay: float
    f_mean: float
    f_recall: float
    f_decay: float

    @property
    def name(self) -> str:
        """``<sequence>_<k>``, the per-sequence CSV's row name."""
        return f"{self.sequence}_{self.object_id}"

    @property
    def jf_mean(self) -> float:
        return (self.j_mean + self.f_mean) / 2.0


def object_score(sequence: str, object_id: int, j: np.ndarray, f: np.ndarray) -> ObjectScore:
    """An object's J and F statistics (Mean, Recall, Decay; the toolkit's ``db_statistics``) from its per-frame
    J and F."""
    return ObjectScore(sequence, object_id, *db_statistics(j), *db_statistics(f))


class ObjectMeans:
    """Mean J, F and J&F over ``self.objects`` (:class:`ObjectScore` s): a sequence's, or a scored result's."""

    objects: tuple[ObjectScore, ...]

    @property
    def j_mean(self) -> float:
        return float(np.mean([o.j_mean for o in self.objects])) if self.objects else float("nan")

    @property
    def f_mean(self) -> float:
        return float(np.mean([o.f_mean for o in self.objects])) if self.objects else float("nan")

    @property
    def jf_mean(self) -> float:
        return (self.j_mean + self.f_mean) / 2.0


@dataclass(frozen=True)
class SequenceScore(ObjectMeans):
    """Per-frame and per-object scores of one sequence."""

    name: str
    num_objects: int
    frame_names: tuple[str, ...]  # the scored frames (first and last dropped)
    j: np.ndarray  # (K, n) per-frame J
    f: np.ndarray  # (K, n) per-frame F
    objects: tuple[ObjectScore, ...]


@dataclass(frozen=True)
class DavisScores:
    """Everything a DAVIS evaluation computes; see :func:`format_tables` and :func:`write_csvs`."""

    set: str
    global_row: dict[str, float]
    objects: tuple[ObjectScore, ...]
    sequences: tuple[SequenceScore, ...]

    @property
    def jf_mean(self) -> float:
        return self.global_row["J&F-Mean"]

    def per_sequence_rows(self) -> list[tuple[str, float, float]]:
        """Rows of ``per-sequence_results-<set>.csv``: (``<seq>_<k>``, J-Mean, F-Mean)."""
        return [(o.name, o.j_mean, o.f_mean) for o in self.objects]


def score_sequence(seq: DavisSequence, results: str | Path, bound_th: float = BOUND_TH) -> SequenceScore:
    """Score one sequence's result PNGs against its annotations (frames 1 .. N-2)."""
    results = Path(results)
    n_all = len(seq.annotations)
    if n_all < 3:
        raise InputError(
            f"sequence {seq.name}: {n_all} annotated frame(s); scoring needs at least 3 "
            "(the first and the last are not scored)"
        )
    first = read_ids(seq.annotations[0], "annotation")
    size = first.shape
    if first.dtype != np.uint8 and (first.max() > 255 or first.min() < 0):
        raise InputError(f"{seq.annotations[0]}: annotation values must be 0..255")
    first = np.where(first == VOID_LABEL, 0, first)
    k_objects = int(first.max())
    scored = seq.annotations[1:-1]
    n = len(scored)
    gt = np.empty((n, *size), np.uint8)
    pr = np.empty((n, *size), np.uint8)
    res_dir = results / seq.name
    void_warned = False
    if not res_dir.is_dir():
        raise InputError(f"sequence {seq.name}: results folder {res_dir} not found")
    for i, ann_path in enumerate(scored):
        a = read_ids(ann_path, "annotation")
        if a.shape != size:
            raise InputError(
                f"sequence {seq.name}: {ann_path} is {a.shape[1]}x{a.shape[0]}, the first annotation is "
                f"{size[1]}x{size[0]}"
            )
        if a.dtype != np.uint8 and (a.max() > 255 or a.min() < 0):
            raise InputError(f"{ann_path}: annotation values must be 0..255")
        gt[i] = a  # void (255) never equals an object id k <= K <= 254: no need to clear it
        res_path = res_dir / f"{ann_path.stem}.png"
        if not res_path.is_file():
            raise InputError(f"sequence {seq.name}: result frame {res_path} is missing")
        p = read_ids(res_path, "result")
        if p.shape != size:
            raise InputError(
                f"sequence {seq.name}: {res_path} is {p.shape[1]}x{p.shape[0]} but its annotation is "
                f"{size[1]}x{size[0]}"
            )
        if k_objects < VOID_LABEL and (p == VOID_LABEL).any():
            # a propagated void label (the published presets keep 255 of the first annotation as a label,
            # as DIFT's and DINO's scripts do): scored as background; the toolkit would stop here
            if not void_warned:
                log.warning("sequence %s: %s holds the void value 255 (a propagated void label); scored as "
                            "background", seq.name, res_path)
                void_warned = True
            p = np.where(p == VOID_LABEL, 0, p)
        top = int(p.max())
        if top > k_objects:
            raise InputError(
                f"sequence {seq.name}: {res_path} holds object id {top} but the first annotation has "
                f"{k_objects} object(s)"
            )
        if p.dtype.kind == "i" and int(p.min()) < 0:
            raise InputError(f"sequence {seq.name}: {res_path} holds a negative id {int(p.min())}")
        pr[i] = p
    if k_objects == 0:
        log.warning("sequence %s: the first annotation has no object; nothing to score", seq.name)
    kernel = disk(boundary_radius(size[0], size[1], bound_th))
    j_all = np.zeros((k_objects, n))
    f_all = np.zeros((k_objects, n))
    objects = []
    for k in range(1, k_objects + 1):
        for t in range(n):
            j_all[k - 1, t], f_all[k - 1, t] = jf_frame(gt[t] == k, pr[t] == k, kernel)
        objects.append(object_score(seq.name, k, j_all[k - 1], f_all[k - 1]))
    return SequenceScore(seq.name, k_objects, tuple(p.stem for p in scored), j_all, f_all, tuple(objects))


def _worker_init() -> None:
    cv2.setNumThreads(1)


def _score_one(args: tuple[DavisSequence, str, float]) -> SequenceScore:
    return score_sequence(*args)


def _mp_context() -> Any:
    """Always spawn: a forked worker deadlocks when the parent already runs OpenCV's
    (or OpenMP's) thread pool, as a notebook or a test session that resized images
    does.  Spawned workers import only this module (NumPy, PIL, OpenCV)."""
    import multiprocessing as mp

    return mp.get_context("spawn")


def _default_workers() -> int:
    return max(1, min(4, os.cpu_count() or 1))


def _aggregate(set: str, seq_scores: Sequence[SequenceScore]) -> DavisScores:
    objects = tuple(o for s in seq_scores for o in s.objects)
    if not objects:
        raise InputError("no object to score: every first annotation is empty")
    jm = [o.j_mean for o in objects]
    fm = [o.f_mean for o in objects]
    # The toolkit's arithmetic: np.mean of the per-object lists, in sequence order.
    final = (np.mean(jm) + np.mean(fm)) / 2.0
    row = {
        "J&F-Mean": float(final),
        "J-Mean": float(np.mean(jm)),
        "J-Recall": float(np.mean([o.j_recall for o in objects])),
        "J-Decay": float(np.mean([o.j_decay for o in objects])),
        "F-Mean": float(np.mean(fm)),
        "F-Recall": float(np.mean([o.f_recall for o in objects])),
        "F-Decay": float(np.mean([o.f_decay for o in objects])),
    }
    return DavisScores(set=set, global_row=row, objects=objects, sequences=tuple(seq_scores))


def score_davis(
    root: str | Path,
    results: str | Path,
    set: str = "val",
    sequences: Sequence[str] | None = None,
    workers: int | None = None,
    progress: bool = True,
    bound_th: float = BOUND_TH,
) -> DavisScores:
    """Score a results folder (``<results>/<seq>/<frame>.png``) on a DAVIS-2017 set.

    Always recomputes (old CSVs in ``results`` are ignored).  ``sequences``
    restricts the evaluation to some sequences (default: the set's list).
    ``workers`` processes score sequences in parallel (default min(4, CPUs));
    the numbers do not depend on it.
    """
    names = list(sequences) if sequences else read_set(root, set)
    if set not in SETS:
        raise ConfigError(f"unknown DAVIS set {set!r}; expected one of {', '.join(SETS)}")
    results = Path(results)
    if not results.is_dir():
        raise InputError(f"{results}: results folder not found")
    seqs = find_sequences(root, names, need="all")
    workers = _default_workers() if workers is None else int(workers)
    if workers < 1:
        raise ConfigError(f"workers must be >= 1, got {workers}")
    workers = min(workers, len(seqs))
    log.info("scoring %d sequence(s) of DAVIS-2017 %s in %s with %d worker(s)", len(seqs), set, results, workers)
    bar = progress_bar(total=len(seqs), desc=f"DAVIS {set} J&F", unit="seq", enabled=progress, leave=True)
    out: list[SequenceScore | None] = [None] * len(seqs)
    try:
        if workers == 1:
            for i, s in enumerate(seqs):
                out[i] = score_sequence(s, results, bound_th)
                bar.update(1)
        else:
            with ProcessPoolExecutor(workers, mp_context=_mp_context(), initializer=_worker_init) as ex:
                futures = {ex.submit(_score_one, (s, str(results), bound_th)): i for i, s in enumerate(seqs)}
                pending = {*futures}
                while pending:
                    done, pending = wait(pending, return_when=FIRST_EXCEPTION)
                    for fut in done:
                        exc = fut.exception()
                        if exc is not None:
                            for other in pending:
                                other.cancel()
                            raise exc
                        out[futures[fut]] = fut.result()
                        bar.update(1)
    finally:
        bar.close()
    scores = _aggregate(set, [s for s in out if s is not None])
    log.info("DAVIS %s: J&F %.3f (J %.3f, F %.3f) over %d objects",
             set, scores.jf_mean, scores.global_row["J-Mean"], scores.global_row["F-Mean"], len(scores.objects))
    return scores
