"""Plain dense implementations of protocols A and B, straight from the spec.

Deliberately simple: the full (context nodes) x (query nodes) affinity, a
dense neighbourhood mask built with loops, no chunking.  The fast code in
vidprop.propagation must agree with these.
"""

from __future__ import annotations

import functools
import math

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

from vidprop.propagation.labels import norm_mask


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


# ----------------------------------------------------------------------------- DINOv3's notebook
# A plain re-implementation of the loop of facebookresearch/dinov3
# notebooks/segmentation_tracking.ipynb (cells 17, 19, 25, 29, 31), written from
# reading it: dense (h*w) x (t*h*w) similarities, a dense (h, w, h, w)
# neighbourhood mask, no tiling.


@functools.lru_cache(maxsize=8)
def notebook_neighbourhood(h: int, w: int, size: float, shape: str) -> torch.Tensor:
    """(h, w, h, w) bool: key (ky, kx) allowed for query (qy, qx) when its L2 (circle) or
    L-inf (square) distance is <= size."""
    ys = torch.arange(h, dtype=torch.float64)
    xs = torch.arange(w, dtype=torch.float64)
    dy = ys[None, None, :, None] - ys[:, None, None, None]  # (qy, 1, ky, 1)
    dx = xs[None, None, None, :] - xs[None, :, None, None]  # (1, qx, 1, kx)
    if shape == "circle":
        d = torch.sqrt(dy * dy + dx * dx)
    else:
        d = torch.maximum(dy.abs(), dx.abs())
    return d <= size


def notebook_propagate(current, context_feats, context_probs, neighbourhood, *, topk, temperature):
    """current (h, w, D) and context (t, h, w, D) L2-normalised; probs (t, h, w, M) -> (h, w, M).

    Cosine to every context cell, -inf outside the neighbourhood, keep the
    entries >= the k-th largest (ties kept), softmax of sim / T over them,
    weighted sum of the context probabilities, renormalised to sum 1.
    """
    t, h, w, M = context_probs.shape
    sim = torch.einsum("ijd,tuvd->ijtuv", current, context_feats)  # (h, w, t, h, w)
    sim = sim.masked_fill(~neighbourhood[:, :, None], float("-inf")).reshape(h * w, t * h * w)
    kth = torch.topk(sim, topk, dim=1).values[:, -1:]
    sim = torch.where(sim >= kth, sim, torch.full_like(sim, float("-inf")))
    weights = torch.softmax(sim / temperature, dim=1)
    probs = weights @ context_probs.reshape(t * h * w, M)
    probs = probs / probs.sum(dim=1, keepdim=True)
    return probs.reshape(h, w, M)


def notebook_decode(probs, size, *, mode, minmax):
    """(h, w, M) -> ((M, H, W) scores, (H, W) argmax): straight to ``size`` = (H, W), then min-max."""
    p = torch.nn.functional.interpolate(probs.permute(2, 0, 1)[None], size=size, mode=mode,
                                        **({"align_corners": False} if mode == "bilinear" else {}))[0]
    if minmax:
        lo = p.flatten(1).min(dim=1).values[:, None, None]
        hi = p.flatten(1).max(dim=1).values[:, None, None]
        p = torch.nan_to_num((p - lo) / (hi - lo), nan=0.0)
    return p, p.argmax(0).to(torch.uint8)


def notebook_video(feats, first_mask, *, context, size, shape, topk, temperature, decode, minmax, queued=None):
    """feats: list of (h, w, D) L2-normalised features; first_mask (H, W) int ids 0..M-1.

    Returns (list of (h, w, M) soft probabilities of frames 1.., list of (H, W) uint8 masks of frames 1..).
    ``queued``: the (h, w, M) probabilities that enter the queue for frames 1.. instead of the loop's own
    (one step at a time against another implementation's context, without its round-off accumulating).
    """
    h, w = feats[0].shape[:2]
    H, W = first_mask.shape
    M = int(first_mask.max()) + 1
    small = torch.nn.functional.interpolate(torch.as_tensor(first_mask)[None, None].double(), (h, w),
                                            mode="nearest-exact")[0, 0].long()
    first_probs = torch.nn.functional.one_hot(small, M).to(feats[0].dtype)
    neighbourhood = notebook_neighbourhood(h, w, size, shape)
    queue_f, queue_p, probs_out, masks_out = [], [], [], []
    for t, cur in enumerate(feats[1:]):
        ctx_f = torch.stack([feats[0], *queue_f])
        ctx_p = torch.stack([first_probs, *queue_p])
        probs = notebook_propagate(cur, ctx_f, ctx_p, neighbourhood, topk=topk, temperature=temperature)
        queue_f.append(cur)
        queue_p.append(probs if queued is None else queued[t].to(probs.dtype))
        if len(queue_f) > context:
            queue_f.pop(0)
            queue_p.pop(0)
        probs_out.append(probs)
        masks_out.append(notebook_decode(probs, (H, W), mode=decode, minmax=minmax)[1])
    return probs_out, masks_out


def decode_dino(soft: torch.Tensor, stride: int, out_size: tuple[int, int], ids) -> np.ndarray:
    """Protocol A output: soft (K, h, w) -> index mask (H, W) uint8 at ``out_size`` = (W, H).

    Bilinear upsampling by the stride (align_corners=False), per-channel
    min-max normalisation, argmax, ids restored, NEAREST resize to the
    original frame size.
    """
    up = F.interpolate(soft[None].float(), scale_factor=stride, mode="bilinear", align_corners=False)[0]
    idx = torch.argmax(norm_mask(up), dim=0).to(torch.uint8).cpu().numpy()
    lab = np.asarray([0, *ids], dtype=np.uint8)[idx]
    if (lab.shape[1], lab.shape[0]) != tuple(out_size):
        lab = np.asarray(Image.fromarray(lab).resize(tuple(out_size), Image.NEAREST))
    return lab


def decode_crw(soft: torch.Tensor, out_size: tuple[int, int], ids) -> np.ndarray:
    """Protocol B output for masks: bilinear resize of soft (K, h, w) to ``out_size`` = (W, H), argmax."""
    w, h = out_size
    up = F.interpolate(soft[None].float(), size=(h, w), mode="bilinear", align_corners=False)[0]
    idx = torch.argmax(up, dim=0).to(torch.uint8).cpu().numpy()
    return np.asarray([0, *ids], dtype=np.uint8)[idx]
