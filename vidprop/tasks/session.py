"""The per-frame segmentation session: any frame may bring an annotation (``docs/annotations.md``).

:class:`SegmentSession` is what :meth:`vidprop.tasks.segment.Segmenter.session`
returns and what its run loop (forward and backward passes) steps through.
"""

from __future__ import annotations

import bisect
import time
from typing import Any

import numpy as np
import torch

from vidprop.errors import InputError
from vidprop.io.annotations import ANNOTATION_MODES, AnnotationMode
from vidprop.propagation.labels import object_ids
from vidprop.propagation.propagator import Propagator
from vidprop.propagation.protocol import protocol_for
from vidprop.tasks.base import Profile, resize_frame

__all__ = ["SegmentSession"]


class SegmentSession:
    """Propagation one frame at a time; any frame may bring an annotation (new or known ids).

    The analogue of Cutie's ``InferenceCore.step``::

        session = segmenter.session()
        for t, frame in enumerate(frames):
            mask = session.step(frame, annotation=masks.get(t))

    Before the first annotation, frames are all background (nothing is
    known yet) and no features are computed.  The first annotation starts the
    context (its output is the annotation itself); later ones become anchors
    and their frame's output follows the annotation mode (see the module
    docstring).  ``ids`` are the object ids known so far, ascending.
    """

    def __init__(self, segmenter: Any,  # a vidprop.tasks.segment.Segmenter (not imported: no cycle)
                 *, mode: AnnotationMode = "objects",
                 profile: Profile | None = None) -> None:
        if mode not in ANNOTATION_MODES:
            raise ValueError(f"mode must be one of {', '.join(ANNOTATION_MODES)}, got {mode!r}")
        self.segmenter = segmenter
        self.mode = mode
        self.protocol = protocol_for(segmenter.config.propagation)
        self.propagator = Propagator(segmenter.config.propagation)  # its protocol comes from the config
        self.profile = profile if profile is not None else Profile()
        self.ids: list[int] = []
        self.size: tuple[int, int] | None = None  # (W, H) of the frames
        self.frames = 0  # frames stepped so far
        self.started = False
        #: (frame index, ids) of every annotation applied, in order.
        self.annotated: list[tuple[int, tuple[int, ...]]] = []
        #: Soft labels (K, h, w) of the last propagated frame (before its annotation, if any); None before.
        self.last_soft: torch.Tensor | None = None

    @property
    def num_anchors(self) -> int:
        return self.propagator.num_anchors

    # ----------------------------------------------------------- public
    def step(self, frame: np.ndarray, annotation: np.ndarray | None = None) -> np.ndarray:
        """One (H, W, 3) uint8 RGB frame in (optionally with its (H, W) index-mask annotation) -> (H, W) uint8 ids."""
        frame = np.asarray(frame)
        if frame.ndim != 3 or frame.shape[2] != 3:
            raise InputError(f"a frame must be (H, W, 3) RGB, got shape {frame.shape}")
        h, w = frame.shape[:2]
        index = self.frames
        seg = self.segmenter

        def features() -> torch.Tensor:
            t0 = time.perf_counter()
            fc = seg.config.frames
            small = resize_frame(frame, fc.target_size(w, h), fc.interpolation, as_float=fc.resize_as_float)
            x = torch.from_numpy(np.ascontiguousarray(small)[None]).permute(0, 3, 1, 2)
            f = seg.extractor.extract(x, indices=[index])[0]
            self.profile.add("extract", time.perf_counter() - t0)
            return f

        return self.advance((w, h), annotation, features, index=index)

    # ----------------------------------------------------------- core
    def needs_features(self, annotation: np.ndarray | None) -> bool:
        """Whether the next frame is propagated (so its features are needed)."""
        return self.started or annotation is not None

    def advance(self, size: tuple[int, int], annotation: np.ndarray | None, features: Any,
                *, index: int | None = None, source: str | None = None) -> np.ndarray:
        """Advance by one frame of ``size`` = (W, H) whose features are given (a tensor or a callable).

        ``features`` may be None only when :meth:`needs_features` is false.
        """
        index = self.frames if index is None else index
        w, h = size
        if self.size is None:
            self.size = (w, h)
        elif (w, h) != self.size:
            raise InputError(f"frame {index} is {w}x{h}, the first frame was {self.size[0]}x{self.size[1]}")
        ann = None if annotation is None else self._check_annotation(annotation, index, source)
        self.frames += 1
        if not self.started:
            if ann is None:
                return np.zeros((h, w), np.uint8)
            return self._start(ann, self._get(features), index)
        f = self._get(features)
        prof = self.profile
        t0 = time.perf_counter()
        soft = self.propagator.predict(f)  # (K, h, w)
        self.last_soft = soft
        prof.add("propagate", time.perf_counter() - t0)
        t0 = time.perf_counter()
        stride = self.segmenter.extractor.stride
        if ann is None:
            self.propagator.push(f, soft)  # the unnormalised soft labels go into the queue
            out, _ = self.protocol.decode_mask(soft, stride, self.size, self.ids)
            prof.add("postprocess", time.perf_counter() - t0)
            return out
        ann_ids = [int(v) for v in np.unique(ann) if v != 0]
        for i in ann_ids:
            if i not in self.ids:  # a new object: a zero channel in every context frame, ids stay ascending
                pos = bisect.bisect_left(self.ids, i)
                self.ids.insert(pos, i)
                self.propagator.insert_channel(pos + 1)
                soft = torch.cat([soft[: pos + 1], soft.new_zeros((1, *soft.shape[1:])), soft[pos + 1 :]], dim=0)
        if self.mode == "frame":
            for i in self.ids:
                if i not in ann_ids:  # it leaves the video here
                    self.propagator.zero_channel(1 + self.ids.index(i))
            out = ann
        else:
            pred, alt = self.protocol.decode_mask(soft, stride, self.size, self.ids, exclude=ann_ids)
            assert alt is not None
            taken = np.isin(pred, ann_ids)  # predicted as an annotated id: not where the annotation puts it
            out = np.where(ann > 0, ann, np.where(taken, alt, pred)).astype(np.uint8)
        labels = self.protocol.encode_mask(out, tuple(f.shape[-2:]), self.ids)  # hard, like the first anchor's
        self.propagator.add_anchor(f, labels.to(f.device))
        self.annotated.append((index, tuple(ann_ids)))
        prof.add("postprocess", time.perf_counter() - t0)
        return out

    def _get(self, features: Any) -> torch.Tensor:
        f = features() if callable(features) else features
        if f is None:
            raise ValueError("this frame is propagated: its features are needed")
        return f

    def _check_annotation(self, annotation: np.ndarray, index: int, source: str | None) -> np.ndarray:
        ann = np.asarray(annotation)
        what = source or f"the annotation of frame {index}"
        if ann.ndim != 2:
            raise InputError(f"{what}: an annotation must be a 2-D index mask, got shape {ann.shape}")
        assert self.size is not None
        w0, h0 = self.size
        if ann.shape != (h0, w0):
            raise InputError(
                f"{what}: the mask is {ann.shape[1]}x{ann.shape[0]} but the frames are {w0}x{h0}; "
                "resize the mask (--resize-mask does a nearest resize)"
            )
        if ann.dtype != np.uint8:
            if ann.size and (ann.min() < 0 or ann.max() > 255):
                raise InputError(f"{what}: object ids must be in 0..255")
            ann = ann.astype(np.uint8)
        if self.mode == "objects" and not ann.any():
            raise InputError(f"{what}: the mask is empty (no object); an annotation in objects mode must hold one")
        return np.ascontiguousarray(ann)

    def _start(self, ann: np.ndarray, f: torch.Tensor, index: int) -> np.ndarray:
        t0 = time.perf_counter()
        self.ids = object_ids(ann)
        labels = self.protocol.encode_mask(ann, tuple(f.shape[-2:]), self.ids)  # (K, h, w)
        self.propagator.reset(f, labels.to(f.device))
        self.started = True
        self.annotated.append((index, tuple(self.ids)))
        self.profile.add("propagate", time.perf_counter() - t0)
        return ann
