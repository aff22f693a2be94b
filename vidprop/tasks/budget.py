"""Whether a model input size can be run at all: checked against the frames and memory before the model loads.

``--short-side 100000`` on a 480p video asks for a 177760x100000 model
input: resizing one frame to it alone takes 53 GB.  :func:`check_model_input`
refuses such a size with one line, before any model loads, from an estimate
of what one batch of frames needs at that size (:func:`estimate_input_bytes`)
and the memory of the device that would run it (:func:`device_memory`).

The estimate is a lower bound of the peak, so only sizes that surely cannot
run are refused: per model-input pixel, the resized uint8 frame (3 bytes),
its float32 copy (12 bytes) and the first full-resolution activations of the
backbone in its compute precision (the diffusion backbones' VAE / U-Net
input blocks: 128 channels, input and output of one convolution = 256
values; a ViT's patch embedding and tokens: 16 values per pixel).
"""

from __future__ import annotations

import os
from typing import Any

from vidprop.errors import ConfigError

__all__ = ["ACTIVATION_VALUES_PER_PIXEL", "estimate_input_bytes", "device_memory", "check_model_input"]

#: Values per model-input pixel of a backbone's first full-resolution activations (see the module docstring).
ACTIVATION_VALUES_PER_PIXEL = {"sd": 256, "cleandift": 256, "sd+dinov2": 256, "adm": 256,
                               "dino": 16, "clip": 16, "dinov2": 16}
_FRAME_BYTES_PER_PIXEL = 3 + 12  # the resized uint8 frame and its float32 copy


def _resolve_device(device: str | None) -> str:
    if device:
        return str(device)
    import torch

    return "cuda" if torch.cuda.is_available() else "cpu"


def _element_bytes(dtype: str | None, device: str) -> int:
    if dtype in (None, "auto"):
        return 2 if device.startswith("cuda") else 4
    return 2 if dtype in ("float16", "fp16", "bfloat16", "bf16", "half") else 4


def estimate_input_bytes(extractor: Any, width: int, height: int, device: str | None = None) -> int:
    """Bytes one batch of model inputs of ``width x height`` needs at least (an ExtractorConfig's backbone,
    batch size, ensemble and dtype)."""
    dev = _resolve_device(device or getattr(extractor, "device", None))
    values = ACTIVATION_VALUES_PER_PIXEL.get(getattr(extractor, "backbone", "sd"), 16)
    batch = max(1, int(getattr(extractor, "batch_size", 1)))
    ensemble = max(1, int(getattr(extractor, "ensemble", 1))) if values > 16 else 1
    per_pixel = _FRAME_BYTES_PER_PIXEL + values * _element_bytes(getattr(extractor, "dtype", None), dev) * ensemble
    return int(width) * int(height) * batch * per_pixel


def device_memory(device: str | None = None) -> tuple[int | None, str]:
    """(bytes, what) of the device: a CUDA device's memory, else this machine's RAM; (None, what) if unknown."""
    dev = _resolve_device(device)
    if dev.startswith("cuda"):
        try:
            import torch

            index = int(dev.split(":", 1)[1]) if ":" in dev else 0
            props = torch.cuda.get_device_properties(index)
            return int(props.total_memory), f"{dev} ({props.name})"
        except Exception:  # noqa: BLE001 - no CUDA here: the device error comes when the model loads
            return None, dev
    try:
        return int(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")), "this machine's RAM"
    except (ValueError, OSError, AttributeError):  # pragma: no cover - not POSIX
        return None, "this machine's RAM"


def _gb(n: float) -> str:
    return f"{n / 1e9:,.1f} GB" if n < 1e12 else f"{n / 1e12:,.1f} TB"


def check_model_input(config: Any, width: int, height: int, *, source: str = "the frames",
                      memory: int | None = None) -> tuple[int, int]:
    """The model input size of ``width x height`` frames under ``config`` (a TaskConfig); ConfigError (one line
    naming the size setting, the frames and the estimate) when one batch of it cannot fit in the memory of the
    device that would run it (``memory`` bytes, default :func:`device_memory`)."""
    tw, th = config.frames.target_size(width, height)
    ext = config.extractor
    need = estimate_input_bytes(ext, tw, th)
    what = ""
    if memory is None:
        memory, what = device_memory(getattr(ext, "device", None))
    if memory is not None and need > memory:
        mode = config.frames.mode
        setting = {"short_side": f"frames.short_side {config.frames.short_side}",
                   "square": f"frames.size {config.frames.size}",
                   "fixed": f"frames.width x height {config.frames.width}x{config.frames.height}"}.get(
            mode, "frames.mode original")
        raise ConfigError(
            f"{setting}: the model input would be {tw}x{th} (from {source}, {width}x{height}), which needs at least "
            f"{_gb(need)} for one batch; {what or 'the device'} has {_gb(memory)}; choose a smaller size"
        )
    return tw, th
