"""One switch for every feature backbone: ``ExtractorConfig.backbone`` -> an extractor.

    >>> from dataclasses import replace
    >>> from vidprop.features.registry import build_extractor
    >>> cfg = replace(load_preset("davis-adm").extractor, weights="256x256_diffusion_uncond.pt")
    >>> ext = build_extractor(cfg, device="cuda")
    >>> ext.stride, ext.channels                  # (8, 512)

Every extractor offers ``extract(images (B, 3, H, W) uint8, indices=, prompt=)
-> (B, C, H / stride, W / stride)``, ``stride``, ``channels``, ``multiple``
(image sides must be multiples of it), ``device``, ``dtype`` and ``config``;
the propagator and the matchers see nothing else.  An extractor with
``joint = True`` (sd+dinov2) computes the features of the images of one
call together (a pair).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, replace
from typing import Any, Callable

import torch

from vidprop.config import BACKBONES, ExtractorConfig
from vidprop.features.base import FeatureExtractor

__all__ = ["Backbone", "REGISTRY", "build_extractor", "backbone_help", "input_multiple"]

log = logging.getLogger(__name__)

Builder = Callable[[ExtractorConfig, Any, Any, bool], FeatureExtractor]


@dataclass(frozen=True)
class Backbone:
    name: str
    #: One line for --help.
    summary: str
    build: Builder


def _sd(cfg: ExtractorConfig, device: Any, dtype: Any, keep_text_encoder: bool) -> FeatureExtractor:
    from vidprop.features.dift import DiftExtractor

    return DiftExtractor.from_pretrained(config=cfg, device=device, dtype=dtype, keep_text_encoder=keep_text_encoder)


def _cleandift(cfg: ExtractorConfig, device: Any, dtype: Any, keep_text_encoder: bool) -> FeatureExtractor:
    from vidprop.features.cleandift import DEFAULT_CLEANDIFT_WEIGHTS, load_cleandift_unet
    from vidprop.features.dift import DiftExtractor

    cfg = replace(cfg, clean=True, weights=cfg.weights or DEFAULT_CLEANDIFT_WEIGHTS)
    ext = DiftExtractor.from_pretrained(config=cfg, device=device, dtype=dtype, keep_text_encoder=keep_text_encoder)
    learned = load_cleandift_unet(ext.unet, cfg.weights)
    if learned is not None and round(learned) != cfg.t:
        log.info("CleanDIFT: using the checkpoint's learned timestep %.2f (rounded to %d) instead of t=%d",
                 learned, round(learned), cfg.t)
        ext.config = replace(ext.config, t=int(round(learned)))
    return ext


def _adm(cfg: ExtractorConfig, device: Any, dtype: Any, keep_text_encoder: bool) -> FeatureExtractor:
    from vidprop.features.adm import AdmExtractor

    return AdmExtractor.from_pretrained(config=cfg, device=device, dtype=dtype)


def _vit(cfg: ExtractorConfig, device: Any, dtype: Any, keep_text_encoder: bool) -> FeatureExtractor:
    from vidprop.features.vit import VitExtractor

    return VitExtractor.from_pretrained(config=cfg, kind=cfg.backbone, device=device, dtype=dtype)


def _dinov3(cfg: ExtractorConfig, device: Any, dtype: Any, keep_text_encoder: bool) -> FeatureExtractor:
    from vidprop.features.dinov3 import Dinov3Extractor

    return Dinov3Extractor.from_pretrained(config=cfg, device=device, dtype=dtype)


def _fusion(cfg: ExtractorConfig, device: Any, dtype: Any, keep_text_encoder: bool) -> FeatureExtractor:
    from vidprop.features.fusion import SdDinoExtractor

    return SdDinoExtractor.from_pretrained(config=cfg, device=device, dtype=dtype)


REGISTRY: dict[str, Backbone] = {
    b.name: b
    for b in (
        Backbone("sd", "Stable Diffusion U-Net up-block features (DIFT_sd; --model: a diffusers SD folder or Hub id)", _sd),
        Backbone("adm", "guided-diffusion ADM 256x256 unconditional, pixel space (DIFT_adm; --weights 256x256_diffusion_uncond.pt)", _adm),
        Backbone("dino", "DINO ViT-B/8 patch tokens (facebook/dino-vitb8)", _vit),
        Backbone("clip", "OpenCLIP ViT-H/14 patch tokens of one block (laion/CLIP-ViT-H-14-laion2B-s32B-b79K)", _vit),
        Backbone("dinov2", "DINOv2 ViT-B/14 patch tokens (facebook/dinov2-base)", _vit),
        Backbone("sd+dinov2", "SD 1.5 + DINOv2 fused features for image pairs (Zhang et al. 2023)", _fusion),
        Backbone("cleandift", "CleanDIFT U-Net weights on SD 2.1, one clean pass (--weights: the U-Net .safetensors)", _cleandift),
        Backbone("dinov3", "DINOv3 ViT/16 patch tokens, L2-normalised (facebook/dinov3-vitl16-pretrain-lvd1689m; gated: "
                           "accept the licence and log in, or --model a local folder)", _dinov3),
    )
}
assert tuple(REGISTRY) == BACKBONES


def build_extractor(config: ExtractorConfig, *, device: str | torch.device | None = None,
                    dtype: str | torch.dtype | None = None, keep_text_encoder: bool = False) -> FeatureExtractor:
    """The extractor of ``config.backbone``, loaded from ``config.model`` / ``config.weights``.

    ``keep_text_encoder``: diffusion backbones keep their text encoder to
    embed several prompts (pair matching with a category prompt).
    """
    return REGISTRY[config.backbone].build(config, device, dtype, keep_text_encoder)


def input_multiple(extractor: Any) -> int:
    """The multiple that image sides must be for ``extractor`` (32 when it does not say)."""
    return int(getattr(extractor, "multiple", 32))


def backbone_help() -> str:
    """Lines for --help: each backbone and what it is."""
    return "\n".join(f"  {b.name:<11} {b.summary}" for b in REGISTRY.values())
