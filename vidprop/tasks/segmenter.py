"""The Segmenter: the run loop of every segmentation, with the per-object backward pass.

:class:`Segmenter` composes three separate parts: a feature extractor (any
:class:`~vidprop.features.base.FeatureExtractor`), the
:class:`~vidprop.propagation.propagator.Propagator` with its
:class:`~vidprop.propagation.protocol.Protocol`, and the label conversions;
the propagator never knows which backbone made its features.  Its layers:
the per-frame session (:mod:`vidprop.tasks.session`), the run loop here
(:meth:`Segmenter.segment_records`, forward pass and backward passes), and the
video job with its writers (:mod:`vidprop.tasks.segment`, which also holds the
Python API's overview).

Annotations at any frame (``docs/annotations.md``): each annotated frame
becomes an anchor of the context with hard labels (the one-hot of that
frame's output mask); the ids an annotation holds are authoritative on its
frame (``mode="objects"``, the default; ids it does not hold keep being
propagated), or it is the complete labelling of its frame (``mode="frame"``:
ids it does not hold leave the video there).  A new id gets a new label
channel, in ascending id order.  Frames before the first annotation are
background, unless ``direction="both"``: then every object flows back from its
own first annotation (:mod:`vidprop.tasks.passes`).  With a
single annotation on the first frame every output is the published protocol's.

Each run owns its :class:`~vidprop.tasks.base.Profile` (a session its own,
:meth:`Segmenter.segment_records` the one it is given or a new one): two runs
or sessions of one Segmenter never share their timings.
"""

from __future__ import annotations

import itertools
import logging
from typing import Any, Callable, Iterable, Iterator, Mapping, Sequence

import numpy as np

from vidprop.errors import InputError
from vidprop.io.annotations import DIRECTIONS, Annotation, AnnotationMode, Direction
from vidprop.io.driver import FrameRecord
from vidprop.progress import progress_bar
from vidprop.tasks.base import Profile, PropagationTask
from vidprop.tasks.passes import BackwardPass, Spill, merge_backward, plan_backward_passes
from vidprop.tasks.session import SegmentSession

__all__ = ["Observer", "Segmenter"]

log = logging.getLogger(__name__)

Observer = Callable[[int, SegmentSession, np.ndarray], None]

class Segmenter(PropagationTask):
    """Propagate annotated masks through a stream of frames.

    Args:
        extractor: frames (B, 3, H, W) uint8 -> features (B, C, H/s, W/s).
        config: frame resizing and propagation settings (a TaskConfig).
    """

    default_preset = "davis-fast"

    def session(self, *, mode: AnnotationMode = "objects") -> SegmentSession:
        """A per-frame :class:`SegmentSession` (``mode``: "objects" or "frame") with a Profile of its own."""
        return SegmentSession(self, mode=mode, profile=Profile())

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
        each object's first annotation by propagating backwards from it (their model
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
        return (m for _, m in self.segment_records(self._records(frames), anns, mode=mode, direction=direction,
                                                     progress=progress, total=total))

    # ----------------------------------------------------------- the run loop
    def segment_records(
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
        profile: Profile | None = None,
    ) -> Iterator[tuple[FrameRecord, np.ndarray]]:
        """Yield (record, mask) in frame order: the run loop of :meth:`run`, ``segment``, ``batch`` and ``annotate``.

        ``records`` are :class:`~vidprop.io.driver.FrameRecord` with model
        inputs; ``replay`` re-reads them (the originals of frames a backward
        pass filled, for the overlay).  ``direction="both"`` fills every
        object's frames before its own first annotation with a backward pass
        from there (:mod:`vidprop.tasks.passes`).

        ``cached``: a :class:`~vidprop.tasks.feature_cache.CachedFeatures` to read
        the features from instead of extracting them.  ``observe(index,
        session, mask)`` is called after every frame the forward pass
        propagates or annotates, with its session (``last_soft``, ``ids``).
        ``resume`` = (frame c, a copy of the forward pass's session right after
        frame c, taken by ``observe`` in an earlier run with the same
        annotations up to c and no backward pass reaching past c): frames up
        to c are skipped (neither propagated nor yielded) and the forward pass
        goes on from there, exactly as it would.

        ``profile``: the run's :class:`~vidprop.tasks.base.Profile`, filled as
        the frames go (default: a new one, not kept); the caller that reports
        the run's timings passes its own.
        """
        if direction not in DIRECTIONS:
            raise ValueError(f"direction must be one of {', '.join(DIRECTIONS)}, got {direction!r}")
        prof = Profile() if profile is None else profile
        masks = {int(k): (v.mask if isinstance(v, Annotation) else v) for k, v in annotations.items()}
        sources = {int(k): v.source for k, v in annotations.items() if isinstance(v, Annotation)}
        if not masks:
            raise InputError("no annotation")
        first = min(masks)
        source: Iterator[FrameRecord] = iter(records)
        head = next(source, None)
        if head is None:
            raise InputError("the video has no frames")
        it: Iterator[FrameRecord] = itertools.chain([head], source)
        if first < head.index:
            raise InputError(f"{sources.get(first, f'annotation of frame {first}')}: frame {first} is before "
                             f"the first frame of the run ({head.index})")
        size0 = None if head.frame is None else (head.frame.shape[1], head.frame.shape[0])
        plan = _backward_plan(masks, mode, direction, head.index, None if resume is None else resume[0])
        bar = progress_bar(total=total, unit="frame", desc="segment", enabled=progress)
        n_out = 0
        last = head.index - 1
        back: Spill | None = None
        try:
            if plan:
                back = Spill()
                it = self._backward_passes(it, masks, plan, head.index, mode, replay, sources, progress, back,
                                           close_source=getattr(source, "close", None), cached=cached, profile=prof)
            end = plan[-1].frame if plan else head.index
            session = SegmentSession(self, mode=mode, profile=prof) if resume is None else resume[1]
            skip = -1 if resume is None else resume[0]
            for rec, f in self._features(it, need=lambda r: r.index >= first and r.index > skip, cached=cached,
                                         profile=prof):
                if rec.index <= skip:
                    last = rec.index
                    continue
                size = _record_size(rec, session, size0)
                out = session.advance(size, masks.get(rec.index), f, index=rec.index, source=sources.get(rec.index))
                if back is not None and rec.index < end:
                    out = np.where(out != 0, out, back.get(rec.index - head.index)).astype(np.uint8)
                if observe is not None and session.started:
                    observe(rec.index, session, out)
                last = rec.index
                n_out += 1
                prof.frames = n_out
                bar.update(1)
                yield rec, out
        finally:
            bar.close()
            if back is not None:
                back.close()
        missing = sorted(i for i in masks if i > last)
        if missing:
            i = missing[0]
            raise InputError(f"{sources.get(i, f'annotation of frame {i}')}: annotates frame {i} but the video "
                             f"ended after frame {last} ({last + 1} frames)")

    def _backward_passes(
        self,
        it: Iterator[FrameRecord],
        masks: Mapping[int, np.ndarray],
        plan: Sequence[BackwardPass],
        base: int,
        mode: AnnotationMode,
        replay: Callable[[], Iterable[FrameRecord]] | None,
        sources: Mapping[int, str],
        progress: bool,
        back: Spill,
        close_source: Callable[[], None] | None = None,
        cached: Any = None,
        profile: Profile | None = None,
    ) -> Iterator[FrameRecord]:
        """Run the backward passes of ``plan`` into ``back`` (merged, frames ``base`` .. last pass's frame - 1).

        Returns the records to run the forward pass on, from ``base``: the
        replayed ones (originals, for the overlay) when ``replay`` is given,
        else the spilled model inputs of the earlier frames, then the rest of
        ``it``.
        """
        end = plan[-1].frame
        inputs = Spill()
        try:
            metas: list[tuple[int, str]] = []
            held = None
            for rec in it:
                if rec.index >= end:
                    held = rec
                    break
                assert rec.model_input is not None
                inputs.put(len(metas), rec.model_input)
                metas.append((rec.index, rec.name))
            if held is None:
                last = metas[-1][0] if metas else end - 1
                raise InputError(f"{sources.get(end, f'annotation of frame {end}')}: annotates frame {end} "
                                 f"but the video ended after frame {last} ({last + 1} frames)")
            assert held.frame is not None
            h, w = held.frame.shape[:2]
            for pos in range(len(metas)):
                back.put(pos, np.zeros((h, w), np.uint8))
            for p in plan:
                self._one_backward_pass(p, held if p.frame == end else None, inputs, metas, base, (w, h),
                                        masks[p.frame], mode, sources, progress, back, cached=cached, profile=profile)
            if replay is not None:  # a second decode brings the originals (for the overlay)
                if close_source is not None:
                    close_source()  # stop the first read (its decoding thread) before the second
                inputs.close()
                return iter(replay())
            return itertools.chain(_spilled_records(inputs, metas), [held], it)
        except BaseException:
            inputs.close()
            raise

    def _one_backward_pass(
        self,
        p: BackwardPass,
        held: FrameRecord | None,
        inputs: Spill,
        metas: Sequence[tuple[int, str]],
        base: int,
        size: tuple[int, int],
        annotation: np.ndarray,
        mode: AnnotationMode,
        sources: Mapping[int, str],
        progress: bool,
        back: Spill,
        cached: Any = None,
        profile: Profile | None = None,
    ) -> None:
        """Propagate from ``p.frame`` back to ``p.lo``; merge its new ids into ``back``."""
        log.info("propagating objects %s backwards from frame %d to frame %d",
                 ", ".join(map(str, p.ids)), p.frame, p.lo)
        prof = Profile() if profile is None else profile
        session = SegmentSession(self, mode=mode, profile=prof)
        start = held if held is not None else FrameRecord(p.frame, metas[p.frame - base][1], None,
                                                          inputs.get(p.frame - base))
        back_recs = itertools.chain(
            [start],
            (FrameRecord(metas[pos][0], metas[pos][1], None, inputs.get(pos))
             for pos in range(p.frame - base - 1, p.lo - base - 1, -1)),
        )
        bar = progress_bar(total=p.frame - p.lo + 1, unit="frame", desc=f"segment (backward from {p.frame})",
                           enabled=progress)
        try:
            for rec, f in self._features(back_recs, cached=cached, profile=prof):
                m = session.advance(size, annotation if rec.index == p.frame else None, f, index=rec.index,
                                    source=sources.get(rec.index))
                if rec.index != p.frame:
                    pos = rec.index - base
                    back.put(pos, merge_backward(back.get(pos), m, p.ids))
                bar.update(1)
        finally:
            bar.close()


def _backward_plan(masks: Mapping[int, np.ndarray], mode: AnnotationMode, direction: Direction, start: int,
                   resume: int | None) -> list[BackwardPass]:
    """The backward passes of a run whose first frame is ``start`` (none unless ``direction="both"``).

    ``resume``: the frame a resumed run goes on after (no pass may reach past
    it; the frames up to it are the earlier run's).  A forward run with frames
    before its first annotation says so.
    """
    first = min(masks)
    plan = plan_backward_passes(masks, mode=mode, start=start) if direction == "both" else []
    if resume is not None:
        if plan and plan[-1].frame > resume:
            raise ValueError(f"cannot resume after frame {resume}: a backward pass reaches frame "
                             f"{plan[-1].frame - 1}")
        plan = []  # the frames up to the resumed one are the earlier run's
    elif first > start and direction == "forward":
        log.warning("frames %d..%d come before the first annotation (frame %d) and are written as "
                    "background; --direction both would fill them", start, first - 1, first)
    return plan


def _spilled_records(inputs: Spill, metas: Sequence[tuple[int, str]]) -> Iterator[FrameRecord]:
    """The spilled model inputs as records (no originals); the spill is closed at the end."""
    try:
        for pos, (idx, name) in enumerate(metas):
            yield FrameRecord(idx, name, None, inputs.get(pos))
    finally:
        inputs.close()


def _record_size(rec: FrameRecord, session: SegmentSession,
                 default: tuple[int, int] | None = None) -> tuple[int, int]:
    if rec.frame is not None:
        return rec.frame.shape[1], rec.frame.shape[0]
    if session.size is not None:
        return session.size
    assert default is not None
    return default
