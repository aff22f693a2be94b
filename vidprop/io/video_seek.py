"""Single frames of a video file by index, with seeking: the random-access side of the video driver.

:mod:`vidprop.io.video` streams every frame in order; a viewer asks for frame
*i* of a long video and must not decode it all.  :class:`SeekableVideo`
keeps one open decoder (opened by :func:`vidprop.io.video.open_pyav`) and the
presentation timestamps of the file's packets (read once, without decoding).
A request for the frame just after the last one decoded (playback) continues
decoding; any other request seeks to the keyframe before the frame and
decodes forward.  Files whose packets lack distinct timestamps are decoded
sequentially from the start.
"""

from __future__ import annotations

import bisect
import logging
import threading
from pathlib import Path
from typing import Any, Iterator

import numpy as np

from vidprop.errors import InputError
from vidprop.io.video import open_pyav

__all__ = ["SeekableVideo"]

log = logging.getLogger(__name__)


class SeekableVideo:
    """Frames of a video file decoded on demand with PyAV (thread-safe).

    Args:
        path: the video file.
        forward: a request up to this many frames ahead of the decoder's
            position decodes forward instead of seeking.
    """

    def __init__(self, path: Path, *, forward: int = 32) -> None:
        self.path = Path(path)
        self.forward = max(1, int(forward))
        self._lock = threading.Lock()
        self._container: Any = None
        self._stream: Any = None
        self._pts: list[int] | None = None  # sorted presentation timestamps; None = no usable timestamps
        self._count = 0
        self._decoder: Iterator | None = None
        self._next: int | None = None  # index of the frame the decoder yields next (None: unknown)
        self.seeks = 0  # how many times a request had to seek (for tests and curiosity)

    # -------------------------------------------------------------- opening
    def _open(self) -> None:
        self._container, self._stream = open_pyav(self.path)

    def _ensure_index(self) -> None:
        """Read every packet's timestamp once (demuxing only: no decoding)."""
        if self._container is not None:
            return
        self._open()
        stamps: list[int | None] = []
        try:
            for packet in self._container.demux(self._stream):
                if packet.size:  # the final flush packet is empty
                    stamps.append(packet.pts)
        except Exception as exc:  # noqa: BLE001
            raise InputError(f"{self.path}: cannot read this video ({exc})") from None
        self._count = len(stamps)
        if stamps and all(s is not None for s in stamps) and len(set(stamps)) == len(stamps):
            self._pts = sorted(stamps)  # presentation order
        else:
            self._pts = None
            log.debug("%s: packets without distinct timestamps; frames are decoded sequentially", self.path)
        self._restart()

    def _restart(self) -> None:
        """Back to the first frame (reopening the file: the simplest exact reset)."""
        if self._container is not None:
            self._container.close()
        self._open()
        self._decoder = self._container.decode(self._stream)
        self._next = 0

    def _seek(self, index: int) -> None:
        assert self._pts is not None
        self.seeks += 1
        self._container.seek(self._pts[index], backward=True, any_frame=False, stream=self._stream)
        self._decoder = self._container.decode(self._stream)
        self._next = None

    @property
    def is_open(self) -> bool:
        """Whether the file is open (after the first request, until :meth:`close`)."""
        return self._container is not None

    def __len__(self) -> int:
        with self._lock:
            self._ensure_index()
            return self._count

    # -------------------------------------------------------------- decoding
    def _index_of(self, frame: Any) -> int | None:
        if self._pts is None or frame.pts is None:
            return None
        return bisect.bisect_left(self._pts, frame.pts)

    def _decode_to(self, index: int) -> np.ndarray:
        if self._pts is None:
            if self._next is None or index < self._next:
                self._restart()
        elif self._next is None or not (self._next <= index <= self._next + self.forward):
            self._seek(index)
        after_seek = self._next is None
        for frame in self._decoder:
            j = self._index_of(frame)
            if j is None:
                if self._next is None:  # a frame without timestamp right after a seek: start over, sequentially
                    self._pts = None
                    return self._decode_to(index)
                j = self._next
            if after_seek and j > index:  # the seek landed after the frame: decode from the start instead
                log.debug("%s: seeking to frame %d landed on frame %d; decoding from the start", self.path, index, j)
                self._restart()
                return self._decode_sequential(index)
            after_seek = False
            self._next = j + 1
            if j >= index:
                return frame.to_ndarray(format="rgb24")
        self._next = None
        raise IndexError(f"frame {index} is past the end of {self.path} ({self._count} frames)")

    def _decode_sequential(self, index: int) -> np.ndarray:
        for frame in self._decoder:
            j = self._next
            self._next = j + 1
            if j >= index:
                return frame.to_ndarray(format="rgb24")
        self._next = None
        raise IndexError(f"frame {index} is past the end of {self.path}")

    def frame(self, index: int) -> np.ndarray:
        """(H, W, 3) uint8 RGB of frame ``index`` (0-based, presentation order)."""
        with self._lock:
            self._ensure_index()
            if not 0 <= index < self._count:
                raise IndexError(f"frame {index} is not in {self.path} ({self._count} frames)")
            try:
                return self._decode_to(index)
            except (IndexError, InputError):
                raise
            except Exception as exc:  # noqa: BLE001 - av.error.* kinds
                self._next = None
                raise InputError(f"{self.path}: cannot decode frame {index} ({exc})") from None

    def close(self) -> None:
        """Close the file (a later request reopens it)."""
        with self._lock:
            if self._container is not None:
                self._container.close()
            self._container = self._decoder = None
