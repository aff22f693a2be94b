"""The video job of ``vidprop extract``: a video's features, a chunk of frames per file, and its index.

Frames come through the one video driver (:class:`~vidprop.io.driver.VideoDriver`,
as every task reads them): resized on its reader thread with the preset's
interpolation and seeded by frame index exactly as ``vidprop segment`` does
(the saved features are the ones segmentation uses).  :class:`ChunkWriter`
turns them into chunk files, written on a writer thread a chunk at a time, so
memory does not grow with the video's length; ``index.json`` is written last.
"""

from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import torch

from vidprop import __version__
from vidprop.errors import ConfigError, InputError
from vidprop.io.feature_store import (
    INDEX_NAME,
    FileStatus,
    chunk_files,
    differences,
    format_of,
    inspect_file,
    remove_feature_file,
    save_features,
    write_index,
)
from vidprop.io.driver import FrameRange, VideoDriver, parse_frame_range
from vidprop.io.video import Backend, list_frames
from vidprop.io.writers import BackgroundWriter
from vidprop.progress import progress_bar
from vidprop.tasks.budget import check_model_input
from vidprop.tasks.extract.saver import (
    DEFAULT_OPTIONS,
    FORMAT_VERSION,
    VIDEO_PRESET,
    ExtractResult,
    FeatureSaver,
    SaveOptions,
    check_stride,
    conflict_error,
    output_settings,
    to_saved,
    upsample_record,
)

__all__ = ["ChunkWriter", "extract_video", "source_fingerprint"]

log = logging.getLogger(__name__)


def source_fingerprint(path: Path) -> dict[str, int]:
    """Size and modification time of a video file, or of a frame folder's images (sum, latest)."""
    if path.is_dir():
        files = list_frames(path)
        stats = [f.stat() for f in files]
        return {"source_bytes": int(sum(s.st_size for s in stats)), "source_mtime_ns": int(max(s.st_mtime_ns for s in stats))}
    st = path.stat()
    return {"source_bytes": int(st.st_size), "source_mtime_ns": int(st.st_mtime_ns)}


def _chunk_name(k: int, names: Sequence[str], chunk: int, fmt: str) -> str:
    return f"{names[0]}.{fmt}" if chunk == 1 else f"chunk_{k:05d}.{fmt}"


def _video_state(
    out_dir: Path, base: dict[str, Any], fmt: str, overwrite: bool
) -> tuple[dict[str, Any] | None, list[Path]]:
    """Look at what a previous run left in ``out_dir``.

    Returns (the index if the video is complete with these settings, else
    None; the feature files found).  Raises OutputExistsError for files made
    with other settings, another format or another chunk size, unless
    ``overwrite``.
    """
    import json

    found = chunk_files(out_dir)
    index_path = out_dir / INDEX_NAME
    if overwrite:
        return None, found
    conflicts: list[tuple[Path, FileStatus]] = []
    for f in found:
        if format_of(f) != fmt:
            conflicts.append((f, FileStatus("different", f"format: {format_of(f)!r} -> {fmt!r}")))
            continue
        st = inspect_file(f, base, verify_tensor=False)
        if st.state in ("different", "foreign"):
            conflicts.append((f, st))
    index = None
    if index_path.is_file():
        try:
            index = json.loads(index_path.read_text())
            diff = differences(index.get("settings", {}), base) + differences(index, {"file_format": fmt})
        except (json.JSONDecodeError, AttributeError):
            index, diff = None, []
        if diff:
            conflicts.insert(0, (index_path, FileStatus("different", "; ".join(diff))))
    if conflicts:
        raise conflict_error(conflicts)
    if index is not None:
        for c in index.get("chunks", []):
            expected = {**base, "start": c.get("start"), "count": c.get("count"), "frame_names": c.get("frame_names")}
            if inspect_file(out_dir / c["file"], expected).state != "complete":
                return None, found
        return index, found
    return None, found


class ChunkWriter:
    """The chunk files of one extraction: model inputs in, one file per ``options.chunk`` frames out.

    :meth:`add` takes the frames in order and :meth:`flush` es each full chunk
    (and the last, shorter one): a chunk already complete on disk with these
    settings is skipped, else its frames are extracted ``saver.batch_size``
    at a time into one (N, C, h, w) CPU tensor, saved on ``writer``'s
    thread.  ``chunks`` and ``rows`` are index.json's "chunks" and "frames";
    ``feature_shape`` is the per-frame (C, h, w) the model gives.
    """

    def __init__(self, *, saver: FeatureSaver, options: SaveOptions, out_dir: Path, video: Path, fmt: str,
                 start: int, base: dict[str, Any], info: dict[str, Any], size: tuple[int, int],
                 writer: BackgroundWriter, result: ExtractResult, bar: Any) -> None:
        self.saver, self.options, self.out_dir, self.video, self.fmt = saver, options, out_dir, video, fmt
        self.start, self.base, self.info, self.size = start, base, info, size
        self.writer, self.result, self.bar = writer, result, bar
        self.chunk = int(options.chunk)
        self.batch_size = saver.batch_size
        self.chunks: list[dict[str, Any]] = []
        self.rows: list[dict[str, Any]] = []  # index.json's "frames"
        self.feature_shape: list[int] | None = None
        self._buf: list[np.ndarray] = []
        self._names: list[str] = []

    def add(self, name: str, model_input: np.ndarray) -> None:
        """One frame (its name and its model input, in video order); a full chunk is flushed."""
        self._buf.append(model_input)
        self._names.append(name)
        if len(self._buf) == self.chunk:
            self.flush()

    def flush(self) -> None:
        """Write (or skip, when complete) the chunk of the frames added since the last flush."""
        buf, names = self._buf, self._names
        if not buf:
            return
        k, start = len(self.chunks), self.start + len(self.rows)  # the video index of the chunk's first frame
        fname = _chunk_name(k, names, self.chunk, self.fmt)
        path = self.out_dir / fname
        expected = {**self.base, "start": start, "count": len(buf), "frame_names": list(names)}
        status = FileStatus("missing") if self.options.overwrite else inspect_file(path, expected)
        if status.state == "complete":
            self.result.skipped.append(path)
            self.feature_shape = self.feature_shape or _shape_of(path)
        else:
            if status.state == "corrupt":
                log.warning("%s: redoing an incomplete feature file (%s)", path, status.reason)
            tensor = self._extract(start)
            meta = {
                "format_version": FORMAT_VERSION,
                "vidprop_version": __version__,
                "preset": self.saver.config.name,
                "kind": "video_chunk",
                **expected,
                **self.info,
                "feature_size": [self.feature_shape[2], self.feature_shape[1]],
                "layout": "NCHW",
                "source": str(self.video),
                **upsample_record(self.options),
            }
            self.writer.submit(save_features, path, tensor, meta)
            self.result.written.append(path)
            self.result.frames_extracted += len(buf)
        self.chunks.append({"file": fname, "start": start, "count": len(buf), "frame_names": list(names)})
        self.rows.extend({"index": start + j, "name": n, "file": fname, "offset": j} for j, n in enumerate(names))
        self.bar.update(len(buf))
        buf.clear()
        names.clear()

    def _extract(self, start: int) -> torch.Tensor | None:
        """The buffered frames' features: (N, C, h, w) on the CPU, filled batch by batch (video indices from ``start``)."""
        buf, batch_size = self._buf, self.batch_size
        tensor: torch.Tensor | None = None
        for i in range(0, len(buf), batch_size):
            f = self.saver.extract(buf[i : i + batch_size], range(start + i, start + min(i + batch_size, len(buf))))
            self.feature_shape = self.feature_shape or [int(v) for v in f.shape[1:]]
            part = to_saved(f, self.options, self.size)  # (b, C, h, w) on the CPU
            if tensor is None:
                tensor = torch.empty((len(buf), *part.shape[1:]), dtype=part.dtype)
            tensor[i : i + len(part)] = part
            del f, part
        return tensor


def extract_video(
    video: str | Path,
    out: str | Path,
    *,
    saver: FeatureSaver | None = None,
    options: SaveOptions = DEFAULT_OPTIONS,
    name: str | None = None,
    backend: Backend = "auto",
    progress: bool = False,
    frames: FrameRange | str | None = None,
    max_frames: int | None = None,
) -> ExtractResult:
    """Save a video's (or frame folder's) features into ``out/<name>/``, a chunk of frames per file.

    ``frames`` ("START:END", END exclusive) and ``max_frames`` select a part of
    the video, as ``segment`` does: frames keep their index (the noise of each
    frame follows its index, so a part's features equal the whole run's) and
    name, and ``index.json`` lists only them.

    Each chunk file holds (N, C, h, w) features of ``options.chunk`` frames
    (the last may hold fewer); ``index.json`` lists every frame's file and
    position, the shapes and the settings, and is written last.  Frames
    stream through: at most three chunks are in memory (one being filled,
    one queued for the writer thread, one being written), whatever the
    video's length.
    A re-run skips complete chunks (and the whole video once its index is
    written with the same settings).
    """
    saver = saver or FeatureSaver(VIDEO_PRESET)
    fmt = options.format or "safetensors"
    if fmt == "pt":
        raise ConfigError("videos are saved as safetensors or npz chunks (.pt is the still-image layout of DIFT's script)")
    video = Path(video)
    fr = frames if isinstance(frames, FrameRange) else parse_frame_range(frames, max_frames)
    if isinstance(frames, FrameRange) and max_frames is not None:
        fr = FrameRange(fr.start, fr.stop, max_frames)
    driver = VideoDriver(video, backend=backend, frames=fr)
    vinfo = driver.info
    name = name or vinfo.name
    out_dir = Path(out) / name
    if out_dir.exists() and not out_dir.is_dir():
        raise InputError(f"{out_dir}: exists and is not a folder")
    size = (vinfo.width, vinfo.height)
    model_size, interp, as_float = _model_input(saver, video, name, size)
    base = _settings(saver, options, video, fr, size, model_size, interp, as_float)
    result = ExtractResult(output=out_dir, index=out_dir / INDEX_NAME)
    index, found = _video_state(out_dir, base, fmt, options.overwrite)
    if index is not None:
        result.skipped = [out_dir / c["file"] for c in index["chunks"]]
        result.frames_total = int(index.get("num_frames", 0))
        log.info("%s: features already complete in %s: skipped", video, out_dir)
        return result

    info = saver.model_info()  # loads the model
    check_stride(size, info["stride"], str(video))
    _warn_chunk_memory(video, options, size, model_size, info)
    base = {**base, **saver.settings()}
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / INDEX_NAME).unlink(missing_ok=True)  # rewritten when every chunk is there
    log.info(
        "extracting %s (%dx%d -> %dx%d%s) -> %s",
        video, size[0], size[1], model_size[0], model_size[1],
        f", {vinfo.num_frames} frames" if vinfo.num_frames else "", out_dir,
    )
    started = time.perf_counter()
    bar = progress_bar(total=driver.num_frames, unit="frame", desc="extract", enabled=progress)
    try:
        with BackgroundWriter(max_pending=1, name="vidprop-feature-writer") as writer:
            chunks = ChunkWriter(saver=saver, options=options, out_dir=out_dir, video=video, fmt=fmt, start=fr.start,
                                 base=base, info=info, size=size, writer=writer, result=result, bar=bar)
            for rec in driver.records(model_size, interp, as_float=as_float):  # resized on the decoding thread
                assert rec.model_input is not None
                chunks.add(rec.name, rec.model_input)
            chunks.flush()
    finally:
        bar.close()
    result.seconds = time.perf_counter() - started
    result.frames_total = len(chunks.rows)
    listed = {out_dir / c["file"] for c in chunks.chunks}
    for stale in found:
        if stale not in listed:  # only reachable with overwrite: an earlier run's files
            log.info("removing %s (an earlier extraction's file, not part of this one)", stale)
            remove_feature_file(stale)
    result.index = write_index(out_dir, _index_data(
        chunks, video=video, name=name, fr=fr, fps=vinfo.fps, size=size, model_size=model_size, fmt=fmt,
        settings={**base, **info, "preset": saver.config.name, **upsample_record(options)}))
    return result


def _model_input(saver: FeatureSaver, video: Path, name: str, size: tuple[int, int]) -> tuple[tuple[int, int], str, bool]:
    """(model input size, interpolation, resize as floats) for the video ``name`` of ``size``, checked before loading."""
    try:  # a preset's per-sequence frame sizes apply, as in segment
        model_size = check_model_input(saver.config.for_sequence(name), *size)  # a huge size: before loading
        interp = saver.config.for_sequence(name).frames.interpolation
        as_float = bool(saver.config.for_sequence(name).frames.resize_as_float)  # as the tasks resize (jhmdb: floats)
    except ConfigError as exc:
        raise InputError(f"{video}: {exc}") from None
    return model_size, interp, as_float


def _settings(saver: FeatureSaver, options: SaveOptions, video: Path, fr: FrameRange, size: tuple[int, int],
              model_size: tuple[int, int], interp: str, as_float: bool) -> dict[str, Any]:
    """The settings every chunk file of the video records (before the model is loaded)."""
    return {
        **saver.settings(),
        **output_settings(options, size, model_size, ("opencv_linear_float" if as_float else "opencv_linear")
                          if interp == "linear" else "pil_bicubic"),
        **source_fingerprint(video),
        "chunk": int(options.chunk),
        **({} if fr.is_all else {"frame_range": [fr.start, fr.end]}),
    }


def _warn_chunk_memory(video: Path, options: SaveOptions, size: tuple[int, int], model_size: tuple[int, int],
                       info: dict[str, Any]) -> None:
    """Warn when the up to three chunks in memory at once take more than 2 GiB."""
    chunk = int(options.chunk)
    per_frame = info["channels"] * 4 // (2 if options.save_dtype == "float16" else 1) * (
        size[0] * size[1] if options.upsample else (model_size[0] // info["stride"]) * (model_size[1] // info["stride"]))
    if 3 * chunk * per_frame > 2**31:
        log.warning(
            "%s: each chunk of %d frames holds %.1f GB of features and up to three chunks are in memory at once; "
            "a smaller --chunk (or --save-dtype float16) needs less memory", video, chunk, chunk * per_frame / 1e9,
        )


def _index_data(chunks: ChunkWriter, *, video: Path, name: str, fr: FrameRange, fps: float | None,
                size: tuple[int, int], model_size: tuple[int, int], fmt: str,
                settings: dict[str, Any]) -> dict[str, Any]:
    """What ``index.json`` holds (docs/extract.md): the video, its chunks and frames, shapes and settings."""
    fs = chunks.feature_shape or []
    options = chunks.options
    return {
        "format_version": FORMAT_VERSION,
        "vidprop_version": __version__,
        "kind": "video",
        "video": str(video),
        "name": name,
        "num_frames": len(chunks.rows),
        "first_frame": fr.start,
        "fps": fps,
        "frame_size": list(size),
        "model_size": list(model_size),
        "feature_shape": ([fs[0], size[1], size[0]] if options.upsample else fs) if fs else None,
        "layout": "NCHW",
        "key": "features",
        "file_format": fmt,
        "chunk": chunks.chunk,
        "settings": settings,
        "chunks": chunks.chunks,
        "frames": chunks.rows,
    }


def _shape_of(path: Path) -> list[int] | None:
    """Per-frame feature shape (C, h, w) recorded in a chunk file (model output, before upsampling)."""
    from vidprop.io.feature_store import read_meta

    meta = read_meta(path)
    fs = meta.get("feature_size")
    return [int(meta["channels"]), int(fs[1]), int(fs[0])] if fs and "channels" in meta else None
