"""Result formats beyond the DAVIS PNGs, and ``vidprop export`` of finished result folders.

Formats (``segment --format``, ``batch --format``, ``vidprop export --format``),
each written by :mod:`vidprop.io.formats`:

* ``png``: ``OUT/NAME/<frame>.png``, indexed PNGs (the default), with the
  DAVIS palette or the run's colours (RGB colour masks, ``--labels``);
* ``coco``: ``OUT/NAME/coco.json`` (:mod:`vidprop.io.formats.coco`);
* ``youtube-vos``: ``OUT/NAME/youtube-vos/Annotations/NAME/<frame>.png``;
* ``cvat-video``: ``OUT/NAME/cvat-video.xml``, CVAT for video 1.1 (:mod:`vidprop.io.formats.cvat`);
* ``mots``: ``OUT/NAME/mots/`` MOTS txt and PNG (:mod:`vidprop.io.formats.mots`);
* ``youtube-vis``: ``OUT/NAME/youtube-vis.json`` (:mod:`vidprop.io.formats.ytvis`).

Object names and colours go to every format from ``OUT/NAME/labels.json``
(written by a run that had names or colours) and ``--labels``.
:func:`export_results` converts one result folder; :func:`result_folders`
finds every result folder under a folder (what ``batch`` and ``eval`` write).
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import tempfile
from pathlib import Path
from typing import Iterable, Sequence

from vidprop.errors import InputError
from vidprop.io.atomic import check_writable_target
from vidprop.io.formats import EXPORT_TARGETS, ExportContext, frame_file_namer, make_writers
from vidprop.io.formats.coco import COCO_FILE, CocoWriter, read_coco_masks
from vidprop.io.formats.labels import LabelMap, read_labels
from vidprop.io.formats.pngs import youtube_vos_folder

__all__ = [
    "FORMATS",
    "parse_formats",
    "CocoWriter",
    "read_coco_masks",
    "youtube_vos_folder",
    "export_results",
    "result_folders",
    "COCO_FILE",
    "EXPORT_TARGETS",
    "LABELS_FILE",
    "write_labels_file",
    "read_labels_file",
]

log = logging.getLogger(__name__)

#: Output formats of ``segment``, ``batch`` and ``export``.
FORMATS = ("png", "coco", "youtube-vos", "cvat-video", "mots", "youtube-vis")
_ALIASES = {"ytvos": "youtube-vos", "youtubevos": "youtube-vos", "cvat": "cvat-video", "ytvis": "youtube-vis",
            "youtubevis": "youtube-vis"}
#: The object names and colours of a result folder.
LABELS_FILE = "labels.json"


def parse_formats(text: str | Sequence[str] | None) -> tuple[str, ...]:
    """``"png,coco"`` (or a list) -> ("png", "coco"); order kept, duplicates dropped."""
    if text is None:
        return ("png",)
    items = text.split(",") if isinstance(text, str) else list(text)
    out: list[str] = []
    for raw in items:
        f = raw.strip().lower().replace("_", "-")
        f = _ALIASES.get(f, f)
        if not f:
            continue
        if f not in FORMATS:
            raise InputError(f"--format: unknown format {raw.strip()!r}; choose from {', '.join(FORMATS)}")
        if f not in out:
            out.append(f)
    if not out:
        raise InputError(f"--format: give at least one of {', '.join(FORMATS)}")
    return tuple(out)


def write_labels_file(folder: str | Path, labels: LabelMap) -> Path:
    path = Path(folder) / LABELS_FILE
    path.write_text(json.dumps(labels.to_json(), indent=1) + "\n")
    return path


def read_labels_file(folder: str | Path) -> LabelMap:
    """``folder/labels.json`` (empty map when absent)."""
    path = Path(folder) / LABELS_FILE
    return read_labels(path) if path.is_file() else LabelMap()


def _result_masks(folder: Path) -> list[Path]:
    return sorted(p for p in folder.glob("*.png") if p.is_file() and not p.name.startswith("."))


def _start_index(folder: Path) -> int:
    for name, key in (("annotations.json", "frames"), ("source.json", "first_frame")):
        path = folder / name
        try:
            doc = json.loads(path.read_text()) if path.is_file() else {}
            value = doc.get(key)
            if value is not None:
                return int(value[0] if isinstance(value, list) else value)
        except (OSError, ValueError, TypeError, IndexError, AttributeError):
            continue
    return 0


def result_folders(path: str | Path) -> list[Path]:
    """``path`` itself when it holds ``<frame>.png`` masks, else its sub-folders that do (sorted)."""
    folder = Path(path)
    if not folder.is_dir():
        raise InputError(f"{folder}: no such result folder")
    if _result_masks(folder):
        return [folder]
    subs = [p for p in sorted(folder.iterdir()) if p.is_dir() and not p.name.startswith(".") and _result_masks(p)]
    if not subs:
        raise InputError(f"{folder}: no PNG masks here or in its sub-folders (expected the <frame>.png files of "
                         "a segment run, or a folder of them as batch and eval write)")
    return subs


def export_results(
    results: str | Path,
    formats: Iterable[str],
    *,
    overwrite: bool = False,
    name: str | None = None,
    labels: LabelMap | None = None,
) -> dict[str, Path]:
    """Convert one result folder (``<frame>.png`` index masks) to other formats, inside it.

    Returns {format: path written}.  ``png`` is what the folder already
    holds (nothing to do).  Existing exports are replaced only with
    ``overwrite``; everything is written in a temporary folder first and
    moved into place at the end.  Names and colours: the folder's
    ``labels.json``, then ``labels``.
    """
    from vidprop.io.masks import read_mask
    from vidprop.io.source import read_source_record

    folder = Path(results)
    if not folder.is_dir():
        raise InputError(f"{folder}: no such result folder")
    pngs = _result_masks(folder)
    if not pngs:
        raise InputError(f"{folder}: no PNG masks in this folder (expected the <frame>.png files of a segment run)")
    fmts = [f for f in parse_formats(list(formats)) if f != "png"]
    video = name or folder.resolve().name
    targets = {f: folder / EXPORT_TARGETS[f] for f in fmts}
    for f in fmts:  # before any work
        check_writable_target(targets[f], overwrite)
    start = _start_index(folder)
    first, _ = read_mask(pngs[0], allow_empty=True)
    source = read_source_record(folder) or {}
    lab = read_labels_file(folder).merged(labels)
    done: dict[str, Path] = {}
    tmp = Path(tempfile.mkdtemp(prefix=".vidprop-export-", dir=folder))
    try:
        ctx = ExportContext(root=tmp, video=video, width=first.shape[1], height=first.shape[0], labels=lab,
                            frame_file=frame_file_namer(source.get("video")))
        writers = make_writers(fmts, ctx)
        for pos, p in enumerate(pngs):
            mask, _ = read_mask(p, allow_empty=True)
            if mask.shape != first.shape:
                raise InputError(f"{p}: mask size {mask.shape[1]}x{mask.shape[0]} differs from "
                                 f"{pngs[0].name}'s {first.shape[1]}x{first.shape[0]}")
            for w in writers:
                w.add(start + pos, p.stem, mask)
        for w in writers:
            w.finish()
        for f in fmts:
            src, dst = tmp / EXPORT_TARGETS[f], targets[f]
            if dst.is_dir():
                shutil.rmtree(dst)
            elif dst.exists():
                dst.unlink()
            os.replace(src, dst)
            done[f] = youtube_vos_folder(folder, video) if f == "youtube-vos" else dst
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    log.info("exported %d frames of %s as %s", len(pngs), folder, ", ".join(fmts) or "png (nothing to do)")
    return done
