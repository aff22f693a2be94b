"""``segment --points / --neg-points / --box``: objects annotated by clicks or a box, masks made by SAM 2.

Each ``--points`` value is one object (its positive clicks); the i-th
``--neg-points`` value holds that object's negative clicks (same frame); each
``--box`` value is one more object.  Objects get the ids after the largest
id of the ``--mask`` annotations, in the order given (points first, then
boxes).  Each mask then enters the annotations exactly like ``--mask
FRAME:PATH`` (objects mode): on a frame that also has a mask annotation, the
object's pixels are added to it.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np

from vidprop.annotate.prompts import check_prompt, parse_box, parse_points
from vidprop.errors import InputError
from vidprop.io.annotations import Annotation

__all__ = ["ObjectPrompt", "object_prompts", "resolve_prompts", "add_prompt_annotations", "read_frame"]

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ObjectPrompt:
    """One object's clicks / box on one frame (``frame``: a reference as given, None = the run's first frame)."""

    frame: str | None
    points: tuple[tuple[float, float], ...] = ()
    labels: tuple[int, ...] = ()
    box: tuple[float, float, float, float] | None = None
    origin: str = ""


def object_prompts(points: Sequence[str] = (), neg_points: Sequence[str] = (), boxes: Sequence[str] = ()
                   ) -> list[ObjectPrompt]:
    """The flags' values -> one ObjectPrompt per object (format errors: one line naming the flag)."""
    if len(neg_points) > len(points):
        raise InputError(f"--neg-points is given {len(neg_points)} time(s) but --points {len(points)}: "
                         "the i-th --neg-points belongs to the object of the i-th --points")
    out = []
    for i, text in enumerate(points):
        frame, pos = parse_points(text, "--points")
        pts, labs = list(pos), [1] * len(pos)
        if i < len(neg_points):
            nframe, neg = parse_points(neg_points[i], "--neg-points")
            if nframe != frame:
                raise InputError(f"--neg-points {neg_points[i]!r}: names frame {nframe or '(first)'} but its --points "
                                 f"{text!r} names {frame or '(first)'}")
            pts += neg
            labs += [0] * len(neg)
        out.append(ObjectPrompt(frame, tuple(pts), tuple(labs), None, f"--points {text}"))
    for text in boxes:
        frame, box = parse_box(text)
        out.append(ObjectPrompt(frame, (), (), box, f"--box {text}"))
    return out


def resolve_prompts(driver: Any, prompts: Sequence[ObjectPrompt]) -> list[tuple[int, ObjectPrompt]]:
    """Frame index of each prompt, clicks and box checked against the frame size (before any model loads)."""
    out = []
    for p in prompts:
        if p.frame is None:
            index = int(driver.range.start)
        else:
            found = driver.index_of(p.frame)
            if found is None:
                raise InputError(f"{p.origin}: {p.frame!r} is not a frame index or a frame file's name")
            index = found
        if driver.contains(index) is False:
            raise InputError(f"{p.origin}: frame {index} is not part of this run")
        check_prompt(p.points or None, p.labels or None, p.box, driver.size, where=p.origin)
        out.append((index, p))
    return out


def read_frame(video: str | Path, index: int, name: str | None = None) -> np.ndarray:
    """Frame ``index`` of a video file or frame folder as (H, W, 3) uint8 RGB."""
    from vidprop.io.video_seek import SeekableVideo
    from vidprop.view.frames import FolderFrames

    video = Path(video)
    if video.is_dir():
        from vidprop.io.images import read_image

        return read_image(FolderFrames.open(video).file_for(index, name), exif_transpose=False)
    src = SeekableVideo(video)
    try:
        return src.frame(index)
    finally:
        src.close()


def add_prompt_annotations(job: Any, prompts: Sequence[tuple[int, ObjectPrompt]],
                           prompter: Callable[..., np.ndarray]) -> list[int]:
    """Make each object's mask and merge it into ``job.annotations`` (a SegmentJob); return the new ids."""
    if job.mode != "objects":
        raise InputError("--points / --box annotate objects: use them with --annotation-mode objects")
    used = {i for a in job.annotations.values() for i in a.ids}
    next_id = max(used, default=0) + 1
    if next_id + len(prompts) - 1 > 255:
        raise InputError(f"{len(prompts)} prompted objects after id {next_id - 1} exceed 255 ids")
    driver = job.driver
    frames: dict[int, np.ndarray] = {}
    ids = []
    for index, p in prompts:
        if index not in frames:
            frames[index] = read_frame(driver.path, index, driver.frame_name(index))
        mask = np.asarray(prompter(frames[index], list(p.points) or None, list(p.labels) or None, p.box), bool)
        if not mask.any():
            raise InputError(f"{p.origin}: the click-to-mask model found no object there")
        obj = next_id
        next_id += 1
        ids.append(obj)
        old = job.annotations.get(index)
        base = old.mask.copy() if old is not None else np.zeros(mask.shape, np.uint8)
        base[mask] = obj
        source = p.origin if old is None else f"{old.source} + {p.origin}"
        job.annotations[index] = Annotation(index=index, name=driver.frame_name(index), mask=base, source=source)
        log.info("%s: object %d on frame %d (%d pixels)", p.origin, obj, index, int(mask.sum()))
    job.annotations = dict(sorted(job.annotations.items()))
    return ids
