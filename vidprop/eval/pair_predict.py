"""Where source keypoints land in a target image, for the pair benchmarks that run one group at a time.

One :class:`PairPredictor` serves the pairs of one group (a PF-WILLOW subset,
a CUB subset or class) with either method:

* DIFT features (a :class:`~vidprop.tasks.match.PairMatcher`): each image is
  encoded once within the group (a joint backbone encodes each pair together);
  source points are rounded to pixels and clipped to the image, as DIFT's
  evaluation reads them; the match is the cosine argmax over the target.
* Hedlin et al.'s optimised-prompt attention (an
  :class:`~vidprop.features.attention.AttentionMatcher`): nothing is cached
  (it optimises per point); source points are passed as they are (floats),
  as the authors' evaluation passes them.

    predict = PairPredictor(matcher, prompt="a photo of a bird", group="cub_subset_0")
    pred = predict(src_path, src_image, trg_path, trg_image, points)   # (N, 2) x, y in target pixels
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

__all__ = ["PairPredictor", "round_and_clip"]


def round_and_clip(points: np.ndarray, hw: tuple[int, int]) -> np.ndarray:
    """(N, 2) points (x, y) rounded to pixels and clipped to an image of ``hw`` = (H, W)."""
    p = np.asarray(points, dtype=np.float64).reshape(-1, 2).round()
    p[:, 0] = p[:, 0].clip(0, hw[1] - 1)
    p[:, 1] = p[:, 1].clip(0, hw[0] - 1)
    return p


class PairPredictor:
    """Target points of source keypoints for the pairs of one group.

    Args:
        matcher: a PairMatcher (DIFT features); ignored when ``attention`` is given.
        attention: an AttentionMatcher to use Hedlin et al.'s method instead.
        prompt: the text prompt of the DIFT features.
        group: the group's name; an image's noise index is ``image_index("<group>/<file name>")``.
    """

    def __init__(self, matcher: Any = None, *, attention: Any = None, prompt: str = "", group: str = "") -> None:
        if matcher is None and attention is None:
            raise ValueError("PairPredictor needs a matcher or an attention matcher")
        self.matcher, self.attention = matcher, attention
        self.prompt, self.group = prompt, group
        self.cache: dict[str, Any] = {}
        self.encoded = 0  # images encoded (DIFT)
        self.points = 0  # points matched

    @property
    def method(self) -> str:
        return "attention" if self.attention is not None else "dift"

    def _features(self, path: Path, image: np.ndarray) -> Any:
        from vidprop.tasks.match import image_index

        key = str(path)
        if key not in self.cache:
            self.cache[key] = self.matcher.features(image, index=image_index(f"{self.group}/{Path(path).name}"),
                                                    prompt=self.prompt)
            self.encoded += 1
        return self.cache[key]

    def __call__(self, src_path: Path, src: np.ndarray, trg_path: Path, trg: np.ndarray,
                 points: np.ndarray) -> np.ndarray:
        """(N, 2) source points (x, y, source pixels) -> (N, 2) matches (x, y, target pixels)."""
        pts = np.asarray(points, dtype=np.float64).reshape(-1, 2)
        if len(pts) == 0:
            return pts.copy()
        self.points += len(pts)
        if self.attention is not None:
            return np.asarray(self.attention.match(src, trg, pts).target_points, dtype=np.float64).reshape(-1, 2)
        from vidprop.tasks.match import semantic_argmax

        if getattr(self.matcher, "joint", False):
            fs, ft = self.matcher.pair_features(src, trg, prompt=self.prompt)
            self.encoded += 2
        else:
            fs, ft = self._features(src_path, src), self._features(trg_path, trg)
        pred, _, _ = semantic_argmax(fs, ft, src.shape[:2], trg.shape[:2], round_and_clip(pts, src.shape[:2]))
        return pred
