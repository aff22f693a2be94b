"""Per-frame confidence of a propagated mask: how sure the propagator was, and how much each object changed.

For each object present on the frame or on the frame propagated just before
it (its neighbour toward the annotation it came from):

* ``margin``: the mean, over the object's cells of the feature grid (the cells
  whose best label is the object), of the gap between the two best labels of
  the soft label map, normalised to sum to 1 per cell (0 = a tie, 1 = no
  doubt).  Cells of the soft map are the propagator's own soft labels
  (``SegmentSession.last_soft``), before any decoding.
* ``area``: ``min(a, a_prev) / max(a, a_prev)`` of the object's pixel counts on
  the frame and on its neighbour (1 = same size, 0 = appeared or vanished).

An object's confidence is ``margin * area``; the frame's is the lowest of its
objects' (1.0 for an annotated frame, which the user gave).  Low values mark
the frames most likely wrong: a reviewer looks at those first.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Sequence

import numpy as np
import torch

__all__ = ["FrameConfidence", "frame_confidence", "likely_wrong"]


@dataclass(frozen=True)
class FrameConfidence:
    """The confidence of one frame (``score``) and of each object on it."""

    score: float
    objects: dict[int, float] = field(default_factory=dict)
    annotated: bool = False


def _margins(soft: torch.Tensor, ids: Sequence[int]) -> dict[int, float]:
    """Mean top-1 minus top-2 gap of the normalised soft labels (K, h, w) over each object's best cells."""
    if soft.ndim != 3 or soft.shape[0] != len(ids) + 1:
        raise ValueError(f"soft labels must be ({len(ids) + 1}, h, w) for ids {list(ids)}, got {tuple(soft.shape)}")
    p = soft.detach().float().clamp_min(0)
    p = p / p.sum(0, keepdim=True).clamp_min(1e-12)
    if p.shape[0] == 1:
        return {}
    top = torch.topk(p, 2, dim=0).values  # (2, h, w)
    gap = (top[0] - top[1]).cpu().numpy()
    best = torch.argmax(p, dim=0).cpu().numpy()
    out = {}
    for c, i in enumerate(ids, start=1):
        cells = best == c
        out[int(i)] = float(gap[cells].mean()) if cells.any() else 0.0
    return out


def frame_confidence(soft: torch.Tensor | None, ids: Sequence[int], mask: np.ndarray,
                     previous: np.ndarray | None, *, annotated: bool = False) -> FrameConfidence:
    """The confidence of ``mask`` (H, W), propagated with soft labels ``soft`` (1 + len(ids), h, w).

    ``previous``: the mask of the frame propagated just before (None: no
    area term).  ``annotated``: the frame holds an annotation (score 1).
    """
    if annotated or soft is None:
        return FrameConfidence(1.0, {int(i): 1.0 for i in ids if (mask == i).any()}, annotated=True)
    margins = _margins(soft, ids)
    objects: dict[int, float] = {}
    for i in ids:
        a = int((mask == i).sum())
        b = int((previous == i).sum()) if previous is not None else a
        if a == 0 and b == 0:
            continue
        area = min(a, b) / max(a, b)
        objects[int(i)] = round(margins.get(int(i), 0.0) * area, 6) if a else 0.0
    score = min(objects.values()) if objects else 1.0
    return FrameConfidence(float(score), objects)


def likely_wrong(scores: dict[int, float], *, threshold: float = 0.5, worst: int = 3) -> list[int]:
    """Frames to review first, lowest score first: those below ``threshold`` (at most a tenth of the frames,
    and at least ``worst``), else the ``worst`` lowest below 1."""
    ranked = sorted(scores, key=lambda t: (scores[t], t))
    low = [t for t in ranked if scores[t] < threshold]
    if len(low) >= worst:
        return low[: max(worst, len(scores) // 10)]
    return [t for t in ranked[:worst] if scores[t] < 1.0]
