"""One video driver for every task: open the video once, resize on the reader thread, yield records.

    driver = VideoDriver("clip.mp4", frames=FrameRange(10, 50))   # frames 10..49
    driver.info.width, driver.num_frames, driver.frame_name(12)
    for rec in driver.records((832, 480)):                          # model input size (W, H)
        rec.index, rec.name, rec.frame, rec.model_input

Each :class:`FrameRecord` carries a frame's index in the video, its name
(the file stem of a frame folder, else ``00012``), the original frame and
the model input; a task attaches its result to the record, so a writer
never has to match results to frames by position.  The driver can be
iterated again (a second decode), which is how a backward pass gets the
frames before an annotation without holding them in memory.
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

import numpy as np

from vidprop.errors import InputError
from vidprop.io.video import Backend, FrameReader, VideoInfo, open_video

__all__ = ["FrameRange", "FrameRecord", "VideoDriver", "parse_frame_range", "resize_frame"]

log = logging.getLogger(__name__)


def resize_frame(frame: np.ndarray, size: tuple[int, int], interpolation: str = "linear", *,
                 as_float: bool = False) -> np.ndarray:
    """Resize an RGB frame to ``size`` = (W, H).

    ``interpolation="linear"``: OpenCV INTER_LINEAR (as DINO's reader);
    ``"bicubic"``: PIL BICUBIC (what torchvision's ``resize`` does to a PIL
    image, as DINOv3's notebook).

    ``as_float`` (linear only): the uint8 frame is converted to float32 first and resized as floats, as CRW's
    JHMDB loader does (ajabri/videowalk ``code/data/jhmdb.py`` L44-49 ``load_image``: ``/ 255`` in float32,
    then L38-41 ``resize``: ``cv2.resize``); the result is float32 on the 0-255 scale, not rounded.
    Otherwise the uint8 frame is resized as it is (DINO's and DIFT's DAVIS readers) and stays uint8.
    """
    if as_float:
        import cv2

        if interpolation != "linear":
            raise ValueError(f"resizing as floats is linear only, got interpolation {interpolation!r}")
        frame = frame.astype(np.float32) / np.float32(255.0)
        if (frame.shape[1], frame.shape[0]) != tuple(size):
            frame = cv2.resize(frame, tuple(size), interpolation=cv2.INTER_LINEAR)
        return frame * np.float32(255.0)
    if (frame.shape[1], frame.shape[0]) == tuple(size):
        return frame
    if interpolation == "bicubic":
        from PIL import Image

        return np.asarray(Image.fromarray(np.ascontiguousarray(frame)).resize(tuple(size), Image.BICUBIC))
    if interpolation != "linear":
        raise ValueError(f"interpolation must be 'linear' or 'bicubic', got {interpolation!r}")
    import cv2

    return cv2.resize(frame, tuple(size), interpolation=cv2.INTER_LINEAR)


@dataclass(frozen=True)
class FrameRange:
    """Frames ``start <= index < stop`` of a video (``stop=None``: to the end), at most ``max_frames``."""

    start: int = 0
    stop: int | None = None
    max_frames: int | None = None

    def __post_init__(self) -> None:
        if self.start < 0:
            raise InputError(f"--frames: START must be >= 0, got {self.start}")
        if self.stop is not None and self.stop <= self.start:
            raise InputError(f"--frames {self.start}:{self.stop} selects no frame (END must be greater than START)")
        if self.max_frames is not None and self.max_frames < 1:
            raise InputError(f"--max-frames must be >= 1, got {self.max_frames}")

    @property
    def end(self) -> int | None:
        """The exclusive end index once ``max_frames`` is applied (None: to the end of the video)."""
        ends = [e for e in (self.stop, None if self.max_frames is None else self.start + self.max_frames)
                if e is not None]
        return min(ends) if ends else None

    @property
    def is_all(self) -> bool:
        return self.start == 0 and self.end is None

    def describe(self) -> str:
        return f"frames {self.start}:{'' if self.end is None else self.end}"


def parse_frame_range(text: str | None, max_frames: int | None = None) -> FrameRange:
    """``"START:END"`` (either side may be empty; END exclusive) and ``--max-frames`` -> a FrameRange."""
    if text is None or text == "":
        return FrameRange(0, None, max_frames)
    m = re.fullmatch(r"\s*(\d*)\s*:\s*(\d*)\s*", text)
    if not m:
        raise InputError(f"--frames {text!r}: expected START:END (frame indices, END exclusive, e.g. 0:100 or 50:)")
    start = int(m.group(1)) if m.group(1) else 0
    stop = int(m.group(2)) if m.group(2) else None
    return FrameRange(start, stop, max_frames)


@dataclass
class FrameRecord:
    """One frame on its way through a task.

    ``frame`` is None where the original was not kept (a backward pass works
    on model inputs only); ``model_input`` is None where no model input is
    needed (the frame is not propagated).
    """

    index: int
    name: str
    frame: np.ndarray | None
    model_input: np.ndarray | None


class VideoDriver:
    """Open a video file or frame folder once and stream :class:`FrameRecord` s of a frame range.

    Args:
        source: a video file or a folder of images (sorted by name).
        backend: the decoder (see :func:`~vidprop.io.video.open_video`).
        frames: which frames to read (default: all).
        prefetch: frames decoded ahead on the reader thread (bounds memory).
    """

    def __init__(self, source: str | Path, *, backend: Backend = "auto", frames: FrameRange | None = None,
                 prefetch: int = 8) -> None:
        self.reader: FrameReader = open_video(source, backend=backend, prefetch=prefetch)
        self.backend = backend
        self.info: VideoInfo = self.reader.info
        self.range = frames or FrameRange()
        n = self.info.num_frames
        if self.info.frame_names is not None and n is not None and self.range.start >= n:
            raise InputError(f"{self.info.path}: --frames starts at {self.range.start} but the folder has {n} frames")
        if not self.range.is_all:
            self.reader.select(self.range.start, self.range.end)
        self._index_of = {s: i for i, s in enumerate(self.info.frame_names)} if self.info.frame_names else None

    # ----------------------------------------------------------- what is known before reading
    @property
    def path(self) -> Path:
        return self.info.path

    @property
    def size(self) -> tuple[int, int]:
        """(W, H) of the frames."""
        return self.info.width, self.info.height

    @property
    def length_known(self) -> bool:
        """Whether the number of frames is exact (a frame folder; a container's count is not trusted)."""
        return self.info.frame_names is not None

    @property
    def video_length(self) -> int | None:
        """Frames in the whole video when exactly known (a frame folder), else None."""
        return self.info.num_frames if self.length_known else None

    @property
    def reported_length(self) -> int | None:
        """Frames in the whole video as far as known before reading: a folder's count (exact), or the count a
        video file's container reports through decord or PyAV (its index / header; OpenCV's estimate is not
        used); None when unknown (a stream without a frame count)."""
        if self.length_known:
            return self.info.num_frames
        n = self.info.num_frames
        return n if n and self.info.backend in ("decord", "pyav") else None

    @property
    def num_frames(self) -> int | None:
        """Frames this driver yields: exact for a folder, the container's report (may be wrong) for a file."""
        n = self.info.num_frames
        end = self.range.end
        if n is None:
            return None
        stop = n if end is None else min(n, end)
        return max(0, stop - self.range.start)

    def frame_name(self, index: int) -> str:
        """The name of frame ``index``: a folder's file stem, else the 5-digit index."""
        names = self.info.frame_names
        if names is not None and 0 <= index < len(names):
            return names[index]
        return f"{index:05d}"

    def index_of(self, name: str) -> int | None:
        """The index a frame reference names: a frame folder's file stem, else an integer; None if neither."""
        if self._index_of is not None and name in self._index_of:
            return self._index_of[name]
        if re.fullmatch(r"\d+", name.strip()):
            return int(name)
        return None

    def contains(self, index: int) -> bool | None:
        """Whether frame ``index`` is read by this driver (None: unknown until the video ends).

        Beyond the video's :attr:`reported_length` is outside (a container's count included, so that an
        annotation past the end is refused before any work)."""
        end = self.range.end
        if index < self.range.start or (end is not None and index >= end):
            return False
        n = self.reported_length
        return None if n is None else index < n

    # ----------------------------------------------------------- reading
    def records(self, target_size: tuple[int, int] | None, interpolation: str = "linear", *,
                as_float: bool = False) -> Iterator[FrameRecord]:
        """Yield the records of the frame range, the model input resized to ``target_size`` = (W, H).

        Resizing (:func:`resize_frame` with ``interpolation``; ``as_float``: in
        float32) runs on the reader thread.  ``target_size=None``: no model
        input.  Every call decodes again.
        """
        if target_size is None:
            self.reader.transform = None
        else:
            size = (int(target_size[0]), int(target_size[1]))
            self.reader.transform = lambda fr: (fr, resize_frame(fr, size, interpolation, as_float=as_float))
        index = self.range.start
        for item in self.reader:
            frame, small = item if target_size is not None else (item, None)
            yield FrameRecord(index=index, name=self.frame_name(index), frame=frame, model_input=small)
            index += 1

    @property
    def busy_seconds(self) -> float:
        """Decoding + resizing time on the reader thread during the last pass."""
        return self.reader.busy_seconds
