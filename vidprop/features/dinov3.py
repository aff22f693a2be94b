"""DINOv3 ViT/16 (Siméoni et al., 2025) through transformers' ``DINOv3ViTModel``.

Features as the authors' notebook computes them
(facebookresearch/dinov3, ``notebooks/segmentation_tracking.ipynb``, cell 6:
``get_intermediate_layers(n=1, reshape=True)`` then ``F.normalize``): the
last block's patch tokens after the final norm (transformers'
``last_hidden_state``), the class token and the model's
``config.num_register_tokens`` register tokens skipped, L2-normalised per
cell, as a (C, H / 16, W / 16) map.  Pixels in [0, 1], ImageNet mean and
std (cell 15).  The model runs in ``.eval()`` (in train mode its RoPE
jitters and rescales the coordinates); the published presets run float32.

The Hub repos ``facebook/dinov3-vit*16-pretrain-lvd1689m`` are gated (the
DINOv3 licence): a refused or unauthenticated request becomes one
:class:`GatedModelError` line saying what to do.

    >>> ext = Dinov3Extractor.from_pretrained(config=load_preset("davis-dinov3").extractor)
    >>> ext.extract(frames_uint8).shape       # (B, 3, 960, 1712) -> (B, 1024, 60, 107)
"""

from __future__ import annotations

import json
import logging
import re
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import torch
from torch import nn

from vidprop.config import BACKBONE_DEFAULT_MODELS, ExtractorConfig
from vidprop.errors import ConfigError, ModelLoadError
from vidprop.features.dift import resolve_device, resolve_dtype
from vidprop.features.hub import HubUnavailableError, load_from_hub
from vidprop.features.vit import VitExtractor

__all__ = [
    "DINOV3_MODELS",
    "PUBLISHED_DAVIS",
    "PublishedScore",
    "GatedModelError",
    "Dinov3Extractor",
    "load_dinov3",
    "model_size",
    "published_davis",
    "is_gated_error",
    "save_random_dinov3",
]

log = logging.getLogger(__name__)

#: The released ViT/16 backbones by size (the Hub ids; all gated).
DINOV3_MODELS: dict[str, str] = {
    "S": "facebook/dinov3-vits16-pretrain-lvd1689m",
    "S+": "facebook/dinov3-vits16plus-pretrain-lvd1689m",
    "B": "facebook/dinov3-vitb16-pretrain-lvd1689m",
    "L": "facebook/dinov3-vitl16-pretrain-lvd1689m",
    "H+": "facebook/dinov3-vith16plus-pretrain-lvd1689m",
    "7B": "facebook/dinov3-vit7b16-pretrain-lvd1689m",
}
_ID_SIZES = {"s16": "S", "s16plus": "S+", "b16": "B", "l16": "L", "h16plus": "H+", "7b16": "7B"}
_ID = re.compile(r"dinov3-vit(s16plus|s16|b16|l16|h16plus|7b16)(?:-|$)", re.IGNORECASE)
#: (hidden size, SwiGLU MLP) of each released size, to recognise a local folder by its config.json.
_ARCH_SIZES = {(384, False): "S", (384, True): "S+", (768, False): "B", (1024, False): "L", (1280, True): "H+",
               (4096, True): "7B"}

#: DAVIS-2017 val J&F published for each size at a short side: (size, short side) -> J&F.
#: 960: the paper's Table 14 and the repo's MODEL_CARD.md; the 7B at 480 / 1440: Table 5.
PUBLISHED_DAVIS: dict[tuple[str, int], float] = {
    ("S", 960): 72.7, ("S+", 960): 75.5, ("B", 960): 77.2, ("L", 960): 79.9, ("H+", 960): 79.3,
    ("7B", 960): 79.7, ("7B", 480): 71.1, ("7B", 1440): 83.3,
}


@dataclass(frozen=True)
class PublishedScore:
    """A published DAVIS-2017 val J&F of one DINOv3 size at one short side."""

    size: str
    short_side: int
    jf: float

    @property
    def source(self) -> str:
        return "DINOv3 paper Table 5" if self.size == "7B" and self.short_side != 960 else \
            "DINOv3 paper Table 14 / MODEL_CARD.md"


class GatedModelError(ModelLoadError):
    """A gated Hub repo refused the request (no token, or the licence not accepted)."""


def gated_message(model: str) -> str:
    """The one line for a refused gated DINOv3 repo."""
    return (f"DINOv3 model '{model}' is gated on the Hugging Face Hub and the request was refused: accept the "
            f"DINOv3 licence on https://huggingface.co/{model}, then log in (`hf auth login`, or set HF_TOKEN), "
            "or pass --model with a local folder holding the weights")


def is_gated_error(exc: BaseException) -> bool:
    """True when ``exc`` (or what it wraps) is the Hub refusing a gated repo."""
    seen: set[int] = set()
    e: BaseException | None = exc
    while e is not None and id(e) not in seen:
        seen.add(id(e))
        if type(e).__name__ == "GatedRepoError" or "gated repo" in str(e).lower():
            return True
        e = e.__cause__ or e.__context__
    return False


def model_size(model: str) -> str | None:
    """The released size ("S", "S+", "B", "L", "H+", "7B") of a Hub id or local folder, else None.

    Recognised from the name (``dinov3-vitl16...``), else from a folder's
    ``config.json`` (hidden size and MLP kind, patch 16).
    """
    m = _ID.search(Path(str(model)).name) or _ID.search(str(model))
    if m:
        return _ID_SIZES[m.group(1).lower()]
    cfg_file = Path(str(model)).expanduser() / "config.json"
    try:
        cfg = json.loads(cfg_file.read_text()) if cfg_file.is_file() else None
    except (OSError, ValueError):
        return None
    if not isinstance(cfg, dict) or cfg.get("model_type") != "dinov3_vit" or cfg.get("patch_size", 16) != 16:
        return None
    return _ARCH_SIZES.get((cfg.get("hidden_size"), bool(cfg.get("use_gated_mlp", False))))


def published_davis(model: str, short_side: int) -> tuple[str | None, PublishedScore | None]:
    """(recognised size, its published J&F at ``short_side`` or None when none was published there)."""
    size = model_size(model)
    if size is None:
        return None, None
    jf = PUBLISHED_DAVIS.get((size, int(short_side)))
    return size, (PublishedScore(size, int(short_side), jf) if jf is not None else None)


def published_note(model: str, short_side: int, preset: str) -> str:
    """One line for ``eval davis``: the published J&F of this model size, and which preset is the notebook's."""
    size, score = published_davis(model, short_side)
    which = ("davis-dinov3 is the authors' notebook protocol (segmentation_tracking.ipynb); davis-dinov3-paper the "
             "paper's appendix D.5 text; their evaluation script is unreleased")
    if size is None:
        return f"DINOv3: no published DAVIS number for '{model}' (size not recognised); {which}"
    if score is None:
        at = ", ".join(f"{s}: {v}" for (z, s), v in sorted(PUBLISHED_DAVIS.items()) if z == size)
        return (f"DINOv3 ViT-{size}/16: no published DAVIS-2017 val J&F at short side {short_side} "
                f"(published at short side {at}); {which}")
    return (f"DINOv3 ViT-{size}/16 at short side {short_side}: published DAVIS-2017 val J&F {score.jf} "
            f"({score.source}); this run: preset {preset}; {which}")


def _check_id(model: str) -> None:
    local = Path(model).expanduser()
    if local.is_dir():
        return
    if model.startswith((".", "/", "~")) or model.count("/") > 1:
        raise ModelLoadError(f"model folder '{model}' does not exist; pass --model with a DINOv3 transformers folder "
                             f"(config.json + weights) or a Hub id such as {BACKBONE_DEFAULT_MODELS['dinov3']}")
    if model.lower().startswith("facebook/dinov3") and not _ID.search(model):
        raise ConfigError(f"'{model}' is not a DINOv3 ViT/16 backbone; give one of {', '.join(DINOV3_MODELS.values())} "
                          "or a local folder")


def load_dinov3(model: str, *, revision: str | None = None, dtype: torch.dtype = torch.float32) -> nn.Module:
    """``DINOv3ViTModel`` from a Hub id (local cache first) or a local folder, in ``.eval()``, with clear errors."""
    from transformers import DINOv3ViTModel

    _check_id(model)
    local = Path(model).expanduser()

    def load(local_only: bool) -> nn.Module:
        if local.is_dir():
            return DINOv3ViTModel.from_pretrained(str(local), dtype=dtype)
        return DINOv3ViTModel.from_pretrained(model, revision=revision, dtype=dtype, local_files_only=local_only)

    try:
        if local.is_dir():
            net = load(True)
        else:
            try:
                net = load(True)  # the local cache: no network
            except Exception as exc:  # noqa: BLE001 - not cached; a gated refusal is said at once
                if is_gated_error(exc):
                    raise
                net = load_from_hub(model, _gated_first(load, model), revision=revision, what="DINOv3 model")
    except HubUnavailableError as exc:  # offline: the download elsewhere needs the licence accepted too
        raise HubUnavailableError(f"{exc} (the repo is gated: accept the DINOv3 licence on "
                                  f"https://huggingface.co/{model} and log in there first)") from None
    except ModelLoadError:
        raise
    except Exception as exc:  # noqa: BLE001 - OSError, hub errors, config errors
        if is_gated_error(exc):
            raise GatedModelError(gated_message(model)) from exc
        reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        hint = (f"{model} is not a complete DINOv3 transformers folder (config.json and the weights)"
                if local.exists() else "check the id, or pass --model with a local folder")
        raise ModelLoadError(f"could not load DINOv3 model '{model}': {reason[:300]}; {hint}") from exc
    if getattr(net.config, "model_type", None) != "dinov3_vit":  # pragma: no cover - from_pretrained checks it
        raise ModelLoadError(f"{model} is a {net.config.model_type} model, not DINOv3 ViT")
    return net.eval()


def _gated_first(load: Any, model: str) -> Any:
    """``load`` whose gated-repo refusal (even from the cache-only try) is the one line at once."""
    def wrapped(local_only: bool) -> nn.Module:
        try:
            return load(local_only)
        except Exception as exc:  # noqa: BLE001
            if is_gated_error(exc):
                raise GatedModelError(gated_message(model)) from exc
            raise

    return wrapped


class Dinov3Extractor(VitExtractor):
    """DINOv3 ViT/16 patch tokens, L2-normalised per cell (see the module docstring)."""

    l2_normalise = True

    def __init__(self, model: nn.Module, *, config: ExtractorConfig | None = None,
                 device: str | torch.device | None = None, dtype: str | torch.dtype | None = None) -> None:
        super().__init__(model, "dinov3", config=config or ExtractorConfig(backbone="dinov3"), device=device, dtype=dtype)
        if self.patch != 16:
            log.warning("this DINOv3 model has patch size %d; the released ViTs have 16", self.patch)

    @classmethod
    def from_pretrained(cls, model: str | None = None, *, config: ExtractorConfig | None = None, kind: str | None = None,
                        device: str | torch.device | None = None, dtype: str | torch.dtype | None = None
                        ) -> "Dinov3Extractor":
        """Load ``model`` (default: the config's, ViT-L/16) from the Hub or a local folder."""
        config = config or ExtractorConfig(backbone="dinov3")
        if model is not None:
            config = replace(config, model=str(model))
        dev = resolve_device(device if device is not None else config.device)
        dt = resolve_dtype(dtype if dtype is not None else config.dtype, dev)
        log.info("loading dinov3 '%s' (%s, %s)", config.model, dev, str(dt).replace("torch.", ""))
        net = load_dinov3(config.model, revision=config.revision, dtype=dt)
        return cls(net, config=config, device=dev, dtype=dt)


def save_random_dinov3(folder: str | Path, *, seed: int = 0, architecture: str = "tiny") -> Path:
    """Write a random DINOv3 ViT/16 in transformers format: "tiny" (4 registers, 2 blocks) or "vitl16"."""
    from transformers import DINOv3ViTConfig, DINOv3ViTModel

    torch.manual_seed(seed)
    if architecture == "vitl16":
        cfg = vitl16_config()
    else:
        cfg = DINOv3ViTConfig(patch_size=16, hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                              num_attention_heads=2, num_register_tokens=4, image_size=64, layerscale_value=1.0)
    model = DINOv3ViTModel(cfg).eval()
    model.save_pretrained(Path(folder))
    return Path(folder)


def vitl16_config() -> Any:
    """The configuration of ``facebook/dinov3-vitl16-pretrain-lvd1689m`` (ViT-L/16, 4 registers, RoPE)."""
    from transformers import DINOv3ViTConfig

    return DINOv3ViTConfig(patch_size=16, hidden_size=1024, intermediate_size=4096, num_hidden_layers=24,
                           num_attention_heads=16, num_register_tokens=4, layerscale_value=1e-5, rope_theta=100.0,
                           query_bias=True, key_bias=False, value_bias=True, use_gated_mlp=False, image_size=224)
