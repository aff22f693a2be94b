"""The context queue and the per-frame propagation step (protocols A and B).

The propagator only sees tensors: (C, h, w) features and (K, h, w) labels.
It never knows which backbone made the features.

    prop = Propagator(PropagationConfig(protocol="dino"))
    prop.reset(first_feats, first_labels)       # (C, h, w), (K, h, w)
    for feats in later_frames:
        soft = prop.step(feats)                 # (K, h, w) soft labels

Memory is bounded by the context size: features live in one preallocated
ring buffer (channels last), each frame's features are normalised once when
they enter it and reused while the frame stays in context.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from vidprop.config import PropagationConfig
from vidprop.propagation.affinity import propagate_tiled

__all__ = ["Propagator"]


class Propagator:
    """Label propagation over a context queue.

    Protocol A ("dino"): context = the first frame (hard labels) + the last
    ``n_last_frames`` predicted frames (soft labels), square window on all.
    Protocol B ("crw"): long-term memory = frame 0 searched globally, plus a
    short-term queue of ``n_last_frames`` frames that starts full of copies of
    frame 0; disc window on the short-term frames only; exactly top-k.
    """

    def __init__(self, config: PropagationConfig | None = None) -> None:
        self.config = config or PropagationConfig()
        self._keys: torch.Tensor | None = None  # (S, h, w, C)
        self._labels: torch.Tensor | None = None  # (S, h, w, K)
        self._global_keys: torch.Tensor | None = None  # (1, h*w, C)
        self._global_labels: torch.Tensor | None = None  # (1, h*w, K)
        self._n = 0  # filled windowed slots
        self._next = 0  # next ring slot to overwrite
        self._first_slot = 0  # slots [0, first_slot) are never overwritten

    @property
    def num_context(self) -> int:
        """Context frames used for the next step (windowed + global)."""
        g = 0 if self._global_keys is None else self._global_keys.shape[0]
        return self._n + g

    @staticmethod
    def _normalise(features: torch.Tensor) -> torch.Tensor:
        """(C, h, w) -> L2-normalised over C, channels last (h, w, C)."""
        return F.normalize(features, dim=0).permute(1, 2, 0)

    def reset(self, features: torch.Tensor, labels: torch.Tensor) -> None:
        """Start a video: frame 0's features (C, h, w) and labels (K, h, w)."""
        if features.ndim != 3 or labels.ndim != 3 or features.shape[1:] != labels.shape[1:]:
            raise ValueError(
                f"features (C, h, w) and labels (K, h, w) must share h, w; got {tuple(features.shape)} and {tuple(labels.shape)}"
            )
        cfg = self.config
        C, h, w = features.shape
        K = labels.shape[0]
        f = self._normalise(features)  # (h, w, C)
        lab = labels.to(device=features.device, dtype=torch.float32).permute(1, 2, 0)  # (h, w, K)
        if cfg.protocol == "dino":
            slots = 1 + cfg.n_last_frames
            self._keys = features.new_empty((slots, h, w, C))
            self._labels = lab.new_zeros((slots, h, w, K))
            self._keys[0] = f
            self._labels[0] = lab
            self._n, self._first_slot, self._next = 1, 1, 1
            self._global_keys = self._global_labels = None
        else:
            slots = cfg.n_last_frames
            self._keys = f.unsqueeze(0).repeat(slots, 1, 1, 1)  # front padding: copies of frame 0
            self._labels = lab.unsqueeze(0).repeat(slots, 1, 1, 1)
            self._n, self._first_slot, self._next = slots, 0, 0
            self._global_keys = f.reshape(1, h * w, C).clone()
            self._global_labels = lab.reshape(1, h * w, K).clone()

    def predict(self, features: torch.Tensor) -> torch.Tensor:
        """Soft labels (K, h, w) of a frame from the current context, without storing it."""
        if self._keys is None:
            raise RuntimeError("call reset() with the first frame before step()")
        if features.shape[0] != self._keys.shape[-1] or features.shape[1:] != self._keys.shape[1:3]:
            raise ValueError(
                f"features must be (C, h, w) = {(self._keys.shape[-1], *self._keys.shape[1:3])}, got {tuple(features.shape)}"
            )
        cfg = self.config
        q = self._normalise(features).contiguous()
        return propagate_tiled(
            q,
            self._keys,
            self._labels,
            n_frames=self._n,
            global_keys=self._global_keys,
            global_labels=self._global_labels,
            temperature=cfg.temperature,
            topk=cfg.topk,
            radius=cfg.radius,
            window="square" if cfg.protocol == "dino" else "disc",
            keep_ties=cfg.protocol == "dino",
            tile=cfg.tile,
        )

    def push(self, features: torch.Tensor, labels: torch.Tensor) -> None:
        """Add a predicted frame (features, soft labels) to the queue; the oldest leaves when full."""
        assert self._keys is not None and self._labels is not None
        slots = self._keys.shape[0]
        if slots == self._first_slot:  # n_last_frames == 0: only the first frame is context
            return
        slot = self._next
        self._keys[slot] = self._normalise(features)
        self._labels[slot] = labels.to(self._labels.dtype).permute(1, 2, 0)
        self._n = min(self._n + 1, slots)
        self._next = slot + 1 if slot + 1 < slots else self._first_slot

    def step(self, features: torch.Tensor) -> torch.Tensor:
        """Predict a frame's soft labels (K, h, w), then add it to the context."""
        soft = self.predict(features)
        self.push(features, soft)
        return soft
