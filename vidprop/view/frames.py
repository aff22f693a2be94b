"""Single frames on demand: from a folder of images, or decoded from a video file with seeking.

A long video is never held in memory: :class:`VideoFrames` keeps one open
decoder, the presentation timestamps of its packets (read once, without
decoding) and a small LRU cache of JPEG-encoded frames.  A request for the
frame just after the last one decoded (playback) continues decoding; any
other request seeks to the keyframe before the frame and decodes forward.
"""

from __future__ import annotations

import bisect
import logging
import threading
from collections import OrderedDict
from pathlib import Path
from typing import Iterator, Sequence

import numpy as np

from vidprop.errors import InputError

__all__ = ["FrameSource", "FolderFrames", "VideoFrames", "encode_jpeg", "BROWSER_IMAGE_TYPES"]

log = logging.getLogger(__name__)

#: Image files a browser shows as they are (anything else is re-encoded as JPEG).
BROWSER_IMAGE_TYPES = {".jpg": "image/jpeg", ".jpeg": "image/jpeg", ".png": "image/png", ".webp": "image/webp",
                       ".bmp": "image/bmp", ".gif": "image/gif"}


def encode_jpeg(rgb: np.ndarray, quality: int = 90) -> bytes:
    """(H, W, 3) uint8 RGB -> JPEG bytes."""
    import cv2

    ok, buf = cv2.imencode(".jpg", np.ascontiguousarray(rgb[..., ::-1]), [cv2.IMWRITE_JPEG_QUALITY, int(quality)])
    if not ok:  # pragma: no cover - OpenCV fails only on invalid arrays
        raise ValueError("JPEG encoding failed")
    return buf.tobytes()


class FrameSource:
    """Frames of a video by index (and name, for folders): ``get(index, name) -> (bytes, media type)``."""

    #: "frames" (a folder of images) or "video".
    kind = ""

    def __init__(self, path: Path) -> None:
        self.path = path

    def get(self, index: int, name: str | None = None) -> tuple[bytes, str]:
        raise NotImplementedError

    def close(self) -> None:
        pass


class FolderFrames(FrameSource):
    """A folder of images; the result's frame ``name`` is the image with that stem.

    When the result's names are not stems of the folder's images (a folder
    renamed after the run), frames are taken by position instead.
    """

    kind = "frames"

    def __init__(self, path: Path, files: Sequence[Path]) -> None:
        super().__init__(path)
        self.files = list(files)
        self._by_stem = {f.stem: f for f in self.files}

    @classmethod
    def open(cls, folder: Path) -> "FolderFrames":
        from vidprop.io.video import list_frames

        return cls(folder, list_frames(folder))

    def __len__(self) -> int:
        return len(self.files)

    def file_for(self, index: int, name: str | None = None) -> Path:
        if name is not None and name in self._by_stem:
            return self._by_stem[name]
        if 0 <= index < len(self.files):
            return self.files[index]
        raise IndexError(f"frame {index} is not in {self.path} ({len(self.files)} images)")

    def get(self, index: int, name: str | None = None) -> tuple[bytes, str]:
        f = self.file_for(index, name)
        media = BROWSER_IMAGE_TYPES.get(f.suffix.lower())
        if media:
            return f.read_bytes(), media
        from vidprop.io.images import read_image

        return encode_jpeg(read_image(f)), "image/jpeg"


class VideoFrames(FrameSource):
    """Frames of a video file decoded on demand with PyAV (seeking, a small cache).

    Args:
        path: the video file.
        cache: JPEG-encoded frames kept (least recently used dropped).
        forward: a request up to this many frames ahead of the decoder's
            position decodes forward instead of seeking.
    """

    kind = "video"

    def __init__(self, path: Path, *, cache: int = 16, forward: int = 32, quality: int = 90) -> None:
        super().__init__(path)
        self.cache_size = max(1, int(cache))
        self.forward = max(1, int(forward))
        self.quality = quality
        self._lock = threading.Lock()
        self._cache: OrderedDict[int, bytes] = OrderedDict()
        self._container = None
        self._stream = None
        self._pts: list[int] | None = None  # sorted presentation timestamps; None = no usable timestamps
        self._count = 0
        self._decoder: Iterator | None = None
        self._next: int | None = None  # index of the frame the decoder yields next (None: unknown)
        self.seeks = 0  # how many times a request had to seek (for tests and curiosity)

    # -------------------------------------------------------------- opening
    def _open(self) -> None:
        import av

        try:
            container = av.open(str(self.path))
        except Exception as exc:  # noqa: BLE001 - av.error.* kinds
            raise InputError(f"{self.path}: cannot open this video ({exc})") from None
        if not container.streams.video:
            container.close()
            raise InputError(f"{self.path}: has no video stream")
        self._container = container
        self._stream = container.streams.video[0]
        self._stream.thread_type = "AUTO"

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

    def __len__(self) -> int:
        with self._lock:
            self._ensure_index()
            return self._count

    # -------------------------------------------------------------- decoding
    def _index_of(self, frame) -> int | None:
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

    def get(self, index: int, name: str | None = None) -> tuple[bytes, str]:
        with self._lock:
            data = self._cache.get(index)
            if data is not None:
                self._cache.move_to_end(index)
                return data, "image/jpeg"
        data = encode_jpeg(self.frame(index), self.quality)
        with self._lock:
            self._cache[index] = data
            while len(self._cache) > self.cache_size:
                self._cache.popitem(last=False)
        return data, "image/jpeg"

    def close(self) -> None:
        with self._lock:
            if self._container is not None:
                self._container.close()
            self._container = self._decoder = None
            self._cache.clear()
