"""J (region), F (boundary) and the per-object statistics of DAVIS, as the official toolkit.

Pure functions on boolean ``(T, H, W)`` stacks: :func:`db_eval_iou` (J),
:func:`db_eval_boundary` (F, with :func:`seg2bmap` and a disk dilation of
``ceil(0.008 * hypot(H, W))`` pixels) and :func:`db_statistics` (Mean,
Recall, Decay of one object's per-frame values).
"""

from __future__ import annotations

import warnings

import cv2
import numpy as np

__all__ = [
    "jf_frame",
    "BOUND_TH",
    "db_eval_iou",
    "seg2bmap",
    "disk",
    "boundary_radius",
    "db_eval_boundary",
    "decay_bins",
    "db_statistics",
]

#: Boundary tolerance of the F measure, as a fraction of the image diagonal.
BOUND_TH = 0.008


def _check_stack(name: str, a: np.ndarray) -> np.ndarray:
    a = np.asarray(a)
    if a.ndim != 3:
        raise ValueError(f"{name} must be a (T, H, W) stack of masks, got shape {a.shape}")
    return a.astype(bool, copy=False)


def _check_pair(gt: np.ndarray, pred: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Both (T, H, W) boolean stacks of the same shape."""
    gt, pred = _check_stack("gt", gt), _check_stack("pred", pred)
    if gt.shape != pred.shape:
        raise ValueError(f"gt {gt.shape} and pred {pred.shape} shapes differ")
    return gt, pred


def db_eval_iou(gt: np.ndarray, pred: np.ndarray, void: np.ndarray | None = None) -> np.ndarray:
    """Region similarity J per frame: ``|gt & pred| / |gt | pred|``, 1 when both are empty.

    Args:
        gt, pred: (T, H, W) boolean masks of one object.
        void: optional (T, H, W) pixels left out of both counts (the
            semi-supervised protocol passes none: void counts as background).
    Returns:
        (T,) float64.
    """
    gt, pred = _check_pair(gt, pred)
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


def jf_frame(gt: np.ndarray, pred: np.ndarray, kernel: np.ndarray) -> tuple[float, float]:
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
    gt, pred = _check_pair(gt, pred)
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
