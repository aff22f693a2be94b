"""A backbone-free matcher for the pair benchmarks: features are the one-hot labels painted in the images.

Each image stores a label per pixel in its red channel (0 = background).  A
source keypoint sits on a pixel of label i; its best cosine match in the
target is the FIRST pixel (row-major) of label i there, so a test decides
every prediction by where it paints the labels, and can compute PCK by hand.
"""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

from vidprop.config import load_preset


class LabelMatcher:
    joint = False

    def __init__(self, num_labels: int, preset: str = "semantic") -> None:
        self.num_labels = num_labels
        self.config = load_preset(preset)
        self.extractor = SimpleNamespace(model_revision=None)
        self.calls = 0
        self.prompts: list[str] = []

    def features(self, image: np.ndarray, *, index: int = 0, prompt: str = "") -> torch.Tensor:
        self.calls += 1
        self.prompts.append(prompt)
        labels = torch.from_numpy(np.ascontiguousarray(image[..., 0])).long()
        return F.one_hot(labels, self.num_labels + 1).permute(2, 0, 1).float()  # (L + 1, H, W), stride 1


def paint(path, size: tuple[int, int], spots: dict[int, list[tuple[int, int]]]) -> None:
    """Write an RGB PNG of ``size`` (w, h), black, with label i at each (x, y) of spots[i]."""
    w, h = size
    img = np.zeros((h, w, 3), np.uint8)
    for label, points in spots.items():
        for x, y in points:
            img[y, x] = (label, 0, 0)
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(img).save(path)


class LabelAttention:
    """Stands in for Hedlin et al.'s AttentionMatcher, deciding matches like :class:`LabelMatcher`: a source
    point's label (the pixel it rounds to) is found at its first pixel (row-major) in the target, plus ``shift``
    (``by_label=False``: the source point itself plus ``shift``).  It records the points it was given (the
    attention method gets them unrounded)."""

    dtype = torch.float32
    settings = None
    model_id = None

    def __init__(self, shift: tuple[float, float] = (0.0, 0.0), *, by_label: bool = True) -> None:
        self.shift = np.asarray(shift, dtype=np.float64)
        self.by_label = by_label
        self.points: list[np.ndarray] = []

    def match(self, src: np.ndarray, trg: np.ndarray, points: np.ndarray) -> SimpleNamespace:
        pts = np.asarray(points, dtype=np.float64).reshape(-1, 2)
        self.points.append(pts.copy())
        if not self.by_label:
            return SimpleNamespace(target_points=pts + self.shift)
        out = []
        for x, y in pts:
            label = src[int(round(y)), int(round(x)), 0]
            ys, xs = np.nonzero(trg[..., 0] == label)
            out.append((xs[0], ys[0]) if label and len(ys) else (x, y))
        return SimpleNamespace(target_points=np.asarray(out, dtype=np.float64).reshape(-1, 2) + self.shift)
