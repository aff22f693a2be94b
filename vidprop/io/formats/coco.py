"""``coco``: one COCO-style document with an RLE mask, bbox and area per object and frame.

``images[].file_name`` is the frame's image file name with its extension (a
frame folder's own file, ``<frame>.jpg`` for a video's frames);
``category_id`` and ``track_id`` are the object id (one category per
object, named from the run's labels, ``object <id>`` otherwise, with its
colour); ``segmentation`` is COCO RLE (pycocotools, column-major, ``counts``
a string); ``bbox`` is [x, y, width, height] and ``area`` the pixel count.
:func:`read_coco_masks` reads it back through pycocotools' own loader.
"""

from __future__ import annotations

import contextlib
import io
import json
from pathlib import Path
from typing import Any

import numpy as np

from vidprop.errors import InputError
from vidprop.io.formats import ExportContext, FormatWriter

__all__ = ["CocoWriter", "read_coco_masks", "COCO_FILE", "rle_of"]

#: Name of the COCO document inside a result folder.
COCO_FILE = "coco.json"


def rle_of(binary: np.ndarray) -> tuple[dict[str, Any], float, list[float]]:
    """(H, W) bool -> (COCO RLE with string counts, area, bbox [x, y, w, h])."""
    from pycocotools import mask as mask_util

    rle = mask_util.encode(np.asfortranarray(binary.astype(np.uint8)))
    area = float(mask_util.area(rle))
    bbox = [float(v) for v in mask_util.toBbox(rle)]
    rle["counts"] = rle["counts"].decode("ascii")
    return rle, area, bbox


def object_ids_of(mask: np.ndarray) -> list[int]:
    return [int(v) for v in np.unique(mask) if v != 0]


class CocoWriter(FormatWriter):
    """Collect per-frame index masks as COCO RLE annotations (only the RLE strings are kept)."""

    fmt = "coco"

    def __init__(self, ctx: ExportContext, *, info: dict[str, Any] | None = None) -> None:
        super().__init__(ctx)
        self.info = dict(info or {})
        self.images: list[dict[str, Any]] = []
        self.annotations: list[dict[str, Any]] = []
        self.ids: set[int] = set()

    def add(self, index: int, name: str, mask: np.ndarray) -> None:
        """Add frame ``index`` (named ``name``) with its (H, W) uint8 index mask."""
        self.check(mask)
        ctx = self.ctx
        image_id = len(self.images) + 1
        self.images.append({"id": image_id, "file_name": ctx.frame_file(name), "name": name,
                            "frame_index": int(index), "width": ctx.width, "height": ctx.height, "video_id": 1})
        for oid in object_ids_of(mask):
            rle, area, bbox = rle_of(mask == oid)
            self.ids.add(oid)
            self.annotations.append({
                "id": len(self.annotations) + 1, "image_id": image_id, "category_id": oid, "track_id": oid,
                "segmentation": rle, "area": area, "bbox": bbox, "iscrowd": 0,
            })

    def document(self) -> dict[str, Any]:
        from vidprop import __version__

        ctx = self.ctx
        labels = ctx.labels
        return {
            "info": {"description": f"vidprop label propagation: {ctx.video}", "video": ctx.video,
                     "vidprop_version": __version__, **self.info},
            "videos": [{"id": 1, "name": ctx.video, "width": ctx.width, "height": ctx.height,
                        "length": len(self.images)}],
            "images": self.images,
            "annotations": self.annotations,
            "categories": [{"id": i, "name": labels.name(i), "supercategory": "object",
                            "color": list(labels.colour(i))} for i in sorted(self.ids)],
        }

    def finish(self) -> Path:
        path = self.ctx.root / COCO_FILE
        path.write_text(json.dumps(self.document()) + "\n")
        return path


def read_coco_masks(path: str | Path) -> list[tuple[str, np.ndarray]]:
    """A ``coco.json`` written by vidprop -> [(frame name, (H, W) uint8 index mask)] in image order.

    Decoded through pycocotools' own loader (``COCO``, ``annToMask``).
    """
    from pycocotools.coco import COCO

    path = Path(path)
    if not path.is_file():
        raise InputError(f"{path}: no such COCO file")
    with contextlib.redirect_stdout(io.StringIO()):  # COCO() prints progress lines
        try:
            coco = COCO(str(path))
        except Exception as exc:  # noqa: BLE001 - json / key errors
            raise InputError(f"{path}: not a readable COCO file ({exc})") from exc
    out = []
    for img in sorted(coco.dataset["images"], key=lambda im: im["id"]):
        mask = np.zeros((img["height"], img["width"]), np.uint8)
        for ann in coco.loadAnns(coco.getAnnIds(imgIds=[img["id"]])):
            oid = int(ann.get("track_id", ann["category_id"]))
            mask[coco.annToMask(ann).astype(bool)] = oid
        out.append((img.get("name", Path(img["file_name"]).stem), mask))
    return out
