"""``direction="both"``: every object flows back from its own first annotation (``docs/annotations.md``).

The rule, in three parts:

* **Passes.**  For each frame ``k`` that annotates at least one object for
  the first time (its *new* ids ``N_k``), a backward pass runs the same
  protocol on the reversed frames ``k, k-1, ..., lo`` with the annotation at
  ``k`` (all of it) as its only anchor.  ``lo`` is the run's first frame; in
  ``frame`` mode it is the frame after the previous annotated frame (that
  annotation is the complete labelling of its frame and does not hold the
  new ids: they were absent there).  :func:`plan_backward_passes`.
* **What a pass gives.**  Only its new ids: from the pass from ``k``, the
  pixels labelled with an id of ``N_k`` on frames ``lo .. k-1``.
* **Merge.**  A frame's output is the forward pass's label where it is not
  background; elsewhere the label of the nearest pass that covers the frame
  and gives a new id there (passes in ascending ``k``, each filling only
  pixels still background).  :func:`merge_backward`.

With one pass (every object first annotated on the earliest annotated
frame) this is the former rule: frames before it take the backward pass's
result, frames from it on the forward pass's.  A forward-only run has no
pass.  :class:`Spill` keeps model inputs and masks in an anonymous temporary
file, so memory does not grow with the number of frames a pass covers.
"""

from __future__ import annotations

import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Mapping

import numpy as np

__all__ = ["BackwardPass", "plan_backward_passes", "merge_backward", "Spill"]


@dataclass(frozen=True)
class BackwardPass:
    """A backward pass from annotated frame ``frame`` down to frame ``lo`` (inclusive), keeping ``ids``."""

    frame: int
    lo: int
    ids: tuple[int, ...]


def plan_backward_passes(annotations: Mapping[int, np.ndarray], *, mode: str = "objects",
                         start: int = 0) -> list[BackwardPass]:
    """The backward passes of a ``direction="both"`` run, in ascending frame order.

    ``annotations``: {frame index: (H, W) index mask}; ``start``: the run's
    first frame.  A pass exists for each frame that annotates an id for the
    first time and has frames before it to fill (``lo < frame``).
    """
    seen: set[int] = set()
    previous: int | None = None
    passes = []
    for k in sorted(annotations):
        ids = {int(v) for v in np.unique(np.asarray(annotations[k])) if v != 0}
        new = tuple(sorted(ids - seen))
        seen |= ids
        lo = start if mode != "frame" or previous is None else previous + 1
        previous = k
        if new and lo < k:
            passes.append(BackwardPass(frame=int(k), lo=int(lo), ids=new))
    return passes


def merge_backward(current: np.ndarray, back: np.ndarray, ids: tuple[int, ...] | list[int]) -> np.ndarray:
    """``current`` with its background pixels taken by ``back``'s labels of ``ids`` (a pass's new ids)."""
    if current.shape != back.shape:
        raise ValueError(f"masks differ in shape: {current.shape} and {back.shape}")
    fill = (current == 0) & np.isin(back, np.asarray(ids, dtype=back.dtype))
    return np.where(fill, back, current).astype(np.uint8)


class Spill:
    """Fixed-size arrays in an anonymous temporary file, written and read by position (bounded RAM)."""

    def __init__(self, folder: str | Path | None = None) -> None:
        self._file = tempfile.TemporaryFile(prefix="vidprop-spill-", dir=folder)
        self._shape: tuple[int, ...] | None = None
        self._dtype: np.dtype | None = None
        self._nbytes = 0

    def put(self, pos: int, arr: np.ndarray) -> None:
        if self._shape is None:
            self._shape, self._dtype, self._nbytes = arr.shape, arr.dtype, arr.nbytes
        elif arr.shape != self._shape or arr.dtype != self._dtype:
            raise ValueError(f"spilled arrays must all be {self._shape} {self._dtype}, got {arr.shape} {arr.dtype}")
        self._file.seek(pos * self._nbytes)
        self._file.write(np.ascontiguousarray(arr).tobytes())

    def get(self, pos: int) -> np.ndarray:
        assert self._shape is not None and self._dtype is not None
        self._file.seek(pos * self._nbytes)
        data = self._file.read(self._nbytes)
        return np.frombuffer(data, dtype=self._dtype).reshape(self._shape).copy()

    def close(self) -> None:
        self._file.close()
