"""Single frames on demand, as the browser gets them: from a folder of images, or from a video file.

A long video is never held in memory: :class:`VideoFrames` reads frames
through the video driver's seeking reader
(:class:`vidprop.io.video_seek.SeekableVideo`: one open decoder, playback
decodes forward, a jump seeks) and keeps a small LRU cache of JPEG-encoded
frames.  Decoding lives in :mod:`vidprop.io`; this module only encodes.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from pathlib import Path
from typing import Sequence

import numpy as np

from vidprop.io.video_seek import SeekableVideo

__all__ = ["FrameSource", "FolderFrames", "VideoFrames", "encode_jpeg", "BROWSER_IMAGE_TYPES"]

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
    """Frames of a video file, read by :class:`vidprop.io.video_seek.SeekableVideo`, kept JPEG-encoded.

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
        self.quality = quality
        self._video = SeekableVideo(path, forward=forward)
        self._lock = threading.Lock()
        self._cache: OrderedDict[int, bytes] = OrderedDict()

    @property
    def forward(self) -> int:
        return self._video.forward

    @property
    def seeks(self) -> int:
        """How many times a request had to seek (for tests and curiosity)."""
        return self._video.seeks

    @property
    def is_open(self) -> bool:
        """Whether the video file is open (after the first request, until :meth:`close`)."""
        return self._video.is_open

    def __len__(self) -> int:
        return len(self._video)

    def frame(self, index: int) -> np.ndarray:
        """(H, W, 3) uint8 RGB of frame ``index`` (0-based, presentation order)."""
        return self._video.frame(index)

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
        self._video.close()
        with self._lock:
            self._cache.clear()
