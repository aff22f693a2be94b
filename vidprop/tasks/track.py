"""Keypoint tracking by label propagation: first-frame keypoints in, keypoints of every frame out.

Python API (the CLI is a thin layer over it):

    from vidprop.tasks.track import Tracker, track_video
    tracker = Tracker.from_pretrained(config="jhmdb")          # DIFT + protocol B ("crw")
    for fr in tracker.run(frames, keypoints):                  # keypoints: (J, 2) pixels or a KeypointSet
        fr.xy, fr.visible                                      # (J, 2) pixels (NaN if vanished), (J,) bool
    track_video("clip.mp4", "first_frame.json", "results/", tracker=tracker)

Each joint becomes one heatmap channel on the feature grid (docs/jhmdb.md):
frames are resized as the preset says (JHMDB: a square ``crop x crop``), a
pixel (x, y) maps to grid units (x * crop_w / W / stride, y * crop_h / H /
stride), the heatmaps are propagated with the
:class:`~vidprop.propagation.propagator.Propagator` (the unnormalised soft
labels go back into its queue), and each frame's heatmaps are decoded (top-3
weighted) and mapped back to pixels with x * W / grid_w, y * H / grid_h.
A joint whose heatmap becomes empty has vanished (not visible).

These are the JHMDB protocol's conventions, kept as they are so that
``vidprop track`` and ``vidprop eval jhmdb`` agree.  The Gaussian's peak lands
on cell ``int(x - 1.5) + 2``, the nearest cell to x (halves up), except within
1.5 cells of the left/top border where int()'s truncation toward zero moves it
right/down (x = 0.7 -> cell 2); from frame 1 on, positions therefore carry the
quantisation of about a feature cell (crop/stride of the frame: 8 px of a
320-px wide frame at the JHMDB settings).
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Iterator, Literal

import numpy as np

from vidprop import __version__
from vidprop.errors import InputError
from vidprop.io.atomic import atomic_dir, check_writable_target
from vidprop.io.keypoints import KeypointSet, draw_keypoints, joint_colours, read_keypoints, write_tracks_csv, write_tracks_json
from vidprop.io.driver import FrameRange, FrameRecord, VideoDriver, parse_frame_range
from vidprop.io.source import write_source_record
from vidprop.io.video import Backend
from vidprop.propagation.keypoints import heatmaps_to_keypoints, keypoints_to_heatmaps
from vidprop.propagation.propagator import Propagator
from vidprop.tasks.base import Profile, PropagationTask, background_output, check_output_folder
from vidprop.tasks.budget import check_model_input
from vidprop.progress import progress_bar

__all__ = ["Tracker", "TrackFrame", "TrackJob", "TrackResult", "prepare_track", "track_video"]

log = logging.getLogger(__name__)

Outside = Literal["vanish", "draw"]


@dataclass(frozen=True)
class TrackFrame:
    """Keypoints of one frame."""

    index: int
    #: (J, 2) float64 pixel (x, y) in the original frame; NaN where not visible.
    xy: np.ndarray
    #: (J,) bool: the joint's heatmap is not empty.
    visible: np.ndarray
    #: (J, 2) float64 grid-unit (x, y) as the protocol decodes them; (-1, -1) where vanished.
    grid_xy: np.ndarray
    #: (grid_h, grid_w) of the feature grid.
    grid: tuple[int, int]


class Tracker(PropagationTask):
    """Propagate first-frame keypoints through a stream of frames.

    Args:
        extractor: frames (B, 3, H, W) uint8 -> features (B, C, H/s, W/s).
        config: frame resizing and propagation settings (a TaskConfig; the
            ``jhmdb`` preset is protocol B with a 320 x 320 square crop).
    """

    default_preset = "jhmdb"

    def run(
        self,
        frames: Iterable[np.ndarray],
        keypoints: KeypointSet | np.ndarray,
        *,
        outside: Outside = "vanish",
        progress: bool = False,
        total: int | None = None,
    ) -> Iterator[TrackFrame]:
        """Yield one :class:`TrackFrame` per frame; frame 0's prediction is its given labels.

        ``frames`` are (H, W, 3) uint8 RGB at the original size (any iterable,
        consumed lazily), or ``(frame, resized_frame)`` pairs.  ``keypoints``
        are (J, 2) pixel (x, y) of frame 0; NaN marks an absent joint.
        ``outside="vanish"`` (default): a keypoint outside the frame
        (x < 0, x >= W, y < 0 or y >= H) is reported with a warning and treated
        as absent; ``outside="draw"``: it is drawn as the JHMDB protocol does
        (the part of its Gaussian patch that falls inside the grid).
        Frame 0's ``xy`` is the given keypoints; its ``grid_xy`` is decoded
        from its labels, as the protocol's frame-0 prediction.
        """
        if outside not in ("vanish", "draw"):
            raise ValueError(f"outside must be 'vanish' or 'draw', got {outside!r}")
        if isinstance(keypoints, KeypointSet):
            names, pts = list(keypoints.names), keypoints.xy.copy()
        else:
            pts = np.array(keypoints, dtype=np.float64)
            if pts.ndim != 2 or pts.shape[1] != 2:
                raise InputError(f"keypoints must be a (J, 2) array of pixel (x, y), got shape {pts.shape}")
            names = [str(j) for j in range(len(pts))]
        if len(pts) == 0:
            raise InputError("no keypoints to track")
        return self._run(frames, names, pts, outside, progress, total)

    def _run(
        self, frames: Iterable, names: list[str], pts: np.ndarray, outside: Outside, progress: bool, total: int | None
    ) -> Iterator[TrackFrame]:
        return (fr for _, fr in self.track_records(self._records(frames), names, pts, outside, progress, total))

    def track_records(
        self, records: Iterable[FrameRecord], names: list[str], pts: np.ndarray, outside: Outside, progress: bool,
        total: int | None, cached: Any = None, profile: Profile | None = None,
    ) -> Iterator[tuple[FrameRecord, TrackFrame]]:
        """Yield (record, TrackFrame) per frame: the run loop of :meth:`run`, ``track``, ``batch`` and ``eval jhmdb``.

        The first record's frame holds the given keypoints ``pts`` ((J, 2)
        pixels, named ``names``; the array is modified where a keypoint
        vanishes).  ``cached``: as :meth:`Segmenter.segment_records`'s.
        ``profile``: the run's :class:`~vidprop.tasks.base.Profile`, filled as
        the frames go (default: a new one, not kept).
        """
        cfg = self.config
        ext = self.extractor
        prof = Profile() if profile is None else profile
        prop = Propagator(cfg.propagation)
        bar = progress_bar(total=total, unit="frame", desc="track", enabled=progress)
        size = grid = None
        scale = np.ones(2)
        n = 0
        try:
            for rec, f in self._features(records, cached=cached, profile=prof):
                assert f is not None and rec.frame is not None and rec.model_input is not None
                t0 = time.perf_counter()
                h, w = rec.frame.shape[:2]
                ch, cw = rec.model_input.shape[:2]
                if size is None:
                    size, grid = (w, h), (int(f.shape[-2]), int(f.shape[-1]))
                    scale = np.array([w / grid[1], h / grid[0]])  # grid units -> pixels
                    present = np.isfinite(pts).all(axis=1)
                    inside = present & (pts[:, 0] >= 0) & (pts[:, 0] < w) & (pts[:, 1] >= 0) & (pts[:, 1] < h)
                    for j in np.flatnonzero(present & ~inside):
                        if outside == "vanish":
                            log.warning(
                                "keypoint %r at (%g, %g) lies outside the %dx%d frame; it is treated as vanished",
                                names[j], pts[j, 0], pts[j, 1], w, h,
                            )
                            pts[j] = np.nan
                    stride = ext.stride
                    gpts = np.stack([pts[:, 0] * cw / w / stride, pts[:, 1] * ch / h / stride], axis=1)
                    labels = keypoints_to_heatmaps(gpts, grid, rule=cfg.propagation.keypoint_rule)
                    prop.reset(f, labels.to(f.device))
                    grid_xy = heatmaps_to_keypoints(labels)
                    visible = np.isfinite(pts).all(axis=1) & (grid_xy[:, 0] >= 0)
                    xy = np.where(visible[:, None], pts, np.nan)
                else:
                    if (w, h) != size:
                        raise InputError(f"frame {rec.index} is {w}x{h}, the first frame was {size[0]}x{size[1]}")
                    soft = prop.step(f)  # the unnormalised soft labels go back into the queue
                    grid_xy = heatmaps_to_keypoints(soft)
                    visible = grid_xy[:, 0] >= 0
                    xy = np.where(visible[:, None], grid_xy * scale, np.nan)
                prof.add("propagate", time.perf_counter() - t0)
                n += 1
                prof.frames = n
                bar.update(1)
                yield rec, TrackFrame(index=rec.index, xy=xy, visible=visible, grid_xy=grid_xy, grid=grid)
        finally:
            bar.close()
        if n == 0:
            raise InputError("the video has no frames")


@dataclass(frozen=True)
class TrackResult:
    """Where a tracking run was written."""

    output_dir: Path
    num_frames: int
    json: Path
    csv: Path
    overlay: Path | None
    profile: str = ""
    #: The run's timings (``profile`` is their summary); each run has its own.
    timing: Profile = field(default_factory=Profile, compare=False, repr=False)


@dataclass
class TrackJob:
    """A tracking run whose inputs were checked (video opened once, keypoints read); :meth:`run` it."""

    driver: VideoDriver
    keypoints: KeypointSet
    out_dir: Path
    name: str
    overwrite: bool = False

    def run(self, tracker: Tracker, *, overlay: bool = True, progress: bool = True,
            feature_cache: Any = None) -> TrackResult:
        """Track and write ``out_dir`` atomically (see :func:`track_video`; ``feature_cache``: as segment's)."""
        driver, kps, out_dir = self.driver, self.keypoints, self.out_dir
        vinfo = driver.info
        target = check_model_input(tracker.config, vinfo.width, vinfo.height, source=str(vinfo.path))
        cached = None
        if feature_cache is not None:
            from vidprop.tasks.feature_cache import as_cache

            cached = as_cache(feature_cache).features(driver.path, tracker, name=self.name, backend=driver.backend,
                                                      progress=progress)
        log.info(
            "tracking %d keypoint(s) through %s (%dx%d%s) -> %s",
            len(kps), vinfo.path, vinfo.width, vinfo.height,
            f", {driver.num_frames} frames" if driver.num_frames else "", out_dir,
        )
        colours = joint_colours(len(kps))
        xys: list[np.ndarray] = []
        vis: list[np.ndarray] = []
        frame_names: list[str] = []
        indices: list[int] = []
        prof = Profile()  # this run's: the loop, the reader and the writer fill it
        with atomic_dir(out_dir, overwrite=self.overwrite) as tmp:
            with background_output(prof, tmp, vinfo, overlay, driver) as (writer, vw):
                records = driver.records(target, tracker.config.frames.interpolation, as_float=tracker.config.frames.resize_as_float)
                for rec, fr in tracker.track_records(records, list(kps.names), kps.xy.copy(), "vanish", progress,
                                                     driver.num_frames, cached=cached, profile=prof):
                    xys.append(fr.xy)
                    vis.append(fr.visible)
                    frame_names.append(rec.name)
                    indices.append(rec.index)
                    if vw is not None:
                        writer.submit(
                            lambda im, p, v: vw.write(draw_keypoints(im, p, v, kps.skeleton, colours)),
                            rec.frame, fr.xy, fr.visible,
                        )
            xy, visible = np.stack(xys), np.stack(vis)
            ext_cfg = tracker.config.extractor
            meta = {
                "video": str(vinfo.path),
                "width": vinfo.width,
                "height": vinfo.height,
                "fps": vinfo.fps,
                "config": tracker.config.name,
                "model": ext_cfg.model,
                "vidprop_version": __version__,
            }
            write_tracks_json(tmp / "keypoints.json", kps.names, xy, visible, skeleton=kps.skeleton_names,
                              frame_names=frame_names, meta=meta, frame_indices=indices)
            write_tracks_csv(tmp / "keypoints.csv", kps.names, xy, visible, frame_indices=indices)
            write_source_record(tmp, vinfo, frames=len(xy), task="track",
                                first_frame=min(indices, default=0))  # lets `vidprop view` find the frames
        summary = prof.summary()
        log.info("wrote keypoints of %d frames to %s (%s)", len(xy), out_dir, summary)
        return TrackResult(
            output_dir=out_dir,
            num_frames=len(xy),
            json=out_dir / "keypoints.json",
            csv=out_dir / "keypoints.csv",
            overlay=out_dir / "overlay.mp4" if overlay else None,
            profile=summary,
            timing=prof,
        )


def prepare_track(
    video: str | Path,
    keypoints: str | Path | KeypointSet | np.ndarray,
    out: str | Path,
    *,
    name: str | None = None,
    overwrite: bool = False,
    backend: Backend = "auto",
    frames: FrameRange | str | None = None,
    max_frames: int | None = None,
) -> TrackJob:
    """Open the video, read the keypoints, check the output folder; load no model."""
    if isinstance(keypoints, (str, Path)):
        kps = read_keypoints(keypoints)
    elif isinstance(keypoints, KeypointSet):
        kps = keypoints
    else:
        arr = np.asarray(keypoints, dtype=np.float64).reshape(-1, 2)
        kps = KeypointSet(tuple(str(j) for j in range(len(arr))), arr)
    if len(kps) == 0:
        raise InputError("no keypoints to track")
    fr = frames if isinstance(frames, FrameRange) else parse_frame_range(frames, max_frames)
    if isinstance(frames, FrameRange) and max_frames is not None:
        fr = FrameRange(fr.start, fr.stop, max_frames)
    driver = VideoDriver(video, backend=backend, frames=fr)
    name = name or driver.info.name
    out_dir = Path(out) / name
    check_writable_target(out_dir, overwrite)
    check_output_folder(out_dir)
    return TrackJob(driver=driver, keypoints=kps, out_dir=out_dir, name=name, overwrite=overwrite)


def track_video(
    video: str | Path,
    keypoints: str | Path | KeypointSet | np.ndarray,
    out: str | Path,
    *,
    tracker: Tracker,
    name: str | None = None,
    overwrite: bool = False,
    overlay: bool = True,
    backend: Backend = "auto",
    progress: bool = True,
    frames: FrameRange | str | None = None,
    max_frames: int | None = None,
    feature_cache: Any = None,
) -> TrackResult:
    """Track keypoints through a video file or frame folder and write ``out/<name>/`` atomically.

    The keypoints are those of the run's first frame (frame 0, or START of
    ``frames="START:END"``; ``max_frames`` caps the run's length).  Writes
    ``keypoints.json`` and ``keypoints.csv`` (formats in
    :mod:`vidprop.io.keypoints`; frames are numbered by their index in the
    video) and, with ``overlay``, ``overlay.mp4`` (H.264, points and skeleton
    limbs drawn on the frames).  Nothing is left under the final name unless
    everything was written; an existing output folder is replaced only with
    ``overwrite``.
    """
    job = prepare_track(video, keypoints, out, name=name, overwrite=overwrite, backend=backend, frames=frames,
                        max_frames=max_frames)
    return job.run(tracker, overlay=overlay, progress=progress, feature_cache=feature_cache)
