"""The image job of ``vidprop extract``: one feature file per still image, as DIFT's script saves them.

Each image alone (its noise drawn for frame index 0, so its features do not
depend on the other images), resized with PIL bicubic like DIFT's script,
batched ``batch_size`` at a time when their model sizes agree; images are read
ahead on a thread and files written on another.  Also: sorting command-line
inputs into images or videos (:func:`classify_inputs`).
"""

from __future__ import annotations

import logging
import time
from collections import deque
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterator, Literal, Sequence

import numpy as np

from vidprop import __version__
from vidprop.errors import ConfigError, InputError
from vidprop.io.feature_store import FileStatus, format_of, inspect_file, save_features
from vidprop.io.images import read_image, read_image_size, resize_image
from vidprop.io.video import list_frames
from vidprop.io.writers import BackgroundWriter
from vidprop.progress import progress_bar
from vidprop.tasks.budget import check_model_input, device_memory
from vidprop.tasks.extract.saver import (
    DEFAULT_OPTIONS,
    FORMAT_VERSION,
    IMAGE_PRESET,
    ExtractResult,
    FeatureSaver,
    SaveOptions,
    check_stride,
    conflict_error,
    output_settings,
    to_saved,
    upsample_record,
)

__all__ = ["classify_inputs", "extract_images", "plan_images"]

log = logging.getLogger(__name__)


def _prefetch(items: Sequence[Any], load: Callable[[Any], Any], depth: int = 4) -> Iterator[tuple[Any, Any]]:
    """Yield (item, load(item)) in order, loading up to ``depth`` items ahead on a thread."""
    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="vidprop-read") as pool:
        pending: deque[tuple[Any, Future]] = deque()
        it = iter(items)
        try:
            for item in it:
                pending.append((item, pool.submit(load, item)))
                if len(pending) >= depth:
                    break
            while pending:
                item, fut = pending.popleft()
                nxt = next(it, None)
                if nxt is not None:
                    pending.append((nxt, pool.submit(load, nxt)))
                yield item, fut.result()
        finally:
            for _, fut in pending:
                fut.cancel()



@dataclass
class _ImageJob:
    source: Path
    target: Path
    size: tuple[int, int]
    model_size: tuple[int, int]
    expected: dict[str, Any]
    status: FileStatus


def _single_file_target(paths: Sequence[Path], out: Path) -> bool:
    return len(paths) == 1 and out.suffix.lower() in (".pt", ".safetensors", ".npz")


def plan_images(
    images: Sequence[str | Path], out: str | Path, saver: FeatureSaver, options: SaveOptions
) -> list[_ImageJob]:
    """Read the images' headers, name their outputs and find which are complete (no model needed).

    Raises InputError for an unreadable image, an image size the model cannot
    take, or two images saved under one name; OutputExistsError for an output
    made with other settings (unless ``options.overwrite``).
    """
    paths = [Path(p) for p in images]
    if not paths:
        raise InputError("no images to extract")
    out = Path(out)
    single = _single_file_target(paths, out)
    if single:
        fmt = format_of(out)
        if options.format is not None and options.format != fmt:
            raise ConfigError(f"--out {out} is a .{fmt} file but the format asked for is {options.format}")
    else:
        fmt = options.format or "pt"
        if out.exists() and not out.is_dir():
            raise InputError(f"{out}: exists and is not a folder; give a folder (or a .pt/.safetensors/.npz file for one image)")
    settings = saver.settings()
    memory = device_memory(saver.config.extractor.device)[0]
    jobs: list[_ImageJob] = []
    seen: dict[Path, Path] = {}
    conflicts: list[tuple[Path, FileStatus]] = []
    for p in paths:
        size = read_image_size(p)
        try:
            model_size = check_model_input(saver.config, *size, source="the image", memory=memory)
        except ConfigError as exc:
            raise InputError(f"{p}: {exc}") from None
        target = out if single else out / f"{p.stem}.{fmt}"
        if target in seen:
            raise InputError(f"{seen[target]} and {p} would both be saved as {target}; extract them into different folders")
        seen[target] = p
        st = p.stat()
        expected = {
            **settings,
            **output_settings(options, size, model_size, "pil_bicubic"),
            "noise_index": 0,
            "source_bytes": int(st.st_size),
            "source_mtime_ns": int(st.st_mtime_ns),
        }
        status = inspect_file(target, expected)
        if options.overwrite and status.state != "missing":
            status = FileStatus("corrupt", "replaced (overwrite)")
        elif status.state in ("different", "foreign"):
            conflicts.append((target, status))
        jobs.append(_ImageJob(p, target, size, model_size, expected, status))
    if conflicts:
        raise conflict_error(conflicts)
    return jobs


def _read_for_model(job: _ImageJob) -> np.ndarray:
    """(H', W', 3) uint8 at the model size: PIL bicubic as DIFT's script (no-op when sizes agree)."""
    image = read_image(job.source)
    if (image.shape[1], image.shape[0]) != job.size:  # the file changed since it was planned
        raise InputError(f"{job.source}: the image changed while extracting ({image.shape[1]}x{image.shape[0]})")
    return resize_image(image, job.model_size)


def extract_images(
    images: Sequence[str | Path],
    out: str | Path,
    *,
    saver: FeatureSaver | None = None,
    options: SaveOptions = DEFAULT_OPTIONS,
    progress: bool = False,
) -> ExtractResult:
    """Save one feature file per image into the folder ``out`` (or to the file ``out`` for one image).

    Each file holds the image's (C, h, w) features -- ``(C, H, W)`` with
    ``options.upsample`` -- named after the image (``cat.jpg`` -> ``cat.pt``
    and its settings ``cat.json``).  Complete files are skipped; the model is
    loaded only if something is left to do.
    """
    saver = saver or FeatureSaver(IMAGE_PRESET)
    jobs = plan_images(images, out, saver, options)
    out = Path(out)
    result = ExtractResult(output=out, frames_total=len(jobs))
    todo = [j for j in jobs if j.status.state != "complete"]
    result.skipped = [j.target for j in jobs if j.status.state == "complete"]
    if result.skipped:
        log.info("%d of %d feature file(s) already complete: skipped", len(result.skipped), len(jobs))
    if not todo:
        return result
    for j in todo:
        if j.status.state == "corrupt" and j.status.reason != "replaced (overwrite)":
            log.warning("%s: redoing an incomplete feature file (%s)", j.target, j.status.reason)
    info = saver.model_info()  # loads the model
    for j in todo:
        check_stride(j.size, info["stride"], str(j.source))
    settings = saver.settings()
    batch_size = saver.batch_size
    started = time.perf_counter()
    bar = progress_bar(total=len(todo), unit="image", desc="extract", enabled=progress)
    try:
        with BackgroundWriter(max_pending=4, name="vidprop-feature-writer") as writer:
            batch: list[tuple[_ImageJob, np.ndarray]] = []

            def flush() -> None:
                feats = saver.extract([b[1] for b in batch], [0] * len(batch))  # (B, C, h, w)
                for (job, _), f in zip(batch, feats):
                    tensor = to_saved(f[None], options, job.size)[0]  # (C, h, w) or (C, H, W)
                    meta = {
                        "format_version": FORMAT_VERSION,
                        "vidprop_version": __version__,
                        "preset": saver.config.name,
                        "kind": "image",
                        **job.expected,
                        **settings,
                        **info,
                        "feature_size": [int(f.shape[-1]), int(f.shape[-2])],
                        "layout": "CHW",
                        "source": str(job.source),
                        **upsample_record(options),
                    }
                    writer.submit(save_features, job.target, tensor, meta)
                    result.written.append(job.target)
                    result.frames_extracted += 1
                    bar.update(1)
                batch.clear()

            for job, small in _prefetch(todo, _read_for_model):
                if batch and (len(batch) == batch_size or batch[0][0].model_size != job.model_size):
                    flush()
                batch.append((job, small))
            if batch:
                flush()
    finally:
        bar.close()
    result.seconds = time.perf_counter() - started
    return result


def classify_inputs(inputs: Sequence[str | Path], *, video: bool = False) -> tuple[Literal["images", "videos"], list[Path]]:
    """Sort command-line inputs into still images or videos.

    An image file (.jpg, .png, ...) is an image; any other file is a video; a
    folder holds images (its image files, sorted by name, not recursive)
    unless ``video`` says it is a video's frame folder.  Images and videos
    cannot be mixed in one call (their default settings differ).
    """
    from vidprop.io.video import IMAGE_EXTENSIONS

    if not inputs:
        raise InputError("no input given")
    images: list[Path] = []
    videos: list[Path] = []
    for raw in inputs:
        p = Path(raw)
        if not p.exists():
            raise InputError(f"{p}: no such file or folder")
        if p.is_dir():
            if video:
                videos.append(p)
            else:
                images.extend(list_frames(p))
        elif p.suffix.lower() in IMAGE_EXTENSIONS:
            if video:
                raise InputError(f"{p}: is an image; --video takes video files and frame folders")
            images.append(p)
        else:
            videos.append(p)
    if images and videos:
        raise InputError(
            f"got both still images ({images[0]}) and videos ({videos[0]}); extract them in separate runs "
            "(their default settings differ)"
        )
    return ("images", images) if images else ("videos", videos)
