"""Result formats that labelling tools and benchmarks read, written from per-frame index masks.

Each writer takes the frames one at a time (:meth:`FormatWriter.add`) and
writes its files under a result folder at :meth:`FormatWriter.finish`:

=============== ================================================ ==========================
format          file(s) in ``OUT/NAME/``                         module
=============== ================================================ ==========================
``coco``        ``coco.json``                                    :mod:`.coco`
``youtube-vos`` ``youtube-vos/Annotations/NAME/<frame>.png``     :mod:`.pngs`
``cvat-video``  ``cvat-video.xml`` (CVAT for video 1.1)          :mod:`.cvat`
``mots``        ``mots/instances_txt/NAME.txt``,                 :mod:`.mots`
                ``mots/instances/NAME/<frame>.png``, ``labels.txt``
``youtube-vis`` ``youtube-vis.json``                             :mod:`.ytvis`
=============== ================================================ ==========================

All are written by vidprop itself (Datumaro, which writes several of them,
would downgrade Pillow and OpenCV in the environment: see docs/formats.md).
:func:`make_writers` builds the writers of a list of formats.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Sequence

import numpy as np

from vidprop.io.formats.labels import LabelMap

__all__ = ["ExportContext", "FormatWriter", "make_writers", "EXPORT_TARGETS", "frame_file_namer"]

#: Where each format's output lives inside a result folder of video NAME.
EXPORT_TARGETS = {
    "coco": "coco.json",
    "youtube-vos": "youtube-vos",
    "cvat-video": "cvat-video.xml",
    "mots": "mots",
    "youtube-vis": "youtube-vis.json",
}


@dataclass(frozen=True)
class ExportContext:
    """What every writer needs: where, which video, its size, the object names and colours."""

    root: Path  # the result folder being written
    video: str
    width: int
    height: int
    labels: LabelMap = field(default_factory=LabelMap)
    #: frame name -> the frame's image file name (``00000.jpg``).
    frame_file: Callable[[str], str] = lambda name: f"{name}.jpg"


class FormatWriter:
    """One format: :meth:`add` each frame in order, then :meth:`finish` (returns the path written)."""

    fmt = ""

    def __init__(self, ctx: ExportContext) -> None:
        self.ctx = ctx

    def add(self, index: int, name: str, mask: np.ndarray) -> None:  # pragma: no cover - interface
        raise NotImplementedError

    def finish(self) -> Path:  # pragma: no cover - interface
        raise NotImplementedError

    def check(self, mask: np.ndarray) -> None:
        if mask.shape != (self.ctx.height, self.ctx.width):
            raise ValueError(f"mask {mask.shape} differs from the video's {(self.ctx.height, self.ctx.width)}")


def frame_file_namer(video: str | Path | None) -> Callable[[str], str]:
    """frame name -> image file name: a frame folder's own files; ``<name>.jpg`` for a video file's frames."""
    files: dict[str, str] = {}
    if video is not None and Path(video).is_dir():
        from vidprop.io.video import IMAGE_EXTENSIONS

        files = {p.stem: p.name for p in Path(video).iterdir() if p.suffix.lower() in IMAGE_EXTENSIONS}
    return lambda name: files.get(name, f"{name}.jpg")


def make_writers(formats: Sequence[str], ctx: ExportContext) -> list[FormatWriter]:
    """The writers of ``formats`` (``png`` has none: the result folder's own PNGs)."""
    from vidprop.io.formats.coco import CocoWriter
    from vidprop.io.formats.cvat import CvatVideoWriter
    from vidprop.io.formats.mots import MotsWriter
    from vidprop.io.formats.pngs import YoutubeVosWriter
    from vidprop.io.formats.ytvis import YoutubeVisWriter

    kinds = {"coco": CocoWriter, "youtube-vos": YoutubeVosWriter, "cvat-video": CvatVideoWriter,
             "mots": MotsWriter, "youtube-vis": YoutubeVisWriter}
    return [kinds[f](ctx) for f in formats if f != "png"]
