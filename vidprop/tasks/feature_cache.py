"""A feature cache: a video's features computed once per (video, backbone, settings), then read back.

    from vidprop.tasks.feature_cache import FeatureCache
    cache = FeatureCache("~/.cache/vidprop/features")
    video = cache.features("clip.mp4", segmenter)      # extracts on the first call, reads afterwards
    f5 = video.frame(5)                                 # (C, h, w) on the extractor's device

Each entry is a folder ``ROOT/<video name>-<key>/`` written by
:func:`vidprop.tasks.extract.extract_video` (the chunked store of ``vidprop
extract``: ``index.json`` + chunk files with their settings), so the cache has
extract's provenance, resume and damage rules: a chunk left unfinished or
damaged is redone, complete chunks are skipped.  The key is a hash of the
video's resolved path, its size and modification time, the extraction
settings and the model input size: a change of any of them is another entry,
never a silent reuse of features made otherwise.  Entries are never deleted
by vidprop; remove the folder to free the space.
"""

from __future__ import annotations

import hashlib
import json
import logging
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from vidprop.errors import ConfigError, InputError, VidpropError
from vidprop.io.feature_store import VideoFeatures, open_video_features

__all__ = ["FeatureCache", "CachedFeatures", "default_cache_dir", "as_cache"]

log = logging.getLogger(__name__)

#: Backbones whose features depend on more than the frame itself (a projection fitted on the run).
_NOT_CACHEABLE = ("sd+dinov2",)


def default_cache_dir() -> Path:
    """The user's cache folder for vidprop's features (platformdirs: ``~/.cache/vidprop/features`` on Linux)."""
    from platformdirs import user_cache_dir

    return Path(user_cache_dir("vidprop", appauthor=False)) / "features"


@dataclass
class CachedFeatures:
    """A cache entry opened for reading: ``frame(i)`` is the video's frame ``i`` on the extractor's device."""

    video: VideoFeatures
    device: torch.device
    dtype: torch.dtype
    #: Frames that went through the model to make this entry (0 when it was already complete).
    frames_extracted: int = 0

    @property
    def folder(self) -> Path:
        return self.video.folder

    def __len__(self) -> int:
        return len(self.video)

    def frame(self, index: int) -> torch.Tensor:
        if not 0 <= index < len(self.video):
            raise InputError(f"{self.folder}: the cached features have {len(self.video)} frames, no frame {index} "
                             "(the video changed length? remove this cache entry)")
        try:
            f = self.video.frame(index)
        except VidpropError as exc:
            raise InputError(f"{self.folder}: a cached feature file is damaged ({exc}); run again to redo it") from None
        return f.to(device=self.device, dtype=self.dtype)


class FeatureCache:
    """The cache folder ``root`` (created on first use); see the module docstring."""

    def __init__(self, root: str | Path) -> None:
        self.root = Path(root).expanduser()

    def check_writable(self) -> None:
        """Raise InputError (one line naming the folder) unless features can be written under ``root``."""
        root = self.root
        if root.exists() and not root.is_dir():
            raise InputError(f"--feature-cache {root}: exists and is not a folder")
        try:
            root.mkdir(parents=True, exist_ok=True)
            probe = tempfile.mkdtemp(prefix=".vidprop-write-test-", dir=root)
        except OSError as exc:
            raise InputError(f"--feature-cache {root}: cannot write here ({exc.strerror or exc})") from None
        shutil.rmtree(probe, ignore_errors=True)

    def key(self, video: str | Path, saver: Any, name: str) -> str:
        """The entry's folder name: ``<name>-<16 hex digits>`` of everything the features depend on."""
        from vidprop.tasks.extract import FORMAT_VERSION, SaveOptions, source_fingerprint

        path = Path(video).resolve()
        if not path.exists():
            raise InputError(f"{video}: no such file or folder")
        cfg = saver.config.for_sequence(name)
        from vidprop.io.video import open_video

        reader = open_video(path)
        try:
            size = (reader.info.width, reader.info.height)
        finally:
            close = getattr(reader, "close", None)
            if close is not None:
                close()
        record = {
            "format_version": FORMAT_VERSION,
            "video": str(path),
            **source_fingerprint(path),
            "settings": saver.settings(),
            "model_size": list(cfg.frames.target_size(*size)),
            "chunk": SaveOptions().chunk,
        }
        digest = hashlib.sha256(json.dumps(record, sort_keys=True).encode()).hexdigest()[:16]
        return f"{name}-{digest}"

    def features(self, video: str | Path, task: Any, *, name: str | None = None, backend: str = "auto",
                 progress: bool = False) -> CachedFeatures:
        """The features of ``video`` for ``task`` (a Segmenter or Tracker): extracted now unless cached.

        ``name``: the video's name for per-sequence settings (default: the file's).
        """
        from vidprop.tasks.extract import FeatureSaver, extract_video

        backbone = getattr(task.config.extractor, "backbone", "sd")
        if backbone in _NOT_CACHEABLE:
            raise ConfigError(f"--feature-cache does not work with the {backbone} backbone (its features of a frame "
                              "depend on the run's first frame); leave --feature-cache out")
        self.check_writable()
        saver = FeatureSaver(task.config, extractor=task.extractor)
        from vidprop.io.video import open_video

        if name is None:
            reader = open_video(video, backend=backend)
            name = reader.info.name
            getattr(reader, "close", lambda: None)()
        entry = self.key(video, saver, name)
        res = extract_video(video, self.root, saver=saver, name=entry, backend=backend, progress=progress)
        if res.frames_extracted:
            log.info("feature cache: extracted %d frame(s) of %s into %s", res.frames_extracted, video, res.output)
        else:
            log.info("feature cache: every frame of %s read from %s", video, res.output)
        ext = task.extractor
        return CachedFeatures(open_video_features(res.output), device=torch.device(ext.device),
                              dtype=getattr(ext, "dtype", torch.float32), frames_extracted=res.frames_extracted)


def as_cache(cache: FeatureCache | str | Path | None) -> FeatureCache | None:
    """A FeatureCache from a folder (None stays None)."""
    if cache is None or isinstance(cache, FeatureCache):
        return cache
    return FeatureCache(cache)
