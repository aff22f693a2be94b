"""Video object segmentation by label propagation: a first-frame mask in, masks out.

Python API (the CLI is a thin layer over it):

    from vidprop.tasks.segment import Segmenter, segment_video
    seg = Segmenter.from_pretrained(config="davis")            # DIFT + protocol A
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
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable, Iterator, Sequence

import numpy as np
import torch

from vidprop.config import TaskConfig, load_preset
from vidprop.errors import InputError
from vidprop.features.base import FeatureExtractor
from vidprop.io.atomic import atomic_dir, check_writable_target
from vidprop.io.masks import read_mask, resize_mask_nearest, write_indexed_png
from vidprop.io.video import Backend, open_video
from vidprop.io.writers import BackgroundWriter, VideoWriter, overlay_mask
from vidprop.propagation.labels import decode_crw, decode_dino, labels_bilinear, labels_nearest, object_ids
from vidprop.propagation.propagator import Propagator

__all__ = ["Segmenter", "segment_video", "SegmentResult", "resize_frame"]

log = logging.getLogger(__name__)


def resize_frame(frame: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """Bilinear resize (OpenCV INTER_LINEAR, as DINO's reader) of an RGB frame to ``size`` = (W, H)."""
    import cv2

    if (frame.shape[1], frame.shape[0]) == tuple(size):
        return frame
    return cv2.resize(frame, tuple(size), interpolation=cv2.INTER_LINEAR)


@dataclass
class Profile:
    """Seconds spent per stage of a run (wall clock, summed over frames)."""

    seconds: dict[str, float] = field(default_factory=lambda: defaultdict(float))
    frames: int = 0

    def add(self, stage: str, dt: float) -> None:
        self.seconds[stage] += dt

    def summary(self) -> str:
        total = sum(self.seconds.values()) or 1e-9
        parts = [f"{k} {v:.2f}s ({100 * v / total:.0f}%)" for k, v in self.seconds.items()]
        fps = self.frames / total if total else 0.0
        return f"{self.frames} frames, {fps:.2f} frames/s; " + ", ".join(parts)


class Segmenter:
    """Propagate a first-frame index mask through a stream of frames.

    Args:
        extractor: frames (B, 3, H, W) uint8 -> features (B, C, H/s, W/s).
        config: frame resizing and propagation settings (a TaskConfig).
    """

    def __init__(self, extractor: FeatureExtractor, config: TaskConfig) -> None:
        self.extractor = extractor
        self.config = config
        self.last_profile = Profile()

    @classmethod
    def from_pretrained(
        cls,
        model: str | None = None,
        *,
        config: TaskConfig | str = "davis",
        device: str | torch.device | None = None,
        dtype: str | torch.dtype | None = None,
    ) -> "Segmenter":
        """Load the DIFT extractor named by ``model`` (default: the config's) with a preset or config."""
        from vidprop.features.dift import DiftExtractor

        cfg = load_preset(config) if isinstance(config, str) else config
        ext = DiftExtractor.from_pretrained(model, config=cfg.extractor, device=device, dtype=dtype)
        if model is not None:
            cfg = cfg.override(extractor={"model": str(model)})
        return cls(ext, cfg)

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

    def _prepare(self, item: np.ndarray | tuple[np.ndarray, np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
        if isinstance(item, tuple):
            return item
        h, w = item.shape[:2]
        return item, resize_frame(item, self.config.frames.target_size(w, h))

    def _run(
        self, frames: Iterable, mask: np.ndarray, *, progress: bool, total: int | None
    ) -> Iterator[np.ndarray]:
        from tqdm.auto import tqdm

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
        batch_size = max(1, getattr(getattr(ext, "config", None), "batch_size", 1))
        it = iter(frames)
        bar = tqdm(total=total, unit="frame", desc="segment", disable=not progress, leave=False)
        index = 0
        size: tuple[int, int] | None = None
        try:
            while True:
                t0 = time.perf_counter()
                batch = []
                for item in it:
                    batch.append(self._prepare(item))
                    if len(batch) == batch_size:
                        break
                prof.add("decode", time.perf_counter() - t0)
                if not batch:
                    break
                if size is None:
                    h0, w0 = batch[0][0].shape[:2]
                    size = (w0, h0)
                    if mask.shape != (h0, w0):
                        raise InputError(
                            f"the mask is {mask.shape[1]}x{mask.shape[0]} but the frames are {w0}x{h0}; "
                            "resize the mask (--resize-mask does a nearest resize)"
                        )
                t0 = time.perf_counter()
                small = torch.from_numpy(np.stack([b[1] for b in batch])).permute(0, 3, 1, 2)  # (B, 3, H', W')
                if ext.device.type == "cuda":
                    small = small.pin_memory()
                feats = ext.extract(small, indices=list(range(index, index + len(batch))))  # (B, C, h, w)
                prof.add("extract", time.perf_counter() - t0)
                for j, (orig, _) in enumerate(batch):
                    if (orig.shape[1], orig.shape[0]) != size:
                        raise InputError(
                            f"frame {index} is {orig.shape[1]}x{orig.shape[0]}, the first frame was {size[0]}x{size[1]}"
                        )
                    t0 = time.perf_counter()
                    f = feats[j]
                    if index == 0:
                        grid = tuple(f.shape[-2:])
                        if cfg.propagation.protocol == "dino":
                            labels = labels_nearest(mask, grid, ids)
                        else:
                            labels = labels_bilinear(mask, grid, ids)
                        prop.reset(f, labels.to(f.device))
                        out = mask
                        prof.add("propagate", time.perf_counter() - t0)
                    else:
                        soft = prop.step(f)
                        prof.add("propagate", time.perf_counter() - t0)
                        t0 = time.perf_counter()
                        if cfg.propagation.protocol == "dino":
                            out = decode_dino(soft, ext.stride, size, ids)
                        else:
                            out = decode_crw(soft, size, ids)
                        prof.add("postprocess", time.perf_counter() - t0)
                    index += 1
                    prof.frames = index
                    bar.update(1)
                    yield out
        finally:
            bar.close()
        if index == 0:
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

    Writes one indexed PNG per frame (DAVIS palette, the input's size; named
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
    target = segmenter.config.frames.target_size(vinfo.width, vinfo.height)
    reader.transform = lambda fr: (fr, resize_frame(fr, target))
    names: list[str] = []
    log.info(
        "segmenting %s (%dx%d%s) with %d object(s) -> %s",
        video, vinfo.width, vinfo.height, f", {vinfo.num_frames} frames" if vinfo.num_frames else "",
        len(object_ids(mask_arr)), out_dir,
    )
    with atomic_dir(out_dir, overwrite=overwrite) as tmp:
        writer = BackgroundWriter()
        vw: VideoWriter | None = None
        if overlay:
            vw = VideoWriter(tmp / "overlay.mp4", vinfo.fps, vinfo.width, vinfo.height)
        frames_iter = iter(reader)
        originals: list[np.ndarray] = []

        def tap() -> Iterator[tuple[np.ndarray, np.ndarray]]:
            for pair in frames_iter:
                originals.append(pair[0])
                yield pair

        try:
            for i, m in enumerate(
                segmenter.run(tap(), mask_arr, progress=progress, total=vinfo.num_frames)
            ):
                frame = originals.pop(0)
                stem = vinfo.frame_names[i] if vinfo.frame_names else f"{i:05d}"
                names.append(stem)
                writer.submit(write_indexed_png, tmp / f"{stem}.png", m)
                if vw is not None:
                    writer.submit(lambda fr, mm: vw.write(overlay_mask(fr, mm)), frame, m)
            if vw is not None:
                writer.submit(vw.close)
            writer.close()
        except BaseException:
            writer.__exit__(RuntimeError, None, None)
            raise
    prof = segmenter.last_profile.summary()
    log.info("wrote %d masks to %s (%s)", len(names), out_dir, prof)
    return SegmentResult(
        output_dir=out_dir,
        num_frames=len(names),
        frame_names=tuple(names),
        overlay=out_dir / "overlay.mp4" if overlay else None,
        profile=prof,
    )
