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
background, unless ``direction="both"``: then every object flows back from its
own first annotation (:mod:`vidprop.tasks.passes`).  With a
single annotation on the first frame every output is the published protocol's.
"""

from __future__ import annotations

import itertools
import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator, Mapping, Sequence

import numpy as np

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
from vidprop.io.exports import EXPORT_TARGETS, parse_formats, write_labels_file, youtube_vos_folder
from vidprop.io.formats import ExportContext, frame_file_namer, make_writers
from vidprop.io.formats.labels import LabelMap, read_labels
from vidprop.io.formats.read import annotation_export_sources, is_annotation_export
from vidprop.io.masks import davis_palette, write_indexed_png
from vidprop.io.source import write_source_record
from vidprop.io.video import Backend
from vidprop.io.writers import overlay_mask
from vidprop.progress import progress_bar
from vidprop.tasks.base import Profile, PropagationTask, background_output, check_output_folder, resize_frame
from vidprop.tasks.budget import check_model_input
from vidprop.tasks.passes import BackwardPass, Spill, merge_backward, plan_backward_passes
from vidprop.tasks.session import SegmentSession

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

#: ``observe(frame index, session, mask)``: called by the run loop after each frame of its forward pass.
Observer = Callable[[int, SegmentSession, np.ndarray], None]

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
    ) -> Iterator[tuple[FrameRecord, np.ndarray]]:
        """Yield (record, mask) in frame order: the run loop of :meth:`run`, ``segment``, ``batch`` and ``annotate``.

        ``records`` are :class:`~vidprop.io.driver.FrameRecord` with model
        inputs; ``replay`` re-reads them (the originals of frames a backward
        pass filled, for the overlay).  ``direction="both"`` fills every
        object's frames before its own first annotation with a backward pass
        from there (:mod:`vidprop.tasks.passes`).

        ``cached``: a :class:`~vidprop.features.cache.CachedFeatures` to read
        the features from instead of extracting them.  ``observe(index,
        session, mask)`` is called after every frame the forward pass
        propagates or annotates, with its session (``last_soft``, ``ids``).
        ``resume`` = (frame c, a copy of the forward pass's session right after
        frame c, taken by ``observe`` in an earlier run with the same
        annotations up to c and no backward pass reaching past c): frames up
        to c are skipped (neither propagated nor yielded) and the forward pass
        goes on from there, exactly as it would.
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
        it: Iterator[FrameRecord] = itertools.chain([head], source)
        if first < head.index:
            raise InputError(f"{sources.get(first, f'annotation of frame {first}')}: frame {first} is before "
                             f"the first frame of the run ({head.index})")
        size0 = None if head.frame is None else (head.frame.shape[1], head.frame.shape[0])
        plan = plan_backward_passes(masks, mode=mode, start=head.index) if direction == "both" else []
        if resume is not None:
            if plan and plan[-1].frame > resume[0]:
                raise ValueError(f"cannot resume after frame {resume[0]}: a backward pass reaches frame "
                                 f"{plan[-1].frame - 1}")
            plan = []  # the frames up to the resumed one are the earlier run's
        elif first > head.index and direction == "forward":
            log.warning("frames %d..%d come before the first annotation (frame %d) and are written as "
                        "background; --direction both would fill them", head.index, first - 1, first)
        bar = progress_bar(total=total, unit="frame", desc="segment", enabled=progress)
        n_out = 0
        last = head.index - 1
        back: Spill | None = None
        try:
            if plan:
                back = Spill()
                it = self._backward_passes(it, masks, plan, head.index, mode, replay, sources, progress, back,
                                           close_source=getattr(source, "close", None), cached=cached)
            end = plan[-1].frame if plan else head.index
            session = SegmentSession(self, mode=mode, profile=prof) if resume is None else resume[1]
            skip = -1 if resume is None else resume[0]
            for rec, f in self._features(it, need=lambda r: r.index >= first and r.index > skip, cached=cached):
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

    #: The former private name of :meth:`segment_records`.
    _segment_records = segment_records

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
                                        masks[p.frame], mode, sources, progress, back, cached=cached)
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
    ) -> None:
        """Propagate from ``p.frame`` back to ``p.lo``; merge its new ids into ``back``."""
        log.info("propagating objects %s backwards from frame %d to frame %d",
                 ", ".join(map(str, p.ids)), p.frame, p.lo)
        session = SegmentSession(self, mode=mode, profile=self.last_profile)
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
            for rec, f in self._features(back_recs, cached=cached):
                m = session.advance(size, annotation if rec.index == p.frame else None, f, index=rec.index,
                                    source=sources.get(rec.index))
                if rec.index != p.frame:
                    pos = rec.index - base
                    back.put(pos, merge_backward(back.get(pos), m, p.ids))
                bar.update(1)
        finally:
            bar.close()


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
    #: Other formats written: {"coco": path, "youtube-vos": folder, "cvat-video": path, "mots": folder, ...}.
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
    #: Object names and colours (the colour masks' colours, a CVAT export's labels, ``--labels``).
    labels: LabelMap = field(default_factory=LabelMap)

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
        log.info("model input %dx%d (frames: %s, rounding %s to multiples of %d, %s resize)", *target, frames_cfg.mode,
                 frames_cfg.rounding, frames_cfg.multiple, frames_cfg.interpolation)
        interp = frames_cfg.interpolation
        as_float = frames_cfg.resize_as_float
        replay = (lambda: driver.records(target, interp, as_float=as_float)) if overlay else None
        palette = self.labels.palette()
        pal_arg = () if palette is None else (palette,)  # the DAVIS palette: write_indexed_png's default
        with atomic_dir(out_dir, overwrite=self.overwrite) as tmp, \
                background_output(segmenter, tmp, vinfo, overlay, driver) as (writer, vw):
            ctx = ExportContext(root=tmp, video=name, width=vinfo.width, height=vinfo.height, labels=self.labels,
                                frame_file=frame_file_namer(vinfo.path))
            writers = make_writers(fmts, ctx)
            for rec, m in segmenter.segment_records(
                driver.records(target, interp, as_float=as_float), self.annotations, mode=self.mode,
                direction=direction, replay=replay,
                progress=progress, total=driver.num_frames, cached=cached,
            ):
                names.append(rec.name)
                indices.append(rec.index)
                if keep_set is None or rec.name in keep_set:
                    if "png" in fmts:
                        writer.submit(write_indexed_png, tmp / f"{rec.name}.png", m, *pal_arg)
                    for fw in writers:
                        writer.submit(fw.add, rec.index, rec.name, m)
                if vw is not None and rec.frame is not None:
                    writer.submit(lambda fr, mm: vw.write(overlay_mask(fr, mm)), rec.frame, m)
            for fw in writers:
                writer.submit(fw.finish)
                exports[fw.fmt] = (youtube_vos_folder(out_dir, name) if fw.fmt == "youtube-vos"
                                   else out_dir / EXPORT_TARGETS[fw.fmt])
            if self.labels.names or self.labels.colours:
                writer.submit(write_labels_file, tmp, self.labels)
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
    labels: LabelMap | str | Path | None = None,
    allow_no_annotation: bool = False,
) -> SegmentJob:
    """Open the video, read and check every annotation and the output folder; load no model.

    ``mask`` annotates the run's first frame; ``annotations`` maps frame
    references (indices, or a frame folder's file stems) to mask files or
    arrays; ``masks`` is a folder of ``<frame>.png`` annotations, a CVAT for
    video XML or a MOTS folder / txt file; ``labels`` (a LabelMap or a
    ``--labels`` file) names the objects and gives their colours.  Raises an
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
    given = labels if isinstance(labels, LabelMap) or labels is None else read_labels(labels)
    found = LabelMap()
    if masks is not None and is_annotation_export(masks):
        more, found = annotation_export_sources(masks, driver)
        sources, masks = sources + more, None
    if sources or masks is not None or not allow_no_annotation:
        anns = load_annotations(driver, sources, masks_dir=masks, mode=mode, resize_mask=resize_mask,
                                colour_ids=given.colour_ids() if given is not None else None)
    else:
        anns = {}
    davis = davis_palette()
    drawn = LabelMap(colours={i: c for a in anns.values() for i, c in a.colours.items()
                              if tuple(int(v) for v in davis[i]) != c})  # colours other than the DAVIS palette's
    name = name or driver.info.name
    out_dir = Path(out) / name
    check_writable_target(out_dir, overwrite)
    check_output_folder(out_dir)
    return SegmentJob(driver=driver, annotations=anns, out_dir=out_dir, name=name, mode=mode, overwrite=overwrite,
                      labels=drawn.merged(found).merged(given))


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
    labels: LabelMap | str | Path | None = None,
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
                          max_frames=max_frames, labels=labels)
    return job.run(segmenter, overlay=overlay, direction=direction, formats=formats, progress=progress,
                   feature_cache=feature_cache)
