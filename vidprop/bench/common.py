"""Set-up the benchmarks share: a random-weight DIFT extractor on a device, a memory run's temporary model."""

from __future__ import annotations

import contextlib
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator

__all__ = ["torch_device", "random_sd_extractor", "MemoryRuns", "memory_runs"]


def torch_device(threads: int | None, device: str, dtype: str | None) -> tuple[Any, Any]:
    """``(torch.device, torch.dtype)`` resolved from the flags (``dtype`` None: the device's default),
    after setting torch's CPU threads when ``threads`` is given."""
    import torch

    from vidprop.features.dift import resolve_device, resolve_dtype

    if threads:
        torch.set_num_threads(threads)
    dev = resolve_device(device)
    return dev, resolve_dtype(dtype, dev)


def random_sd_extractor(arch: str, config: Any, seed: int) -> Any:
    """A :class:`~vidprop.features.dift.DiftExtractor` on a random U-Net + VAE of ``arch`` ("tiny" or
    "sd21"; no text encoder, no VAE decoder) with a zero prompt embedding."""
    import torch

    from vidprop.features.dift import DiftExtractor
    from vidprop.features.tiny import build_random_sd

    parts = build_random_sd(arch, seed=seed, with_text_encoder=False)
    parts["vae"].decoder = None  # only the encoder is used
    cross = 16 if arch == "tiny" else 1024
    return DiftExtractor(parts["unet"], parts["vae"], parts["scheduler"], config=config,
                         prompt_embeds=torch.zeros(1, 77, cross))


@dataclass(frozen=True)
class MemoryRuns:
    """What a peak-RSS benchmark's runs share: frame size, video lengths, a temporary folder, the model."""

    width: int
    height: int
    lengths: list[int]
    tmp: Path
    #: a diffusers folder: the user's ``--model``, or a tiny random SD written into ``tmp``
    model: str
    #: how the header names the model
    model_label: str


@contextlib.contextmanager
def memory_runs(size: str, lengths: str, model: str | None) -> Iterator[MemoryRuns]:
    """Parse ``--size WxH`` and ``--lengths N,M``; a temporary folder (removed after) holding the model."""
    from vidprop.features.tiny import save_random_sd

    w, h = (int(v) for v in size.lower().split("x"))
    counts = [int(n) for n in lengths.split(",")]
    with tempfile.TemporaryDirectory() as tmp:
        tmp_path = Path(tmp)
        path = model or str(save_random_sd(tmp_path / "tiny-sd"))
        yield MemoryRuns(w, h, counts, tmp_path, path, "tiny random SD" if not model else path)
