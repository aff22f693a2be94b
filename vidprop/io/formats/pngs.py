"""``youtube-vos``: the ``Annotations/<video>/<frame>.png`` layout of a YouTube-VOS submission."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from vidprop.io.formats import ExportContext, FormatWriter
from vidprop.io.masks import write_indexed_png

__all__ = ["YoutubeVosWriter", "youtube_vos_folder"]


def youtube_vos_folder(result_dir: str | Path, video: str) -> Path:
    """Where the YouTube-VOS layout of a result folder goes: ``result_dir/youtube-vos/Annotations/<video>``."""
    return Path(result_dir) / "youtube-vos" / "Annotations" / video


class YoutubeVosWriter(FormatWriter):
    """Indexed PNGs (the run's palette: DAVIS, or the colour masks' / ``--labels`` colours), one per frame."""

    fmt = "youtube-vos"

    def __init__(self, ctx: ExportContext) -> None:
        super().__init__(ctx)
        self.folder = youtube_vos_folder(ctx.root, ctx.video)
        self.folder.mkdir(parents=True, exist_ok=True)
        self.palette = ctx.labels.palette()

    def add(self, index: int, name: str, mask: np.ndarray) -> None:
        self.check(mask)
        write_indexed_png(self.folder / f"{name}.png", mask, self.palette)

    def finish(self) -> Path:
        return self.folder
