"""Semantic matching maths: a point's best match in the other image over full-resolution bilinear features.

Computes exactly the spec's quantity -- features upsampled bilinearly
(align_corners=False) to the full image size, the source feature taken at the
integer point, cosine with every target pixel, argmax -- without
materialising the full-resolution target features: the target is upsampled a
band of rows at a time (separable bilinear weights, the same formula as
``F.interpolate``), normalised per pixel and scored against all queries at
once, keeping a running maximum.
"""

from __future__ import annotations

import math
from typing import Sequence

import numpy as np
import torch
import torch.nn.functional as F

#: Bytes of full-resolution target features materialised at once by semantic_argmax.
DEFAULT_CHUNK_BYTES = 64 << 20


def bilinear_weights(n_in: int, n_out: int, device: torch.device | str = "cpu", *,
                     align_corners: bool = False) -> tuple[torch.Tensor, ...]:
    """Index and weight vectors of bilinear resizing ``n_in -> n_out``.

    Output position ``o`` is ``w0[o] * in[i0[o]] + w1[o] * in[i1[o]]``: the
    formula of ``F.interpolate(mode="bilinear")``; source coordinate
    ``(o + 0.5) * n_in / n_out - 0.5`` clamped at 0, or with
    ``align_corners=True`` ``o * (n_in - 1) / (n_out - 1)``.
    """
    o = torch.arange(n_out, dtype=torch.float32, device=device)
    if align_corners:
        src = o * ((n_in - 1) / (n_out - 1)) if n_out > 1 else torch.zeros_like(o)
    else:
        src = ((o + 0.5) * (n_in / n_out) - 0.5).clamp(min=0)
    i0 = src.floor().long().clamp(max=n_in - 1)
    i1 = (i0 + 1).clamp(max=n_in - 1)
    w1 = src - i0.to(src.dtype)
    return i0, i1, 1.0 - w1, w1


def upsample_rows(feat: torch.Tensor, size: tuple[int, int], rows: torch.Tensor | slice, *,
                  align_corners: bool = False) -> torch.Tensor:
    """Rows ``rows`` of ``feat`` (C, h, w) bilinearly upsampled to ``size`` = (H, W): (C, len(rows), W).

    Equal to ``F.interpolate(feat[None], size, mode="bilinear",
    align_corners=align_corners)[0][:, rows]`` (float32) without computing the
    other rows.
    """
    H, W = size
    C, h, w = feat.shape
    dev = feat.device
    ix0, ix1, wx0, wx1 = bilinear_weights(w, W, dev, align_corners=align_corners)
    iy0, iy1, wy0, wy1 = bilinear_weights(h, H, dev, align_corners=align_corners)
    if isinstance(rows, slice):
        rows = torch.arange(H, device=dev)[rows]
    rows = torch.as_tensor(rows, device=dev).long()
    y0, y1 = iy0[rows], iy1[rows]
    lo, hi = int(y0.min()), int(y1.max()) + 1  # the low-resolution rows these output rows need
    band = feat[:, lo:hi].float()
    bx = band[:, :, ix0] * wx0 + band[:, :, ix1] * wx1  # (C, hi-lo, W): width first, as PyTorch does
    return bx[:, y0 - lo] * wy0[rows, None] + bx[:, y1 - lo] * wy1[rows, None]


def sample_upsampled(feat: torch.Tensor, size: tuple[int, int], points: np.ndarray | torch.Tensor) -> torch.Tensor:
    """Feature of the (C, h, w) map upsampled to ``size`` = (H, W) at integer pixels ``points`` (N, 2) (x, y): (N, C)."""
    pts = torch.as_tensor(np.asarray(points), device=feat.device).round().long().reshape(-1, 2)
    out = []
    for x, y in pts.tolist():
        out.append(upsample_rows(feat, size, torch.tensor([y], device=feat.device))[:, 0, x])
    if not out:
        return torch.zeros((0, feat.shape[0]), device=feat.device)
    return torch.stack(out)


def semantic_argmax(
    src_feat: torch.Tensor,
    tgt_feat: torch.Tensor,
    src_size: tuple[int, int],
    tgt_size: tuple[int, int],
    points: np.ndarray | Sequence[Sequence[float]],
    *,
    return_maps: bool = False,
    chunk_bytes: int = DEFAULT_CHUNK_BYTES,
    query_chunk: int = 256,
) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
    """Cosine argmax over every target pixel, at full image resolution.

    Args:
        src_feat, tgt_feat: (C, h, w) feature maps of the source and target.
        src_size, tgt_size: ORIGINAL image sizes (H, W) the maps are upsampled to.
        points: (N, 2) source pixels (x, y); rounded to integers.
        return_maps: also return the (N, H_t, W_t) cosine maps.

    Returns ``(target_points (N, 2) int64 (x, y), scores (N,), maps or None)``.
    Identical to upsampling both maps with ``F.interpolate(bilinear)``,
    normalising every pixel's feature and taking the argmax of the dot
    products (first maximum in row-major order), with at most
    ``chunk_bytes`` of upsampled target features in memory at once.
    """
    pts = np.asarray(points, dtype=np.float64).reshape(-1, 2)
    N = len(pts)
    Ht, Wt = tgt_size
    C = tgt_feat.shape[0]
    q = F.normalize(sample_upsampled(src_feat, src_size, pts), dim=1)  # (N, C) float32
    tgt = tgt_feat.to(q.device)
    rows_per_chunk = max(1, min(Ht, int(chunk_bytes // max(1, 4 * C * Wt))))
    best = torch.full((N,), -math.inf, device=q.device)
    arg = torch.zeros((N,), dtype=torch.long, device=q.device)
    maps = np.empty((N, Ht, Wt), np.float32) if return_maps else None
    for r0 in range(0, Ht, rows_per_chunk):
        r1 = min(Ht, r0 + rows_per_chunk)
        band = upsample_rows(tgt, (Ht, Wt), slice(r0, r1))  # (C, r, W)
        band = F.normalize(band.reshape(C, -1), dim=0)  # (C, r*W)
        for a in range(0, N, query_chunk):
            b = min(N, a + query_chunk)
            sim = q[a:b] @ band  # (n, r*W)
            val, idx = sim.max(dim=1)  # first maximum within the band
            better = val > best[a:b]  # strictly: an earlier band keeps ties
            best[a:b] = torch.where(better, val, best[a:b])
            arg[a:b] = torch.where(better, idx + r0 * Wt, arg[a:b])
            if maps is not None:
                maps[a:b, r0:r1] = sim.reshape(b - a, r1 - r0, Wt).cpu().numpy()
    arg_np = arg.cpu().numpy()
    tgt_pts = np.stack([arg_np % Wt, arg_np // Wt], axis=1).astype(np.int64)
    return tgt_pts, best.cpu().numpy().astype(np.float64), maps
