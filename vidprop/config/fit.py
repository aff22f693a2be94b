"""Frame sizes fitted to a backbone's input multiple before its model loads."""

from __future__ import annotations

import logging
from dataclasses import replace

from vidprop.config.sections import FrameConfig
from vidprop.config.task import TaskConfig
from vidprop.errors import ConfigError

log = logging.getLogger(__name__)

__all__ = ["BACKBONE_MULTIPLES", "fit_frames", "fit_backbone_frames"]


#: The input multiple of each backbone's published architecture (image sides must be multiples of it):
#: SD's U-Net needs /32 of the image (its coarsest up-block), ADM /32, the ViTs their patch, SD + DINOv2 /64.
#: Used to fit frame sizes before a model loads; the loaded extractor's own ``multiple`` is checked again.
BACKBONE_MULTIPLES = {"sd": 32, "adm": 32, "dino": 8, "clip": 14, "dinov2": 14, "sd+dinov2": 64, "cleandift": 32}

_SIZE_FIELDS = {"short_side": ("short_side",), "square": ("size",), "fixed": ("width", "height"), "original": ()}


def fit_frames(frames: FrameConfig, multiple: int, *, backbone: str = "") -> FrameConfig:
    """``frames`` with sides that are multiples of ``multiple`` (an extractor's input multiple).

    The sides the config gives (``short_side``, ``size``, ``width``,
    ``height``) are floored to ``multiple`` when they are not multiples of it
    (short side 480 for a patch-14 ViT becomes 476; 250 for SD becomes 224),
    and ``frames.multiple`` (the computed sides' multiple) is replaced by
    ``multiple`` unless it already is a multiple of it (DINO's 64 for a
    patch-8 model stays).  The change is logged (once per call that makes
    it).  A side used by the mode that is smaller than ``multiple`` cannot be
    made valid: :class:`~vidprop.errors.ConfigError`.
    """
    if multiple <= 1:
        return frames
    used = _SIZE_FIELDS[frames.mode]
    for name in used:
        value = getattr(frames, name)
        if value < multiple:
            flag = {"short_side": "--short-side", "size": "--size/--crop"}.get(name, f"frames.{name}")
            raise ConfigError(f"{flag} {value} is smaller than {multiple}, the smallest frame side the "
                              f"{backbone or 'chosen'} backbone accepts (sides must be multiples of {multiple})")

    def fit(v: int) -> int:  # by the frames' own rounding rule (floor unless a preset says otherwise)
        return max(multiple, replace(frames, multiple=multiple).round_side(v))

    changes = {k: fit(getattr(frames, k)) for k in ("short_side", "size", "width", "height")
               if getattr(frames, k) % multiple}
    if frames.multiple % multiple:
        changes["multiple"] = multiple
    if not changes:
        return frames
    fitted = replace(frames, **changes)
    shown = [f"{k} {getattr(frames, k)} -> {v}" for k, v in changes.items() if k in used]
    if shown:
        log.info("frame sizes must be multiples of %d for the %s backbone: %s (%s)", multiple,
                 backbone or "chosen", ", ".join(shown), "floored" if frames.rounding == "floor" else f"rounded: {frames.rounding}")
    return fitted


def fit_backbone_frames(cfg: "TaskConfig") -> "TaskConfig":
    """``cfg`` with frame sizes fitted to its backbone's published input multiple, before any model loads.

    Raises :class:`~vidprop.errors.ConfigError` for a size that cannot be made valid.
    """
    backbone = cfg.extractor.backbone
    frames = fit_frames(cfg.frames, BACKBONE_MULTIPLES.get(backbone, 1), backbone=backbone)
    return cfg if frames == cfg.frames else replace(cfg, frames=frames)
