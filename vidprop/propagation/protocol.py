"""The two published propagation protocols, each as one object.

Everything in which protocol A ("dino", DINO's DAVIS script, used by DIFT for
DAVIS) and protocol B ("crw", the Contrastive Random Walk test code, used for
JHMDB) differ lives here, so that the propagator and the tasks ask the
protocol instead of testing its name:

* the neighbourhood window on the windowed context frames: a square
  (|dy|, |dx| <= r) for A, a disc (distance < r) for B;
* top-k tie handling: A keeps every key tied with the k-th value, B exactly k;
* where the anchors (annotated frames, the first one included) are searched:
  inside the window for A, over the whole frame for B (its long-term memory);
* queue seeding: B's short-term queue starts full of copies of the first
  anchor, A's starts empty;
* mask labels: A resizes the index mask with NEAREST to the feature grid,
  then one-hot (hard labels); B takes the one-hot at full resolution and
  resizes it BILINEARLY (soft at edges);
* mask output (``decode``, ``minmax``): A upsamples the soft map by the
  stride, min-max normalises each channel, takes the argmax and resizes the
  index map (NEAREST) to the frame; B resizes the soft map bilinearly to the
  frame and takes the argmax.

A :class:`~vidprop.config.PropagationConfig` may change the window, the
decode, the min-max and the label resize of its protocol
(:func:`protocol_for`): DINOv3's notebook is protocol A with a circle
(distance <= r), a NEAREST decode straight to the frame's size with min-max,
and torch's ``nearest-exact`` label resize (``configs/davis-dinov3.yaml``).

``decode_mask(..., exclude=ids)`` also gives the best label among the other
channels (background included), which an annotation uses for the pixels it
takes away from an object (see :mod:`vidprop.tasks.segment`).  The protocols
are described in ``docs/annotations.md`` and the README.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Literal, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

from vidprop.propagation.labels import labels_bilinear, labels_nearest, labels_nearest_exact, norm_mask

if TYPE_CHECKING:
    from vidprop.config import PropagationConfig

__all__ = ["Protocol", "PROTOCOLS", "get_protocol", "protocol_for"]

Window = Literal["square", "disc", "circle"]


@dataclass(frozen=True)
class Protocol:
    """What a propagation protocol decides, beyond its numeric settings (see the module docstring)."""

    name: str
    #: Neighbourhood on the windowed context frames.
    window: Window
    #: Top-k keeps every key tied with the k-th value (else exactly k).
    keep_ties: bool
    #: Anchors are searched over the whole frame (else inside the window, like the queue).
    global_anchors: bool
    #: The short-term queue starts full of copies of the first anchor.
    seed_queue: bool
    #: How an index mask becomes labels on the feature grid.
    label_resize: Literal["nearest", "nearest-exact", "bilinear"]
    #: How the soft map is brought to the output: "stride" (x stride, bilinear; the argmax is then
    #: resized with NEAREST to the frame), "nearest" / "bilinear" (straight to the frame's size).
    decode: Literal["stride", "nearest", "bilinear"] = "stride"
    #: Per-channel min-max normalisation of the decoded map before the argmax.
    minmax: bool = True

    # ----------------------------------------------------------- labels
    def encode_mask(self, mask: np.ndarray, grid: tuple[int, int], ids: Sequence[int]) -> torch.Tensor:
        """(H, W) index mask -> (1 + len(ids), gh, gw) float32 labels, background first, ids in ``ids`` order."""
        if self.label_resize == "nearest":
            return labels_nearest(mask, grid, ids)  # hard
        if self.label_resize == "nearest-exact":
            return labels_nearest_exact(mask, grid, ids)  # hard
        return labels_bilinear(mask, grid, ids)  # soft at edges

    def scores(self, soft: torch.Tensor, stride: int, out_size: tuple[int, int]) -> torch.Tensor:
        """The decoded soft map whose argmax is the output: (K, h, w) -> (K, H', W').

        ``decode="stride"`` (A): bilinear upsampling by ``stride`` (the model
        input's size); "bilinear" (B) / "nearest" (DINOv3's notebook): resized
        straight to ``out_size`` = (W, H), the frame's size.  Then, with
        ``minmax``, per-channel min-max normalisation (a constant channel
        becomes 0, as both DINO's ``norm_mask`` and the notebook's
        ``nan_to_num`` give for non-negative labels).
        """
        x = soft[None].float()
        if self.decode == "stride":
            up = F.interpolate(x, scale_factor=stride, mode="bilinear", align_corners=False)[0]
        elif self.decode == "bilinear":
            w, h = out_size
            up = F.interpolate(x, size=(h, w), mode="bilinear", align_corners=False)[0]
        else:
            w, h = out_size
            up = F.interpolate(x, size=(h, w), mode="nearest")[0]
        return norm_mask(up) if self.minmax else up

    def decode_mask(
        self,
        soft: torch.Tensor,
        stride: int,
        out_size: tuple[int, int],
        ids: Sequence[int],
        exclude: Sequence[int] = (),
    ) -> tuple[np.ndarray, np.ndarray | None]:
        """Soft labels (K, h, w) -> ((H, W) uint8 index mask at ``out_size`` = (W, H), alternative or None).

        Channel c > 0 is id ``ids[c - 1]``.  With ``exclude`` (ids), the
        alternative is the argmax over the channels of the ids NOT excluded,
        background included, in the same decoded map (else None).
        """
        sc = self.scores(soft, stride, out_size)  # (K, H', W')
        lut = np.asarray([0, *ids], dtype=np.uint8)
        out = [lut[torch.argmax(sc, dim=0).to(torch.uint8).cpu().numpy()]]
        if exclude:
            channels = [1 + list(ids).index(i) for i in exclude]
            masked = sc.clone()
            masked[channels] = float("-inf")
            out.append(lut[torch.argmax(masked, dim=0).to(torch.uint8).cpu().numpy()])
        out = [_resize_nearest(m, out_size) for m in out]
        return out[0], (out[1] if exclude else None)


def _resize_nearest(lab: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    if (lab.shape[1], lab.shape[0]) != tuple(size):
        lab = np.asarray(Image.fromarray(lab).resize(tuple(size), Image.NEAREST))
    return lab


#: The protocols by name (``PropagationConfig.protocol``).
PROTOCOLS: dict[str, Protocol] = {
    "dino": Protocol("dino", window="square", keep_ties=True, global_anchors=False, seed_queue=False,
                     label_resize="nearest", decode="stride", minmax=True),
    "crw": Protocol("crw", window="disc", keep_ties=False, global_anchors=True, seed_queue=True,
                    label_resize="bilinear", decode="bilinear", minmax=False),
}


def get_protocol(name: str) -> Protocol:
    """The :class:`Protocol` named ``name`` ("dino" or "crw")."""
    try:
        return PROTOCOLS[name]
    except KeyError:
        raise ValueError(f"unknown propagation protocol {name!r}; choose from {', '.join(PROTOCOLS)}") from None


def protocol_for(config: "PropagationConfig") -> Protocol:
    """The protocol of ``config.protocol`` with the choices ``config`` sets (window, decode, minmax, label_resize)."""
    base = get_protocol(config.protocol)
    changes = {name: getattr(config, name) for name in ("window", "decode", "minmax", "label_resize")
               if getattr(config, name, None) is not None}
    return replace(base, **changes) if changes else base
