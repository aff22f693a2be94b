"""What the video tasks share: a feature extractor + a TaskConfig, batched extraction, timing.

:class:`PropagationTask` is the base of :class:`~vidprop.tasks.segment.Segmenter`
and :class:`~vidprop.tasks.track.Tracker`: it resizes frames, extracts their
features ``batch_size`` frames at a time and times each stage; the subclasses
turn labels into features' context and back.
"""

from __future__ import annotations

import logging
import time
from collections import defaultdict, deque
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Iterator, TypeVar

import numpy as np
import torch

from vidprop.config import TaskConfig, fit_frames, load_preset
from vidprop.features.base import FeatureExtractor

__all__ = ["Profile", "PropagationTask", "background_output", "fit_to_extractor", "resize_frame", "tap_originals"]

T = TypeVar("T", bound="PropagationTask")

log = logging.getLogger(__name__)


def resize_frame(frame: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """Bilinear resize (OpenCV INTER_LINEAR, as DINO's reader) of an RGB frame to ``size`` = (W, H)."""
    import cv2

    if (frame.shape[1], frame.shape[0]) == tuple(size):
        return frame
    return cv2.resize(frame, tuple(size), interpolation=cv2.INTER_LINEAR)


def fit_to_extractor(cfg: TaskConfig, extractor: Any) -> TaskConfig:
    """``cfg`` with frame sizes the extractor accepts and the extractor's effective settings."""
    from dataclasses import replace

    multiple = int(getattr(extractor, "multiple", 1))
    frames = fit_frames(cfg.frames, multiple)
    if frames != cfg.frames:
        log.info("frame sizes floored to multiples of %d for the %s backbone", multiple, cfg.extractor.backbone)
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


def tap_originals(pairs: Iterable[tuple[np.ndarray, np.ndarray]]) -> tuple[deque, Iterator]:
    """Pass (original, resized) pairs on while keeping the originals, in order, until popped.

    The task consumes the pairs ahead of the frames it yields (batching);
    the caller pops one original per result to draw its overlay.
    """
    originals: deque = deque()

    def tap() -> Iterator[tuple[np.ndarray, np.ndarray]]:
        for pair in pairs:
            originals.append(pair[0])
            yield pair

    return originals, tap()


@contextmanager
def background_output(
    task: PropagationTask, folder: Path, info: Any, overlay: bool, reader: Any
) -> Iterator[tuple[Any, Any]]:
    """Yield (BackgroundWriter, overlay VideoWriter or None) writing into ``folder``.

    On success the overlay is closed on the writer thread, every job is
    waited for (an error in one is raised here) and the task's last profile
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
    prof = task.last_profile
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
        self.last_profile = Profile()

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
        ext = build_extractor(cfg.extractor, device=device, dtype=dtype)
        return cls(ext, fit_to_extractor(cfg, ext))

    def _prepare(self, item: np.ndarray | tuple[np.ndarray, np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
        """A frame -> (original, resized for the model); pairs pass through (resized on a reader thread)."""
        if isinstance(item, tuple):
            return item
        h, w = item.shape[:2]
        return item, resize_frame(item, self.config.frames.target_size(w, h))

    def _features(self, frames: Iterable) -> Iterator[tuple[int, np.ndarray, tuple[int, int], torch.Tensor]]:
        """Yield (index, original frame, resized (w, h), features (C, h, w)), extracting in batches."""
        ext = self.extractor
        prof = self.last_profile
        batch_size = max(1, getattr(getattr(ext, "config", None), "batch_size", 1))
        it = iter(frames)
        index = 0
        while True:
            t0 = time.perf_counter()
            batch = []
            for item in it:
                batch.append(self._prepare(item))
                if len(batch) == batch_size:
                    break
            prof.add("decode", time.perf_counter() - t0)
            if not batch:
                return
            t0 = time.perf_counter()
            small = torch.from_numpy(np.stack([b[1] for b in batch])).permute(0, 3, 1, 2)  # (B, 3, H', W')
            if ext.device.type == "cuda":
                small = small.pin_memory()
            if index == 0 and getattr(ext, "joint", False):
                ext.fit_pca(small[:1])  # a pair backbone: one projection, fitted on the first frame, for the whole video
            feats = ext.extract(small, indices=list(range(index, index + len(batch))))  # (B, C, h, w)
            prof.add("extract", time.perf_counter() - t0)
            for j, (orig, sm) in enumerate(batch):
                yield index, orig, (sm.shape[1], sm.shape[0]), feats[j]
                index += 1
