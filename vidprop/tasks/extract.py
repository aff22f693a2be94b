"""Save the DIFT features of still images and videos, with the settings that made them.

Python API (``vidprop extract`` is a thin layer over it):

    from vidprop.tasks.extract import FeatureSaver, SaveOptions, extract_images, extract_video

    saver = FeatureSaver.from_pretrained(config="dift")        # DIFT's script defaults: 768x768, t 261, block 1
    extract_images(["cat.jpg", "dog.png"], "feats/", saver=saver)
    # -> feats/cat.pt (a (C, h, w) float32 tensor, as DIFT's extract_dift.py saves) + feats/cat.json (settings)

    saver = FeatureSaver.from_pretrained(config="davis-fast")  # the video settings of `vidprop segment`
    extract_video("clip.mp4", "feats/", saver=saver, options=SaveOptions(chunk=16))
    # -> feats/clip/chunk_00000.safetensors ... ((16, C, h, w) each) + feats/clip/index.json

    from vidprop.features import load_features
    feats, settings = load_features("feats/cat.pt")

Still images: each image alone (its noise drawn for frame index 0, so its
features do not depend on the other images), resized with PIL bicubic like
DIFT's script, batched ``batch_size`` at a time when their model sizes agree.
Videos: frames streamed through :class:`~vidprop.io.video.FrameReader`,
resized with OpenCV bilinear and seeded by frame index exactly as ``vidprop
segment`` does (the saved features are the ones segmentation uses), written a
chunk at a time, so memory does not grow with the video's length.

Re-running the same extraction skips every file already complete (same
settings and source, intact); a truncated or unfinished file is redone; a
file made with other settings is an error unless ``overwrite``.  File
formats: ``docs/extract.md``.
"""

from __future__ import annotations

import logging
import time
from collections import deque
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterator, Literal, Sequence

import numpy as np
import torch
import torch.nn.functional as F

from vidprop import __version__
from vidprop.config import TaskConfig, fit_backbone_frames, load_preset
from vidprop.errors import ConfigError, InputError, OutputExistsError
from vidprop.features.base import FeatureExtractor
from vidprop.io.feature_store import (
    FORMATS,
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
from vidprop.io.driver import FrameRange, parse_frame_range
from vidprop.io.images import read_image, read_image_size, resize_image
from vidprop.io.video import Backend, list_frames, open_video
from vidprop.io.writers import BackgroundWriter
from vidprop.progress import progress_bar
from vidprop.tasks.base import resize_frame
from vidprop.tasks.budget import check_model_input, device_memory

__all__ = [
    "IMAGE_PRESET",
    "VIDEO_PRESET",
    "FORMAT_VERSION",
    "SaveOptions",
    "ExtractResult",
    "FeatureSaver",
    "extract_images",
    "extract_video",
    "upsample_features",
    "classify_inputs",
    "source_fingerprint",
    "plan_images",
]

log = logging.getLogger(__name__)

#: Preset for still images: the defaults of DIFT's extract_dift.py.
IMAGE_PRESET = "dift"
#: Preset for videos: the DAVIS settings ``vidprop segment`` uses by default.
VIDEO_PRESET = "davis-fast"
#: Version of the recorded settings' layout.
FORMAT_VERSION = 1
_SAVE_DTYPES = {"float32": torch.float32, "float16": torch.float16}


@dataclass(frozen=True)
class SaveOptions:
    """How features are saved.

    Args:
        format: "pt", "safetensors" or "npz"; None = ``pt`` for images (DIFT's
            layout) and ``safetensors`` for videos (``pt`` is for images only).
        save_dtype: "float32" (exact) or "float16" (half the size).
        upsample: upsample the features to the input image's size (bilinear,
            ``align_corners=False``, as DIFT's demo code) before saving.  Large:
            C x H x W values per image.
        chunk: video frames per file (1 = one file per frame, named after it).
        overwrite: recompute and replace existing outputs.
    """

    format: Literal["pt", "safetensors", "npz"] | None = None
    save_dtype: Literal["float32", "float16"] = "float32"
    upsample: bool = False
    chunk: int = 16
    overwrite: bool = False

    def __post_init__(self) -> None:
        if self.format is not None and self.format not in FORMATS:
            raise ConfigError(f"unknown feature format {self.format!r}; use {', '.join(FORMATS)}")
        if self.save_dtype not in _SAVE_DTYPES:
            raise ConfigError(f"save dtype must be float32 or float16, got {self.save_dtype!r}")
        if int(self.chunk) < 1:
            raise ConfigError(f"chunk must be >= 1 frame, got {self.chunk}")


@dataclass
class ExtractResult:
    """What an extraction wrote.

    ``output``: the feature file (one image saved to a file name), the output
    folder (images) or the video's folder; ``index``: a video's index.json.
    ``frames_extracted`` went through the model in ``seconds`` (wall time,
    model loading excluded); ``skipped`` files were already complete.
    """

    output: Path
    written: list[Path] = field(default_factory=list)
    skipped: list[Path] = field(default_factory=list)
    frames_extracted: int = 0
    frames_total: int = 0
    seconds: float = 0.0
    index: Path | None = None

    @property
    def fps(self) -> float:
        return self.frames_extracted / self.seconds if self.seconds > 0 else 0.0


def upsample_features(features: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """(B, C, h, w) -> (B, C, H, W) with ``size`` = (W, H): bilinear, align_corners=False, in float32."""
    if features.ndim != 4:
        raise ValueError(f"features must be (B, C, h, w), got {tuple(features.shape)}")
    w, h = size
    return F.interpolate(features.float(), size=(int(h), int(w)), mode="bilinear", align_corners=False)


# --------------------------------------------------------------------------- the saver
class FeatureSaver:
    """A feature extractor (loaded on first use) and the TaskConfig it runs with.

    Args:
        config: a TaskConfig or a preset name (frame resizing + extractor settings).
        extractor: an already built extractor; None = load DIFT from
            ``config.extractor`` when the first frame needs it (nothing is
            loaded when every output is already complete).
        device, dtype: where and in what precision to run the loaded model.
    """

    def __init__(
        self,
        config: TaskConfig | str = IMAGE_PRESET,
        extractor: FeatureExtractor | None = None,
        *,
        device: str | torch.device | None = None,
        dtype: str | torch.dtype | None = None,
    ) -> None:
        self.config = load_preset(config) if isinstance(config, str) else config
        # sizes fitted to the backbone (or refused) before the model loads
        self.config = fit_backbone_frames(self.config)
        if "{" in self.config.extractor.prompt:
            raise ConfigError(
                f"the prompt {self.config.extractor.prompt!r} has a placeholder; give the full prompt "
                "(e.g. --prompt 'a photo of a cat')"
            )
        if self.config.extractor.backbone == "sd+dinov2":
            raise ConfigError(
                "the sd+dinov2 backbone computes the features of an image PAIR together (a joint PCA); "
                "`extract` saves one image's features: choose another backbone (sd, adm, dino, clip, dinov2, cleandift)"
            )
        if extractor is not None:
            _check_same_settings(self.config, extractor)
        self._extractor = extractor
        self._device = device
        self._dtype = dtype

    @classmethod
    def from_pretrained(
        cls,
        model: str | None = None,
        *,
        config: TaskConfig | str = IMAGE_PRESET,
        device: str | torch.device | None = None,
        dtype: str | torch.dtype | None = None,
    ) -> "FeatureSaver":
        """Load the model now (default: the config's) with a preset name or a TaskConfig."""
        cfg = load_preset(config) if isinstance(config, str) else config
        if model is not None:
            cfg = cfg.override(extractor={"model": str(model)})
        saver = cls(cfg, device=device, dtype=dtype)
        saver.extractor  # noqa: B018 - load
        return saver

    @property
    def loaded(self) -> bool:
        return self._extractor is not None

    @property
    def extractor(self) -> FeatureExtractor:
        if self._extractor is None:
            from vidprop.features.registry import build_extractor

            self._extractor = build_extractor(self.config.extractor, device=self._device, dtype=self._dtype)
        return self._extractor

    def settings(self) -> dict[str, Any]:
        """The extraction settings recorded in every file (known before the model is loaded)."""
        from vidprop.features.dift import resolve_device, resolve_dtype, resolve_revision

        cfg = self.config.extractor
        if self._extractor is not None:
            ext = self._extractor
            cfg = getattr(ext, "config", cfg)
            dtype = ext.dtype
            revision = getattr(ext, "model_revision", None) or cfg.revision
        else:
            device = resolve_device(self._device if self._device is not None else cfg.device)
            dtype = resolve_dtype(self._dtype if self._dtype is not None else cfg.dtype, device)
            revision = resolve_revision(cfg.model, cfg.revision)
        return {
            "backbone": cfg.backbone,
            "model": str(cfg.model),
            "revision": revision,
            "weights": cfg.weights,
            "layer": cfg.layer,
            "t": int(cfg.t),
            "up_ft_index": int(cfg.up_ft_index),
            "ensemble": int(cfg.ensemble),
            "seed": int(cfg.seed),
            "prompt": cfg.prompt,
            "dtype": str(dtype).replace("torch.", ""),
        }

    def model_info(self) -> dict[str, Any]:
        """Settings known once the model is loaded: stride, channels, device."""
        ext = self.extractor
        return {"stride": int(ext.stride), "channels": int(ext.channels), "device": str(ext.device)}

    def image_features(self, image: np.ndarray) -> torch.Tensor:
        """One (H, W, 3) uint8 RGB image at any size -> its (C, h, w) features, as :func:`extract_images` saves them.

        Resized to the config's model size with PIL bicubic, noise for index 0.
        """
        if image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8:
            raise ValueError(f"image must be (H, W, 3) uint8 RGB, got {image.shape} {image.dtype}")
        h, w = image.shape[:2]
        _check_stride((w, h), int(self.extractor.stride), "the image")
        small = resize_image(np.ascontiguousarray(image), self.config.frames.target_size(w, h))
        return self.extract([small], [0])[0]

    def extract(self, frames: Sequence[np.ndarray], indices: Sequence[int]) -> torch.Tensor:
        """Model-size (H, W, 3) uint8 RGB frames -> features (B, C, h, w) on the extractor's device."""
        # A contiguous (B, 3, H, W) batch, as torchvision's PILToTensor gives DIFT's script (the memory
        # layout of the input picks the convolution kernels, which round differently in the last bits).
        x = torch.from_numpy(np.stack(frames)).permute(0, 3, 1, 2).contiguous()  # (B, 3, H, W) uint8
        return self.extractor.extract(x, indices=list(indices))


#: ExtractorConfig fields that change the features: a given extractor must agree with the config on them.
_FEATURE_FIELDS = ("model", "revision", "t", "up_ft_index", "ensemble", "prompt", "seed")


def _check_same_settings(config: TaskConfig, extractor: Any) -> None:
    own = getattr(extractor, "config", None)
    if own is None:
        return
    diff = [f"{k}={getattr(own, k)!r} (config: {getattr(config.extractor, k)!r})"
            for k in _FEATURE_FIELDS if getattr(own, k, None) != getattr(config.extractor, k)]
    if diff:
        raise ConfigError(
            "the extractor was built with other settings than the config's: " + ", ".join(diff)
            + "; build it from this config (FeatureSaver(config) loads it) so the saved settings are true"
        )


def _batch_size(saver: FeatureSaver) -> int:
    own = getattr(saver._extractor, "config", None) or saver.config.extractor
    return max(1, int(getattr(own, "batch_size", 1)))


def _check_stride(size: tuple[int, int], stride: int, what: str) -> None:
    w, h = size
    if w < stride or h < stride:
        raise InputError(
            f"{what}: the image is {w}x{h}, too small for features at stride {stride} "
            f"(at least {stride}x{stride} pixels are needed)"
        )


def _output_settings(options: SaveOptions, size: tuple[int, int], model_size: tuple[int, int], resize: str) -> dict[str, Any]:
    same = tuple(model_size) == tuple(size)
    return {
        "input_size": list(size),
        "model_size": list(model_size),
        "resize": "none" if same else resize,
        "upsample": bool(options.upsample),
        "save_dtype": options.save_dtype,
    }


def _upsample_record(options: SaveOptions) -> dict[str, Any]:
    return {"upsample_mode": "bilinear", "align_corners": False} if options.upsample else {}


def _to_saved(feats: torch.Tensor, options: SaveOptions, size: tuple[int, int]) -> torch.Tensor:
    """(B, C, h, w) on the device -> upsampled if asked, in the save dtype, on the CPU."""
    if options.upsample:
        feats = upsample_features(feats, size)
    return feats.to(dtype=_SAVE_DTYPES[options.save_dtype]).to("cpu")


def _conflict_error(conflicts: list[tuple[Path, FileStatus]]) -> OutputExistsError:
    path, status = conflicts[0]
    what = "was not written by vidprop extract" if status.state == "foreign" else "was made with other settings"
    more = f" (and {len(conflicts) - 1} more file(s))" if len(conflicts) > 1 else ""
    return OutputExistsError(
        f"{path} already exists and {what} ({status.reason}){more}; pass --overwrite (overwrite=True) to replace it"
    )


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


# --------------------------------------------------------------------------- images
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
            **_output_settings(options, size, model_size, "pil_bicubic"),
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
        raise _conflict_error(conflicts)
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
    options: SaveOptions = SaveOptions(),
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
        _check_stride(j.size, info["stride"], str(j.source))
    settings = saver.settings()
    batch_size = _batch_size(saver)
    started = time.perf_counter()
    bar = progress_bar(total=len(todo), unit="image", desc="extract", enabled=progress)
    try:
        with BackgroundWriter(max_pending=4, name="vidprop-feature-writer") as writer:
            batch: list[tuple[_ImageJob, np.ndarray]] = []

            def flush() -> None:
                feats = saver.extract([b[1] for b in batch], [0] * len(batch))  # (B, C, h, w)
                for (job, _), f in zip(batch, feats):
                    tensor = _to_saved(f[None], options, job.size)[0]  # (C, h, w) or (C, H, W)
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
                        **_upsample_record(options),
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


# --------------------------------------------------------------------------- videos
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
        raise _conflict_error(conflicts)
    if index is not None:
        for c in index.get("chunks", []):
            expected = {**base, "start": c.get("start"), "count": c.get("count"), "frame_names": c.get("frame_names")}
            if inspect_file(out_dir / c["file"], expected).state != "complete":
                return None, found
        return index, found
    return None, found


def extract_video(
    video: str | Path,
    out: str | Path,
    *,
    saver: FeatureSaver | None = None,
    options: SaveOptions = SaveOptions(),
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
    reader = open_video(video, backend=backend)
    vinfo = reader.info
    if vinfo.frame_names is not None and fr.start >= len(vinfo.frame_names):
        raise InputError(f"{video}: --frames starts at {fr.start} but the folder has {len(vinfo.frame_names)} frames")
    if not fr.is_all:
        reader.select(fr.start, fr.end)
    name = name or vinfo.name
    out_dir = Path(out) / name
    if out_dir.exists() and not out_dir.is_dir():
        raise InputError(f"{out_dir}: exists and is not a folder")
    size = (vinfo.width, vinfo.height)
    try:  # a preset's per-sequence frame sizes apply, as in segment
        model_size = check_model_input(saver.config.for_sequence(name), *size)  # a huge size: before loading
        interp = saver.config.for_sequence(name).frames.interpolation
        as_float = bool(saver.config.for_sequence(name).frames.resize_as_float)  # as the tasks resize (jhmdb: floats)
    except ConfigError as exc:
        raise InputError(f"{video}: {exc}") from None
    chunk = int(options.chunk)
    base = {
        **saver.settings(),
        **_output_settings(options, size, model_size, ("opencv_linear_float" if as_float else "opencv_linear")
                           if interp == "linear" else "pil_bicubic"),
        **source_fingerprint(video),
        "chunk": chunk,
        **({} if fr.is_all else {"frame_range": [fr.start, fr.end]}),
    }
    result = ExtractResult(output=out_dir, index=out_dir / INDEX_NAME)
    index, found = _video_state(out_dir, base, fmt, options.overwrite)
    if index is not None:
        result.skipped = [out_dir / c["file"] for c in index["chunks"]]
        result.frames_total = int(index.get("num_frames", 0))
        log.info("%s: features already complete in %s: skipped", video, out_dir)
        return result

    info = saver.model_info()  # loads the model
    _check_stride(size, info["stride"], str(video))
    per_frame = info["channels"] * 4 // (2 if options.save_dtype == "float16" else 1) * (
        size[0] * size[1] if options.upsample else (model_size[0] // info["stride"]) * (model_size[1] // info["stride"]))
    if 3 * chunk * per_frame > 2**31:
        log.warning(
            "%s: each chunk of %d frames holds %.1f GB of features and up to three chunks are in memory at once; "
            "a smaller --chunk (or --save-dtype float16) needs less memory", video, chunk, chunk * per_frame / 1e9,
        )
    settings = saver.settings()
    base = {**base, **settings}
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / INDEX_NAME).unlink(missing_ok=True)  # rewritten when every chunk is there
    reader.transform = lambda fr: resize_frame(fr, model_size, interp, as_float=as_float)  # on the decoding thread
    batch_size = _batch_size(saver)
    chunks: list[dict[str, Any]] = []
    rows: list[dict[str, Any]] = []  # index.json's "frames"
    feature_shape: list[int] | None = None
    log.info(
        "extracting %s (%dx%d -> %dx%d%s) -> %s",
        video, size[0], size[1], model_size[0], model_size[1],
        f", {vinfo.num_frames} frames" if vinfo.num_frames else "", out_dir,
    )
    started = time.perf_counter()
    total = vinfo.num_frames
    if total is not None and not fr.is_all:
        total = max(0, min(total, fr.end if fr.end is not None else total) - fr.start)
    bar = progress_bar(total=total, unit="frame", desc="extract", enabled=progress)
    try:
        with BackgroundWriter(max_pending=1, name="vidprop-feature-writer") as writer:
            buf: list[np.ndarray] = []
            names: list[str] = []

            def flush() -> None:
                nonlocal feature_shape
                k, start = len(chunks), fr.start + len(rows)  # the video index of the chunk's first frame
                fname = _chunk_name(k, names, chunk, fmt)
                path = out_dir / fname
                expected = {**base, "start": start, "count": len(buf), "frame_names": list(names)}
                status = FileStatus("missing") if options.overwrite else inspect_file(path, expected)
                if status.state == "complete":
                    result.skipped.append(path)
                    feature_shape = feature_shape or _shape_of(path)
                else:
                    if status.state == "corrupt":
                        log.warning("%s: redoing an incomplete feature file (%s)", path, status.reason)
                    tensor: torch.Tensor | None = None  # (N, C, h, w) on the CPU, filled batch by batch
                    for i in range(0, len(buf), batch_size):
                        f = saver.extract(buf[i : i + batch_size], range(start + i, start + min(i + batch_size, len(buf))))
                        feature_shape = feature_shape or [int(v) for v in f.shape[1:]]
                        part = _to_saved(f, options, size)  # (b, C, h, w) on the CPU
                        if tensor is None:
                            tensor = torch.empty((len(buf), *part.shape[1:]), dtype=part.dtype)
                        tensor[i : i + len(part)] = part
                        del f, part
                    meta = {
                        "format_version": FORMAT_VERSION,
                        "vidprop_version": __version__,
                        "preset": saver.config.name,
                        "kind": "video_chunk",
                        **expected,
                        **info,
                        "feature_size": [feature_shape[2], feature_shape[1]],
                        "layout": "NCHW",
                        "source": str(video),
                        **_upsample_record(options),
                    }
                    writer.submit(save_features, path, tensor, meta)
                    result.written.append(path)
                    result.frames_extracted += len(buf)
                chunks.append({"file": fname, "start": start, "count": len(buf), "frame_names": list(names)})
                rows.extend({"index": start + j, "name": n, "file": fname, "offset": j} for j, n in enumerate(names))
                bar.update(len(buf))
                buf.clear()
                names.clear()

            for i, small in enumerate(reader, start=fr.start):
                buf.append(small)
                names.append(vinfo.frame_names[i] if vinfo.frame_names else f"{i:05d}")
                if len(buf) == chunk:
                    flush()
            if buf:
                flush()
    finally:
        bar.close()
    result.seconds = time.perf_counter() - started
    result.frames_total = len(rows)
    listed = {out_dir / c["file"] for c in chunks}
    for stale in found:
        if stale not in listed:  # only reachable with overwrite: an earlier run's files
            log.info("removing %s (an earlier extraction's file, not part of this one)", stale)
            remove_feature_file(stale)
    fs = feature_shape or []
    index_data = {
        "format_version": FORMAT_VERSION,
        "vidprop_version": __version__,
        "kind": "video",
        "video": str(video),
        "name": name,
        "num_frames": len(rows),
        "first_frame": fr.start,
        "fps": vinfo.fps,
        "frame_size": list(size),
        "model_size": list(model_size),
        "feature_shape": ([fs[0], size[1], size[0]] if options.upsample else fs) if fs else None,
        "layout": "NCHW",
        "key": "features",
        "file_format": fmt,
        "chunk": chunk,
        "settings": {**base, **info, "preset": saver.config.name, **_upsample_record(options)},
        "chunks": chunks,
        "frames": rows,
    }
    result.index = write_index(out_dir, index_data)
    return result


def _shape_of(path: Path) -> list[int] | None:
    """Per-frame feature shape (C, h, w) recorded in a chunk file (model output, before upsampling)."""
    from vidprop.io.feature_store import read_meta

    meta = read_meta(path)
    fs = meta.get("feature_size")
    return [int(meta["channels"]), int(fs[1]), int(fs[0])] if fs and "channels" in meta else None



# --------------------------------------------------------------------------- inputs
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
