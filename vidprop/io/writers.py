"""Result writing on a background thread, and browser-playable overlay videos.

* :class:`BackgroundWriter` runs write jobs on one thread with a bounded
  queue, so the model never waits for PNG or video encoding (Cutie's way);
  an error in a job is raised in the caller at the next submit or at close.
* :class:`VideoWriter` encodes H.264 / yuv420p MP4 with PyAV (plays in
  browsers); odd frame sizes are padded to even.
* :func:`overlay_mask` blends an index mask over a frame (DAVIS palette), contours in a contrasting colour.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from fractions import Fraction
from pathlib import Path
from typing import Any, Callable

import numpy as np

from vidprop.io.masks import davis_palette

__all__ = ["BackgroundWriter", "VideoWriter", "overlay_mask"]

log = logging.getLogger(__name__)

_PALETTE = davis_palette()
_PALETTE_LUT = np.ascontiguousarray(_PALETTE.reshape(256, 1, 3))  # cv2.LUT table


class BackgroundWriter:
    """Run ``submit(fn, *args)`` jobs in order on a background thread.

    ``busy_seconds`` is the time the thread spent in jobs; ``wait_seconds``
    the time callers were held up (a full queue in ``submit``, then ``close``).
    """

    def __init__(self, max_pending: int = 16, name: str = "vidprop-writer") -> None:
        self._q: queue.Queue = queue.Queue(maxsize=max_pending)
        self._error: BaseException | None = None
        self.busy_seconds = 0.0
        self.wait_seconds = 0.0
        self._thread = threading.Thread(target=self._work, name=name, daemon=True)
        self._thread.start()
        self._closed = False

    def _work(self) -> None:
        while True:
            job = self._q.get()
            if job is None:
                return
            if self._error is not None:
                continue  # drain after a failure
            fn, args = job
            t0 = time.perf_counter()
            try:
                fn(*args)
            except BaseException as exc:  # noqa: BLE001 - re-raised in the caller
                self._error = exc
            self.busy_seconds += time.perf_counter() - t0

    def _check(self) -> None:
        if self._error is not None:
            err, self._error = self._error, None
            raise err

    def submit(self, fn: Callable[..., Any], *args: Any) -> None:
        self._check()
        t0 = time.perf_counter()
        self._q.put((fn, args))
        self.wait_seconds += time.perf_counter() - t0

    def close(self) -> None:
        """Wait for every job; raise the first job error, if any."""
        if not self._closed:
            t0 = time.perf_counter()
            self._closed = True
            self._q.put(None)
            self._thread.join()
            self.wait_seconds += time.perf_counter() - t0
        self._check()

    def __enter__(self) -> "BackgroundWriter":
        return self

    def __exit__(self, exc_type: Any, *_: Any) -> None:
        if exc_type is None:
            self.close()
        else:  # an error upstream: stop quietly, keep the original exception
            if not self._closed:
                self._closed = True
                self._q.put(None)
                self._thread.join()


class VideoWriter:
    """H.264 (libx264, yuv420p) MP4 writer; frames are (H, W, 3) uint8 RGB."""

    def __init__(self, path: str | Path, fps: float | None, width: int, height: int, crf: int = 20) -> None:
        import av

        self.path = Path(path)
        self.width, self.height = width, height
        self._pad = (height % 2, width % 2)
        rate = Fraction(fps if fps and fps > 0 else 24).limit_denominator(1001)
        self._container = av.open(str(self.path), mode="w", format="mp4")
        self._stream = self._container.add_stream("libx264", rate=rate)
        self._stream.width = width + self._pad[1]
        self._stream.height = height + self._pad[0]
        self._stream.pix_fmt = "yuv420p"
        self._stream.options = {"crf": str(crf), "preset": "veryfast", "movflags": "+faststart"}

    def write(self, frame: np.ndarray) -> None:
        import av

        if frame.shape != (self.height, self.width, 3):
            raise ValueError(f"frame must be {(self.height, self.width, 3)}, got {frame.shape}")
        if any(self._pad):
            frame = np.pad(frame, ((0, self._pad[0]), (0, self._pad[1]), (0, 0)), mode="edge")
        vf = av.VideoFrame.from_ndarray(np.ascontiguousarray(frame), format="rgb24")
        for packet in self._stream.encode(vf):
            self._container.mux(packet)

    def close(self) -> None:
        for packet in self._stream.encode():
            self._container.mux(packet)
        self._container.close()


def overlay_mask(frame: np.ndarray, mask: np.ndarray, alpha: float = 0.5) -> np.ndarray:
    """Blend index mask (H, W) over an RGB frame (H, W, 3); each object's contour drawn in a contrasting colour.

    Object pixels become ``round((1 - alpha) * frame + alpha * colour)`` with the
    DAVIS palette colour of their id; pixels of an object next to another id
    (its contour) become white where the frame there is dark (luma <= 127,
    OpenCV's RGB -> grey) and black where it is bright, so every mask stays
    visible, also an id-1 red one on a red object.  OpenCV table lookups and
    masked copies, no per-pixel float arrays: the writer thread must keep up
    with a GPU.
    """
    import cv2

    if mask.shape != frame.shape[:2]:
        raise ValueError(f"mask {mask.shape} and frame {frame.shape} differ in size")
    out = frame.copy()
    fg = (mask > 0).view(np.uint8)  # (H, W) 0/1
    if not fg.any():
        return out
    colours = cv2.LUT(cv2.cvtColor(mask, cv2.COLOR_GRAY2RGB), _PALETTE_LUT)  # (H, W, 3)
    cv2.copyTo(cv2.addWeighted(frame, 1 - alpha, colours, alpha, 0.0), fg, out)
    edges = cv2.morphologyEx(mask, cv2.MORPH_GRADIENT, np.ones((3, 3), np.uint8))
    contour = ((edges > 0) & (mask > 0)).view(np.uint8)
    if contour.any():
        grey = cv2.cvtColor(np.ascontiguousarray(frame), cv2.COLOR_RGB2GRAY)
        _, ink = cv2.threshold(grey, 127, 255, cv2.THRESH_BINARY_INV)  # dark -> 255 (white), bright -> 0
        cv2.copyTo(cv2.cvtColor(ink, cv2.COLOR_GRAY2RGB), contour, out)
    return out
