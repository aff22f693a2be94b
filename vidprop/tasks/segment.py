"""Video object segmentation by label propagation: annotated frames in, masks of every frame out.

Python API (the CLI is a thin layer over it):

    from vidprop.tasks.segment import Segmenter, segment_video
    seg = Segmenter.from_pretrained(config="davis-fast")       # DIFT + protocol A
    for mask in seg.run(frames, first_mask):                   # frames: (H, W, 3) uint8 RGB
        ...                                                    # mask: (H, W) uint8 ids
    masks = seg.run(frames, annotations={0: m0, 35: m35})      # objects entering later, corrections
    session = seg.session()                                    # one frame at a time
    mask = session.step(frame, annotation=None)                # any step may bring an annotation
    segment_video("clip.mp4", "first.png", "results/", segmenter=seg)
    segment_video("clip.mp4", None, "results/", segmenter=seg, masks="Annotations/clip/", direction="both")

The Segmenter composes three separate parts: a feature extractor (any
:class:`~vidprop.features.base.FeatureExtractor`), the
:class:`~vidprop.propagation.propagator.Propagator` with its
:class:`~vidprop.propagation.protocol.Protocol`, and the label conversions;
the propagator never knows which backbone made its features.

Annotations at any frame (``docs/annotations.md``): each annotated frame
becomes an anchor of the context with hard labels (the one-hot of that
frame's output mask); the ids an annotation holds are authoritative on its
frame (``mode="objects"``, the default; ids it does not hold keep being
propagated), or it is the complete labelling of its frame (``mode="frame"``:
ids it does not hold leave the video there).  A new id gets a new label
channel, in ascending id order.  Frames before the first annotation are
background, unless ``direction="both"`` propagates backwards from it.  With a
single annotation on the first frame every output is the published protocol's.
"""

from __future__ import annotations

import bisect
import itertools
import logging
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Generator, Iterable, Iterator, Mapping, Sequence

import numpy as np
import torch

from vidprop.errors import InputError
from vidprop.io.annotations import (
    ANNOTATION_MODES,
    DIRECTIONS,
    Annotation,
    AnnotationMode,
    Direction,
    MaskSource,
    annotation_record,
    load_annotations,
    write_annotation_record,
)
from vidprop.io.atomic import atomic_dir, check_writable_target
from vidprop.io.driver import FrameRange, FrameRecord, VideoDriver, parse_frame_range
from vidprop.io.exports import COCO_FILE, CocoWriter, parse_formats, youtube_vos_folder
from vidprop.io.masks import write_indexed_png
from vidprop.io.source import write_source_record
from vidprop.io.video import Backend
from vidprop.io.writers import overlay_mask
from vidprop.progress import progress_bar
from vidprop.propagation.labels import object_ids
from vidprop.propagation.propagator import Propagator
from vidprop.propagation.protocol import protocol_for
from vidprop.tasks.base import Profile, PropagationTask, background_output, check_output_folder, resize_frame
from vidprop.tasks.budget import check_model_input

__all__ = [
    "Segmenter",
    "SegmentSession",
    "SegmentJob",
    "SegmentResult",
    "prepare_segment",
    "segment_video",
    "resize_frame",
]

log = logging.getLogger(__name__)

#: ``observe(frame index, session, mask)``: called by the run loop after each frame it propagates.
Observer = Callable[[int, "SegmentSession", np.ndarray], None]


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

    def __init__(self, segmenter: Segmenter, *, mode: AnnotationMode = "objects",
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
            small = resize_frame(frame, seg.config.frames.target_size(w, h), seg.config.frames.interpolation, as_float=seg.config.frames.resize_as_float)
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


class _Spill:
    """Fixed-size arrays in an anonymous temporary file, written and read by position (bounded RAM)."""

    def __init__(self, folder: str | Path | None = None) -> None:
        self._file = tempfile.TemporaryFile(prefix="vidprop-spill-", dir=folder)
        self._shape: tuple[int, ...] | None = None
        self._dtype: np.dtype | None = None
        self._nbytes = 0

    def put(self, pos: int, arr: np.ndarray) -> None:
        if self._shape is None:
            self._shape, self._dtype, self._nbytes = arr.shape, arr.dtype, arr.nbytes
        elif arr.shape != self._shape or arr.dtype != self._dtype:
            raise ValueError(f"spilled arrays must all be {self._shape} {self._dtype}, got {arr.shape} {arr.dtype}")
        self._file.seek(pos * self._nbytes)
        self._file.write(np.ascontiguousarray(arr).tobytes())

    def get(self, pos: int) -> np.ndarray:
        assert self._shape is not None and self._dtype is not None
        self._file.seek(pos * self._nbytes)
        data = self._file.read(self._nbytes)
        return np.frombuffer(data, dtype=self._dtype).reshape(self._shape)

    def close(self) -> None:
        self._file.close()


class Segmenter(PropagationTask):
    """Propagate annotated masks through a stream of frames.

    Args:
        extractor: frames (B, 3, H, W) uint8 -> features (B, C, H/s, W/s).
        config: frame resizing and propagation settings (a TaskConfig).
    """

    default_preset = "davis-fast"

    def session(self, *, mode: AnnotationMode = "objects") -> SegmentSession:
        """A per-frame :class:`SegmentSession` (``mode``: "objects" or "frame")."""
        self.last_profile = Profile()
        return SegmentSession(self, mode=mode, profile=self.last_profile)

    def run(
        self,
        frames: Iterable[np.ndarray],
        mask: np.ndarray | None = None,
        *,
        annotations: Mapping[int, np.ndarray] | None = None,
        mode: AnnotationMode = "objects",
        direction: Direction = "forward",
        progress: bool = False,
        total: int | None = None,
    ) -> Iterator[np.ndarray]:
        """Yield one (H, W) uint8 index mask per frame.

        ``frames`` are (H, W, 3) uint8 RGB at the original size (any iterable,
        consumed lazily), or ``(frame, resized_frame)`` pairs when resizing
        was already done (e.g. on a decoding thread).  ``mask`` annotates frame
        0 (its output is the mask itself); ``annotations`` maps frame indices to
        (H, W) index masks.  ``direction="both"`` also fills the frames before
        the first annotation by propagating backwards from it (their model
        inputs are spilled to a temporary file, not kept in memory).
        """
        anns = dict(annotations or {})
        if mask is not None:
            if 0 in anns:
                raise InputError("frame 0 is annotated twice (mask and annotations[0])")
            m = np.asarray(mask)
            if m.ndim != 2:
                raise InputError(f"the mask must be a 2-D index mask, got shape {m.shape}")
            if not m.any():
                raise InputError("the first-frame mask is empty (no object)")
            anns[0] = m
        if not anns:
            raise InputError("no annotation: give a first-frame mask or annotations={frame: mask}")
        return (m for _, m in self._segment_records(self._records(frames), anns, mode=mode, direction=direction,
                                                     progress=progress, total=total))

    def propagate_records(
        self,
        records: Iterable[FrameRecord],
        annotations: Mapping[int, np.ndarray | Annotation],
        **kwargs: Any,
    ) -> Iterator[tuple[FrameRecord, np.ndarray]]:
        """The run loop on a video driver's records: (record, mask) in frame order.

        What :meth:`run` and :class:`SegmentJob` use; for drivers built on it
        (``vidprop annotate``).  ``kwargs``: ``mode``, ``direction``,
        ``replay``, ``progress``, ``total``, ``cached`` (features read from a
        :class:`~vidprop.features.cache.CachedFeatures`), ``observe``
        (``observe(index, session, mask)`` after each frame).
        """
        return self._segment_records(records, annotations, **kwargs)

    # ----------------------------------------------------------- the batch runner
    def _segment_records(
        self,
        records: Iterable[FrameRecord],
        annotations: Mapping[int, np.ndarray | Annotation],
        *,
        mode: AnnotationMode = "objects",
        direction: Direction = "forward",
        replay: Callable[[], Iterable[FrameRecord]] | None = None,
        progress: bool = False,
        total: int | None = None,
        cached: Any = None,
        observe: Observer | None = None,
        resume: tuple[int, SegmentSession] | None = None,
    ) -> Iterator[tuple[FrameRecord, np.ndarray]]:
        """Yield (record, mask) in frame order; ``replay`` re-reads the video (a backward pass's originals).

        ``cached``: a :class:`~vidprop.features.cache.CachedFeatures` to read the
        features from instead of extracting them.  ``observe(index, session,
        mask)`` is called after every propagated or annotated frame (both
        passes), with the session that made it (its ``last_soft``, ``ids``).
        ``resume`` = (frame c, a copy of the forward pass's session right after
        frame c, taken by ``observe`` in an earlier run with the same
        annotations up to c): frames up to c are skipped (not propagated, not
        yielded) and the forward pass goes on from there, exactly as it would.
        """
        if direction not in DIRECTIONS:
            raise ValueError(f"direction must be one of {', '.join(DIRECTIONS)}, got {direction!r}")
        prof = self.last_profile = Profile()
        masks = {int(k): (v.mask if isinstance(v, Annotation) else v) for k, v in annotations.items()}
        sources = {int(k): v.source for k, v in annotations.items() if isinstance(v, Annotation)}
        if not masks:
            raise InputError("no annotation")
        first = min(masks)
        source: Iterator[FrameRecord] = iter(records)
        head = next(source, None)
        if head is None:
            raise InputError("the video has no frames")
        it = itertools.chain([head], source)
        if first < head.index:
            raise InputError(f"{sources.get(first, f'annotation of frame {first}')}: frame {first} is before "
                             f"the first frame of the run ({head.index})")
        bar = progress_bar(total=total, unit="frame", desc="segment", enabled=progress)
        n_out = 0
        last = head.index - 1
        try:
            if resume is not None:
                pass  # frames up to the resumed one (the backward pass included) are the earlier run's
            elif first > head.index:
                if direction == "forward":
                    log.warning("frames %d..%d come before the first annotation (frame %d) and are written as "
                                "background; --direction both would fill them", head.index, first - 1, first)
                else:
                    it = yield from self._backward(it, masks, first, mode, replay, sources, progress,
                                                   close_source=getattr(source, "close", None), cached=cached,
                                                   observe=observe)
                    n_out = prof.frames = first - head.index
                    bar.update(n_out)
            session = SegmentSession(self, mode=mode, profile=prof) if resume is None else resume[1]
            skip = -1 if resume is None else resume[0]
            for rec, f in self._features(it, need=lambda r: r.index >= first and r.index > skip, cached=cached):
                if rec.index <= skip:
                    last = rec.index
                    continue
                size = _record_size(rec, session)
                out = session.advance(size, masks.get(rec.index), f, index=rec.index, source=sources.get(rec.index))
                if observe is not None and session.started:
                    observe(rec.index, session, out)
                last = rec.index
                n_out += 1
                prof.frames = n_out
                bar.update(1)
                yield rec, out
        finally:
            bar.close()
        missing = sorted(i for i in masks if i > last)
        if missing:
            i = missing[0]
            raise InputError(f"{sources.get(i, f'annotation of frame {i}')}: annotates frame {i} but the video "
                             f"ended after frame {last} ({last + 1} frames)")

    def _backward(
        self,
        it: Iterator[FrameRecord],
        masks: Mapping[int, np.ndarray],
        first: int,
        mode: AnnotationMode,
        replay: Callable[[], Iterable[FrameRecord]] | None,
        sources: Mapping[int, str],
        progress: bool,
        close_source: Callable[[], None] | None = None,
        cached: Any = None,
        observe: Observer | None = None,
    ) -> Generator[tuple[FrameRecord, np.ndarray], None, Iterator[FrameRecord]]:
        """Propagate from the first annotated frame back to the run's start; yield those frames in order.

        Returns the iterator of the records from ``first`` on.  The model
        inputs of the earlier frames and their masks go to temporary files,
        so memory does not grow with ``first``.
        """
        inputs, out_masks = _Spill(), _Spill()
        try:
            metas: list[tuple[int, str]] = []
            held = None
            for rec in it:
                if rec.index >= first:
                    held = rec
                    break
                assert rec.model_input is not None
                inputs.put(len(metas), rec.model_input)
                metas.append((rec.index, rec.name))
            if held is None:
                last = metas[-1][0] if metas else first - 1
                raise InputError(f"{sources.get(first, f'annotation of frame {first}')}: annotates frame {first} "
                                 f"but the video ended after frame {last} ({last + 1} frames)")
            assert held.frame is not None
            size = (held.frame.shape[1], held.frame.shape[0])
            log.info("propagating backwards from frame %d to frame %d", first, metas[0][0])
            session = SegmentSession(self, mode=mode, profile=self.last_profile)
            back = itertools.chain(
                [held],
                (FrameRecord(idx, name, None, inputs.get(pos)) for pos, (idx, name) in reversed(list(enumerate(metas)))),
            )
            base = metas[0][0]
            bar = progress_bar(total=len(metas) + 1, unit="frame", desc="segment (backward)", enabled=progress)
            try:
                for rec, f in self._features(back, cached=cached):
                    m = session.advance(size, masks[first] if rec.index == first else None, f, index=rec.index,
                                        source=sources.get(rec.index))
                    if observe is not None and rec.index != first:
                        observe(rec.index, session, m)
                    if rec.index != first:
                        out_masks.put(rec.index - base, m)
                    bar.update(1)
            finally:
                bar.close()
            inputs.close()
            if replay is not None:  # a second decode brings the originals (for the overlay)
                if close_source is not None:
                    close_source()  # stop the first read (its decoding thread) before the second
                rit = iter(replay())
                for rec in rit:
                    if rec.index >= first:
                        return itertools.chain([rec], rit)
                    yield rec, out_masks.get(rec.index - base).copy()
                raise InputError(f"the video ended before frame {first} on the second read")
            for pos, (idx, name) in enumerate(metas):
                yield FrameRecord(idx, name, None, None), out_masks.get(pos).copy()
            return itertools.chain([held], it)
        finally:
            inputs.close()
            out_masks.close()


def _record_size(rec: FrameRecord, session: SegmentSession) -> tuple[int, int]:
    if rec.frame is not None:
        return rec.frame.shape[1], rec.frame.shape[0]
    assert session.size is not None
    return session.size


# --------------------------------------------------------------------- video level
@dataclass(frozen=True)
class SegmentResult:
    """Where a segmentation was written."""

    output_dir: Path
    num_frames: int
    frame_names: tuple[str, ...]
    overlay: Path | None
    profile: str = ""
    #: ``annotations.json`` (written when the run was more than one annotation on its first frame).
    annotations: Path | None = None
    #: Other formats written: {"coco": path, "youtube-vos": folder}.
    exports: Mapping[str, Path] = field(default_factory=dict)


def _mask_source(frame: str | int | None, value: Any, label: str) -> MaskSource:
    if isinstance(value, (str, Path)):
        return MaskSource(frame, Path(value), origin=label)
    return MaskSource(frame, np.asarray(value), origin=label)


@dataclass
class SegmentJob:
    """A segmentation whose inputs were checked and read; :meth:`run` it with a Segmenter.

    Made by :func:`prepare_segment` before any model is loaded, so that a
    wrong input costs no model loading.  The video is opened once, here.
    """

    driver: VideoDriver
    annotations: dict[int, Annotation]
    out_dir: Path
    name: str
    mode: AnnotationMode = "objects"
    overwrite: bool = False

    @property
    def first_only(self) -> bool:
        """One annotation, on the run's first frame (the video's, or START of ``frames``): a first-frame run,
        whatever the mode and direction (one annotation on the first frame leaves them nothing to change)."""
        return list(self.annotations) == [self.driver.range.start]

    def run(
        self,
        segmenter: Segmenter,
        *,
        overlay: bool = True,
        direction: Direction = "forward",
        formats: Sequence[str] | str = ("png",),
        progress: bool = True,
        keep: Iterable[str] | None = None,
        feature_cache: Any = None,
    ) -> SegmentResult:
        """Propagate and write ``out_dir`` atomically (see :func:`segment_video`).

        ``keep``: write only the frames with these names (all frames are
        propagated; the overlay shows every frame).  ``feature_cache`` (a
        folder or :class:`~vidprop.features.cache.FeatureCache`): the video's
        features are read from it, extracted into it first when missing.
        """
        if direction not in DIRECTIONS:
            raise InputError(f"direction must be one of {', '.join(DIRECTIONS)}, got {direction!r}")
        fmts = parse_formats(formats)
        keep_set = None if keep is None else set(keep)
        name, driver, out_dir = self.name, self.driver, self.out_dir
        if segmenter.config.sequence_changes(name):  # the preset has settings for this sequence (same extractor)
            log.info("preset %s: settings for sequence %r applied: %s", segmenter.config.name, name,
                     segmenter.config.sequence_changes(name))
            segmenter = type(segmenter)(segmenter.extractor, segmenter.config.for_sequence(name))
        vinfo = driver.info
        target = check_model_input(segmenter.config, vinfo.width, vinfo.height, source=str(vinfo.path))
        cached = None
        if feature_cache is not None:
            from vidprop.features.cache import as_cache

            cached = as_cache(feature_cache).features(driver.path, segmenter, name=name, backend=driver.backend,
                                                      progress=progress)
        n_objects = len({i for a in self.annotations.values() for i in a.ids})
        log.info(
            "segmenting %s (%dx%d -> model input %dx%d%s) with %d object(s) from %d annotated frame(s) -> %s",
            vinfo.path, vinfo.width, vinfo.height, target[0], target[1],
            f", {driver.num_frames} frames" if driver.num_frames else "", n_objects, len(self.annotations), out_dir,
        )
        names: list[str] = []
        indices: list[int] = []
        exports: dict[str, Path] = {}
        record_path = None
        frames_cfg = segmenter.config.frames
        if frames_cfg.mode == "short_side" and min(target) != frames_cfg.short_side:
            log.info("frames: short side %d rounded (%s) to %d, a multiple of %d: model input %dx%d",
                     frames_cfg.short_side, frames_cfg.rounding, min(target), frames_cfg.multiple, *target)
        interp = frames_cfg.interpolation
        as_float = frames_cfg.resize_as_float
        replay = (lambda: driver.records(target, interp, as_float=as_float)) if overlay else None
        with atomic_dir(out_dir, overwrite=self.overwrite) as tmp, \
                background_output(segmenter, tmp, vinfo, overlay, driver) as (writer, vw):
            coco = CocoWriter(name, vinfo.width, vinfo.height) if "coco" in fmts else None
            yt_dir = youtube_vos_folder(tmp, name) if "youtube-vos" in fmts else None
            if yt_dir is not None:
                yt_dir.mkdir(parents=True)
            for rec, m in segmenter._segment_records(
                driver.records(target, interp, as_float=as_float), self.annotations, mode=self.mode, direction=direction,
                replay=replay, progress=progress, total=driver.num_frames, cached=cached,
            ):
                names.append(rec.name)
                indices.append(rec.index)
                if keep_set is None or rec.name in keep_set:
                    if "png" in fmts:
                        writer.submit(write_indexed_png, tmp / f"{rec.name}.png", m)
                    if yt_dir is not None:
                        writer.submit(write_indexed_png, yt_dir / f"{rec.name}.png", m)
                    if coco is not None:
                        writer.submit(coco.add, rec.index, rec.name, m)
                if vw is not None and rec.frame is not None:
                    writer.submit(lambda fr, mm: vw.write(overlay_mask(fr, mm)), rec.frame, m)
            if coco is not None:
                writer.submit(coco.write, tmp / COCO_FILE)
                exports["coco"] = out_dir / COCO_FILE
            if yt_dir is not None:
                exports["youtube-vos"] = youtube_vos_folder(out_dir, name)
            if not self.first_only:  # README: only runs with annotations beyond a first-frame mask
                record = annotation_record(self.annotations, mode=self.mode, direction=direction, frames=indices)
                writer.submit(write_annotation_record, tmp / "annotations.json", record)
                record_path = out_dir / "annotations.json"
            n_written, first = len(names), min(indices, default=0)
            writer.submit(lambda: write_source_record(tmp, vinfo, frames=n_written, task="segment",
                                                      first_frame=first))  # for `vidprop view`
        prof = segmenter.last_profile.summary()
        log.info("wrote %d masks to %s (%s)", len(names), out_dir, prof)
        return SegmentResult(
            output_dir=out_dir,
            num_frames=len(names),
            frame_names=tuple(names),
            overlay=out_dir / "overlay.mp4" if overlay else None,
            profile=prof,
            annotations=record_path,
            exports=exports,
        )


def prepare_segment(
    video: str | Path,
    mask: str | Path | np.ndarray | None,
    out: str | Path,
    *,
    annotations: Mapping[int | str, str | Path | np.ndarray] | Sequence[MaskSource] | None = None,
    masks: str | Path | None = None,
    mode: AnnotationMode = "objects",
    name: str | None = None,
    overwrite: bool = False,
    resize_mask: bool = False,
    backend: Backend = "auto",
    frames: FrameRange | str | None = None,
    max_frames: int | None = None,
    allow_no_annotation: bool = False,
) -> SegmentJob:
    """Open the video, read and check every annotation and the output folder; load no model.

    ``mask`` annotates the run's first frame; ``annotations`` maps frame
    references (indices, or a frame folder's file stems) to mask files or
    arrays; ``masks`` is a folder of ``<frame>.png`` annotations.  Raises an
    InputError naming the file for any bad input (see
    :func:`vidprop.io.annotations.load_annotations`).  ``allow_no_annotation``:
    the caller adds annotations to the job later (``segment --points``).
    """
    if mode not in ANNOTATION_MODES:
        raise InputError(f"annotation mode must be one of {', '.join(ANNOTATION_MODES)}, got {mode!r}")
    fr = frames if isinstance(frames, FrameRange) else parse_frame_range(frames, max_frames)
    if isinstance(frames, FrameRange) and max_frames is not None:
        fr = FrameRange(fr.start, fr.stop, max_frames)
    driver = VideoDriver(video, backend=backend, frames=fr)
    sources: list[MaskSource] = []
    if mask is not None:
        sources.append(_mask_source(None, mask, "the mask"))
    if isinstance(annotations, Mapping):
        sources += [_mask_source(k, v, f"annotation of frame {k}") for k, v in annotations.items()]
    elif annotations:
        sources += list(annotations)
    if sources or masks is not None or not allow_no_annotation:
        anns = load_annotations(driver, sources, masks_dir=masks, mode=mode, resize_mask=resize_mask)
    else:
        anns = {}
    name = name or driver.info.name
    out_dir = Path(out) / name
    check_writable_target(out_dir, overwrite)
    check_output_folder(out_dir)
    return SegmentJob(driver=driver, annotations=anns, out_dir=out_dir, name=name, mode=mode, overwrite=overwrite)


def segment_video(
    video: str | Path,
    mask: str | Path | np.ndarray | None,
    out: str | Path,
    *,
    segmenter: Segmenter,
    name: str | None = None,
    overwrite: bool = False,
    overlay: bool = True,
    resize_mask: bool = False,
    backend: Backend = "auto",
    progress: bool = True,
    annotations: Mapping[int | str, str | Path | np.ndarray] | None = None,
    masks: str | Path | None = None,
    mode: AnnotationMode = "objects",
    direction: Direction = "forward",
    formats: Sequence[str] | str = ("png",),
    frames: FrameRange | str | None = None,
    max_frames: int | None = None,
    feature_cache: Any = None,
) -> SegmentResult:
    """Segment a video file or frame folder and write ``out/<name>/`` atomically.

    ``mask`` annotates the first frame; ``annotations`` ({frame: file or
    array}) and ``masks`` (a folder of ``<frame>.png``) annotate any frames
    (``mode``, ``direction``: see :class:`Segmenter`).  When the segmenter's
    config has per-sequence settings for ``name`` (the published DAVIS
    preset does, for ``shooting``), they are applied for this video.  Writes,
    per ``formats``: one indexed PNG per frame (``png``: DAVIS palette, the
    input's size; named like the frames of a folder, else ``00000.png ...``),
    ``coco.json`` (``coco``), ``youtube-vos/Annotations/<name>/``
    (``youtube-vos``); with ``overlay``, ``overlay.mp4`` (H.264, yuv420p);
    with annotations beyond one on the first frame, ``annotations.json``.
    ``frames`` ("START:END") and ``max_frames`` select a part of the video.
    Nothing is left under the final name unless every frame was written; an
    existing output folder is replaced only with ``overwrite``.
    ``feature_cache``: a folder of cached features (``docs/annotate.md``):
    the video's features are extracted into it once and read afterwards.
    """
    job = prepare_segment(video, mask, out, annotations=annotations, masks=masks, mode=mode, name=name,
                          overwrite=overwrite, resize_mask=resize_mask, backend=backend, frames=frames,
                          max_frames=max_frames)
    return job.run(segmenter, overlay=overlay, direction=direction, formats=formats, progress=progress,
                   feature_cache=feature_cache)
