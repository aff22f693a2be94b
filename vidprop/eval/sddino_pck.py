"""SPair-71k PCK as Zhang et al.'s SD + DINOv2 evaluation scores it (Junyi42/sd-dino ``pck_spair_pascal.py``).

Their numbers (59.9 PCK@0.1 zero-shot) are not DIFT's PCK:

* every image is letterboxed to an 840 square (``preprocess_kps_pad`` L23-46:
  scale ``840 / max(W, H)``, the short side centred with an offset of
  ``int((840 - round(840 * short / long)) / 2)``), and points are compared in
  that space;
* the prediction is the CENTRE of the nearest patch on their 60 x 60 grid
  (L386-387: ``(nn - 1) * 14 + 14 + 14 // 2 - 0.5``), the source point's
  patch being ``int(60 / 840 * p)`` (L202-204);
* a point is correct when its distance is STRICTLY below
  ``alpha x max(h, w)`` of the TARGET box scaled to the letterboxed space
  (L88, L422-425, ``err < threshold``);
* the points are pooled per category (L430) and the categories' PCK averaged
  (L528);
* each category scores 20 pairs drawn by ``np.random.choice(len(pairs), 20)``
  (with replacement) after ``np.random.seed(42)`` over its sorted pair files
  (L49-52; ``--SAMPLE 20``, ``--SEED 42``: L543-545).

:func:`sd_dino_correct` scores a pair this way from a prediction in the
target's original pixels (vidprop's matchers predict at full resolution: the
prediction is moved to the letterboxed space and snapped to the centre of the
patch it falls in, which is their prediction when the nearest patch is the one
holding vidprop's match).  :func:`sample_pairs` draws their pairs.
"""

from __future__ import annotations

from collections import OrderedDict
from typing import Any, Sequence

import numpy as np

__all__ = ["SIZE", "PATCH", "letterbox", "to_letterbox", "patch_centres", "sd_dino_correct", "sample_pairs",
           "category_mean"]

#: Their DINOv2 input: the letterboxed square side and the patch (60 x 60 patches).
SIZE = 840
PATCH = 14


def letterbox(width: float, height: float, size: int = SIZE) -> tuple[float, int, int]:
    """(scale, offset x, offset y) of a ``width x height`` image letterboxed to ``size`` (their preprocess_kps_pad)."""
    scale = size / max(width, height)
    off_x = off_y = 0
    if height < width:
        new_h = int(np.around(size * height / width))
        off_y = int((size - new_h) / 2)
    elif width < height:
        new_w = int(np.around(size * width / height))
        off_x = int((size - new_w) / 2)
    return scale, off_x, off_y


def to_letterbox(points: np.ndarray, width: float, height: float, size: int = SIZE) -> np.ndarray:
    """(N, 2) x, y pixels of the original image -> the same points in its letterboxed ``size`` square."""
    scale, ox, oy = letterbox(width, height, size)
    pts = np.asarray(points, dtype=np.float64).reshape(-1, 2) * scale
    return pts + np.array([ox, oy], dtype=np.float64)


def patch_centres(points: np.ndarray, size: int = SIZE, patch: int = PATCH) -> np.ndarray:
    """(N, 2) points of the ``size`` square -> the centres of the patches they fall in (their prediction)."""
    grid = size // patch
    idx = np.clip((grid / size * np.asarray(points, dtype=np.float64)).astype(np.int32), 0, grid - 1)
    return (idx - 1) * patch + patch + patch // 2 - 0.5


def sd_dino_correct(pred: np.ndarray, gt: np.ndarray, trg_box: Sequence[float], trg_size: tuple[float, float],
                    alphas: Sequence[float], size: int = SIZE, patch: int = PATCH) -> dict[float, np.ndarray]:
    """Per point: |patch centre of pred - gt| < alpha x max(box h, w) x scale, in the target's letterboxed space.

    ``pred``, ``gt``: (N, 2) in the target's original pixels; ``trg_box`` (x1, y1, x2, y2) there; ``trg_size`` (W, H).
    """
    w, h = (float(v) for v in trg_size)
    scale, _, _ = letterbox(w, h, size)
    p = patch_centres(to_letterbox(pred, w, h, size), size, patch)
    g = to_letterbox(gt, w, h, size)
    x1, y1, x2, y2 = (float(v) for v in trg_box)
    threshold = max(y2 - y1, x2 - x1) * scale
    dist = np.linalg.norm(p - g, axis=1)
    return {float(a): dist < a * threshold for a in alphas}


def sample_pairs(pairs: Sequence[Any], n: int = 20, seed: int = 42) -> list[Any]:
    """Their pairs: per category (pairs in file-name order), ``np.random.seed(seed)`` then
    ``np.random.choice(len, n)`` (with replacement, as their script), in category order."""
    by_cat: "OrderedDict[str, list[Any]]" = OrderedDict()
    for p in sorted(pairs, key=lambda p: p.name):
        by_cat.setdefault(p.category, []).append(p)
    out: list[Any] = []
    for cat in sorted(by_cat):
        members = by_cat[cat]
        rng = np.random.RandomState(seed)  # the legacy global generator np.random.seed seeds
        out.extend(members[i] for i in rng.choice(len(members), n))
    return out


def category_mean(per_category: dict[str, dict[str, Any]]) -> dict[str, float]:
    """Mean over categories of each category's per-point PCK (their average of per-category PCKs)."""
    keys = next(iter(per_category.values()))["per_point"].keys() if per_category else []
    return {k: float(np.mean([c["per_point"][k] for c in per_category.values()])) for k in keys}
