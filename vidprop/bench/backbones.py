"""The backbones at their real architectures with random weights, for ``vidprop bench extract --backbone``.

Each entry builds the extractor the way its preset runs it (the published
settings: timestep, read-out block, ensemble), without any download: the
weights are random (speed and memory do not depend on their values) and
text prompts are zero embeddings.  ``device="meta"`` builds the same
thing without memory, to count FLOPs at any size instantly.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any

import torch

from vidprop.config import ExtractorConfig, load_preset

__all__ = ["BenchBackbone", "BENCH_BACKBONES", "nearest_size", "build_bench_extractor", "count_flops"]


@dataclass(frozen=True)
class BenchBackbone:
    name: str
    preset: str
    #: What is built, for the printed table.
    label: str
    #: Images per extract() call (a pair for sd+dinov2: its features are computed per pair).
    per_call: int = 1


BENCH_BACKBONES: dict[str, BenchBackbone] = {b.name: b for b in (
    BenchBackbone("sd", "davis", "SD 2.1 U-Net + VAE"),
    BenchBackbone("adm", "davis-adm", "ADM 256x256 uncond"),
    BenchBackbone("dino", "davis-dino", "DINO ViT-B/8"),
    BenchBackbone("clip", "davis-clip", "OpenCLIP ViT-H/14"),
    BenchBackbone("dinov2", "davis-dinov2", "DINOv2 ViT-B/14"),
    BenchBackbone("sd+dinov2", "spair-sd-dinov2", "SD 1.5 + DINOv2 B/14", per_call=2),
    BenchBackbone("cleandift", "davis-cleandift", "SD 2.1 U-Net + VAE"),
    BenchBackbone("dinov3", "davis-dinov3", "DINOv3 ViT-L/16"),
)}


def nearest_size(height: int, width: int, multiple: int) -> tuple[int, int]:
    """The multiple of ``multiple`` nearest to each side (ties go down), at least one multiple."""
    def near(v: int) -> int:
        lo = v // multiple * multiple
        hi = lo + multiple
        return max(multiple, lo if v - lo <= hi - v else hi)

    return near(height), near(width)


def _settings(name: str, device: str, dtype: str) -> ExtractorConfig:
    cfg = load_preset(BENCH_BACKBONES[name].preset).extractor
    return replace(cfg, device=device, dtype=dtype)


def _sd_parts(architecture: str, device: str) -> dict[str, Any]:
    from vidprop.features.tiny import build_random_sd

    with torch.device(device if device == "meta" else "cpu"):
        parts = build_random_sd(architecture, with_text_encoder=False)
    parts["scheduler"] = type(parts["scheduler"]).from_config(parts["scheduler"].config)  # its tables on the CPU
    parts["vae"].decoder = None  # only the encoder is used
    return parts


def _vit_model(kind: str, device: str) -> Any:
    from transformers import CLIPVisionConfig, CLIPVisionModel, Dinov2Config, Dinov2Model, ViTConfig, ViTModel

    with torch.device(device if device == "meta" else "cpu"):
        if kind == "dino":  # ViT-B/8
            return ViTModel(ViTConfig(patch_size=8, image_size=224, layer_norm_eps=1e-6), add_pooling_layer=False)
        if kind == "clip":  # ViT-H/14 vision tower
            return CLIPVisionModel(CLIPVisionConfig(hidden_size=1280, intermediate_size=5120, num_hidden_layers=32,
                                                    num_attention_heads=16, patch_size=14, image_size=224,
                                                    hidden_act="gelu", layer_norm_eps=1e-5))
        return Dinov2Model(Dinov2Config(patch_size=14, image_size=518))  # ViT-B/14


def build_bench_extractor(name: str, *, device: str = "cpu", dtype: str = "float32") -> Any:
    """The extractor of backbone ``name`` at its real architecture, random weights, its preset's settings."""
    from vidprop.features.adm import ADM_256_UNCOND, AdmExtractor, AdmUNet
    from vidprop.features.dift import DiftExtractor
    from vidprop.features.fusion import SdDinoExtractor
    from vidprop.features.vit import VitExtractor

    cfg = _settings(name, device, dtype)
    if name == "dinov3":
        from transformers import DINOv3ViTModel

        from vidprop.features.dinov3 import Dinov3Extractor, vitl16_config

        with torch.device(device if device == "meta" else "cpu"):
            return Dinov3Extractor(DINOv3ViTModel(vitl16_config()), config=cfg)
    if name in ("sd", "cleandift"):
        parts = _sd_parts("sd21", device)
        return DiftExtractor(parts["unet"], parts["vae"], parts["scheduler"], config=cfg, prompt_embeds=torch.zeros(1, 77, 1024))
    if name == "adm":
        with torch.device(device if device == "meta" else "cpu"):
            unet = AdmUNet(ADM_256_UNCOND)
        return AdmExtractor(unet, config=cfg)
    if name in ("dino", "clip", "dinov2"):
        return VitExtractor(_vit_model(name, device), name, config=cfg)
    if name == "sd+dinov2":
        parts = _sd_parts("sd15", device)
        sd = DiftExtractor(parts["unet"], parts["vae"], parts["scheduler"], config=replace(cfg, ensemble=1),
                           prompt_embeds=torch.zeros(1, 77, 768))
        dino = VitExtractor(_vit_model("dinov2", device), "dinov2", config=replace(cfg, backbone="dinov2", model=cfg.dino_model))
        return SdDinoExtractor(sd, dino, config=cfg)
    raise KeyError(name)


def count_flops(name: str, size: tuple[int, int]) -> tuple[float, list[int]]:
    """FLOPs per image of one extraction at ``size`` (H, W), and the feature shape (C, h, w) there;
    counted on the meta device (nothing is computed)."""
    from torch.utils.flop_counter import FlopCounterMode

    ext = build_bench_extractor(name, device="meta")
    n = BENCH_BACKBONES[name].per_call
    images = torch.zeros(n, 3, *size, dtype=torch.uint8, device="meta")
    counter = FlopCounterMode(display=False)
    with counter:
        out = ext.extract(images, indices=list(range(n)), prompt="")
    return counter.get_total_flops() / n, list(out.shape[1:])
