"""Writing an annotation session's results in exactly ``vidprop segment``'s layout.

``OUT/NAME/00000.png ...`` (indexed PNGs), ``coco.json``,
``youtube-vos/Annotations/NAME/``, ``annotations.json`` and ``source.json``,
with segment's own writers, atomically (a temporary folder renamed over the
old one; other files there, like the session's ``.annotate/`` state, are kept).
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any, Sequence

from vidprop.io.annotations import Annotation, annotation_record, write_annotation_record
from vidprop.io.atomic import atomic_dir
from vidprop.io.exports import parse_formats
from vidprop.io.formats import ExportContext, frame_file_namer, make_writers
from vidprop.io.masks import write_indexed_png
from vidprop.io.source import write_source_record

__all__ = ["write_results", "annotations_of"]

log = logging.getLogger(__name__)


def annotations_of(annotator: Any) -> dict[int, Annotation]:
    """The session's annotations as segment's records (``source``: where they came from)."""
    return {t: Annotation(index=t, name=annotator.frame_name(t), mask=m, source=f"vidprop annotate (frame {t})")
            for t, m in sorted(annotator.annotations.items())}


def write_results(annotator: Any, out_dir: Path, *, formats: Sequence[str] | str = ("png",),
                  overwrite: bool = True) -> Path:
    """Write the annotator's current masks into ``out_dir`` (replaced atomically when ``overwrite``).

    The formats go through segment's own writers (:func:`vidprop.io.formats.make_writers`);
    ``annotations.json`` is written, as segment writes it, unless the only annotation is on frame 0.
    """
    fmts = parse_formats(formats)
    masks = annotator.masks()
    names = [annotator.frame_name(t) for t in range(len(masks))]
    w, h = annotator.size
    info = annotator.driver.info
    with atomic_dir(out_dir, overwrite=overwrite) as tmp:
        ctx = ExportContext(root=tmp, video=annotator.name, width=w, height=h,
                            frame_file=frame_file_namer(info.path))
        writers = make_writers(fmts, ctx)
        for t, (name, m) in enumerate(zip(names, masks)):
            if "png" in fmts:
                write_indexed_png(tmp / f"{name}.png", m)
            for fw in writers:
                fw.add(t, name, m)
        for fw in writers:
            fw.finish()
        if list(annotator.annotations) != [0]:  # segment: only runs with more than a first-frame annotation
            record = annotation_record(annotations_of(annotator), mode=annotator.mode, direction=annotator.direction,
                                       frames=list(range(len(masks))))
            write_annotation_record(tmp / "annotations.json", record)
        write_source_record(tmp, info, frames=len(masks), task="segment", first_frame=0)
    log.info("wrote %d masks of %s to %s (%s)", len(masks), annotator.name, out_dir, ", ".join(fmts))
    return out_dir
