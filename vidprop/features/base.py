"""What every feature extractor offers to the rest of vidprop.

The propagator and the matchers only see tensors: an extractor turns a batch
of RGB frames into a feature map and says its stride.  Any backbone (DIFT,
DINOv2, a fused feature) that satisfies :class:`FeatureExtractor` plugs in.
"""

from __future__ import annotations

from typing import Protocol, Sequence, runtime_checkable

import torch

__all__ = ["FeatureExtractor", "check_images"]


@runtime_checkable
class FeatureExtractor(Protocol):
    #: Pixels per feature cell: features are (H / stride, W / stride).
    stride: int
    #: Feature channels C.
    channels: int
    device: torch.device
    dtype: torch.dtype

    def extract(self, images: torch.Tensor, *, indices: Sequence[int] | None = None) -> torch.Tensor:
        """images (B, 3, H, W) uint8 RGB -> features (B, C, H / stride, W / stride).

        ``indices`` identify the frames (their position in the video); an
        extractor that draws random numbers seeds them per index, so a frame's
        features do not depend on how frames were batched.
        """
        ...


def check_images(images: torch.Tensor, multiple: int = 1) -> None:
    """Shape check at the extractor boundary: (B, 3, H, W), H and W multiples of ``multiple``."""
    if not isinstance(images, torch.Tensor):
        raise TypeError(f"images must be a torch.Tensor of shape (B, 3, H, W), got {type(images).__name__}")
    if images.ndim != 4 or images.shape[1] != 3:
        raise ValueError(f"images must have shape (B, 3, H, W), got {tuple(images.shape)}")
    h, w = images.shape[-2:]
    if h % multiple or w % multiple:
        raise ValueError(f"image height and width must be multiples of {multiple}, got {h}x{w}; resize first")
