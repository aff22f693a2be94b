"""Windowed top-k feature affinity and label transfer: a banded GEMM kernel.

One query frame against a set of context frames (the protocols are
described in :mod:`vidprop.propagation.protocol` and docs/propagation.md):

* ``windowed`` context frames: a key is allowed only inside the query's
  neighbourhood, given by one offset predicate (:func:`window_allows`:
  ``window="square"``: |dy|, |dx| <= radius, protocol A; ``window="disc"``:
  dy^2 + dx^2 < radius^2, protocol B; ``window="circle"``: dy^2 + dx^2 <=
  radius^2, DINOv3's notebook);
* ``global`` context frames: every key allowed (protocol B's frame 0);
* top-k jointly over all allowed keys of all frames; ``keep_ties=True``
  keeps every key >= the k-th value (protocol A), else exactly k (B);
* weights = softmax of cos / T over the kept keys; label = weighted sum.

Affinities are computed in float32 (float64 stays float64) whatever dtype the
features arrive in.

How it is computed (``tile`` = s):

* Windowed keys are stored in *strip layout* (:func:`to_strips`): the frame's
  columns cut into strips of s columns, each strip's rows contiguous, i.e.
  (frames, strips, h, s, C).  A query tile (s rows x one strip) reaches key
  rows [y0 - p, y1 + p) of a few neighbouring strips; each such strip band is
  one contiguous (rows * s, C) matrix per frame, so the tile's cosines are a
  handful of batched GEMMs (one per reached strip, all context frames in the
  batch), with no copy of key regions.
* Masking and top-k without touching the full band twice: the window mask is
  the same for every frame, so the per-position maximum over frames is taken
  first (one pass), masked, and the top (k+1) positions found there; the
  exact top (k+1) keys are among the frames of those positions (a key outside
  them has k+1 distinct larger-or-equal keys elsewhere).  Only those
  (k+1) x frames candidates are gathered and ranked.
* Ties at the k-th value (protocol A) are detected from the (k+1)-th value;
  the rare rows with a tie are recomputed exactly on the masked band.

Working memory is about frames * s^2 * (s + 2p) * (2p + 2s) values per tile
(plus the global frames' logits), never an (N*hw) x hw affinity.
"""

from __future__ import annotations

import math
from concurrent.futures import ThreadPoolExecutor
from typing import Callable, Literal, Sequence

import torch

__all__ = ["window_reach", "window_allows", "window_size", "compute_dtype", "to_strips", "propagate_context", "for_each_tile"]

Window = Literal["square", "disc", "circle"]


def window_reach(radius: float, window: Window) -> int:
    """Largest integer offset |d| a window of ``radius`` allows along one axis."""
    if window in ("square", "circle"):  # d <= radius
        return int(math.floor(radius))
    if window == "disc":
        return int(math.ceil(radius)) - 1  # d < radius
    raise ValueError(f"window must be 'square', 'disc' or 'circle', got {window!r}")


def window_allows(dy: torch.Tensor, dx: torch.Tensor, radius: float, window: Window) -> torch.Tensor:
    """Whether a key at offset (dy, dx) from the query is inside the window (the one window predicate)."""
    if window == "square":
        return (dy.abs() <= radius) & (dx.abs() <= radius)
    if window in ("disc", "circle"):
        dist = (dy * dy + dx * dx).to(torch.float64).sqrt()
        return dist <= radius if window == "circle" else dist < radius
    raise ValueError(f"window must be 'square', 'disc' or 'circle', got {window!r}")


def _offset_table(radius: float, window: Window, device: torch.device | str = "cpu") -> torch.Tensor:
    """(2p+1, 2p+1) bool: entry [dy + p, dx + p] says whether offset (dy, dx) is allowed."""
    p = window_reach(radius, window)
    d = torch.arange(-p, p + 1, device=device)
    return window_allows(d[:, None], d[None, :], radius, window)


def window_size(radius: float, window: Window) -> int:
    """Number of offsets the window allows (961 for a square of radius 15)."""
    return int(_offset_table(radius, window).sum())


def compute_dtype(dtype: torch.dtype) -> torch.dtype:
    """The dtype affinities are computed in: float32, or float64 for float64 inputs."""
    return torch.promote_types(dtype, torch.float32)


def to_strips(x: torch.Tensor, tile: int) -> torch.Tensor:
    """(..., h, w, D) channels last -> (..., ceil(w / tile), h, tile, D) strip layout, zero-padded on the right."""
    *lead, h, w, D = x.shape
    ns = -(-w // tile)
    if ns * tile != w:
        pad = x.new_zeros((*lead, h, ns * tile - w, D))
        x = torch.cat([x, pad], dim=-2)
    return x.reshape(*lead, h, ns, tile, D).transpose(-4, -3).contiguous()


class _Geometry:
    """Per-tile window masks and label indices, cached by the tile's relative geometry."""

    def __init__(self, h: int, w: int, tile: int, radius: float, window: Window, dtype: torch.dtype,
                 device: torch.device) -> None:
        self.h, self.w, self.s = h, w, tile
        self.p = window_reach(radius, window)
        self.table = _offset_table(radius, window, device)
        self.dtype, self.device = dtype, device
        self._bias: dict[tuple[int, ...], torch.Tensor] = {}

    def bias(self, y0: int, y1: int, ky0: int, ky1: int, j: int, jl: int, jr: int) -> torch.Tensor:
        """(Q, R) 0 where allowed, -inf elsewhere; Q = (y1-y0)*s queries, R = (jr-jl+1)*(ky1-ky0)*s keys."""
        s, p = self.s, self.p
        key = (y1 - y0, y0 - ky0, ky1 - ky0, j - jl, jr - jl, min(self.w - jl * s, (jr - jl + 1) * s))
        hit = self._bias.get(key)
        if hit is not None:
            return hit
        dev = self.device
        ty, ry, nsu = y1 - y0, ky1 - ky0, jr - jl + 1
        qy = torch.arange(ty, device=dev).repeat_interleave(s) + (y0 - ky0)  # query rows, band-relative
        qx = torch.arange(s, device=dev).repeat(ty) + (j - jl) * s  # query columns, relative to strip jl
        kx = (torch.arange(nsu, device=dev)[:, None, None] * s + torch.arange(s, device=dev)[None, None, :]) \
            .expand(nsu, ry, s).reshape(-1)
        ky = torch.arange(ry, device=dev)[None, :, None].expand(nsu, ry, s).reshape(-1)
        dy = ky[None, :] - qy[:, None]
        dx = kx[None, :] - qx[:, None]
        inside = (dy.abs() <= p) & (dx.abs() <= p) & (kx[None, :] < self.w - jl * s)
        ok = inside & self.table[(dy + p).clamp(0, 2 * p), (dx + p).clamp(0, 2 * p)]
        out = torch.zeros(ok.shape, dtype=self.dtype, device=dev).masked_fill_(~ok, float("-inf"))
        self._bias[key] = out
        return out

    def positions(self, ky0: int, ky1: int, jl: int, jr: int) -> torch.Tensor:
        """(R,) flat frame positions ky * w + kx of the band's keys (padding columns clamped to w - 1)."""
        s, dev = self.s, self.device
        nsu, ry = jr - jl + 1, ky1 - ky0
        kx = ((torch.arange(nsu, device=dev)[:, None, None] + jl) * s + torch.arange(s, device=dev)[None, None, :])
        ky = torch.arange(ky0, ky1, device=dev)[None, :, None]
        return (ky * self.w + kx.clamp(max=self.w - 1)).expand(nsu, ry, s).reshape(-1)


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
    threads: int | None = None,
) -> torch.Tensor:
    """Soft labels of one query frame from windowed context groups and global frames.

    Args:
        query: (h, w, C) L2-normalised query features (channels last).
        windowed: groups of windowed context frames, in context order:
            (keys (S_i, ceil(w/tile), h, tile, C) L2-normalised in strip
            layout (:func:`to_strips`), labels (S_i, h, w, K)).
        global_: optional (keys (G, h*w, C), labels (G, h*w, K)) of frames
            searched without a window; they come after the windowed frames.
        tile: query tile side and strip width; must match the keys' layout.
        threads: CPU threads the tiles are spread over (None: ``torch.get_num_threads()`` on a CPU, one
            stream of tiles on a GPU); the soft labels do not depend on it beyond float rounding.
    Returns:
        (K, h, w) float32 soft labels.
    """
    if query.ndim != 3:
        raise ValueError(f"query must be (h, w, C), got {tuple(query.shape)}")
    h, w, C = query.shape
    s = int(tile)
    ns = -(-w // s)
    groups = [(k, lab) for k, lab in windowed if k.shape[0] > 0]
    K = None
    for k, lab in groups:
        if k.ndim != 5 or k.shape[1:] != (ns, h, s, C):
            raise ValueError(f"keys must be (S, {ns}, {h}, {s}, C={C}) in strip layout, got {tuple(k.shape)}")
        if lab.ndim != 4 or lab.shape[:3] != (k.shape[0], h, w) or (K is not None and lab.shape[-1] != K):
            raise ValueError(f"labels must be (S, {h}, {w}, K) like their keys, got {tuple(lab.shape)}")
        K = lab.shape[-1]
    n = sum(k.shape[0] for k, _ in groups)
    has_global = global_ is not None and global_[0] is not None and global_[0].shape[0] > 0
    cdtype = compute_dtype(query.dtype)
    device = query.device
    lab_parts = [lab.reshape(-1, lab.shape[-1]).float() for _, lab in groups]
    g_keys = None
    if has_global:
        global_keys, global_labels = global_  # type: ignore[misc]
        if global_labels is None or global_keys.shape[1:] != (h * w, C) or global_labels.shape[:2] != global_keys.shape[:2]:
            raise ValueError("global_keys must be (G, h*w, C) with global_labels (G, h*w, K)")
        if K is not None and global_labels.shape[-1] != K:
            raise ValueError(f"global labels have {global_labels.shape[-1]} channels, the windowed ones {K}")
        K = global_labels.shape[-1]
        g_keys = global_keys.reshape(-1, C).to(cdtype)  # (G*hw, C)
        lab_parts.append(global_labels.reshape(-1, K).float())
    if n == 0 and not has_global:
        raise ValueError("no context frames")
    assert K is not None
    # every context label, windowed frames first: row f * hw + position (windowed), n * hw + g (global)
    all_labels = lab_parts[0] if len(lab_parts) == 1 else torch.cat(lab_parts, dim=0)
    geo = _Geometry(h, w, s, radius, window, cdtype, device)
    p = geo.p
    qs = to_strips(query.to(cdtype), s)  # (ns, h, s, C)
    keys = [k if k.dtype == cdtype else k.to(cdtype) for k, _ in groups]
    out = torch.empty(ns, h, s, K, dtype=torch.float32, device=device)
    inv_t = 1.0 / float(temperature)
    hw = h * w

    def run(y0: int, j: int) -> None:
        y1 = min(y0 + s, h)
        ky0, ky1 = max(0, y0 - p), min(h, y1 + p)
        jl, jr = max(0, (j * s - p) // s), min(ns - 1, (j * s + s - 1 + p) // s)
        q = qs[j, y0:y1].reshape(-1, C)  # (Q, C), contiguous
        res = _tile(q, keys, n, g_keys, all_labels, geo, y0, y1, ky0, ky1, ky1 - ky0, j, jl, jr,
                    topk=topk, keep_ties=keep_ties, inv_t=inv_t, hw=hw, valid_cols=min(s, w - j * s))
        out[j, y0:y1] = res.view(y1 - y0, s, K)

    tiles = [(y0, j) for y0 in range(0, h, s) for j in range(ns)]
    for_each_tile(run, tiles, threads if threads is not None else
                  (torch.get_num_threads() if device.type == "cpu" else 1))
    return out.transpose(0, 1).reshape(h, ns * s, K)[:, :w].permute(2, 0, 1).contiguous()


def for_each_tile(run: Callable[[int, int], None], tiles: Sequence[tuple[int, int]], threads: int) -> None:
    """``run(y0, j)`` for every tile; with ``threads`` > 1, tiles spread over that many threads.

    A tile's small GEMMs, top-k and gathers parallelise poorly inside one op; on a CPU, tiles side by side
    (each op on one intra-op thread, the GIL released inside torch) keep every core busy.  Each tile writes
    its own rows of the output and computes the same values whichever thread runs it (ops on one thread).
    """
    if threads <= 1 or len(tiles) <= 1:
        for y0, j in tiles:
            run(y0, j)
        return
    saved = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        with ThreadPoolExecutor(max_workers=threads, thread_name_prefix="vidprop-tiles") as pool:
            for fut in [pool.submit(run, y0, j) for y0, j in tiles]:
                fut.result()
    finally:
        torch.set_num_threads(saved)


def _tile(q, keys, n, g_keys, all_labels, geo: _Geometry, y0, y1, ky0, ky1, ry, j, jl, jr, *, topk, keep_ties,
          inv_t, hw, valid_cols):
    """Soft labels (Q, K) of one query tile (see the module docstring)."""
    s = geo.s
    Q = q.shape[0]
    cand_v, cand_i = [], []  # candidate cosines and their label rows
    L = bias = pos = None
    if n > 0:
        nsu, R1 = jr - jl + 1, ry * s
        # cosines, unmasked: one contiguous (frames, Q, R1) block per reached strip
        L = torch.empty(nsu, n, Q, R1, dtype=q.dtype, device=q.device)
        f0 = 0
        for k in keys:
            qe = q.expand(k.shape[0], Q, q.shape[1])
            for i, jj in enumerate(range(jl, jr + 1)):
                band = k[:, jj, ky0:ky1].reshape(k.shape[0], R1, -1)  # a view: rows of one strip are contiguous
                torch.bmm(qe, band.mT, out=L[i, f0:f0 + k.shape[0]])
            f0 += k.shape[0]
        bias = geo.bias(y0, y1, ky0, ky1, j, jl, jr)  # (Q, R), R = nsu * R1 ordered (strip, row, column)
        pos = geo.positions(ky0, ky1, jl, jr)  # (R,)
        M = L.amax(dim=1).transpose(0, 1).reshape(Q, nsu * R1) + bias  # best frame per position, masked
        kp = min(topk + 1, M.shape[1])
        top_pos = torch.topk(M, kp, dim=1).indices  # (Q, kp)
        rows = torch.arange(Q, device=q.device)[:, None]
        # flat offsets into L of every frame at the chosen positions: (Q, n, kp)
        at = (top_pos // R1) * (n * Q * R1) + rows * R1 + top_pos % R1
        at = at[:, None, :] + torch.arange(n, device=q.device)[None, :, None] * (Q * R1)
        v = L.view(-1)[at] + bias.gather(1, top_pos)[:, None, :]  # (Q, n, kp)
        cand_v.append(v.reshape(Q, n * kp))
        frames = torch.arange(n, device=q.device)[None, :, None] * hw
        cand_i.append((frames + pos[top_pos][:, None, :]).reshape(Q, n * kp))
    Lg = None
    if g_keys is not None:
        Lg = q @ g_keys.T  # (Q, G*hw)
        kg = min(topk + 1, Lg.shape[1])
        gv, gi = torch.topk(Lg, kg, dim=1)
        cand_v.append(gv)
        cand_i.append(gi + n * hw)
    cv = cand_v[0] if len(cand_v) == 1 else torch.cat(cand_v, dim=1)
    ci = cand_i[0] if len(cand_i) == 1 else torch.cat(cand_i, dim=1)
    kk = min(topk + 1, cv.shape[1])
    vals, sel = torch.topk(cv, kk, dim=1)  # the exact top (k+1) cosines, descending
    idx = ci.gather(1, sel)
    k = min(topk, kk)
    wts = torch.softmax(vals[:, :k] * inv_t, dim=1)  # (Q, k)
    res = (wts[:, :, None] * all_labels[idx[:, :k]]).sum(dim=1)  # (Q, K)
    if keep_ties and kk > k:
        tie = (vals[:, k] == vals[:, k - 1]) & torch.isfinite(vals[:, k - 1])
        tie = tie.view(-1, s)[:, :valid_cols]  # padding queries do not count
        if bool(tie.any()):
            rows = torch.nonzero(tie)
            rows = rows[:, 0] * s + rows[:, 1]
            res[rows] = _ties(rows, vals, k, L, bias, pos, Lg, all_labels, n, hw, inv_t).to(res.dtype)
    return res


def _ties(rows, vals, k, L, bias, pos, Lg, all_labels, n, hw, inv_t):
    """Exact keep-ties labels of the query rows ``rows``: every key >= the k-th value, softmax weights."""
    kth = vals[rows, k - 1]
    top = vals[rows, :1] * inv_t
    num = torch.zeros(rows.shape[0], all_labels.shape[1], dtype=vals.dtype, device=vals.device)
    den = torch.zeros(rows.shape[0], 1, dtype=vals.dtype, device=vals.device)
    if L is not None:
        nsu, _, _, R1 = L.shape
        lw = L[:, :, rows].permute(1, 2, 0, 3).reshape(n, rows.shape[0], nsu * R1) + bias[rows]  # (n, r, R)
        e = torch.where(lw >= kth[None, :, None], (lw * inv_t - top[None]).exp(), torch.zeros((), device=lw.device))
        lab = all_labels[torch.arange(n, device=L.device)[:, None] * hw + pos[None]].to(e.dtype)  # (n, R, K)
        num += torch.einsum("frp,fpk->rk", e, lab)
        den += e.sum(dim=(0, 2))[:, None]
    if Lg is not None:
        lg = Lg[rows]
        e = torch.where(lg >= kth[:, None], (lg * inv_t - top).exp(), torch.zeros((), device=lg.device))
        num += e @ all_labels[n * hw:].to(e.dtype)
        den += e.sum(dim=1, keepdim=True)
    return num / den
