"""``youtube-vis``: the instance JSON of YouTube-VIS 2019 / 2021 (``youtube-vis.json``).

One video (``id`` 1, ``file_names`` = ``NAME/<frame file>`` of every frame,
``length``, ``width``, ``height``); one category per object id (named from the
labels, with its colour); one annotation per object with, per frame of the
video, its COCO RLE (``counts`` a string, pycocotools), bbox [x, y, w, h]
and area, or null where the object is absent; ``category_id`` is the
object id, ``iscrowd`` 0.  Any reader of the YouTube-VIS annotation files
(the ``ytvos`` API, pycocotools' ``frPyObjects`` / ``decode``) decodes it.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np

from vidprop.io.formats import ExportContext, FormatWriter
from vidprop.io.formats.coco import rle_of

__all__ = ["YoutubeVisWriter", "YTVIS_FILE"]

YTVIS_FILE = "youtube-vis.json"


class YoutubeVisWriter(FormatWriter):
    """Per object, its per-frame RLE (only the strings are kept)."""

    fmt = "youtube-vis"

    def __init__(self, ctx: ExportContext) -> None:
        super().__init__(ctx)
        self.files: list[str] = []
        self.objects: dict[int, dict[int, tuple[dict[str, Any], float, list[float]]]] = {}

    def add(self, index: int, name: str, mask: np.ndarray) -> None:
        self.check(mask)
        pos = len(self.files)
        self.files.append(f"{self.ctx.video}/{self.ctx.frame_file(name)}")
        for oid in (int(v) for v in np.unique(mask) if v != 0):
            self.objects.setdefault(oid, {})[pos] = rle_of(mask == oid)

    def document(self) -> dict[str, Any]:
        from vidprop import __version__

        ctx, n = self.ctx, len(self.files)
        anns = []
        for k, oid in enumerate(sorted(self.objects), start=1):
            per = self.objects[oid]
            anns.append({
                "id": k, "video_id": 1, "category_id": oid, "iscrowd": 0, "width": ctx.width, "height": ctx.height,
                "length": 1,
                "segmentations": [per[t][0] if t in per else None for t in range(n)],
                "areas": [per[t][1] if t in per else None for t in range(n)],
                "bboxes": [per[t][2] if t in per else None for t in range(n)],
            })
        return {
            "info": {"description": f"vidprop label propagation: {ctx.video}", "vidprop_version": __version__},
            "licenses": [],
            "videos": [{"id": 1, "name": ctx.video, "width": ctx.width, "height": ctx.height, "length": n,
                        "file_names": self.files}],
            "categories": [{"id": i, "name": ctx.labels.name(i), "supercategory": "object",
                            "color": list(ctx.labels.colour(i))} for i in sorted(self.objects)],
            "annotations": anns,
        }

    def finish(self) -> Path:
        path = self.ctx.root / YTVIS_FILE
        path.write_text(json.dumps(self.document()) + "\n")
        return path
