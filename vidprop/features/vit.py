"""Vision-transformer backbones through ``transformers``: DINO, OpenCLIP, DINOv2 (DINOv3: :mod:`.dinov3`).

Each takes frames of any size whose sides are multiples of the patch size
(the position table is resized to the frame's grid by the backbone's own
published rule, :mod:`vidprop.features.posembed`, not transformers'), normalises
them as the backbone's published evaluation did, and returns the patch
tokens of one transformer block (the class token, and any register tokens,
dropped) as a (C, H / patch, W / patch) map:

=======  ======================================  ==============================  =====================
kind     model (transformers class)               input normalisation             tokens
=======  ======================================  ==============================  =====================
dino     facebook/dino-vitb8 (ViTModel)           mean (.485, .456, .406),        last block, after the
                                                  std (.228, .224, .225)          final layer norm
clip     laion/CLIP-ViT-H-14-laion2B-s32B-b79K    CLIP's mean and std             a chosen block, no
         (CLIPVisionModel)                                                        final layer norm
dinov2   facebook/dinov2-base (Dinov2Model)       ImageNet mean and std           last block, after the
                                                                                  final norm
=======  ======================================  ==============================  =====================

DINO's std 0.228 for red (not ImageNet's 0.229) is what DINO's video
segmentation script uses; DIFT's DINO and DAVIS numbers come from it.  The
forward stops after the chosen block (a forward hook), batches of frames go
through together, and the model runs in float16/bfloat16 on CUDA.

    >>> ext = VitExtractor.from_pretrained(config=ExtractorConfig(backbone="dino"))
    >>> ext.extract(frames_uint8).shape             # (B, 3, 480, 832) -> (B, 768, 60, 104)
"""

from __future__ import annotations

import logging
from dataclasses import replace
from pathlib import Path
from typing import Any, Sequence

import torch
from torch import nn

from vidprop.config import BACKBONE_DEFAULT_MODELS, ExtractorConfig
from vidprop.errors import ConfigError, ModelLoadError
from vidprop.features.base import check_images
from vidprop.features.dift import resolve_device, resolve_dtype
from vidprop.features.hooks import run_to_layer
from vidprop.features.posembed import POS_RULES, use_published_pos_embedding

__all__ = ["VitExtractor", "NORMALISATION", "transformer_blocks", "load_vit", "save_random_vit"]

log = logging.getLogger(__name__)

#: (mean, std) of the input normalisation, per kind.
NORMALISATION: dict[str, tuple[tuple[float, float, float], tuple[float, float, float]]] = {
    "dino": ((0.485, 0.456, 0.406), (0.228, 0.224, 0.225)),
    "clip": ((0.48145466, 0.4578275, 0.40821073), (0.26862954, 0.26130258, 0.27577711)),
    "dinov2": ((0.485, 0.456, 0.406), (0.229, 0.224, 0.225)),
    "dinov3": ((0.485, 0.456, 0.406), (0.229, 0.224, 0.225)),  # the notebook's TVT.Normalize (cell 15)
}


def _model_class(kind: str) -> Any:
    from transformers import CLIPVisionModel, Dinov2Model, DINOv3ViTModel, ViTModel

    return {"dino": ViTModel, "clip": CLIPVisionModel, "dinov2": Dinov2Model, "dinov3": DINOv3ViTModel}[kind]


def transformer_blocks(model: nn.Module) -> nn.ModuleList:
    """The model's list of transformer blocks (whatever the attribute is called in this transformers release)."""
    n = getattr(model.config, "num_hidden_layers", None)
    for _name, module in model.named_modules():
        if isinstance(module, nn.ModuleList) and len(module) == n:
            return module
    raise ModelLoadError(f"could not find the {n} transformer blocks of {type(model).__name__}")


def load_vit(kind: str, model: str, *, revision: str | None = None, torch_dtype: torch.dtype = torch.float32) -> nn.Module:
    """Load a DINO / CLIP vision / DINOv2 model from a Hub id or a local folder, with clear errors."""
    klass = _model_class(kind)
    local = Path(model).expanduser()
    if not local.is_dir() and (model.startswith((".", "/", "~")) or model.count("/") > 1):
        raise ModelLoadError(f"model folder '{model}' does not exist; pass --model with a transformers folder "
                             f"(config.json + weights) or a Hub id such as {BACKBONE_DEFAULT_MODELS[kind]}")
    kwargs: dict[str, Any] = {"torch_dtype": torch_dtype}
    if kind == "dino":
        kwargs["add_pooling_layer"] = False
    if not local.is_dir():
        kwargs["revision"] = revision
    try:
        return klass.from_pretrained(str(local) if local.is_dir() else model, **kwargs)
    except Exception as exc:  # noqa: BLE001 - OSError, hub errors, config errors
        reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        hint = (f"{model} is not a complete transformers folder (config.json and the weights)" if local.exists() else
                "if this machine is offline, download the model elsewhere (`huggingface-cli download "
                f"{model}`), copy the folder here and pass --model /path/to/folder, or set HF_HUB_OFFLINE=1 "
                "to use the local Hugging Face cache")
        raise ModelLoadError(f"could not load {kind} model '{model}': {reason[:300]}; {hint}") from exc


class VitExtractor:
    """Patch tokens of a vision transformer as dense features.

    Args:
        model: a transformers ``ViTModel`` (dino), ``CLIPVisionModel`` (clip) or ``Dinov2Model`` (dinov2).
        kind: "dino", "clip" or "dinov2" (picks the input normalisation).
        config: ``layer`` (block index, -1 = last), ``final_norm``, ``batch_size``, ``device``, ``dtype``.
    """

    model_revision: str | None = None
    #: L2-normalise each cell's features (DINOv3's notebook does; the propagator normalises anyway).
    l2_normalise: bool = False

    def __init__(self, model: nn.Module, kind: str, *, config: ExtractorConfig | None = None,
                 device: str | torch.device | None = None, dtype: str | torch.dtype | None = None) -> None:
        if kind not in NORMALISATION:
            raise ConfigError(f"unknown ViT kind {kind!r}; expected one of {sorted(NORMALISATION)}")
        self.kind = kind
        self.config = config or ExtractorConfig(backbone=kind)
        self.device = resolve_device(device if device is not None else self.config.device)
        self.dtype = resolve_dtype(dtype if dtype is not None else self.config.dtype, self.device)
        self.model = model.to(self.device, self.dtype).eval().requires_grad_(False)
        self.blocks = transformer_blocks(self.model)
        n = len(self.blocks)
        layer = self.config.layer
        if not -n <= layer < n:
            raise ConfigError(f"layer must be in [-{n}, {n - 1}] for this {n}-block model, got {layer}")
        self.layer = layer % n
        self.final_norm = self.config.final_norm
        norm = getattr(self.model, "layernorm", None)
        self._norm = norm if norm is not None else getattr(self.model, "norm", None)  # DINOv3: ``norm``
        if self.final_norm and self._norm is None:
            raise ConfigError(f"{type(model).__name__} has no final layer norm; set final_norm: false")
        if self.final_norm and self.layer != n - 1:
            log.info("applying the final norm to the tokens of block %d of %d", self.layer, n)
        cfg = self.model.config
        patch = cfg.patch_size
        self.patch = int(patch[0] if isinstance(patch, (tuple, list)) else patch)
        self.prefix_tokens = 1 + int(getattr(cfg, "num_register_tokens", 0) or 0)
        self.channels = int(cfg.hidden_size)
        #: The position table is resized as the backbone's published code did (see posembed.py); None for
        #: backbones without a learned table to resize (DINOv3: rotary position embeddings).
        self.pos_rule = use_published_pos_embedding(self.model, kind, self.patch) if kind in POS_RULES else None
        mean, std = NORMALISATION[kind]
        self._mean = torch.tensor(mean, device=self.device).view(1, 3, 1, 1)
        self._std = torch.tensor(std, device=self.device).view(1, 3, 1, 1)

    @classmethod
    def from_pretrained(cls, model: str | None = None, *, config: ExtractorConfig | None = None, kind: str | None = None,
                        device: str | torch.device | None = None, dtype: str | torch.dtype | None = None) -> "VitExtractor":
        """Load ``model`` (default: the config's) as backbone ``kind`` (default: ``config.backbone``)."""
        config = config or ExtractorConfig(backbone=kind or "dino")
        kind = kind or config.backbone
        if model is not None:
            config = replace(config, model=str(model))
        dev = resolve_device(device if device is not None else config.device)
        dt = resolve_dtype(dtype if dtype is not None else config.dtype, dev)
        log.info("loading %s '%s' (%s, %s)", kind, config.model, dev, str(dt).replace("torch.", ""))
        net = load_vit(kind, config.model, revision=config.revision, torch_dtype=dt)
        return cls(net, kind, config=config, device=dev, dtype=dt)

    @property
    def stride(self) -> int:
        return self.patch

    @property
    def multiple(self) -> int:
        return self.patch

    def normalise(self, images: torch.Tensor) -> torch.Tensor:
        """(B, 3, H, W) uint8 -> normalised pixel values in the model's dtype."""
        x = images.to(self.device).float() / 255.0
        return ((x - self._mean) / self._std).to(self.dtype)

    def _call(self, pixels: torch.Tensor) -> Any:
        if self.kind in ("dinov2", "dinov3"):  # DINOv2 always interpolates; DINOv3's RoPE follows the grid
            return self.model(pixel_values=pixels)
        return self.model(pixel_values=pixels, interpolate_pos_encoding=True)

    @torch.inference_mode()
    def tokens(self, images: torch.Tensor) -> torch.Tensor:
        """(B, 3, H, W) uint8 -> (B, N, C) tokens of the chosen block (all tokens, before any final norm)."""
        return run_to_layer(self.blocks[self.layer], lambda: self._call(self.normalise(images)), "the hooked block")

    @torch.inference_mode()
    def extract(self, images: torch.Tensor, *, indices: Sequence[int] | None = None, prompt: str | None = None) -> torch.Tensor:
        """images (B, 3, H, W) uint8 RGB -> features (B, C, H / patch, W / patch).

        ``indices`` and ``prompt`` are accepted for the common interface and
        not used (no randomness, no text).
        """
        check_images(images, multiple=self.patch)
        B, _, H, W = images.shape
        bs = self.config.batch_size
        if B > bs:
            return torch.cat([self.extract(images[i : i + bs]) for i in range(0, B, bs)])
        tok = self.tokens(images)  # (B, prefix + h*w, C)
        if self.final_norm:
            tok = self._norm(tok)
        h, w = H // self.patch, W // self.patch
        patches = tok[:, self.prefix_tokens :]  # class (and register) tokens dropped
        if patches.shape[1] != h * w:
            raise RuntimeError(f"expected {h}x{w} patch tokens, got {patches.shape[1]}")  # pragma: no cover
        feats = patches.transpose(1, 2).reshape(B, self.channels, h, w)
        if self.l2_normalise:
            feats = torch.nn.functional.normalize(feats, dim=1)
        return feats.contiguous()


def save_random_vit(folder: str | Path, kind: str, *, seed: int = 0, architecture: str = "tiny") -> Path:
    """Write a randomly initialised ViT of ``kind`` in transformers format (``architecture``: "tiny" or "full")."""
    from transformers import CLIPVisionConfig, Dinov2Config, ViTConfig

    torch.manual_seed(seed)
    folder = Path(folder)
    if architecture == "full":
        configs = {
            "dino": ViTConfig(patch_size=8, image_size=224, layer_norm_eps=1e-6),  # ViT-B/8
            "clip": CLIPVisionConfig(hidden_size=1280, intermediate_size=5120, num_hidden_layers=32, num_attention_heads=16,
                                     patch_size=14, image_size=224, hidden_act="gelu", projection_dim=1024),  # ViT-H/14
            "dinov2": Dinov2Config(patch_size=14, image_size=518),  # ViT-B/14
        }
    else:
        configs = {
            "dino": ViTConfig(image_size=32, patch_size=8, hidden_size=16, num_hidden_layers=2, num_attention_heads=2,
                              intermediate_size=32),
            "clip": CLIPVisionConfig(image_size=28, patch_size=14, hidden_size=16, num_hidden_layers=3, num_attention_heads=2,
                                     intermediate_size=32),
            "dinov2": Dinov2Config(image_size=28, patch_size=14, hidden_size=16, num_hidden_layers=2, num_attention_heads=2,
                                   mlp_ratio=2),
        }
    klass = _model_class(kind)
    model = klass(configs[kind], add_pooling_layer=False) if kind == "dino" else klass(configs[kind])
    model.eval().save_pretrained(folder)
    return folder
