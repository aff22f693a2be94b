"""Video object segmentation by label propagation: a first-frame mask in, masks out.

Python API (the CLI is a thin layer over it):

    from vidprop.tasks.segment import Segmenter, segment_video
    seg = Segmenter.from_pretrained(config="davis-fast")       # DIFT + protocol A
    for mask in seg.run(frames, first_mask):                   # frames: (H, W, 3) uint8 RGB
        ...                                                    # mask: (H, W) uint8 ids
    segment_video("clip.mp4", "first.png", "results/", segmenter=seg)

The Segmenter composes three separate parts: a feature extractor (any
:class:`~vidprop.features.base.FeatureExtractor`), the
:class:`~vidprop.propagation.propagator.Propagator` and the label
conversions; the propagator never knows which backbone made its features.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Iterator

import numpy as np

from vidprop.errors import InputError
from vidprop.io.atomic import atomic_dir, check_writable_target
from vidprop.io.masks import read_mask, resize_mask_nearest, write_indexed_png
from vidprop.io.video import Backend, open_video
from vidprop.io.writers import overlay_mask
from vidprop.propagation.labels import decode_crw, decode_dino, labels_bilinear, labels_nearest, object_ids
from vidprop.propagation.propagator import Propagator
from vidprop.tasks.base import Profile, PropagationTask, background_output, resize_frame, tap_originals
from vidprop.progress import progress_bar

__all__ = ["Segmenter", "segment_video", "SegmentResult", "resize_frame"]

log = logging.getLogger(__name__)


class Segmenter(PropagationTask):
    """Propagate a first-frame index mask through a stream of frames.

    Args:
        extractor: frames (B, 3, H, W) uint8 -> features (B, C, H/s, W/s).
        config: frame resizing and propagation settings (a TaskConfig).
    """

    default_preset = "davis-fast"

    # ------------------------------------------------------------------ core
    def run(
        self,
        frames: Iterable[np.ndarray],
        mask: np.ndarray,
        *,
        progress: bool = False,
        total: int | None = None,
    ) -> Iterator[np.ndarray]:
        """Yield one (H, W) uint8 index mask per frame; the first is ``mask`` itself.

        ``frames`` are (H, W, 3) uint8 RGB at the original size (any iterable,
        consumed lazily), or ``(frame, resized_frame)`` pairs when resizing
        was already done (e.g. on a decoding thread).
        """
        return self._run(frames, mask, progress=progress, total=total)

    def _run(
        self, frames: Iterable, mask: np.ndarray, *, progress: bool, total: int | None
    ) -> Iterator[np.ndarray]:
        cfg = self.config
        ext = self.extractor
        prof = self.last_profile = Profile()
        if mask.ndim != 2:
            raise InputError(f"the mask must be a 2-D index mask, got shape {mask.shape}")
        mask = np.ascontiguousarray(mask.astype(np.uint8))
        ids = object_ids(mask)
        if not ids:
            raise InputError("the first-frame mask is empty (no object)")
        prop = Propagator(cfg.propagation)
        bar = progress_bar(total=total, unit="frame", desc="segment", enabled=progress)
        index = 0
        size: tuple[int, int] | None = None
        try:
            for index, orig, _, f in self._features(frames):
                if size is None:
                    h0, w0 = orig.shape[:2]
                    size = (w0, h0)
                    if mask.shape != (h0, w0):
                        raise InputError(
                            f"the mask is {mask.shape[1]}x{mask.shape[0]} but the frames are {w0}x{h0}; "
                            "resize the mask (--resize-mask does a nearest resize)"
                        )
                elif (orig.shape[1], orig.shape[0]) != size:
                    raise InputError(
                        f"frame {index} is {orig.shape[1]}x{orig.shape[0]}, the first frame was {size[0]}x{size[1]}"
                    )
                t0 = time.perf_counter()
                if index == 0:
                    grid = tuple(f.shape[-2:])
                    if cfg.propagation.protocol == "dino":
                        labels = labels_nearest(mask, grid, ids)  # (K, h, w) hard
                    else:
                        labels = labels_bilinear(mask, grid, ids)  # (K, h, w) soft at edges
                    prop.reset(f, labels.to(f.device))
                    out = mask
                    prof.add("propagate", time.perf_counter() - t0)
                else:
                    soft = prop.step(f)  # (K, h, w)
                    prof.add("propagate", time.perf_counter() - t0)
                    t0 = time.perf_counter()
                    if cfg.propagation.protocol == "dino":
                        out = decode_dino(soft, ext.stride, size, ids)
                    else:
                        out = decode_crw(soft, size, ids)
                    prof.add("postprocess", time.perf_counter() - t0)
                prof.frames = index + 1
                bar.update(1)
                yield out
        finally:
            bar.close()
        if size is None:
            raise InputError("the video has no frames")


@dataclass(frozen=True)
class SegmentResult:
    """Where a segmentation was written."""

    output_dir: Path
    num_frames: int
    frame_names: tuple[str, ...]
    overlay: Path | None
    profile: str = ""


def segment_video(
    video: str | Path,
    mask: str | Path | np.ndarray,
    out: str | Path,
    *,
    segmenter: Segmenter,
    name: str | None = None,
    overwrite: bool = False,
    overlay: bool = True,
    resize_mask: bool = False,
    backend: Backend = "auto",
    progress: bool = True,
) -> SegmentResult:
    """Segment a video file or frame folder and write ``out/<name>/`` atomically.

    When the segmenter's config has per-sequence settings for ``name`` (the
    published DAVIS preset does, for ``shooting``), they are applied for this
    video.  Writes one indexed PNG per frame (DAVIS palette, the input's size; named
    like the frames of a folder, else ``00000.png ...``) and, with
    ``overlay``, ``overlay.mp4`` (H.264, yuv420p).  Nothing is left under the
    final name unless every frame was written; an existing output folder is
    replaced only with ``overwrite``.
    """
    video = Path(video)
    if isinstance(mask, (str, Path)):
        mask_arr, _ = read_mask(mask)
        mask_desc = str(mask)
    else:
        mask_arr = np.asarray(mask, dtype=np.uint8)
        mask_desc = "the mask"
        if not object_ids(mask_arr):
            raise InputError("the first-frame mask is empty (no object)")
    reader = open_video(video, backend=backend)
    vinfo = reader.info
    name = name or vinfo.name
    out_dir = Path(out) / name
    check_writable_target(out_dir, overwrite)  # before any work
    if mask_arr.shape != (vinfo.height, vinfo.width):
        if not resize_mask:
            raise InputError(
                f"{mask_desc}: mask size {mask_arr.shape[1]}x{mask_arr.shape[0]} differs from the frames of "
                f"{video} ({vinfo.width}x{vinfo.height}); pass --resize-mask for a nearest resize"
            )
        log.warning(
            "%s: resizing the mask from %dx%d to %dx%d (nearest)",
            mask_desc, mask_arr.shape[1], mask_arr.shape[0], vinfo.width, vinfo.height,
        )
        mask_arr = resize_mask_nearest(mask_arr, (vinfo.width, vinfo.height))
        if not object_ids(mask_arr):
            raise InputError(f"{mask_desc}: no object is left after resizing the mask")
    if segmenter.config.sequence_changes(name):  # the preset has settings for this sequence (same extractor)
        log.info("preset %s: settings for sequence %r applied: %s", segmenter.config.name, name,
                 segmenter.config.sequence_changes(name))
        segmenter = type(segmenter)(segmenter.extractor, segmenter.config.for_sequence(name))
    target = segmenter.config.frames.target_size(vinfo.width, vinfo.height)
    reader.transform = lambda fr: (fr, resize_frame(fr, target))
    names: list[str] = []
    log.info(
        "segmenting %s (%dx%d%s) with %d object(s) -> %s",
        video, vinfo.width, vinfo.height, f", {vinfo.num_frames} frames" if vinfo.num_frames else "",
        len(object_ids(mask_arr)), out_dir,
    )
    with atomic_dir(out_dir, overwrite=overwrite) as tmp, \
            background_output(segmenter, tmp, vinfo, overlay, reader) as (writer, vw):
        originals, pairs = tap_originals(reader)
        for i, m in enumerate(segmenter.run(pairs, mask_arr, progress=progress, total=vinfo.num_frames)):
            frame = originals.popleft()
            stem = vinfo.frame_names[i] if vinfo.frame_names else f"{i:05d}"
            names.append(stem)
            writer.submit(write_indexed_png, tmp / f"{stem}.png", m)
            if vw is not None:
                writer.submit(lambda fr, mm: vw.write(overlay_mask(fr, mm)), frame, m)
    prof = segmenter.last_profile.summary()
    log.info("wrote %d masks to %s (%s)", len(names), out_dir, prof)
    return SegmentResult(
        output_dir=out_dir,
        num_frames=len(names),
        frame_names=tuple(names),
        overlay=out_dir / "overlay.mp4" if overlay else None,
        profile=prof,
    )
