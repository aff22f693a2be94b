"""What the video tasks share: a feature extractor + a TaskConfig, batched extraction, timing.

:class:`PropagationTask` is the base of :class:`~vidprop.tasks.segment.Segmenter`
and :class:`~vidprop.tasks.track.Tracker`: it turns frames into
:class:`~vidprop.io.driver.FrameRecord` s (resized for the model), extracts
their features ``batch_size`` frames at a time and times each stage; the
subclasses turn labels into features' context and back.  Results travel with
their record, so writers never match them to frames by position.
"""

from __future__ import annotations

import logging
import time
from collections import defaultdict
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator, TypeVar

import numpy as np
import torch

from vidprop.config import TaskConfig, fit_backbone_frames, fit_frames, load_preset
from vidprop.features.base import FeatureExtractor
from vidprop.io.driver import FrameRecord, resize_frame

__all__ = ["Profile", "PropagationTask", "background_output", "check_output_folder", "fit_to_extractor", "resize_frame"]

T = TypeVar("T", bound="PropagationTask")

log = logging.getLogger(__name__)


def fit_to_extractor(cfg: TaskConfig, extractor: Any) -> TaskConfig:
    """``cfg`` with frame sizes the extractor accepts and the extractor's effective settings."""
    from dataclasses import replace

    multiple = int(getattr(extractor, "multiple", 1))
    frames = fit_frames(cfg.frames, multiple, backbone=cfg.extractor.backbone)
    ext_cfg = getattr(extractor, "config", None)
    return replace(cfg, frames=frames, extractor=ext_cfg if ext_cfg is not None else cfg.extractor)


@dataclass
class Profile:
    """Where the time of a run went.

    ``seconds``: wall time per stage on the calling thread, summed over frames
    ("decode" is the wait for the reader thread, "write" the wait for the
    writer thread).  ``background``: busy time of the helper threads, which
    overlaps the main thread.  ``wall``: the run's wall time (0 = unknown:
    the sum of ``seconds`` is used).
    """

    seconds: dict[str, float] = field(default_factory=lambda: defaultdict(float))
    background: dict[str, float] = field(default_factory=dict)
    frames: int = 0
    wall: float = 0.0

    def add(self, stage: str, dt: float) -> None:
        self.seconds[stage] += dt

    @property
    def total(self) -> float:
        return self.wall or sum(self.seconds.values())

    @property
    def fps(self) -> float:
        return self.frames / self.total if self.total > 0 else 0.0

    def summary(self) -> str:
        total = self.total or 1e-9
        parts = [f"{k} {v:.2f}s ({100 * v / total:.0f}%)" for k, v in self.seconds.items()]
        text = f"{self.frames} frames in {self.total:.2f}s, {self.fps:.2f} frames/s; " + ", ".join(parts)
        if self.background:
            text += "; background threads: " + ", ".join(f"{k} {v:.2f}s" for k, v in self.background.items())
        return text


def check_output_folder(out_dir: Path) -> None:
    """Raise InputError unless ``out_dir`` can be created: its nearest existing ancestor takes a new folder.

    Tried for real (a temporary folder made and removed at once), so read-only
    file systems and pseudo-file systems such as ``/proc`` are caught too.
    """
    import shutil
    import tempfile

    from vidprop.errors import InputError

    parent = Path(out_dir).parent
    while not parent.exists() and parent != parent.parent:
        parent = parent.parent
    if not parent.is_dir():
        raise InputError(f"{parent}: is not a folder; cannot write results under {Path(out_dir).parent}")
    try:
        probe = tempfile.mkdtemp(prefix=".vidprop-write-test-", dir=parent)
    except OSError as exc:
        raise InputError(f"{parent}: cannot write results here ({exc.strerror or exc}); output {out_dir}") from None
    shutil.rmtree(probe, ignore_errors=True)


@contextmanager
def background_output(
    profile: Profile, folder: Path, info: Any, overlay: bool, reader: Any
) -> Iterator[tuple[Any, Any]]:
    """Yield (BackgroundWriter, overlay VideoWriter or None) writing into ``folder``.

    On success the overlay is closed on the writer thread, every job is
    waited for (an error in one is raised here) and the run's ``profile``
    gets the wait for the writer, the reader's and writer's busy time and the
    wall time of the block; on an error the writer stops without running
    what is left.
    """
    from vidprop.io.writers import BackgroundWriter, VideoWriter

    started = time.perf_counter()
    writer = BackgroundWriter()
    try:
        vw = VideoWriter(folder / "overlay.mp4", info.fps, info.width, info.height) if overlay else None
        yield writer, vw
        if vw is not None:
            writer.submit(vw.close)
        writer.close()
    except BaseException:
        writer.__exit__(RuntimeError, None, None)
        raise
    prof = profile
    prof.add("write", writer.wait_seconds)
    prof.background = {"decode+resize": reader.busy_seconds, "write": writer.busy_seconds}
    prof.wall = time.perf_counter() - started


class PropagationTask:
    """A feature extractor and a TaskConfig; subclasses implement ``run``.

    Args:
        extractor: frames (B, 3, H, W) uint8 -> features (B, C, H/s, W/s).
        config: frame resizing, extraction and propagation settings.
    """

    #: Preset used by :meth:`from_pretrained` when none is given.
    default_preset = "davis-fast"

    def __init__(self, extractor: FeatureExtractor, config: TaskConfig) -> None:
        self.extractor = extractor
        self.config = config

    @classmethod
    def from_pretrained(
        cls: type[T],
        model: str | None = None,
        *,
        config: TaskConfig | str | None = None,
        device: str | torch.device | None = None,
        dtype: str | torch.dtype | None = None,
    ) -> T:
        """Load the backbone of the config (``config.extractor.backbone``; ``model`` overrides its weights' id).

        Frame sizes are floored to the backbone's input multiple when the
        preset's do not fit it (short side 480 -> 476 for a patch-14 ViT).
        """
        from vidprop.features.registry import build_extractor

        config = cls.default_preset if config is None else config
        cfg = load_preset(config) if isinstance(config, str) else config
        if model is not None:
            cfg = cfg.override(extractor={"model": str(model)})
        cfg = fit_backbone_frames(cfg)  # sizes that cannot be made valid are refused before the model loads
        ext = build_extractor(cfg.extractor, device=device, dtype=dtype)
        return cls(ext, fit_to_extractor(cfg, ext))

    def _records(self, frames: Iterable[Any]) -> Iterator[FrameRecord]:
        """In-memory frames -> records resized for the model.

        Items may be (H, W, 3) uint8 RGB frames, ``(frame, resized)`` pairs
        (resized on a reader thread) or records, which pass through.
        """
        for i, item in enumerate(frames):
            if isinstance(item, FrameRecord):
                yield item
                continue
            if isinstance(item, tuple):
                orig, small = item
            else:
                orig = np.asarray(item)
                if orig.ndim != 3 or orig.shape[2] != 3:
                    from vidprop.errors import InputError

                    raise InputError(f"frame {i} must be (H, W, 3) RGB, got shape {orig.shape}")
                h, w = orig.shape[:2]
                small = resize_frame(orig, self.config.frames.target_size(w, h), self.config.frames.interpolation, as_float=self.config.frames.resize_as_float)
            yield FrameRecord(index=i, name=f"{i:05d}", frame=orig, model_input=small)

    def _features(
        self, records: Iterable[FrameRecord], need: Callable[[FrameRecord], bool] | None = None,
        cached: Any = None, profile: Profile | None = None,
    ) -> Iterator[tuple[FrameRecord, torch.Tensor | None]]:
        """Yield (record, features (C, h, w)) in order, extracting ``batch_size`` frames at a time.

        Records for which ``need`` is false get no features (None) and are
        not extracted.  Each frame is extracted with its video index, so its
        features do not depend on batching or on where the run started.
        ``cached`` (a :class:`~vidprop.tasks.feature_cache.CachedFeatures`): read
        each frame's features from it (by video index) instead of extracting.
        ``profile``: the run's Profile, which gets the "decode" and "extract" times.
        """
        ext = self.extractor
        prof = Profile() if profile is None else profile
        if cached is not None:
            for rec in records:
                t0 = time.perf_counter()
                f = cached.frame(rec.index) if need is None or need(rec) else None
                prof.add("extract", time.perf_counter() - t0)  # the read of the cache
                yield rec, f
            return
        batch_size = max(1, getattr(getattr(ext, "config", None), "batch_size", 1))
        fitted = False
        it = iter(records)
        while True:
            t0 = time.perf_counter()
            batch: list[FrameRecord] = []
            wanted: list[int] = []
            for rec in it:
                batch.append(rec)
                if need is None or need(rec):
                    wanted.append(len(batch) - 1)
                    if len(wanted) == batch_size:
                        break
                elif not wanted:
                    break  # nothing to extract yet: pass it on at once
            prof.add("decode", time.perf_counter() - t0)
            if not batch:
                return
            feats: list[torch.Tensor | None] = [None] * len(batch)
            if wanted:
                t0 = time.perf_counter()
                # contiguous (B, 3, H, W), as `vidprop extract` (and so the feature cache) gives the extractor: the
                # memory layout picks the convolution kernels, which round differently in the last bits
                small = torch.from_numpy(np.stack([batch[j].model_input for j in wanted])).permute(0, 3, 1, 2)
                small = small.contiguous()
                if ext.device.type == "cuda":
                    small = small.pin_memory()
                if not fitted and getattr(ext, "joint", False):
                    ext.fit_pca(small[:1])  # a pair backbone: one projection, fitted on the run's first frame, kept
                    fitted = True
                out = ext.extract(small, indices=[batch[j].index for j in wanted])  # (B, C, h, w)
                for n, j in enumerate(wanted):
                    feats[j] = out[n]
                prof.add("extract", time.perf_counter() - t0)
            for rec, f in zip(batch, feats):
                yield rec, f
