"""Position-embedding tables at other input sizes, resized as each ViT's authors did.

A ViT's table holds one class position and an ``M x M`` grid of patch
positions (the training size).  At another input size the grid is resized
bicubically to ``(H / patch) x (W / patch)``.  The published code of each
backbone does this by a *scale factor* ``(grid + 0.1) / M`` (a "small number
to avoid floating point error", DINO issue #8), where transformers'
``interpolate_pos_encoding`` asks for the exact output *size*; PyTorch maps
the coordinates differently in the two cases, so the features differ
(by up to 1.5e-1 for DINO ViT-B/8 at 480x832).

=========  =========================================================  =======================  ==========
backbone   reference                                                   resize                   precision
=========  =========================================================  =======================  ==========
dino       facebookresearch/dino ``vision_transformer.py`` L174-194     scale (g + 0.1) / M      the table's
clip       Tsingularity/dift ``src/models/clip.py`` L19-52              scale (g + 0.1) / M      the table's
dinov2     facebookresearch/dinov2 ``models/vision_transformer.py``     scale (g + 0.1) / M,     float32
           L180-212 (``interpolate_offset`` 0.1, no antialias)
dinov2 +   the same file, the ``*_reg`` hub models (offset 0,           size (g), antialias      float32
registers  antialias on: ``hub/backbones.py`` L107-108)
=========  =========================================================  =======================  ==========

All three return the table unchanged when the number of patches equals the
table's and the input is square.  :func:`use_published_pos_embedding`
replaces the ``interpolate_pos_encoding`` method of one loaded model's
embedding module (that one method, on that instance), so transformers'
forward runs with the published table.
"""

from __future__ import annotations

import math
import types
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

__all__ = ["PosRule", "POS_RULES", "resize_pos_table", "use_published_pos_embedding", "pos_rule_for"]


@dataclass(frozen=True)
class PosRule:
    """How a table is resized: ``offset`` > 0 -> scale factor (grid + offset) / M, else the exact size."""

    offset: float = 0.1
    antialias: bool = False
    #: Interpolate in float32 whatever the table's dtype (DINOv2), else in the table's dtype.
    float32: bool = False


POS_RULES: dict[str, PosRule] = {
    "dino": PosRule(0.1, False, False),
    "clip": PosRule(0.1, False, False),
    "dinov2": PosRule(0.1, False, True),
    "dinov2-registers": PosRule(0.0, True, True),
}


def resize_pos_table(table: torch.Tensor, grid: tuple[int, int], rule: PosRule) -> torch.Tensor:
    """(1, 1 + M*M, C) table (class position first) -> (1, 1 + gh*gw, C) for a ``grid`` = (gh, gw) input.

    Returned unchanged when gh * gw == M * M and gh == gw (as the references do).
    """
    if table.dim() != 3 or table.shape[0] != 1:
        raise ValueError(f"expected a (1, 1 + N, C) position table, got {tuple(table.shape)}")
    gh, gw = int(grid[0]), int(grid[1])
    n = table.shape[1] - 1
    m = int(math.isqrt(n))
    if m * m != n:
        raise ValueError(f"the position table's {n} patch positions are not a square grid")
    if gh * gw == n and gh == gw:
        return table
    dtype = table.dtype
    work = table.float() if rule.float32 else table
    cls_pos, patch_pos = work[:, :1], work[:, 1:]
    dim = table.shape[-1]
    patch_pos = patch_pos.reshape(1, m, m, dim).permute(0, 3, 1, 2)
    if rule.offset:
        kwargs: dict[str, Any] = {"scale_factor": ((gh + rule.offset) / m, (gw + rule.offset) / m)}
    else:
        kwargs = {"size": (gh, gw)}
    patch_pos = F.interpolate(patch_pos, mode="bicubic", align_corners=False, antialias=rule.antialias, **kwargs)
    if tuple(patch_pos.shape[-2:]) != (gh, gw):  # pragma: no cover - the offset keeps the floor exact
        raise RuntimeError(f"resized position grid is {tuple(patch_pos.shape[-2:])}, expected {(gh, gw)}")
    patch_pos = patch_pos.permute(0, 2, 3, 1).reshape(1, gh * gw, dim)
    return torch.cat([cls_pos, patch_pos], dim=1).to(dtype)


def pos_rule_for(kind: str, model: nn.Module) -> PosRule:
    """The published rule of backbone ``kind`` (DINOv2 models with register tokens use the ``_reg`` rule)."""
    if kind == "dinov2" and int(getattr(model.config, "num_register_tokens", 0) or 0) > 0:
        return POS_RULES["dinov2-registers"]
    return POS_RULES[kind]


def _embedding_module(model: nn.Module) -> nn.Module:
    for _name, module in model.named_modules():
        if callable(getattr(module, "interpolate_pos_encoding", None)) and (
            hasattr(module, "position_embeddings") or hasattr(module, "position_embedding")
        ):
            return module
    raise ValueError(f"{type(model).__name__} has no position-embedding module with interpolate_pos_encoding")


def _table(module: nn.Module) -> torch.Tensor:
    table = getattr(module, "position_embeddings", None)
    if isinstance(table, torch.Tensor):  # ViT, DINOv2: a (1, 1 + N, C) parameter
        return table
    return module.position_embedding.weight.unsqueeze(0)  # CLIP: an nn.Embedding of (1 + N, C)


def use_published_pos_embedding(model: nn.Module, kind: str, patch: int) -> PosRule:
    """Make ``model`` (a transformers ViT / CLIP vision / DINOv2 model) resize its table by ``kind``'s rule.

    Returns the rule used.  Only this instance changes.
    """
    rule = pos_rule_for(kind, model)
    module = _embedding_module(model)

    def interpolate_pos_encoding(self: nn.Module, embeddings: torch.Tensor, height: int, width: int) -> torch.Tensor:
        return resize_pos_table(_table(self), (height // patch, width // patch), rule)

    module.interpolate_pos_encoding = types.MethodType(interpolate_pos_encoding, module)
    return rule
