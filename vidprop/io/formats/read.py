"""``--masks`` from a labelling tool's export: a CVAT-for-video XML or a MOTS folder / txt file.

:func:`annotation_export_sources` turns such an export into the annotation
sources of a run (one per annotated frame, by video frame index) and the
labels it names, so a team can correct propagated masks in CVAT and
propagate again.  Frames outside the run are ignored with a warning, as for
a folder of PNGs.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from vidprop.io.annotations import MaskSource
from vidprop.io.formats.labels import LabelMap

__all__ = ["is_annotation_export", "annotation_export_sources"]

log = logging.getLogger(__name__)


def is_annotation_export(path: str | Path) -> bool:
    """A CVAT XML file, or MOTS (a txt file, a folder with instances_txt/ or instances/, 16-bit PNGs)."""
    from vidprop.io.formats.mots import is_mots

    path = Path(path)
    if path.is_file():
        return path.suffix.lower() in (".xml", ".txt")
    return path.is_dir() and is_mots(path)


def annotation_export_sources(path: str | Path, driver: Any) -> tuple[list[MaskSource], LabelMap]:
    """The annotations of a CVAT-for-video or MOTS export, for the run of ``driver``, and its labels."""
    path = Path(path)
    if path.is_file() and path.suffix.lower() == ".xml":
        from vidprop.io.formats.cvat import read_cvat_video

        doc = read_cvat_video(path)
        masks, labels, what = doc.masks, doc.labels, "CVAT"
    else:
        from vidprop.io.formats.mots import read_mots

        mots = read_mots(path, video=driver.info.name)
        masks, labels, what = mots.masks, mots.labels, "MOTS"
    sources, outside = [], []
    for index, mask in masks.items():
        if driver.contains(index) is False:
            outside.append(index)
            continue
        sources.append(MaskSource(index, mask, origin=f"--masks {path} (frame {index})"))
    if outside:
        log.warning("%s: %d annotated frame(s) outside this run are ignored (%s%s)", path, len(outside),
                    ", ".join(map(str, outside[:3])), ", ..." if len(outside) > 3 else "")
    log.info("%s: %s annotations of %d frame(s)", path, what, len(sources))
    return sources, labels
