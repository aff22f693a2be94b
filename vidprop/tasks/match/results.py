"""What matching and edit propagation return: :class:`MatchResult`, :class:`EditResult` (``to_dict`` for JSON)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np


@dataclass
class MatchResult:
    """Matches from a source image to a target image.

    ``source_points``/``target_points`` are (N, 2) pixel coordinates (x, y);
    ``scores`` the cosine similarity (semantic, geometric) or the attention
    value (attention) of each match.  Geometric matching adds the homography
    (3x3, source -> target pixels), the inlier mask and the keypoint counts.
    ``heatmaps`` (when asked for) hold one (H_tgt, W_tgt) float32 map per query.
    """

    mode: str
    source_points: np.ndarray
    target_points: np.ndarray
    scores: np.ndarray
    heatmaps: list[np.ndarray] | None = None
    homography: np.ndarray | None = None
    inliers: np.ndarray | None = None
    num_source_keypoints: int | None = None
    num_target_keypoints: int | None = None
    info: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        d: dict[str, Any] = {"mode": self.mode, "matches": []}
        for i in range(len(self.source_points)):
            row = {
                "index": i + 1,
                "source": [float(v) for v in self.source_points[i]],
                "target": [float(v) for v in self.target_points[i]],
                "score": float(self.scores[i]),
            }
            if self.inliers is not None:
                row["inlier"] = bool(self.inliers[i])
            d["matches"].append(row)
        if self.homography is not None:
            d["homography"] = np.asarray(self.homography, dtype=float).tolist()
        if self.inliers is not None:
            d["num_inliers"] = int(np.count_nonzero(self.inliers))
        if self.num_source_keypoints is not None:
            d["num_source_keypoints"] = int(self.num_source_keypoints)
            d["num_target_keypoints"] = int(self.num_target_keypoints or 0)
        d.update(self.info)
        return d


@dataclass
class EditResult:
    """The edited target and how it was obtained (matches inside the edited region, RANSAC fit)."""

    image: np.ndarray
    homography: np.ndarray
    source_points: np.ndarray
    target_points: np.ndarray
    inliers: np.ndarray

    def to_dict(self) -> dict[str, Any]:
        return {
            "homography": self.homography.tolist(),
            "num_matches": int(len(self.source_points)),
            "num_inliers": int(np.count_nonzero(self.inliers)),
            "matches": [
                {"source": [float(v) for v in s], "target": [float(v) for v in t], "inlier": bool(k)}
                for s, t, k in zip(self.source_points, self.target_points, self.inliers)
            ],
        }
