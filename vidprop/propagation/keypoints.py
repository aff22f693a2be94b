"""Keypoints <-> per-joint heatmap labels, as the JHMDB protocol does it (docs/jhmdb.md).

Coordinates here are in GRID units (feature cells): x along the width, y
along the height, no half-cell offset.  Converting pixels to grid units is
the caller's job (x * grid_w / W, y * grid_h / H).

Drawing (CRW's ``draw_labelmap_np`` with sigma 0.5):

* joint j gets its own channel holding an unnormalised Gaussian, peak 1,
  sigma 0.5 cells, on a 4 x 4 patch whose upper-left corner is
  ``ul = (int(x - 1.5), int(y - 1.5))`` -- Python ``int()`` truncates toward
  zero, so x = -0.7 gives ul_x = -2 and x = 0.7 gives ul_x = 0;
* patch value at patch indices (i = row, j = column), 0..3:
  ``exp(-((i - 2)^2 + (j - 2)^2) / (2 * sigma^2))``;
* the patch is clipped to the grid and ASSIGNED (not max-ed) into the channel.

  ``rule="crw"`` (default, CRW's ``draw_labelmap_np``, which the published
  JHMDB numbers were produced with): the patch ends at
  ``br = (int(x + 2.5), int(y + 2.5))``, which is ``ul + 4`` except where
  truncation toward zero moved ``ul`` up (-2.5 < x < 1.5 with x - 1.5 not an
  integer): there the patch is narrower and shifted (x = 0.7 draws columns
  0..2 only, x = -2.0 draws nothing).  ``rule="ideal"``: the whole 4 x 4
  patch from ``ul`` (exclusive corner ``ul + 4``), clipped.  The two differ
  only for joints within 1.5 cells of the left or top border;
* a joint whose patch lies entirely outside the grid (or whose coordinates
  are not finite, the way to say "absent") keeps an all-zero channel;
* channel 0 is the background: 1 where every joint channel is 0, else 0.

Decoding: drop the background; per joint, the 3 cells of highest value,
weights = values / their sum, x = sum(w * column), y = sum(w * row) (grid
units, no +0.5); a joint whose whole map sums to 0 decodes to (-1, -1).
"""

from __future__ import annotations

import math

import numpy as np
import torch

__all__ = ["SIGMA", "TOPK", "RULES", "draw_gaussian", "keypoints_to_heatmaps", "heatmaps_to_keypoints"]

#: Gaussian sigma in grid cells (JHMDB protocol).
SIGMA = 0.5
#: Cells averaged when decoding a heatmap.
TOPK = 3
#: Heatmap drawing rules: CRW's reference code (default) and the ideal 4 x 4 patch.
RULES = ("crw", "ideal")


def draw_gaussian(channel: np.ndarray, x: float, y: float, sigma: float = SIGMA, rule: str = "crw") -> bool:
    """Assign a peak-1 Gaussian at grid point (x, y) into ``channel`` (gh, gw) in place.

    Returns whether anything was drawn.  See the module docstring for the
    exact patch placement and ``rule`` ("crw" or "ideal").
    """
    if rule not in RULES:
        raise ValueError(f"rule must be one of {', '.join(RULES)}, got {rule!r}")
    if not (math.isfinite(x) and math.isfinite(y)):
        return False
    gh, gw = channel.shape
    ul = (int(x - 3 * sigma), int(y - 3 * sigma))
    size_i = int(6 * sigma + 1)
    if rule == "crw":
        br = (int(x + 3 * sigma + 1), int(y + 3 * sigma + 1))
    else:
        br = (ul[0] + size_i, ul[1] + size_i)
    if ul[0] >= gw or ul[1] >= gh or br[0] < 0 or br[1] < 0:
        return False
    size = 6 * sigma + 1
    r = np.arange(0, size, 1, dtype=np.float64)
    c = size // 2
    g = np.exp(-((r[None, :] - c) ** 2 + (r[:, None] - c) ** 2) / (2 * sigma**2))
    x0, x1 = max(0, ul[0]), min(br[0], gw)
    y0, y1 = max(0, ul[1]), min(br[1], gh)
    if x0 >= x1 or y0 >= y1:
        return False
    channel[y0:y1, x0:x1] = g[y0 - ul[1] : y1 - ul[1], x0 - ul[0] : x1 - ul[0]]
    return True


def keypoints_to_heatmaps(
    points: np.ndarray, grid: tuple[int, int], sigma: float = SIGMA, rule: str = "crw"
) -> torch.Tensor:
    """(J, 2) grid-unit (x, y) points -> (1 + J, gh, gw) float32 labels, background first.

    Non-finite points (NaN) are absent joints: all-zero channels.  ``rule``:
    see :func:`draw_gaussian`.
    """
    pts = np.asarray(points, dtype=np.float64)
    if pts.ndim != 2 or pts.shape[1] != 2:
        raise ValueError(f"points must be (J, 2), got {pts.shape}")
    gh, gw = (int(v) for v in grid)
    maps = np.zeros((1 + len(pts), gh, gw), dtype=np.float64)
    for j, (x, y) in enumerate(pts):
        draw_gaussian(maps[1 + j], float(x), float(y), sigma, rule)
    maps[0] = (maps[1:].sum(axis=0) == 0) if len(pts) else 1.0
    return torch.from_numpy(maps.astype(np.float32))


def heatmaps_to_keypoints(soft: torch.Tensor, topk: int = TOPK) -> np.ndarray:
    """(1 + J, gh, gw) soft labels -> (J, 2) float64 grid-unit (x, y); (-1, -1) where a map sums to 0."""
    if soft.ndim != 3 or soft.shape[0] < 1:
        raise ValueError(f"soft labels must be (1 + J, h, w), got {tuple(soft.shape)}")
    J, gh, gw = soft.shape[0] - 1, soft.shape[1], soft.shape[2]
    flat = soft[1:].reshape(J, gh * gw).double()
    k = min(topk, gh * gw)
    vals, idx = torch.topk(flat, k, dim=1)  # (J, k)
    total = vals.sum(dim=1, keepdim=True)
    w = vals / torch.where(total == 0, torch.ones_like(total), total)
    xs = (idx % gw).double()
    ys = torch.div(idx, gw, rounding_mode="floor").double()
    out = torch.stack([(w * xs).sum(dim=1), (w * ys).sum(dim=1)], dim=1)
    out[flat.sum(dim=1) == 0] = -1.0
    return out.cpu().numpy()
