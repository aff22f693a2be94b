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

Three layers: the per-frame session (:mod:`vidprop.tasks.session`), the
Segmenter and its run loop with the per-object backward pass
(:mod:`vidprop.tasks.segmenter`), and, here, the video job: the inputs
checked before any model loads (:func:`prepare_segment`), the run written
atomically in every format asked for (:class:`SegmentJob`).  The Segmenter
composes three separate parts: a feature extractor (any
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

import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Mapping, Sequence

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
from vidprop.io.writers import BackgroundWriter, VideoWriter, overlay_mask
from vidprop.tasks.base import Profile, background_output, check_output_folder, resize_frame
from vidprop.tasks.budget import check_model_input
from vidprop.tasks.segmenter import Segmenter
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
    #: The run's timings (``profile`` is their summary); each run has its own.
    timing: Profile = field(default_factory=Profile, compare=False, repr=False)


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
        folder or :class:`~vidprop.tasks.feature_cache.FeatureCache`): the video's
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
            from vidprop.tasks.feature_cache import as_cache

            cached = as_cache(feature_cache).features(driver.path, segmenter, name=name, backend=driver.backend,
                                                      progress=progress)
        n_objects = len({i for a in self.annotations.values() for i in a.ids})
        log.info(
            "segmenting %s (%dx%d -> model input %dx%d%s) with %d object(s) from %d annotated frame(s) -> %s",
            vinfo.path, vinfo.width, vinfo.height, target[0], target[1],
            f", {driver.num_frames} frames" if driver.num_frames else "", n_objects, len(self.annotations), out_dir,
        )
        frames_cfg = segmenter.config.frames
        log.info("model input %dx%d (frames: %s, rounding %s to multiples of %d, %s resize)", *target, frames_cfg.mode,
                 frames_cfg.rounding, frames_cfg.multiple, frames_cfg.interpolation)
        interp = frames_cfg.interpolation
        as_float = frames_cfg.resize_as_float
        replay = (lambda: driver.records(target, interp, as_float=as_float)) if overlay else None
        prof = Profile()  # this run's: the loop, the reader and the writer fill it
        with atomic_dir(out_dir, overwrite=self.overwrite) as tmp, \
                background_output(prof, tmp, vinfo, overlay, driver) as (writer, vw):
            masks = segmenter.segment_records(
                driver.records(target, interp, as_float=as_float), self.annotations, mode=self.mode,
                direction=direction, replay=replay,
                progress=progress, total=driver.num_frames, cached=cached, profile=prof,
            )
            names, exports, record_path = self._write(masks, tmp, writer, vw, fmts, keep_set, direction)
        summary = prof.summary()
        log.info("wrote %d masks to %s (%s)", len(names), out_dir, summary)
        return SegmentResult(
            output_dir=out_dir,
            num_frames=len(names),
            frame_names=tuple(names),
            overlay=out_dir / "overlay.mp4" if overlay else None,
            profile=summary,
            annotations=record_path,
            exports=exports,
            timing=prof,
        )

    def _write(
        self,
        masks: Iterable[tuple[FrameRecord, np.ndarray]],
        tmp: Path,
        writer: BackgroundWriter,
        vw: VideoWriter | None,
        fmts: Sequence[str],
        keep_set: set[str] | None,
        direction: Direction,
    ) -> tuple[list[str], dict[str, Path], Path | None]:
        """Submit the writes of every (record, mask) of the run into ``tmp`` (the atomic folder) to ``writer``.

        Returns the names of the frames, the exports written ({format: path
        under ``out_dir``}) and the path ``annotations.json`` will have (None
        when not written).
        """
        name, vinfo, out_dir = self.name, self.driver.info, self.out_dir
        names: list[str] = []
        indices: list[int] = []
        exports: dict[str, Path] = {}
        record_path = None
        palette = self.labels.palette()
        pal_arg = () if palette is None else (palette,)  # the DAVIS palette: write_indexed_png's default
        ctx = ExportContext(root=tmp, video=name, width=vinfo.width, height=vinfo.height, labels=self.labels,
                            frame_file=frame_file_namer(vinfo.path))
        writers = make_writers(fmts, ctx)
        for rec, m in masks:
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
        return names, exports, record_path


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
