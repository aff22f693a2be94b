"""Edit propagation maths (DIFT's edit-propagation notebook): a sticker layer carried onto another image."""

from __future__ import annotations

import logging
import math

import numpy as np
import torch
import torch.nn.functional as F

from vidprop.errors import ConfigError, InputError
from vidprop.tasks.match.geometric import fit_homography
from vidprop.tasks.match.results import EditResult
from vidprop.tasks.match.semantic import DEFAULT_CHUNK_BYTES, upsample_rows

log = logging.getLogger(__name__)


def sticker_layer(sticker: np.ndarray, source_size: tuple[int, int], at: tuple[float, float] | None = None,
                  *, name: str = "the sticker") -> np.ndarray:
    """The (H, W, 4) RGBA edit layer over the source: ``sticker`` itself, or placed with its top-left at ``at``."""
    H, W = source_size
    if sticker.ndim != 3 or sticker.shape[2] != 4:
        raise InputError(f"{name}: an RGBA sticker (H, W, 4) is needed, got shape {sticker.shape}")
    if at is None:
        if sticker.shape[:2] != (H, W):
            raise InputError(
                f"{name} is {sticker.shape[1]}x{sticker.shape[0]} but the source is {W}x{H}; give a layer the "
                "size of the source, or place a smaller sticker with --at X,Y (its top-left corner)"
            )
        layer = sticker
    else:
        x, y = int(round(at[0])), int(round(at[1]))
        layer = np.zeros((H, W, 4), np.uint8)
        sh, sw = sticker.shape[:2]
        x0, y0, x1, y1 = max(x, 0), max(y, 0), min(x + sw, W), min(y + sh, H)
        if x1 <= x0 or y1 <= y0:
            raise InputError(f"{name} placed at {x},{y} ({sw}x{sh}) lies outside the source ({W}x{H})")
        layer[y0:y1, x0:x1] = sticker[y0 - y : y1 - y, x0 - x : x1 - x]
    if not np.any(layer[..., 3] > 0):
        raise InputError(f"{name} is fully transparent over the source: there is nothing to propagate")
    return layer


def region_points(alpha: np.ndarray, max_points: int = 1000, seed: int = 0) -> np.ndarray:
    """Up to ``max_points`` random pixels (x, y) of the region ``alpha > 0`` (int64, (N, 2)).

    As DIFT's edit-propagation notebook: the region's pixels in row-major
    order, a random permutation (``torch.randperm``, here from a generator
    seeded with ``seed``), the first ``max_points``.
    """
    ys, xs = np.nonzero(np.asarray(alpha) > 0)
    if len(xs) == 0:
        return np.zeros((0, 2), np.int64)
    g = torch.Generator().manual_seed(int(seed))
    keep = torch.randperm(len(xs), generator=g)[: int(max_points)].numpy()
    return np.stack([xs[keep], ys[keep]], axis=1).astype(np.int64)


def edit_matches(
    src_feat: torch.Tensor,
    tgt_feat: torch.Tensor,
    src_size: tuple[int, int],
    tgt_size: tuple[int, int],
    points: np.ndarray,
    *,
    chunk_bytes: int = DEFAULT_CHUNK_BYTES,
) -> np.ndarray:
    """Each source pixel's nearest target pixel, as DIFT's edit-propagation notebook finds it.

    Both (C, h, w) maps are L2-normalised per position at their own
    resolution, then read bilinearly with ``align_corners=True`` (a pixel x of a
    W-wide image at map column ``x * (w - 1) / (W - 1)``): the source at
    ``points`` (N, 2) (x, y), the target at every pixel; the match is the target
    pixel at the smallest Euclidean distance (the notebook's ``cdist`` + ``min``;
    the sampled vectors are not renormalised, so this is not the cosine argmax).
    The target is upsampled a band of rows at a time (at most ``chunk_bytes``).
    Returns (N, 2) int64 target pixels (x, y).
    """
    pts = np.asarray(points, dtype=np.float64).reshape(-1, 2)
    N = len(pts)
    if N == 0:
        return np.zeros((0, 2), np.int64)
    Hs, Ws = src_size
    Ht, Wt = tgt_size
    src = F.normalize(src_feat.float(), dim=0)
    tgt = F.normalize(tgt_feat.float(), dim=0).to(src.device)
    C = src.shape[0]
    grid = torch.as_tensor(pts, dtype=torch.float32, device=src.device)
    grid = grid / torch.tensor([Ws - 1.0, Hs - 1.0], device=src.device) * 2 - 1
    q = F.grid_sample(src[None], grid[None, None], mode="bilinear", align_corners=True)[0, :, 0].T  # (N, C)
    rows_per_chunk = max(1, min(Ht, int(chunk_bytes // max(1, 4 * C * Wt))))
    best = torch.full((N,), math.inf, device=q.device)
    arg = torch.zeros((N,), dtype=torch.long, device=q.device)
    for r0 in range(0, Ht, rows_per_chunk):
        r1 = min(Ht, r0 + rows_per_chunk)
        band = upsample_rows(tgt, (Ht, Wt), slice(r0, r1), align_corners=True).reshape(C, -1)  # (C, r*W)
        d2 = (band * band).sum(0)[None] - 2 * (q @ band)  # squared distance minus |q|^2 (constant per query)
        val, idx = d2.min(dim=1)  # first minimum within the band
        better = val < best
        best = torch.where(better, val, best)
        arg = torch.where(better, idx + r0 * Wt, arg)
    a = arg.cpu().numpy()
    return np.stack([a % Wt, a // Wt], axis=1).astype(np.int64)


def composite_warped(target: np.ndarray, layer: np.ndarray, H: np.ndarray, *, mode: str = "straight") -> np.ndarray:
    """Warp the RGBA ``layer`` (source pixels) by ``H`` into the target and alpha-composite it.

    ``mode="straight"`` (default) as DIFT's notebook: the uint8 RGBA layer is
    warped as it is (bilinear, transparent outside), then
    ``a * rgb + (1 - a) * target`` with ``a = alpha / 255``, truncated to uint8.
    ``mode="premultiplied"``: colours are multiplied by alpha before warping and
    the result rounded -- no dark or coloured fringe where the warp blends
    opaque pixels with transparent ones whose hidden colour differs.
    """
    import cv2

    h, w = target.shape[:2]
    if mode == "straight":
        warped = cv2.warpPerspective(np.ascontiguousarray(layer), H.astype(np.float64), (w, h))
        a = warped[..., 3:] / 255
        out = a * warped[..., :3] + (1 - a) * target[..., :3]
        return out.astype(np.uint8)
    if mode != "premultiplied":
        raise ConfigError(f"compositing mode must be straight or premultiplied, got {mode!r}")
    a = layer[..., 3:4].astype(np.float32) / 255.0
    premult = np.concatenate([layer[..., :3].astype(np.float32) * a, a * 255.0], axis=2)
    warped = cv2.warpPerspective(premult, H.astype(np.float64), (w, h), flags=cv2.INTER_LINEAR,
                                 borderMode=cv2.BORDER_CONSTANT, borderValue=0)
    wa = np.clip(warped[..., 3:4] / 255.0, 0.0, 1.0)
    out = warped[..., :3] + target[..., :3].astype(np.float32) * (1.0 - wa)
    return np.clip(out + 0.5, 0, 255).astype(np.uint8)


def _warn_if_implausible(H: np.ndarray, pts: np.ndarray, inliers: np.ndarray) -> None:
    """Log a warning when the fitted homography flips or hugely rescales the edited region."""
    c = np.append(pts.mean(axis=0), 1.0)
    w = H @ c
    # Jacobian of the projective map at the region's centre
    J = (H[:2, :2] * w[2] - np.outer(w[:2], H[2, :2])) / w[2] ** 2
    det = float(np.linalg.det(J))
    if w[2] <= 0 or det <= 0 or not 1 / 25 <= det <= 25 or inliers.mean() < 0.2:
        log.warning("the homography for the edit looks implausible (local area scale %.3g, %d of %d matches "
                    "inliers); the sticker may be misplaced", det, int(inliers.sum()), len(inliers))


def propagate_edit_features(
    src_feat: torch.Tensor,
    tgt_feat: torch.Tensor,
    layer: np.ndarray,
    target: np.ndarray,
    *,
    max_points: int = 1000,
    threshold: float = 5.0,
    seed: int = 0,
    composite: str = "straight",
    what: str = "",
) -> EditResult:
    """Edit propagation on given features, as DIFT's notebook: ``max_points`` random pixels of the edited
    region (seeded), their nearest target pixels (:func:`edit_matches`), a RANSAC homography
    (``threshold`` px), the layer warped and composited (:func:`composite_warped`)."""
    src_size = layer.shape[:2]
    tgt_size = target.shape[:2]
    pts = region_points(layer[..., 3], max_points, seed)
    tgt_pts = edit_matches(src_feat, tgt_feat, src_size, tgt_size, pts)
    H, inliers = fit_homography(pts, tgt_pts, method="ransac", threshold=threshold,
                                what=what or "for the edited region")
    _warn_if_implausible(H, pts, inliers)
    return EditResult(composite_warped(target, layer, H, mode=composite), H, pts.astype(np.float64),
                      tgt_pts.astype(np.float64), inliers)
