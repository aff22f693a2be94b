"""Windowed top-k feature affinity and label transfer, tile by tile.

One query frame against a set of context frames (the protocols are
described in :mod:`vidprop.propagation.protocol` and docs/propagation.md):

* ``windowed`` context frames: a key is allowed only inside the query's
  neighbourhood (``window="square"``: |dy|, |dx| <= radius, protocol A;
  ``window="disc"``: dy^2 + dx^2 < radius^2, protocol B;
  ``window="circle"``: dy^2 + dx^2 <= radius^2, DINOv3's notebook);
* ``global`` context frames: every key allowed (protocol B's frame 0);
* top-k jointly over all allowed keys of all frames; ``keep_ties=True``
  keeps every key >= the k-th value (protocol A), else exactly k (B);
* weights = softmax of cos / T over the kept keys; label = weighted sum.

Affinities are computed in float32 (float64 stays float64) whatever dtype the
features arrive in: half-precision features give the soft labels of the
float32 computation on the same values.

Queries are processed in ``tile x tile`` blocks against only the key region
their windows can reach, so no (N*hw) x hw affinity is ever built: the
working memory is about N * (tile + 2r)^2 * C values, whatever the frame size.
"""

from __future__ import annotations

import math
from typing import Literal, Sequence

import torch

__all__ = ["window_reach", "propagate_tiled", "propagate_context"]

Window = Literal["square", "disc", "circle"]


def window_reach(radius: float, window: Window) -> int:
    """Largest integer offset |d| a window of ``radius`` allows along one axis."""
    if window in ("square", "circle"):  # d <= radius
        return int(math.floor(radius))
    if window == "disc":
        return int(math.ceil(radius)) - 1  # d < radius
    raise ValueError(f"window must be 'square', 'disc' or 'circle', got {window!r}")


def _allowed(dy: torch.Tensor, dx: torch.Tensor, radius: float, window: Window) -> torch.Tensor:
    if window == "square":
        return (dy.abs() <= radius) & (dx.abs() <= radius)
    dist = (dy * dy + dx * dx).to(torch.float64).sqrt()
    return dist <= radius if window == "circle" else dist < radius


def compute_dtype(dtype: torch.dtype) -> torch.dtype:
    """The dtype affinities are computed in: float32, or float64 for float64 inputs."""
    return torch.promote_types(dtype, torch.float32)


def propagate_tiled(
    query: torch.Tensor,
    keys: torch.Tensor,
    labels: torch.Tensor,
    *,
    n_frames: int | None = None,
    global_keys: torch.Tensor | None = None,
    global_labels: torch.Tensor | None = None,
    temperature: float,
    topk: int,
    radius: float,
    window: Window,
    keep_ties: bool,
    tile: int = 8,
) -> torch.Tensor:
    """Soft labels of one query frame from its context.

    Args:
        query: (h, w, C) L2-normalised query features (channels last).
        keys: (S, h, w, C) L2-normalised windowed context features; only the
            first ``n_frames`` slots are used (a ring buffer may hold more).
        labels: (S, h, w, K) labels of the windowed context frames.
        global_keys: optional (G, h*w, C) frames searched without a window.
        global_labels: (G, h*w, K) their labels.
    Returns:
        (K, h, w) float32 soft labels.
    """
    if query.ndim != 3:
        raise ValueError(f"query must be (h, w, C), got {tuple(query.shape)}")
    h, w, C = query.shape
    if keys.ndim != 4 or keys.shape[1:] != (h, w, C):
        raise ValueError(f"keys must be (S, {h}, {w}, {C}), got {tuple(keys.shape)}")
    n = keys.shape[0] if n_frames is None else int(n_frames)
    if labels.ndim != 4 or labels.shape[:3] != (keys.shape[0], h, w):
        raise ValueError(f"labels must be (S, {h}, {w}, K), got {tuple(labels.shape)}")
    return propagate_context(
        query, [(keys[:n], labels[:n])], (global_keys, global_labels) if global_keys is not None else None,
        temperature=temperature, topk=topk, radius=radius, window=window, keep_ties=keep_ties, tile=tile,
    )


def propagate_context(
    query: torch.Tensor,
    windowed: Sequence[tuple[torch.Tensor, torch.Tensor]],
    global_: tuple[torch.Tensor, torch.Tensor] | None = None,
    *,
    temperature: float,
    topk: int,
    radius: float,
    window: Window,
    keep_ties: bool,
    tile: int = 8,
) -> torch.Tensor:
    """Soft labels of one query frame from windowed context groups and global frames.

    Args:
        query: (h, w, C) L2-normalised query features (channels last).
        windowed: groups of windowed context frames, in context order:
            (keys (S_i, h, w, C) L2-normalised, labels (S_i, h, w, K)).
        global_: optional (keys (G, h*w, C), labels (G, h*w, K)) of frames
            searched without a window; they come after the windowed frames.
    Returns:
        (K, h, w) float32 soft labels.
    """
    if query.ndim != 3:
        raise ValueError(f"query must be (h, w, C), got {tuple(query.shape)}")
    h, w, C = query.shape
    groups = [(k, lab) for k, lab in windowed if k.shape[0] > 0]
    K = None
    for k, lab in groups:
        if k.ndim != 4 or k.shape[1:] != (h, w, C):
            raise ValueError(f"keys must be (S, {h}, {w}, {C}), got {tuple(k.shape)}")
        if lab.ndim != 4 or lab.shape[:3] != k.shape[:3] or (K is not None and lab.shape[-1] != K):
            raise ValueError(f"labels must be (S, {h}, {w}, K) like their keys, got {tuple(lab.shape)}")
        K = lab.shape[-1]
    n = sum(k.shape[0] for k, _ in groups)
    has_global = global_ is not None and global_[0] is not None and global_[0].shape[0] > 0
    cdtype = compute_dtype(query.dtype)
    if has_global:
        global_keys, global_labels = global_  # type: ignore[misc]
        if global_labels is None or global_keys.shape[1:] != (h * w, C) or global_labels.shape[:2] != global_keys.shape[:2]:
            raise ValueError("global_keys must be (G, h*w, C) with global_labels (G, h*w, K)")
        if K is not None and global_labels.shape[-1] != K:
            raise ValueError(f"global labels have {global_labels.shape[-1]} channels, the windowed ones {K}")
        K = global_labels.shape[-1]
        g_keys = global_keys.reshape(-1, C).to(cdtype)  # (G*hw, C)
        g_labels = global_labels.reshape(-1, K).float()  # (G*hw, K)
    if n == 0 and not has_global:
        raise ValueError("no context frames")
    assert K is not None
    p = window_reach(radius, window)
    device = query.device
    query = query.to(cdtype)
    out = torch.empty(h, w, K, dtype=torch.float32, device=device)
    inv_t = 1.0 / float(temperature)

    def gather(tensors: list[torch.Tensor], ky0: int, ky1: int, kx0: int, kx1: int, last: int) -> torch.Tensor:
        parts = [t[:, ky0:ky1, kx0:kx1] for t in tensors]
        block = parts[0] if len(parts) == 1 else torch.cat(parts, dim=0)  # (n, ry, rx, last), one copy
        return block.reshape(-1, last)

    for y0 in range(0, h, tile):
        y1 = min(y0 + tile, h)
        ky0, ky1 = max(0, y0 - p), min(h, y1 + p)
        for x0 in range(0, w, tile):
            x1 = min(x0 + tile, w)
            kx0, kx1 = max(0, x0 - p), min(w, x1 + p)
            ty, tx, ry, rx = y1 - y0, x1 - x0, ky1 - ky0, kx1 - kx0
            q = query[y0:y1, x0:x1].reshape(ty * tx, C)  # (Q, C)
            parts = []
            if n > 0:
                region = gather([k for k, _ in groups], ky0, ky1, kx0, kx1, C).to(cdtype)  # (n*R, C)
                lw = (q @ region.T).float().view(ty * tx, n, ry * rx)  # (Q, n, R)
                qy = torch.arange(y0, y1, device=device).repeat_interleave(tx)
                qx = torch.arange(x0, x1, device=device).repeat(ty)
                ky = torch.arange(ky0, ky1, device=device).repeat_interleave(rx)
                kx = torch.arange(kx0, kx1, device=device).repeat(ry)
                allowed = _allowed(ky[None] - qy[:, None], kx[None] - qx[:, None], radius, window)  # (Q, R)
                lw = lw.masked_fill(~allowed[:, None, :], float("-inf"))
                parts.append(lw.reshape(ty * tx, n * ry * rx))
            if has_global:
                parts.append((q @ g_keys.T).float())  # (Q, G*hw)
            logits = (parts[0] if len(parts) == 1 else torch.cat(parts, dim=1)) * inv_t  # (Q, M)
            k = min(topk, logits.shape[1])
            vals, idx = torch.topk(logits, k, dim=1)  # (Q, k)
            lab_parts = []
            if n > 0:
                lab_parts.append(gather([lab for _, lab in groups], ky0, ky1, kx0, kx1, K).float())
            if has_global:
                lab_parts.append(g_labels)
            ctx_labels = lab_parts[0] if len(lab_parts) == 1 else torch.cat(lab_parts, dim=0)  # (M, K)
            if keep_ties:
                kth = vals[:, -1:]
                kept = logits >= kth
                n_kept = kept.sum(dim=1)
                if bool((n_kept == k).all()):
                    wts = torch.softmax(vals, dim=1)  # no ties: the k kept keys are exactly idx
                    res = (wts[:, :, None] * ctx_labels[idx]).sum(dim=1)
                else:
                    wts = torch.where(kept, (logits - vals[:, :1]).exp(), torch.zeros((), device=device))
                    wts = wts / wts.sum(dim=1, keepdim=True)
                    res = wts @ ctx_labels
            else:
                wts = torch.softmax(vals, dim=1)  # (Q, k)
                res = (wts[:, :, None] * ctx_labels[idx]).sum(dim=1)  # (Q, K)
            out[y0:y1, x0:x1] = res.view(ty, tx, K)
    return out.permute(2, 0, 1).contiguous()
