"""Streaming frame readers: one interface over decord, PyAV, OpenCV and frame folders.

    reader = open_video("clip.mp4")              # backend="auto"
    print(reader.info.width, reader.info.fps)
    for frame in reader:                          # (H, W, 3) uint8 RGB
        ...

Decoding runs ahead of the consumer on a background thread with a bounded
queue (``prefetch`` frames), so memory does not grow with video length.
decord is abandoned upstream and can hang when a container over-reports its
frame count: it is read strictly sequentially, the reported count is never
trusted, and if decord fails vidprop falls back to PyAV with a warning.

A video file is checked before anything else reads it
(:func:`check_video_file`): an empty file, an MP4/MOV whose data stops
before its boxes say it should (an interrupted download or recording) and a
file no decoder can open each get one line naming the file and the problem;
what the native decoders print on the way (libav's and decord's messages on
the C-level stderr) is kept at debug level.
"""

from __future__ import annotations

import contextlib
import itertools
import logging
import os
import queue
import struct
import sys
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterator, Literal

import numpy as np

from vidprop.errors import InputError

__all__ = ["VideoInfo", "FrameReader", "open_video", "IMAGE_EXTENSIONS", "BACKENDS", "list_frames",
           "check_video_file", "open_pyav"]

log = logging.getLogger(__name__)

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff")
Backend = Literal["auto", "decord", "pyav", "opencv", "folder"]
BACKENDS = ("auto", "decord", "pyav", "opencv", "folder")


@dataclass(frozen=True)
class VideoInfo:
    """What is known of a video before reading it all."""

    path: Path
    backend: str
    width: int
    height: int
    fps: float | None = None
    #: As reported by the container (may be wrong) or the number of images in a folder.
    num_frames: int | None = None
    #: Frame names (stems) for a folder; None for video files.
    frame_names: tuple[str, ...] | None = None

    @property
    def name(self) -> str:
        """The video's name: a file's stem, a folder's name (its parent's, for a generic one like ``frames/``)."""
        if self.path.is_file():
            return self.path.stem
        path = self.path.resolve()
        if path.name.lower() in GENERIC_FRAME_FOLDERS and path.parent.name:
            return path.parent.name
        return path.name


#: Frame-folder names that say nothing of the video: ``judo/frames/`` is named "judo".
GENERIC_FRAME_FOLDERS = frozenset({"frames", "images", "imgs", "img", "jpegimages", "rgb", "color", "jpg", "png"})


def list_frames(folder: Path) -> list[Path]:
    """Images of a frame folder, sorted by name."""
    files = sorted(p for p in folder.iterdir() if p.suffix.lower() in IMAGE_EXTENSIONS and p.is_file())
    if not files:
        raise InputError(f"{folder}: no frames in this folder (expected {', '.join(IMAGE_EXTENSIONS)} images)")
    return files


# --------------------------------------------------------------------- checking a file
#: File signatures of common video containers: (offset, bytes, name).
_SIGNATURES = (
    (4, b"ftyp", "MP4/MOV"),
    (0, b"\x1a\x45\xdf\xa3", "Matroska/WebM"),
    (0, b"RIFF", "AVI"),
    (0, b"FLV", "FLV"),
    (0, b"OggS", "Ogg"),
    (0, b"\x00\x00\x01\xba", "MPEG-PS"),
    (0, b"\x30\x26\xb2\x75", "ASF/WMV"),
)


@contextlib.contextmanager
def native_stderr_to_debug(what: str | Path) -> Iterator[None]:
    """Send what native code writes to the process's stderr (fd 2) to the debug log instead.

    decord and its bundled libav print their errors straight to fd 2 (a C++
    log line with a build path, "moov atom not found", ...); vidprop says
    what is wrong itself, in one line.  Use around short calls on the main
    thread only: the redirection is process-wide.
    """
    try:
        sys.stderr.flush()
        saved = os.dup(2)
    except (OSError, ValueError):  # no usable fd 2
        yield
        return
    with tempfile.TemporaryFile() as sink:
        os.dup2(sink.fileno(), 2)
        try:
            yield
        finally:
            os.dup2(saved, 2)
            os.close(saved)
            sink.seek(0)
            text = sink.read().decode("utf-8", "replace").strip()
            if text:
                log.debug("%s: decoder messages: %s", what, " | ".join(text.splitlines()))


def _container_name(head: bytes) -> str | None:
    for offset, magic, name in _SIGNATURES:
        if head[offset:offset + len(magic)] == magic:
            return name
    return None


def _mp4_truncation(path: Path, size: int) -> str | None:
    """Why an MP4/MOV file is cut short (its top-level boxes run past the end), or None."""
    offset = 0
    with open(path, "rb") as f:
        for _ in range(100_000):
            if offset == size:
                return None
            if size - offset < 8:
                return f"the file ends inside a box header at byte {offset:,}"
            f.seek(offset)
            box_size, box_type = struct.unpack(">I4s", f.read(8))
            if box_size == 1:
                if size - offset < 16:
                    return f"the file ends inside a box header at byte {offset:,}"
                (box_size,) = struct.unpack(">Q", f.read(8))
            elif box_size == 0:  # the last box, up to the end of the file
                return None
            if box_size < 8:
                return None  # not a box structure we understand: leave it to the decoders
            if offset + box_size > size:
                name = box_type.decode("latin-1", "replace")
                return (f"its '{name}' box needs {offset + box_size:,} bytes but the file has {size:,} "
                        "(an interrupted download, copy or recording?)")
            offset += box_size
    return None


def _ffmpeg_reason(exc: BaseException) -> str:
    """libav's message without the errno and file name PyAV adds."""
    strerror = getattr(exc, "strerror", None)
    if strerror:
        return str(strerror)
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


def check_video_file(path: str | Path) -> None:
    """Raise :class:`InputError` (one line) for an empty, truncated or unreadable video file.

    An MP4/MOV whose top-level boxes run past the end of the file is called
    truncated even when its first frames could be decoded (the result would
    silently stop early).  Other containers are opened with PyAV (libav's
    own messages stay quiet).
    """
    path = Path(path)
    try:
        size = path.stat().st_size
        with open(path, "rb") as f:
            head = f.read(16)
    except OSError as exc:
        raise InputError(f"{path}: cannot read this file ({exc.strerror or exc})") from None
    if size == 0:
        raise InputError(f"{path}: the file is empty (0 bytes)")
    container = _container_name(head)
    if container == "MP4/MOV":
        problem = _mp4_truncation(path, size)
        if problem:
            raise InputError(f"{path}: truncated: {problem}")
    import av

    try:
        with av.open(str(path)) as c:
            if not c.streams.video:
                kinds = sorted({s.type for s in c.streams}) or ["no streams"]
                raise InputError(f"{path}: has no video stream ({', '.join(kinds)} only)")
    except InputError:
        raise
    except Exception as exc:  # noqa: BLE001 - av.error.* kinds
        reason = _ffmpeg_reason(exc)
        log.debug("PyAV cannot open %s: %s", path, exc)
        if container:
            raise InputError(f"{path}: a damaged or truncated {container} file that PyAV cannot open ({reason})") from None
        raise InputError(f"{path}: not a video file PyAV or decord can read ({reason})") from None


def _decord_opens(path: Path) -> bool:
    """True when decord can open ``path`` (quietly; its messages go to the debug log)."""
    try:
        import decord

        with native_stderr_to_debug(path):
            decord.VideoReader(str(path), ctx=decord.cpu(0), num_threads=1)
    except Exception as exc:  # noqa: BLE001 - decord.DECORDError, RuntimeError
        log.debug("decord cannot open %s (%s); reading it with PyAV", path, str(exc).strip().splitlines()[0] if str(exc).strip() else exc)
        return False
    return True


# --------------------------------------------------------------------- backends
def _iter_folder(files: list[Path]) -> Iterator[np.ndarray]:
    from PIL import Image

    size = None
    for f in files:
        try:
            with Image.open(f) as im:
                arr = np.asarray(im.convert("RGB"))
        except Exception as exc:  # noqa: BLE001 - PIL raises many kinds
            raise InputError(f"{f}: cannot read this frame image ({exc})") from exc
        if size is None:
            size = arr.shape[:2]
        elif arr.shape[:2] != size:
            raise InputError(
                f"{f}: frame size {arr.shape[1]}x{arr.shape[0]} differs from the first frame's {size[1]}x{size[0]}"
            )
        yield arr


def open_pyav(path: Path) -> tuple[Any, Any]:
    """``(container, stream)`` of ``path``'s first video stream, for the streaming and the seeking reader.

    Raises :class:`InputError` (nothing left open) when it cannot be opened or has no video stream."""
    import av

    try:
        container = av.open(str(path))
    except Exception as exc:  # noqa: BLE001 - av.error.* kinds
        raise InputError(f"{path}: cannot open this video ({exc})") from exc
    if not container.streams.video:
        container.close()
        raise InputError(f"{path}: has no video stream")
    stream = container.streams.video[0]
    stream.thread_type = "AUTO"
    return container, stream


def _iter_pyav(path: Path, skip: int = 0) -> Iterator[np.ndarray]:
    container, stream = open_pyav(path)
    try:
        for i, frame in enumerate(container.decode(stream)):
            if i < skip:
                continue
            yield frame.to_ndarray(format="rgb24")
    except InputError:
        raise
    except Exception as exc:  # noqa: BLE001 - av.error.* kinds
        raise InputError(f"{path}: cannot decode this video ({exc})") from exc
    finally:
        container.close()


def _iter_opencv(path: Path) -> Iterator[np.ndarray]:
    import cv2

    cap = cv2.VideoCapture(str(path))
    if not cap.isOpened():
        raise InputError(f"{path}: OpenCV cannot open this video")
    try:
        while True:
            ok, bgr = cap.read()
            if not ok:
                break
            yield cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)
    finally:
        cap.release()


def _iter_decord(path: Path) -> Iterator[np.ndarray]:
    """Sequential decord reading; falls back to PyAV (with a warning) if decord fails."""
    yielded = 0
    try:
        import decord

        vr = decord.VideoReader(str(path), ctx=decord.cpu(0), num_threads=1)
    except Exception as exc:  # noqa: BLE001
        log.warning("decord could not open %s (%s); falling back to PyAV", path, exc)
        yield from _iter_pyav(path)
        return
    reported = len(vr)
    while True:
        try:
            frame = vr.next()
        except StopIteration:
            break
        except Exception as exc:  # noqa: BLE001 - decord.DECORDError and friends
            if yielded < reported:
                log.warning(
                    "decord failed at frame %d of %s (%s); continuing with PyAV", yielded, path, str(exc).splitlines()[0]
                )
                yield from _iter_pyav(path, skip=yielded)
            break
        yielded += 1
        yield frame.asnumpy()
    if yielded != reported:
        log.debug("%s: container reported %d frames, decoded %d", path, reported, yielded)


def _probe(path: Path, backend: str) -> tuple[float | None, int | None]:
    """fps and reported frame count (informative only)."""
    try:
        if backend == "decord":
            import decord

            vr = decord.VideoReader(str(path), ctx=decord.cpu(0), num_threads=1)
            return float(vr.get_avg_fps()), len(vr)
        if backend == "pyav":
            import av

            with av.open(str(path)) as c:
                s = c.streams.video[0]
                fps = float(s.average_rate) if s.average_rate else None
                return fps, (s.frames or None)
        if backend == "opencv":
            import cv2

            cap = cv2.VideoCapture(str(path))
            fps, n = cap.get(cv2.CAP_PROP_FPS), int(cap.get(cv2.CAP_PROP_FRAME_COUNT))
            cap.release()
            return (fps or None), (n if n > 0 else None)
    except Exception as exc:  # noqa: BLE001
        log.debug("probing %s with %s failed: %s", path, backend, exc)
    return None, None


def _decord_available() -> bool:
    try:
        import decord  # noqa: F401
    except Exception:  # noqa: BLE001
        return False
    return True


# --------------------------------------------------------------------- reader
_END = object()


class FrameReader:
    """Iterate the frames of a video file or a frame folder, decoded on a background thread.

    Args:
        source: a video file or a folder of images (sorted by name).
        backend: "auto" (decord if installed, else PyAV; "folder" for folders),
            "decord", "pyav", "opencv" or "folder".
        prefetch: frames decoded ahead (bounds memory).
        transform: optional function applied to each frame on the decoding
            thread (e.g. resizing); the reader then yields its results.
    """

    def __init__(
        self,
        source: str | Path,
        backend: Backend = "auto",
        prefetch: int = 8,
        transform: Callable[[np.ndarray], Any] | None = None,
    ) -> None:
        path = Path(source)
        if not path.exists():
            raise InputError(f"{path}: no such video file or frame folder")
        self._files: list[Path] | None = None
        if path.is_dir():
            if backend not in ("auto", "folder"):
                raise InputError(f"{path}: is a folder; backend {backend!r} reads video files only")
            backend = "folder"
            self._files = list_frames(path)
        else:
            if backend == "folder":
                raise InputError(f"{path}: is a file, not a frame folder")
            if backend == "auto":
                backend = "decord" if _decord_available() else "pyav"
            check_video_file(path)
            if backend == "decord" and not _decord_opens(path):
                backend = "pyav"
        if backend not in BACKENDS:
            raise InputError(f"unknown video backend {backend!r}; choose from {', '.join(BACKENDS)}")
        self.path = path
        self.backend = backend
        self.prefetch = max(1, int(prefetch))
        self.transform = transform
        self._thread: threading.Thread | None = None
        self._stop = threading.Event()
        self.busy_seconds = 0.0  # decoding (+ transform) time on the reader thread, last iteration
        self._sel_start, self._sel_stop = 0, None  # frames [start, stop) are read (see select())
        quiet = native_stderr_to_debug(path) if backend == "decord" else contextlib.nullcontext()
        with quiet:
            self._first = self._read_first()
            if self._files is None:
                fps, n = _probe(path, backend)
        h, w = self._first.shape[:2]
        if self._files is not None:
            fps, n = None, len(self._files)
            names = tuple(f.stem for f in self._files)
        else:
            names = None
        self.info = VideoInfo(path=path, backend=backend, width=w, height=h, fps=fps, num_frames=n, frame_names=names)

    def _frames(self) -> Iterator[np.ndarray]:
        if self._files is not None:
            return _iter_folder(self._files[self._sel_start : self._sel_stop])
        frames = {"decord": _iter_decord, "pyav": _iter_pyav, "opencv": _iter_opencv}[self.backend](self.path)
        if self._sel_start or self._sel_stop is not None:  # frames before start are decoded, not transformed
            return itertools.islice(frames, self._sel_start, self._sel_stop)
        return frames

    def select(self, start: int = 0, stop: int | None = None) -> None:
        """Read only frames ``start <= index < stop`` from now on (a folder skips the others' files)."""
        if start < 0 or (stop is not None and stop <= start):
            raise ValueError(f"frame range {start}:{stop} is empty or negative")
        self._sel_start, self._sel_stop = int(start), (None if stop is None else int(stop))

    def _read_first(self) -> np.ndarray:
        it = self._frames()
        try:
            first = next(iter(it))
        except StopIteration:
            raise InputError(f"{self.path}: the video has no frames") from None
        finally:
            close = getattr(it, "close", None)
            if close:
                close()
        return first

    def __iter__(self) -> Iterator[Any]:
        q: queue.Queue = queue.Queue(maxsize=self.prefetch)
        self._stop.clear()

        self.busy_seconds = 0.0

        def work() -> None:
            try:
                frames = iter(self._frames())
                while True:
                    t0 = time.perf_counter()
                    frame = next(frames, _END)
                    if frame is _END:
                        break
                    item = self.transform(frame) if self.transform else frame
                    self.busy_seconds += time.perf_counter() - t0
                    while not self._stop.is_set():
                        try:
                            q.put(item, timeout=0.1)
                            break
                        except queue.Full:
                            continue
                    if self._stop.is_set():
                        return
                q.put(_END)
            except BaseException as exc:  # noqa: BLE001 - handed to the consumer
                q.put(exc)

        self._thread = threading.Thread(target=work, name=f"vidprop-decode-{self.path.name}", daemon=True)
        self._thread.start()
        try:
            while True:
                item = q.get()
                if item is _END:
                    return
                if isinstance(item, BaseException):
                    raise item
                yield item
        finally:
            self._stop.set()
            self._thread.join(timeout=5)


def open_video(source: str | Path, backend: Backend = "auto", prefetch: int = 8,
               transform: Callable[[np.ndarray], Any] | None = None) -> FrameReader:
    """Open a video file or frame folder for streaming; see :class:`FrameReader`."""
    return FrameReader(source, backend=backend, prefetch=prefetch, transform=transform)
