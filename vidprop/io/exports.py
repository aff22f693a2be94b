"""Result formats beyond the DAVIS PNGs: COCO-style JSON with RLE masks, and the YouTube-VOS layout.

* ``png``: ``OUT/NAME/<frame>.png``, indexed PNGs with the DAVIS palette (the default);
* ``coco``: ``OUT/NAME/coco.json``: one COCO-style document with one image per
  frame and one annotation per object per frame where the object is present:
  ``segmentation`` is COCO RLE (pycocotools, column-major, ``counts`` as a
  string), ``bbox`` is [x, y, width, height], ``area`` the pixel count;
  ``category_id`` and ``track_id`` are the object id (one category per
  object), ``image_id`` is 1 + the frame's position in the run, and each
  image records its ``frame_index`` and frame ``name``;
* ``youtube-vos``: ``OUT/NAME/youtube-vos/Annotations/NAME/<frame>.png``, the
  layout of a YouTube-VOS submission (indexed PNGs, DAVIS palette; several
  videos' folders merge by copying ``Annotations/``).

:func:`export_results` converts a finished result folder (its PNG masks).
:func:`read_coco_masks` reads a ``coco.json`` back into index masks.
"""

from __future__ import annotations

import contextlib
import json
import logging
from pathlib import Path
from typing import Any, Iterable, Sequence

import numpy as np

from vidprop.errors import InputError
from vidprop.io.atomic import atomic_dir, atomic_file, check_writable_target

__all__ = [
    "FORMATS",
    "parse_formats",
    "CocoWriter",
    "read_coco_masks",
    "youtube_vos_folder",
    "export_results",
    "COCO_FILE",
]

log = logging.getLogger(__name__)

#: Output formats of ``segment`` and ``export``.
FORMATS = ("png", "coco", "youtube-vos")
#: Name of the COCO document inside a result folder.
COCO_FILE = "coco.json"


def parse_formats(text: str | Sequence[str] | None) -> tuple[str, ...]:
    """``"png,coco"`` (or a list) -> ("png", "coco"); order kept, duplicates dropped."""
    if text is None:
        return ("png",)
    items = text.split(",") if isinstance(text, str) else list(text)
    out: list[str] = []
    for raw in items:
        f = raw.strip().lower().replace("_", "-")
        if f in ("ytvos", "youtubevos"):
            f = "youtube-vos"
        if not f:
            continue
        if f not in FORMATS:
            raise InputError(f"--format: unknown format {raw.strip()!r}; choose from {', '.join(FORMATS)}")
        if f not in out:
            out.append(f)
    if not out:
        raise InputError(f"--format: give at least one of {', '.join(FORMATS)}")
    return tuple(out)


def youtube_vos_folder(result_dir: str | Path, video: str) -> Path:
    """Where the YouTube-VOS layout of a result folder goes: ``result_dir/youtube-vos/Annotations/<video>``."""
    return Path(result_dir) / "youtube-vos" / "Annotations" / video


class CocoWriter:
    """Collect per-frame index masks as COCO RLE annotations; :meth:`write` the document.

    Only the RLE strings are kept (a few hundred bytes per object and frame).
    """

    def __init__(self, video: str, width: int, height: int, *, info: dict[str, Any] | None = None) -> None:
        self.video = video
        self.width, self.height = int(width), int(height)
        self.info = dict(info or {})
        self.images: list[dict[str, Any]] = []
        self.annotations: list[dict[str, Any]] = []
        self.ids: set[int] = set()

    def add(self, index: int, name: str, mask: np.ndarray) -> None:
        """Add frame ``index`` (named ``name``) with its (H, W) uint8 index mask."""
        from pycocotools import mask as mask_util

        if mask.shape != (self.height, self.width):
            raise ValueError(f"mask {mask.shape} differs from the video's {(self.height, self.width)}")
        image_id = len(self.images) + 1
        self.images.append({"id": image_id, "file_name": name, "name": name, "frame_index": int(index),
                            "width": self.width, "height": self.height, "video_id": 1})
        for oid in (int(v) for v in np.unique(mask) if v != 0):
            rle = mask_util.encode(np.asfortranarray((mask == oid).astype(np.uint8)))
            area = float(mask_util.area(rle))
            bbox = [float(v) for v in mask_util.toBbox(rle)]
            rle["counts"] = rle["counts"].decode("ascii")
            self.ids.add(oid)
            self.annotations.append({
                "id": len(self.annotations) + 1, "image_id": image_id, "category_id": oid, "track_id": oid,
                "segmentation": rle, "area": area, "bbox": bbox, "iscrowd": 0,
            })

    def document(self) -> dict[str, Any]:
        from vidprop import __version__

        return {
            "info": {"description": f"vidprop label propagation: {self.video}", "video": self.video,
                     "vidprop_version": __version__, **self.info},
            "videos": [{"id": 1, "name": self.video, "width": self.width, "height": self.height,
                        "length": len(self.images)}],
            "images": self.images,
            "annotations": self.annotations,
            "categories": [{"id": i, "name": f"object {i}", "supercategory": "object"} for i in sorted(self.ids)],
        }

    def write(self, path: str | Path) -> None:
        Path(path).write_text(json.dumps(self.document()) + "\n")


def read_coco_masks(path: str | Path) -> list[tuple[str, np.ndarray]]:
    """A ``coco.json`` written by vidprop -> [(frame name, (H, W) uint8 index mask)] in image order.

    Decoded through pycocotools' own loader (``COCO``, ``annToMask``).
    """
    import contextlib
    import io

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
        out.append((img.get("name", img["file_name"]), mask))
    return out


def _result_masks(folder: Path) -> list[Path]:
    return sorted(p for p in folder.glob("*.png") if p.is_file() and not p.name.startswith("."))


def _start_index(folder: Path) -> int:
    path = folder / "annotations.json"
    try:
        doc = json.loads(path.read_text()) if path.is_file() else {}
        return int((doc.get("frames") or [0])[0])
    except (OSError, ValueError, TypeError, IndexError):
        return 0


def export_results(
    results: str | Path,
    formats: Iterable[str],
    *,
    overwrite: bool = False,
    name: str | None = None,
) -> dict[str, Path]:
    """Convert a finished result folder (``<frame>.png`` index masks) to other formats, inside it.

    Returns {format: path written}.  ``png`` is what the folder already
    holds (nothing to do).  Existing exports are replaced only with
    ``overwrite``; each is written atomically.
    """
    from vidprop.io.masks import read_mask, write_indexed_png

    folder = Path(results)
    if not folder.is_dir():
        raise InputError(f"{folder}: no such result folder")
    pngs = _result_masks(folder)
    if not pngs:
        raise InputError(f"{folder}: no PNG masks in this folder (expected the <frame>.png files of a segment run)")
    fmts = [f for f in parse_formats(list(formats)) if f != "png"]
    video = name or folder.resolve().name
    targets = {"coco": folder / COCO_FILE, "youtube-vos": youtube_vos_folder(folder, video).parent.parent}
    for f in fmts:  # before any work
        check_writable_target(targets[f], overwrite)
    start = _start_index(folder)
    done: dict[str, Path] = {}
    first, _ = read_mask(pngs[0], allow_empty=True)
    coco = CocoWriter(video, first.shape[1], first.shape[0]) if "coco" in fmts else None
    with contextlib.ExitStack() as stack:
        tmp_root = stack.enter_context(atomic_dir(targets["youtube-vos"], overwrite=overwrite)) \
            if "youtube-vos" in fmts else None
        if tmp_root is not None:
            (tmp_root / "Annotations" / video).mkdir(parents=True)
        for pos, p in enumerate(pngs):
            mask, _ = read_mask(p, allow_empty=True)
            if mask.shape != first.shape:
                raise InputError(f"{p}: mask size {mask.shape[1]}x{mask.shape[0]} differs from "
                                 f"{pngs[0].name}'s {first.shape[1]}x{first.shape[0]}")
            if coco is not None:
                coco.add(start + pos, p.stem, mask)
            if tmp_root is not None:
                write_indexed_png(tmp_root / "Annotations" / video / f"{p.stem}.png", mask)
        if coco is not None:
            with atomic_file(targets["coco"], overwrite=overwrite) as tmp:
                coco.write(tmp)
            done["coco"] = targets["coco"]
    if "youtube-vos" in fmts:
        done["youtube-vos"] = youtube_vos_folder(folder, video)
    log.info("exported %d frames of %s as %s", len(pngs), folder, ", ".join(fmts) or "png (nothing to do)")
    return done
