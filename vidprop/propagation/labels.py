"""Index masks <-> per-object label maps, as the two protocols do it.

Object ids are kept as given (they need not be consecutive): channel 0 is
the background, channel i the i-th id of ``ids`` (sorted).  Packing the ids
into consecutive channels changes no result: an id that is absent would be an
all-zero channel that can never win the argmax over channel 0.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

__all__ = [
    "object_ids",
    "one_hot",
    "labels_nearest",
    "labels_nearest_exact",
    "labels_bilinear",
    "norm_mask",
]


def object_ids(mask: np.ndarray) -> list[int]:
    """Sorted non-zero ids present in an index mask."""
    return [int(v) for v in np.unique(mask) if v != 0]


def one_hot(mask: np.ndarray, ids: Sequence[int]) -> torch.Tensor:
    """(H, W) index mask -> (1 + len(ids), H, W) float32 one-hot (channel 0 = background)."""
    if mask.ndim != 2:
        raise ValueError(f"mask must be (H, W), got {mask.shape}")
    out = np.zeros((1 + len(ids), *mask.shape), dtype=np.float32)
    out[0] = ~np.isin(mask, list(ids))
    for c, i in enumerate(ids, start=1):
        out[c] = mask == i
    return torch.from_numpy(out)


def labels_nearest(mask: np.ndarray, grid: tuple[int, int], ids: Sequence[int]) -> torch.Tensor:
    """Protocol A: NEAREST resize of the index mask to ``grid`` = (gh, gw), then one-hot. -> (K, gh, gw)."""
    gh, gw = grid
    small = np.asarray(Image.fromarray(mask.astype(np.uint8)).resize((gw, gh), Image.NEAREST))
    return one_hot(small, ids)


def labels_nearest_exact(mask: np.ndarray, grid: tuple[int, int], ids: Sequence[int]) -> torch.Tensor:
    """DINOv3's notebook: torch ``nearest-exact`` resize of the index mask to ``grid`` = (gh, gw), then one-hot."""
    gh, gw = grid
    m = torch.from_numpy(np.ascontiguousarray(mask).astype(np.float32))[None, None]
    small = F.interpolate(m, size=(gh, gw), mode="nearest-exact")[0, 0].to(torch.uint8).numpy()
    return one_hot(small, ids)


def labels_bilinear(mask: np.ndarray, grid: tuple[int, int], ids: Sequence[int]) -> torch.Tensor:
    """Protocol B: one-hot at full resolution, then BILINEAR downsampling to ``grid``. -> (K, gh, gw)."""
    full = one_hot(mask, ids)[None]  # (1, K, H, W)
    return F.interpolate(full, size=grid, mode="bilinear", align_corners=False)[0]


def norm_mask(soft: torch.Tensor) -> torch.Tensor:
    """Per channel: if its max > 0, min-max normalise to [0, 1] (DINO's norm_mask). (K, H, W) -> (K, H, W)."""
    mx = soft.amax(dim=(1, 2), keepdim=True)
    mn = soft.amin(dim=(1, 2), keepdim=True)
    rng = mx - mn
    scaled = torch.where(rng > 0, (soft - mn) / torch.where(rng > 0, rng, torch.ones_like(rng)), torch.zeros_like(soft))
    return torch.where(mx > 0, scaled, soft)
