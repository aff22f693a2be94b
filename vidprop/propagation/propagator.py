"""The context of label propagation and the per-frame step (protocols A and B).

The propagator only sees tensors: (C, h, w) features and (K, h, w) labels.
It never knows which backbone made the features.

    prop = Propagator(PropagationConfig(protocol="dino"))
    prop.reset(first_feats, first_labels)       # (C, h, w), (K, h, w): the first anchor
    for feats in later_frames:
        soft = prop.step(feats)                 # (K, h, w) soft labels
    prop.add_anchor(feats, labels)              # an annotated frame: a permanent context slot

Context = the anchors (annotated frames, hard labels; the first one is the
published protocols' frame 0) + a FIFO queue of the last ``n_last_frames``
predicted frames (soft labels).  What differs between the protocols (window,
ties, where anchors are searched, queue seeding) comes from a
:class:`~vidprop.propagation.protocol.Protocol`.

Memory is bounded by settings, never by video length: the queue lives in one
preallocated ring buffer (in the kernel's strip layout, see
:func:`~vidprop.propagation.affinity.to_strips`), anchors are at most
``max_anchors``, each frame's features are normalised once (in float32, or
float64 for float64 features) when they enter the context and reused while
the frame stays there.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from vidprop.config import PropagationConfig
from vidprop.propagation.affinity import compute_dtype, propagate_context, to_strips
from vidprop.propagation.protocol import Protocol, protocol_for

__all__ = ["Propagator"]


class Propagator:
    """Label propagation over anchors and a queue of predicted frames.

    Protocol A ("dino"): the anchors + the last ``n_last_frames`` predicted
    frames, square window on all of them, top-k with ties kept.  Protocol B
    ("crw"): the anchors searched globally (long-term memory), plus a
    short-term queue of ``n_last_frames`` frames that starts full of copies of
    the first anchor; disc window on the short-term frames only; exactly top-k.
    With one anchor (frame 0) these are the published protocols.
    """

    def __init__(self, config: PropagationConfig | None = None, protocol: Protocol | None = None) -> None:
        self.config = config or PropagationConfig()
        self.protocol = protocol or protocol_for(self.config)
        # Windowed ring buffer (keys in strip layout, labels channels last): protocol A holds the first
        # anchor in slot 0 and the queue after it; protocol B holds only the queue.
        self._keys: torch.Tensor | None = None  # (S, strips, h, tile, C)
        self._labels: torch.Tensor | None = None  # (S, h, w, K)
        self._grid: tuple[int, int] = (0, 0)  # (h, w)
        # Anchors after the first: (E, strips, h, tile, C) / (E, h, w, K), windowed (protocol A).
        self._extra_keys: torch.Tensor | None = None
        self._extra_labels: torch.Tensor | None = None
        # Every anchor, searched without a window (protocol B): (G, h*w, C) / (G, h*w, K).
        self._global_keys: torch.Tensor | None = None
        self._global_labels: torch.Tensor | None = None
        self._n = 0  # filled ring slots (the first anchor included for A)
        self._next = 0  # next ring slot to overwrite
        self._first_slot = 0  # ring slots [0, first_slot) are never overwritten

    # ----------------------------------------------------------- state
    @property
    def num_context(self) -> int:
        """Context frames used for the next step (anchors + queue)."""
        g = 0 if self._global_keys is None else self._global_keys.shape[0]
        e = 0 if self._extra_keys is None else self._extra_keys.shape[0]
        return self._n + g + e

    @property
    def num_anchors(self) -> int:
        """Anchors in the context (the first one included); 0 before :meth:`reset`."""
        if self._keys is None:
            return 0
        if self.protocol.global_anchors:
            return 0 if self._global_keys is None else self._global_keys.shape[0]
        return 1 + (0 if self._extra_keys is None else self._extra_keys.shape[0])

    @property
    def num_channels(self) -> int:
        """Label channels K (background + objects or joints)."""
        if self._labels is None:
            raise RuntimeError("call reset() first")
        return int(self._labels.shape[-1])

    @staticmethod
    def _normalise(features: torch.Tensor) -> torch.Tensor:
        """(C, h, w) -> L2-normalised over C in the compute dtype, channels last (h, w, C)."""
        return F.normalize(features.to(compute_dtype(features.dtype)), dim=0).permute(1, 2, 0)

    @staticmethod
    def _check(features: torch.Tensor, labels: torch.Tensor) -> None:
        if features.ndim != 3 or labels.ndim != 3 or features.shape[1:] != labels.shape[1:]:
            raise ValueError(
                f"features (C, h, w) and labels (K, h, w) must share h, w; got {tuple(features.shape)} "
                f"and {tuple(labels.shape)}"
            )

    # ----------------------------------------------------------- building the context
    def reset(self, features: torch.Tensor, labels: torch.Tensor) -> None:
        """Start a video with its first anchor: features (C, h, w) and labels (K, h, w)."""
        self._check(features, labels)
        cfg = self.config
        C, h, w = features.shape
        K = labels.shape[0]
        f = self._normalise(features)  # (h, w, C)
        fs = to_strips(f, cfg.tile)  # (strips, h, tile, C)
        lab = labels.to(device=features.device, dtype=torch.float32).permute(1, 2, 0)  # (h, w, K)
        self._grid = (h, w)
        self._extra_keys = self._extra_labels = None
        if not self.protocol.global_anchors:
            slots = 1 + cfg.n_last_frames
            self._keys = fs.new_empty((slots, *fs.shape))
            self._labels = lab.new_zeros((slots, h, w, K))
            self._keys[0] = fs
            self._labels[0] = lab
            self._n, self._first_slot, self._next = 1, 1, 1
            self._global_keys = self._global_labels = None
        else:
            slots = cfg.n_last_frames
            if self.protocol.seed_queue:  # front padding: copies of the first anchor
                self._keys = fs.unsqueeze(0).repeat(slots, 1, 1, 1, 1)
                self._labels = lab.unsqueeze(0).repeat(slots, 1, 1, 1)
                self._n = slots
            else:
                self._keys = fs.new_empty((slots, *fs.shape))
                self._labels = lab.new_zeros((slots, h, w, K))
                self._n = 0
            self._first_slot, self._next = 0, 0
            self._global_keys = f.reshape(1, h * w, C).clone()
            self._global_labels = lab.reshape(1, h * w, K).clone()

    def add_anchor(self, features: torch.Tensor, labels: torch.Tensor) -> None:
        """Add an annotated frame as a permanent context slot (hard labels (K, h, w)).

        At most ``config.max_anchors`` anchors are kept: the first one always
        stays; when a new one would exceed the bound, the oldest other one
        leaves (with ``max_anchors == 1`` only the first anchor is kept).
        """
        if self._keys is None or self._labels is None:
            self.reset(features, labels)
            return
        self._check(features, labels)
        if labels.shape[0] != self.num_channels or features.shape[0] != self._keys.shape[-1] \
                or tuple(features.shape[1:]) != self._grid:
            raise ValueError(
                f"anchor features {tuple(features.shape)} / labels {tuple(labels.shape)} do not match the context "
                f"(C={self._keys.shape[-1]}, K={self.num_channels}, grid {self._grid})"
            )
        limit = max(1, int(self.config.max_anchors))
        if limit == 1:
            return
        f = self._normalise(features)  # (h, w, C)
        lab = labels.to(device=f.device, dtype=torch.float32).permute(1, 2, 0)  # (h, w, K)
        h, w, C = f.shape
        if self.protocol.global_anchors:
            assert self._global_keys is not None and self._global_labels is not None
            keep = slice(2, None) if self._global_keys.shape[0] >= limit else slice(1, None)  # drop the oldest other
            self._global_keys = torch.cat(
                [self._global_keys[:1], self._global_keys[keep], f.reshape(1, h * w, C)], dim=0)
            self._global_labels = torch.cat(
                [self._global_labels[:1], self._global_labels[keep], lab.reshape(1, h * w, -1)], dim=0)
        else:
            fs = to_strips(f, self.config.tile)
            if self._extra_keys is None or self._extra_labels is None:
                self._extra_keys, self._extra_labels = fs[None], lab[None].clone()
            else:
                keep = slice(1, None) if 1 + self._extra_keys.shape[0] >= limit else slice(None)
                self._extra_keys = torch.cat([self._extra_keys[keep], fs[None]], dim=0)
                self._extra_labels = torch.cat([self._extra_labels[keep], lab[None]], dim=0)

    def insert_channel(self, position: int) -> None:
        """Insert an all-zero label channel at ``position`` in every context frame (a new object)."""
        K = self.num_channels
        if not 1 <= position <= K:
            raise ValueError(f"a new channel goes at 1..{K}, got {position}")

        def grow(t: torch.Tensor | None) -> torch.Tensor | None:
            if t is None:
                return None
            zero = t.new_zeros((*t.shape[:-1], 1))
            return torch.cat([t[..., :position], zero, t[..., position:]], dim=-1)

        self._labels = grow(self._labels)
        self._extra_labels = grow(self._extra_labels)
        self._global_labels = grow(self._global_labels)

    def zero_channel(self, position: int) -> None:
        """Set label channel ``position`` to 0 in every context frame (an object that left)."""
        for t in (self._labels, self._extra_labels, self._global_labels):
            if t is not None:
                t[..., position] = 0

    # ----------------------------------------------------------- propagation
    def predict(self, features: torch.Tensor) -> torch.Tensor:
        """Soft labels (K, h, w) of a frame from the current context, without storing it."""
        if self._keys is None or self._labels is None:
            raise RuntimeError("call reset() with the first frame before step()")
        if features.shape[0] != self._keys.shape[-1] or tuple(features.shape[1:]) != self._grid:
            raise ValueError(
                f"features must be (C, h, w) = {(self._keys.shape[-1], *self._grid)}, got {tuple(features.shape)}"
            )
        cfg = self.config
        proto = self.protocol
        q = self._normalise(features).contiguous()
        n = self._n
        if proto.global_anchors:
            windowed = [(self._keys[:n], self._labels[:n])]
            global_ = (self._global_keys, self._global_labels) if self._global_keys is not None else None
        elif self._extra_keys is None or self._extra_labels is None:  # the first anchor, then the queue
            windowed = [(self._keys[:n], self._labels[:n])]
            global_ = None
        else:  # the first anchor, the other anchors, then the queue
            windowed = [(self._keys[:1], self._labels[:1]), (self._extra_keys, self._extra_labels),
                        (self._keys[1:n], self._labels[1:n])]
            global_ = None
        return propagate_context(
            q,
            windowed,
            global_,
            temperature=cfg.temperature,
            topk=cfg.topk,
            radius=cfg.radius,
            window=proto.window,
            keep_ties=proto.keep_ties,
            tile=cfg.tile,
        )

    def push(self, features: torch.Tensor, labels: torch.Tensor) -> None:
        """Add a predicted frame (features, soft labels) to the queue; the oldest leaves when full."""
        assert self._keys is not None and self._labels is not None
        slots = self._keys.shape[0]
        if slots == self._first_slot:  # n_last_frames == 0: only the anchors are context
            return
        slot = self._next
        self._keys[slot] = to_strips(self._normalise(features), self.config.tile)
        self._labels[slot] = labels.to(self._labels.dtype).permute(1, 2, 0)
        self._n = min(self._n + 1, slots)
        self._next = slot + 1 if slot + 1 < slots else self._first_slot

    def step(self, features: torch.Tensor) -> torch.Tensor:
        """Predict a frame's soft labels (K, h, w), then add it to the queue."""
        soft = self.predict(features)
        self.push(features, soft)
        return soft
