"""DAVIS-2017 semi-supervised evaluation: J&F exactly as the official toolkit.

The numbers are those of ``davis2017-evaluation`` (``evaluation_method.py
--task semi-supervised``) to the last printed digit; see
``specs/davis-eval.md``.  What vidprop does better: it always recomputes
(old CSVs are never shown instead of a fresh score), fails with a clear
:class:`~vidprop.errors.InputError` naming the file on a missing frame, an RGB
PNG, a wrong size or a too-high object id, and scores sequences in parallel.

Python API::

    from vidprop.eval.davis import score_davis, write_csvs, format_tables
    scores = score_davis("DAVIS", "runs/x", set="val", workers=4)
    print(format_tables(scores))          # the toolkit's two tables
    write_csvs(scores, "runs/x")          # global_results-val.csv, per-sequence_results-val.csv
    scores.global_row["J&F-Mean"]

    from vidprop.eval.davis import run_davis   # propagate every sequence, then score
    run_davis("DAVIS", "runs/x", set="val", config="davis")

Metrics (pure functions on boolean ``(T, H, W)`` stacks): :func:`db_eval_iou`
(J), :func:`db_eval_boundary` (F, with :func:`seg2bmap` and a disk dilation of
``ceil(0.008 * hypot(H, W))`` pixels) and :func:`db_statistics` (Mean, Recall,
Decay per object).
"""

from __future__ import annotations

import csv
import datetime as _dt
import logging
import math
import os
import warnings
from concurrent.futures import FIRST_EXCEPTION, ProcessPoolExecutor, wait
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable, Sequence

import cv2
import numpy as np
from PIL import Image

from vidprop.errors import ConfigError, InputError
from vidprop.io.atomic import atomic_file
from vidprop.progress import progress_bar

__all__ = [
    "SETS",
    "BOUND_TH",
    "GLOBAL_COLUMNS",
    "db_eval_iou",
    "seg2bmap",
    "disk",
    "boundary_radius",
    "db_eval_boundary",
    "db_statistics",
    "DavisSequence",
    "read_set",
    "find_sequences",
    "ObjectScore",
    "SequenceScore",
    "DavisScores",
    "score_sequence",
    "score_davis",
    "write_csvs",
    "format_tables",
    "write_summary_image",
    "sequence_is_complete",
    "run_davis",
]

log = logging.getLogger(__name__)

#: Subsets of DAVIS-2017 (``ImageSets/2017/<set>.txt``).
SETS = ("val", "train", "test-dev")
#: Boundary tolerance of the F measure, as a fraction of the image diagonal.
BOUND_TH = 0.008
#: Void label of the annotations (set to 0: not excluded in the semi-supervised task).
VOID_LABEL = 255
RESOLUTION = "480p"
GLOBAL_COLUMNS = ("J&F-Mean", "J-Mean", "J-Recall", "J-Decay", "F-Mean", "F-Recall", "F-Decay")
SEQUENCE_COLUMNS = ("Sequence", "J-Mean", "F-Mean")


# ---------------------------------------------------------------------------------------------- metrics
def _check_stack(name: str, a: np.ndarray) -> np.ndarray:
    a = np.asarray(a)
    if a.ndim != 3:
        raise ValueError(f"{name} must be a (T, H, W) stack of masks, got shape {a.shape}")
    return a.astype(bool, copy=False)


def db_eval_iou(gt: np.ndarray, pred: np.ndarray, void: np.ndarray | None = None) -> np.ndarray:
    """Region similarity J per frame: ``|gt & pred| / |gt | pred|``, 1 when both are empty.

    Args:
        gt, pred: (T, H, W) boolean masks of one object.
        void: optional (T, H, W) pixels left out of both counts (the
            semi-supervised protocol passes none: void counts as background).
    Returns:
        (T,) float64.
    """
    gt = _check_stack("gt", gt)
    pred = _check_stack("pred", pred)
    if gt.shape != pred.shape:
        raise ValueError(f"gt {gt.shape} and pred {pred.shape} shapes differ")
    inter_m = gt & pred
    union_m = gt | pred
    if void is not None:
        void = _check_stack("void", void)
        if void.shape != gt.shape:
            raise ValueError(f"void {void.shape} and gt {gt.shape} shapes differ")
        keep = ~void
        inter_m &= keep
        union_m &= keep
    # per-frame count_nonzero (no axis) takes NumPy's fast path
    inter = np.array([np.count_nonzero(x) for x in inter_m], dtype=np.int64)
    union = np.array([np.count_nonzero(x) for x in union_m], dtype=np.int64)
    with np.errstate(invalid="ignore", divide="ignore"):
        j = inter / union
    j[union == 0] = 1
    return j


def seg2bmap(seg: np.ndarray) -> np.ndarray:
    """One-pixel boundary map of a mask (no thinning), as the toolkit's ``_seg2bmap``.

    With ``e``, ``s``, ``se`` the mask shifted left, up and up-left by one
    (zero-filled), ``b = (m ^ e) | (m ^ s) | (m ^ se)``; the last row is
    ``m ^ e``, the last column ``m ^ s`` and the bottom-right pixel 0.
    Works on (H, W) or stacks (..., H, W); returns a bool array of the same shape.
    """
    m = np.asarray(seg).astype(bool, copy=False)
    if m.ndim < 2:
        raise ValueError(f"seg must be at least 2-D, got shape {m.shape}")
    e = np.zeros_like(m)
    s = np.zeros_like(m)
    se = np.zeros_like(m)
    e[..., :, :-1] = m[..., :, 1:]
    s[..., :-1, :] = m[..., 1:, :]
    se[..., :-1, :-1] = m[..., 1:, 1:]
    b = (m ^ e) | (m ^ s) | (m ^ se)
    b[..., -1, :] = m[..., -1, :] ^ e[..., -1, :]
    b[..., :, -1] = m[..., :, -1] ^ s[..., :, -1]
    b[..., -1, -1] = False
    return b


def boundary_radius(height: int, width: int, bound_th: float = BOUND_TH) -> float:
    """Dilation radius of the F measure: ``bound_th`` if >= 1, else ``ceil(bound_th * hypot(H, W))``.

    8 for 480x854 frames.  Same expression as the toolkit (a float).
    """
    return bound_th if bound_th >= 1 else float(np.ceil(bound_th * np.linalg.norm((height, width))))


def disk(radius: float) -> np.ndarray:
    """uint8 disk ``x^2 + y^2 <= r^2`` on the grid ``arange(-r, r + 1)`` (skimage.morphology.disk)."""
    grid = np.arange(-radius, radius + 1)
    x, y = np.meshgrid(grid, grid)
    return ((x**2 + y**2) <= radius**2).astype(np.uint8)


def _bmap_crop(mask: np.ndarray) -> tuple[np.ndarray, int, int] | None:
    """Boundary map of a (H, W) bool mask computed on its bounding box grown by one pixel.

    Returns (crop of seg2bmap(mask), y0, x0), or None for an empty mask.
    Outside the box the full map is 0, and inside it equals the full map: a
    boundary pixel at (y, x) only looks at (y, x+1), (y+1, x), (y+1, x+1);
    the box keeps one zero row/column below/right of the object (or ends at
    the image edge, where the special last row/column rule is the same).
    """
    x, y, w, h = cv2.boundingRect(mask.view(np.uint8))
    if w == 0 or h == 0:
        return None
    hh, ww = mask.shape
    y0, x0 = max(y - 1, 0), max(x - 1, 0)
    y1, x1 = min(y + h + 1, hh), min(x + w + 1, ww)
    return seg2bmap(mask[y0:y1, x0:x1]), y0, x0


def _f_from_crops(
    gb: tuple[np.ndarray, int, int] | None, pb: tuple[np.ndarray, int, int] | None, kernel: np.ndarray
) -> float:
    """F of one frame from the boundary crops of gt (``gb``) and prediction (``pb``)."""
    n_gt = int(np.count_nonzero(gb[0])) if gb is not None else 0
    n_fg = int(np.count_nonzero(pb[0])) if pb is not None else 0
    if n_fg == 0 and n_gt > 0:
        precision, recall = 1.0, 0.0
    elif n_fg > 0 and n_gt == 0:
        precision, recall = 0.0, 1.0
    elif n_fg == 0 and n_gt == 0:
        precision, recall = 1.0, 1.0
    else:
        assert gb is not None and pb is not None
        (g, gy, gx), (p, py, px) = gb, pb
        # One canvas holding both boundary maps (2 channels), dilated in one call.  It
        # covers every boundary pixel, so dilating it equals dilating the whole
        # frame (cv2 ignores what lies outside), restricted to the canvas.
        y0, x0 = min(gy, py), min(gx, px)
        y1 = max(gy + g.shape[0], py + p.shape[0])
        x1 = max(gx + g.shape[1], px + p.shape[1])
        canvas = np.zeros((y1 - y0, x1 - x0, 2), np.uint8)
        canvas[gy - y0 : gy - y0 + g.shape[0], gx - x0 : gx - x0 + g.shape[1], 0] = g
        canvas[py - y0 : py - y0 + p.shape[0], px - x0 : px - x0 + p.shape[1], 1] = p
        dil = cv2.dilate(canvas, kernel)
        fg_match = int(np.count_nonzero(canvas[..., 1] & dil[..., 0]))
        gt_match = int(np.count_nonzero(canvas[..., 0] & dil[..., 1]))
        precision = fg_match / float(n_fg)
        recall = gt_match / float(n_gt)
    if precision + recall == 0:
        return 0.0
    return 2 * precision * recall / (precision + recall)


def _f_measure_frame(gt: np.ndarray, pred: np.ndarray, kernel: np.ndarray) -> float:
    """F of one frame from (H, W) bool masks; the toolkit's ``f_measure`` without void."""
    return _f_from_crops(_bmap_crop(gt), _bmap_crop(pred), kernel)


def _jf_frame(gt: np.ndarray, pred: np.ndarray, kernel: np.ndarray) -> tuple[float, float]:
    """(J, F) of one frame from (H, W) bool masks, working inside the objects' bounding boxes."""
    gb = _bmap_crop(gt)
    pb = _bmap_crop(pred)
    n_g = int(np.count_nonzero(gt)) if gb is not None else 0
    n_p = int(np.count_nonzero(pred)) if pb is not None else 0
    inter = 0
    if gb is not None and pb is not None:
        # the crops hold the whole object (plus a margin): intersect the two boxes
        y0, x0 = max(gb[1], pb[1]), max(gb[2], pb[2])
        y1 = min(gb[1] + gb[0].shape[0], pb[1] + pb[0].shape[0])
        x1 = min(gb[2] + gb[0].shape[1], pb[2] + pb[0].shape[1])
        if y1 > y0 and x1 > x0:
            inter = int(np.count_nonzero(gt[y0:y1, x0:x1] & pred[y0:y1, x0:x1]))
    union = n_g + n_p - inter
    j = 1.0 if union == 0 else inter / union
    return j, _f_from_crops(gb, pb, kernel)


def db_eval_boundary(
    gt: np.ndarray, pred: np.ndarray, void: np.ndarray | None = None, bound_th: float = BOUND_TH
) -> np.ndarray:
    """Boundary measure F per frame (the toolkit's ``db_eval_boundary``).

    Boundary maps by :func:`seg2bmap`; each is dilated (cv2.dilate) with
    ``disk(boundary_radius(H, W))``; precision = ``|pred_b & dil(gt_b)| /
    |pred_b|``, recall = ``|gt_b & dil(pred_b)| / |gt_b|``; both boundaries
    empty: P = R = 1, only pred's: P = 1, R = 0, only gt's: P = 0, R = 1;
    F = 2PR / (P + R), 0 when P + R = 0.

    Args:
        gt, pred: (T, H, W) boolean masks of one object.
        void: optional (T, H, W); void pixels are cleared from both masks first.
    Returns:
        (T,) float64.
    """
    gt = _check_stack("gt", gt)
    pred = _check_stack("pred", pred)
    if gt.shape != pred.shape:
        raise ValueError(f"gt {gt.shape} and pred {pred.shape} shapes differ")
    if void is not None:
        void = _check_stack("void", void)
        if void.shape != gt.shape:
            raise ValueError(f"void {void.shape} and gt {gt.shape} shapes differ")
        gt = gt & ~void
        pred = pred & ~void
    kernel = disk(boundary_radius(gt.shape[1], gt.shape[2], bound_th))
    gt = np.ascontiguousarray(gt)
    pred = np.ascontiguousarray(pred)
    return np.array([_f_measure_frame(gt[t], pred[t], kernel) for t in range(gt.shape[0])], dtype=np.float64)


def decay_bins(n: int) -> list[tuple[int, int]]:
    """The toolkit's four overlapping quartile bins of ``n`` frames as [start, stop) pairs.

    ``ids = round(linspace(1, n, 5) + 1e-10) - 1``; bin i is ``ids[i] .. ids[i+1]``
    inclusive.  (The toolkit casts ``ids`` to uint8, which wraps above 256
    frames; vidprop keeps exact integers, identical for every DAVIS sequence.)
    """
    ids = (np.round(np.linspace(1, n, 5) + 1e-10) - 1).astype(np.int64)
    return [(int(ids[i]), int(ids[i + 1]) + 1) for i in range(4)]


def db_statistics(per_frame: np.ndarray) -> tuple[float, float, float]:
    """(Mean, Recall, Decay) of one object's per-frame J or F values.

    Mean = nanmean(v); Recall = nanmean(v > 0.5); Decay = nanmean(bin 0) -
    nanmean(bin 3) over :func:`decay_bins`.  NumPy's empty-slice warnings are
    silenced, as in the toolkit.
    """
    v = np.asarray(per_frame, dtype=np.float64)
    if v.ndim != 1:
        raise ValueError(f"per_frame must be 1-D, got shape {v.shape}")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", category=RuntimeWarning)
        mean = np.nanmean(v)
        recall = np.nanmean(v > 0.5)
        bins = [v[a:b] for a, b in decay_bins(len(v))]
        decay = np.nanmean(bins[0]) - np.nanmean(bins[3])
    return float(mean), float(recall), float(decay)


# ---------------------------------------------------------------------------------------------- dataset
@dataclass(frozen=True)
class DavisSequence:
    """One sequence of a DAVIS folder: its JPEG frames and annotation PNGs (sorted)."""

    name: str
    images: tuple[Path, ...]
    annotations: tuple[Path, ...]

    @property
    def frames_dir(self) -> Path:
        return self.images[0].parent

    @property
    def frame_names(self) -> tuple[str, ...]:
        """Frame names as the toolkit takes them: the annotation files' stems."""
        return tuple(p.stem for p in self.annotations)


def read_set(root: str | Path, set: str = "val") -> list[str]:
    """Sequence names listed in ``<root>/ImageSets/2017/<set>.txt``."""
    if set not in SETS:
        raise ConfigError(f"unknown DAVIS set {set!r}; expected one of {', '.join(SETS)}")
    root = Path(root)
    if not root.is_dir():
        raise InputError(f"{root}: DAVIS folder not found")
    path = root / "ImageSets" / "2017" / f"{set}.txt"
    if not path.is_file():
        raise InputError(f"{path}: sequence list of the {set!r} set not found (is {root} a DAVIS-2017 folder?)")
    names = [line.strip() for line in path.read_text().splitlines() if line.strip()]
    if not names:
        raise InputError(f"{path}: the sequence list is empty")
    return names


def find_sequences(
    root: str | Path, names: Iterable[str], *, need: str = "all"
) -> list[DavisSequence]:
    """Locate the frames and annotations of each sequence.

    ``need="all"``: every frame needs its annotation (scoring);
    ``need="first"``: only the first annotation (propagation).
    """
    root = Path(root)
    out = []
    for name in names:
        img_dir = root / "JPEGImages" / RESOLUTION / name
        ann_dir = root / "Annotations" / RESOLUTION / name
        images = tuple(sorted(img_dir.glob("*.jpg"))) if img_dir.is_dir() else ()
        if not images:
            raise InputError(f"sequence {name}: no frames in {img_dir} (expected 00000.jpg ...)")
        anns = tuple(sorted(ann_dir.glob("*.png"))) if ann_dir.is_dir() else ()
        if not anns:
            raise InputError(f"sequence {name}: no annotations in {ann_dir} (expected 00000.png ...)")
        if anns[0].stem != images[0].stem:
            raise InputError(
                f"sequence {name}: the first annotation {anns[0]} does not match the first frame {images[0].name}"
            )
        if need == "all" and len(anns) != len(images):
            raise InputError(
                f"sequence {name}: {len(anns)} annotations in {ann_dir} for {len(images)} frames in {img_dir}; "
                "scoring needs every frame annotated (test-dev has first-frame annotations only)"
            )
        out.append(DavisSequence(name, images, anns))
    return out


def _read_ids(path: Path, what: str) -> np.ndarray:
    """A single-channel PNG of ids -> (H, W) integer array; InputError naming the file otherwise."""
    if not path.is_file():
        raise InputError(f"{path}: {what} not found")
    try:
        with Image.open(path) as im:
            mode = im.mode
            arr = np.asarray(im)
    except (OSError, ValueError, SyntaxError) as exc:
        raise InputError(f"{path}: cannot read this {what} ({exc})") from exc
    if arr.ndim != 2:
        channels = arr.shape[2] if arr.ndim == 3 else arr.ndim
        raise InputError(
            f"{path}: {mode} image with {channels} channels; a {what} must be a single-channel indexed (P) "
            "or greyscale (L) PNG whose values are object ids"
        )
    if arr.dtype == bool:
        arr = arr.astype(np.uint8)
    if not np.issubdtype(arr.dtype, np.integer):
        raise InputError(f"{path}: {mode} image of {arr.dtype} values; a {what} must hold integer object ids")
    return arr


# ---------------------------------------------------------------------------------------------- scoring
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


@dataclass(frozen=True)
class SequenceScore:
    """Per-frame and per-object scores of one sequence."""

    name: str
    num_objects: int
    frame_names: tuple[str, ...]  # the scored frames (first and last dropped)
    j: np.ndarray  # (K, n) per-frame J
    f: np.ndarray  # (K, n) per-frame F
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
    first = _read_ids(seq.annotations[0], "annotation")
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
    if not res_dir.is_dir():
        raise InputError(f"sequence {seq.name}: results folder {res_dir} not found")
    for i, ann_path in enumerate(scored):
        a = _read_ids(ann_path, "annotation")
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
        p = _read_ids(res_path, "result")
        if p.shape != size:
            raise InputError(
                f"sequence {seq.name}: {res_path} is {p.shape[1]}x{p.shape[0]} but its annotation is "
                f"{size[1]}x{size[0]}"
            )
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
            j_all[k - 1, t], f_all[k - 1, t] = _jf_frame(gt[t] == k, pr[t] == k, kernel)
        jm, jr, jd = db_statistics(j_all[k - 1])
        fm, fr, fd = db_statistics(f_all[k - 1])
        objects.append(ObjectScore(seq.name, k, jm, jr, jd, fm, fr, fd))
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


# ---------------------------------------------------------------------------------------------- reports
def _csv_float(v: float) -> str:
    return "" if math.isnan(v) else "%.3f" % v


def write_csvs(scores: DavisScores, out_dir: str | Path, set: str | None = None) -> tuple[Path, Path]:
    """Write ``global_results-<set>.csv`` and ``per-sequence_results-<set>.csv`` (atomically).

    Same content as the toolkit's (pandas ``to_csv(index=False, float_format="%.3f")``).
    Existing files are replaced.
    """
    set = set or scores.set
    out_dir = Path(out_dir)
    g_path = out_dir / f"global_results-{set}.csv"
    s_path = out_dir / f"per-sequence_results-{set}.csv"
    with atomic_file(g_path, overwrite=True) as tmp:
        with open(tmp, "w", newline="") as fh:
            w = csv.writer(fh, lineterminator="\n")
            w.writerow(GLOBAL_COLUMNS)
            w.writerow([_csv_float(scores.global_row[c]) for c in GLOBAL_COLUMNS])
    with atomic_file(s_path, overwrite=True) as tmp:
        with open(tmp, "w", newline="") as fh:
            w = csv.writer(fh, lineterminator="\n")
            w.writerow(SEQUENCE_COLUMNS)
            for name, jm, fm in scores.per_sequence_rows():
                w.writerow([name, _csv_float(jm), _csv_float(fm)])
    log.info("wrote %s and %s", g_path, s_path)
    return g_path, s_path


def _trim_zeros(strs: list[str]) -> list[str]:
    """pandas' ``_trim_zeros_float``: drop trailing zeros equally from all numbers, keep one decimal."""
    import re

    number = re.compile(r"^\s*[\+-]?[0-9]+\.[0-9]*$")

    def should_trim(vals: list[str]) -> bool:
        nums = [x for x in vals if number.match(x)]
        return len(nums) > 0 and all(x.endswith("0") for x in nums)

    while should_trim(strs):
        strs = [x[:-1] if number.match(x) else x for x in strs]
    return [x + "0" if number.match(x) and x.endswith(".") else x for x in strs]


def _pandas_float_column(values: Sequence[float]) -> list[str]:
    """A float column as pandas' ``DataFrame.to_string(index=False)`` prints it (display.precision 6)."""
    digits = 6

    def fmt(spec: str) -> list[str]:
        return _trim_zeros(["NaN" if math.isnan(v) else spec.format(v) for v in values])

    strs = fmt("{:.6f}")
    too_long = max((len(x) for x in strs), default=0) > digits + 6
    a = np.abs(np.asarray(values, dtype=np.float64))
    with np.errstate(invalid="ignore"):
        large = bool(np.any(a > 1e6))
        small = bool(np.any((a < 10**-digits) & (a > 0)))
    if small or (too_long and large):
        strs = fmt("{:.6e}")
    return strs


def _pandas_table(columns: Sequence[str], cols: Sequence[list[str]], numeric: Sequence[bool]) -> str:
    out_cols = []
    for name, vals, is_num in zip(columns, cols, numeric):
        header = (" " + name) if is_num else name
        width = max([len(header), *(len(v) for v in vals)])
        out_cols.append([header.rjust(width)] + [v.rjust(width) for v in vals])
    return "\n".join(" ".join(row) for row in zip(*out_cols))


def format_tables(scores: DavisScores) -> str:
    """The two tables ``evaluation_method.py`` prints after a fresh evaluation (same text)."""
    g_cols = [_pandas_float_column([scores.global_row[c]]) for c in GLOBAL_COLUMNS]
    table_g = _pandas_table(GLOBAL_COLUMNS, g_cols, [True] * len(GLOBAL_COLUMNS))
    rows = scores.per_sequence_rows()
    s_cols = [
        [r[0] for r in rows],
        _pandas_float_column([r[1] for r in rows]),
        _pandas_float_column([r[2] for r in rows]),
    ]
    table_s = _pandas_table(SEQUENCE_COLUMNS, s_cols, [False, True, True])
    return (
        f"--------------------------- Global results for {scores.set} ---------------------------\n"
        f"{table_g}\n"
        f"\n---------- Per sequence results for {scores.set} ----------\n"
        f"{table_s}\n"
    )


def write_summary_image(scores: DavisScores, path: str | Path) -> Path:
    """A horizontal bar chart of per-sequence J&F (PNG, drawn with PIL), written atomically."""
    from PIL import ImageDraw, ImageFont

    path = Path(path)
    seqs = [s for s in scores.sequences if s.objects]
    font = ImageFont.load_default()
    row_h, label_w, bar_w, pad = 16, 170, 520, 10
    title_h = 34
    width = pad + label_w + bar_w + 60 + pad
    height = title_h + row_h * max(len(seqs), 1) + 2 * pad + 16
    img = Image.new("RGB", (width, height), "white")
    d = ImageDraw.Draw(img)
    jf = scores.jf_mean
    d.text((pad, pad), f"DAVIS-2017 {scores.set}: J&F {jf:.3f}  J {scores.global_row['J-Mean']:.3f}  "
                       f"F {scores.global_row['F-Mean']:.3f}  ({len(scores.objects)} objects)", fill="black", font=font)
    x0 = pad + label_w
    top = title_h
    for i, s in enumerate(seqs):
        y = top + i * row_h
        v = s.jf_mean
        name = s.name if len(s.name) <= 26 else s.name[:25] + "~"
        d.text((pad, y + 2), name, fill="black", font=font)
        colour = (70, 130, 180) if v >= jf else (220, 120, 60)
        d.rectangle([x0, y + 2, x0 + max(1, int(round(bar_w * min(max(v, 0.0), 1.0)))), y + row_h - 3], fill=colour)
        d.text((x0 + int(bar_w * min(max(v, 0.0), 1.0)) + 4, y + 2), f"{v:.3f}", fill="black", font=font)
    bottom = top + row_h * max(len(seqs), 1)
    for t in (0.0, 0.25, 0.5, 0.75, 1.0):
        x = x0 + int(round(bar_w * t))
        d.line([x, top, x, bottom], fill=(210, 210, 210))
        d.text((x - 8, bottom + 3), f"{t:.2f}", fill="grey", font=font)
    xm = x0 + int(round(bar_w * min(max(jf, 0.0), 1.0)))
    d.line([xm, top - 4, xm, bottom], fill=(200, 0, 0), width=2)
    with atomic_file(path, overwrite=True) as tmp:
        img.save(tmp, format="PNG")
    return path


# ---------------------------------------------------------------------------------------------- running
def sequence_is_complete(out_dir: str | Path, seq: DavisSequence) -> bool:
    """True when ``out_dir/<seq>/`` holds one PNG per frame of the sequence."""
    folder = Path(out_dir) / seq.name
    if not folder.is_dir():
        return False
    have = {p.stem for p in folder.glob("*.png")}
    return all(p.stem in have for p in seq.images)


_EXECUTION_KEYS = ("device", "batch_size", "channels_last", "compile")


def _comparable(cfg: dict) -> dict:
    cfg = {k: (dict(v) if isinstance(v, dict) else v) for k, v in cfg.items()}
    for key in _EXECUTION_KEYS:
        cfg.get("extractor", {}).pop(key, None)
    cfg.pop("name", None)
    return cfg


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
            "config": cfg.to_dict(),
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
        first = _read_ids(seq.annotations[0], "annotation")
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
