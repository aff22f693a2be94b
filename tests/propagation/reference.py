"""Plain dense implementations of protocols A and B, straight from the spec.

Deliberately simple: the full (context nodes) x (query nodes) affinity, a
dense neighbourhood mask built with loops, no chunking.  The fast code in
vidprop.propagation must agree with these.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F


def square_mask(h: int, w: int, r: float) -> torch.Tensor:
    """(h*w keys, h*w queries) 1 where |dy| <= r and |dx| <= r."""
    m = torch.zeros(h * w, h * w)
    for qy in range(h):
        for qx in range(w):
            for ky in range(h):
                for kx in range(w):
                    if abs(ky - qy) <= r and abs(kx - qx) <= r:
                        m[ky * w + kx, qy * w + qx] = 1
    return m


def disc_mask(h: int, w: int, r: float) -> torch.Tensor:
    """(h*w keys, h*w queries) 1 where Euclidean distance < r."""
    m = torch.zeros(h * w, h * w)
    for qy in range(h):
        for qx in range(w):
            for ky in range(h):
                for kx in range(w):
                    if math.sqrt((ky - qy) ** 2 + (kx - qx) ** 2) < r:
                        m[ky * w + kx, qy * w + qx] = 1
    return m


def dense_protocol_a(query, ctx_feats, ctx_labels, *, temperature, topk, radius):
    """query (C, h, w); ctx_feats list of (C, h, w); ctx_labels list of (K, h, w) -> (K, h, w).

    DINO's label_propagation: aff = exp(cos/T) * mask, top-k over all context
    keys jointly with ties kept, normalise, weighted sum of labels.
    """
    C, h, w = query.shape
    q = F.normalize(query.reshape(C, -1).double(), dim=0)  # (C, hw)
    mask = square_mask(h, w, radius).double()
    affs = []
    for f in ctx_feats:
        k = F.normalize(f.reshape(C, -1).double(), dim=0)
        affs.append(torch.exp(k.T @ q / temperature) * mask)  # (hw keys, hw queries)
    aff = torch.cat(affs, dim=0)  # (N*hw, hw)
    tk_val, _ = torch.topk(aff, dim=0, k=topk)
    tk_min = tk_val.min(dim=0).values
    aff[aff < tk_min] = 0
    aff = aff / aff.sum(dim=0, keepdim=True)
    segs = torch.cat([s.reshape(s.shape[0], -1).double() for s in ctx_labels], dim=1)  # (K, N*hw)
    return (segs @ aff).reshape(-1, h, w)


def dense_protocol_b(query, ctx_feats, ctx_labels, *, n_global, temperature, topk, radius):
    """CRW's affinity: logits cos/T, disc mask (-1e10) on the short-term frames only
    (the first ``n_global`` context frames are searched globally), exactly top-k, softmax."""
    C, h, w = query.shape
    q = F.normalize(query.reshape(C, -1).double(), dim=0)
    mask = disc_mask(h, w, radius).double()
    D = torch.where(mask == 1, torch.zeros_like(mask), torch.full_like(mask, -1e10))
    logits = []
    for i, f in enumerate(ctx_feats):
        k = F.normalize(f.reshape(C, -1).double(), dim=0)
        a = k.T @ q
        if i >= n_global:
            a = a + D
        logits.append(a)
    A = torch.cat(logits, dim=0) / temperature  # (N*hw, hw)
    weights, ids = torch.topk(A, topk, dim=0)
    weights = torch.softmax(weights, dim=0)  # (k, hw)
    segs = torch.cat([s.reshape(s.shape[0], -1).double() for s in ctx_labels], dim=1)  # (K, N*hw)
    pred = (segs[:, ids] * weights[None]).sum(1)  # (K, hw)
    return pred.reshape(-1, h, w)
