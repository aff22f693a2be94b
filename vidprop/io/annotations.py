"""Annotations at any frame: where they come from, which frame each one labels, and checking them.

An annotation is (frame index, index mask).  Sources:

* ``--mask first.png``: the first frame of the run (frame 0 unless ``--frames`` starts later);
* ``--mask 35:new.png`` (repeatable): the frame named ``35``;
* ``--masks DIR``: every PNG in DIR whose stem names a frame (the DAVIS /
  YouTube-VOS ``Annotations/<video>/`` layout).

A frame is named by its index or, for a frame folder, by its file stem
(``00035``); a stem that is a frame file's name wins over an index.  Mask
files are read like first-frame masks (:func:`vidprop.io.masks.read_mask`);
colour masks of one run share one colour -> id table (so a colour is the
same object in every file).  Everything that can be checked before the model
loads is checked by :func:`load_annotations`: files, sizes (``resize_mask``
does a nearest resize), frames in range where the video's length is known,
two annotations for one frame, empty annotations in ``objects`` mode, more
than 255 objects.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Literal, Mapping, Sequence

import numpy as np

from vidprop.errors import InputError
from vidprop.io.masks import davis_palette, read_mask, resize_mask_nearest

__all__ = [
    "Annotation",
    "AnnotationMode",
    "Direction",
    "MaskSource",
    "parse_mask_arg",
    "load_annotations",
    "annotation_record",
    "ANNOTATION_MODES",
    "DIRECTIONS",
]

log = logging.getLogger(__name__)

AnnotationMode = Literal["objects", "frame"]
Direction = Literal["forward", "both"]
ANNOTATION_MODES = ("objects", "frame")
DIRECTIONS = ("forward", "both")


@dataclass(frozen=True)
class MaskSource:
    """An annotation before it is read: a frame reference (None: the run's first frame) and a file or array."""

    frame: str | int | None
    mask: Path | np.ndarray
    #: Where it came from, for messages ("--mask 35:a.png", "--masks DIR").
    origin: str = ""

    @property
    def label(self) -> str:
        return str(self.mask) if isinstance(self.mask, Path) else (self.origin or "an annotation array")


@dataclass
class Annotation:
    """A read, checked annotation of one frame."""

    index: int
    name: str
    mask: np.ndarray  # (H, W) uint8 ids
    source: str  # file path, or a description of an array
    ids: tuple[int, ...] = field(default=())
    #: id -> (r, g, b) of the objects an RGB colour mask drew (empty for other masks).
    colours: dict[int, tuple[int, int, int]] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if not self.ids:
            self.ids = tuple(int(v) for v in np.unique(self.mask) if v != 0)


def parse_mask_arg(text: str) -> MaskSource:
    """``--mask`` value -> MaskSource: ``PATH`` (the first frame) or ``FRAME:PATH``.

    A value that is an existing file is a path even if it contains ``:``.
    """
    path = Path(text)
    if ":" in text and not path.exists():
        frame, _, rest = text.partition(":")
        if frame and rest:
            return MaskSource(frame, Path(rest), origin=f"--mask {text}")
        raise InputError(f"--mask {text!r}: expected PATH or FRAME:PATH (e.g. 35:new.png)")
    return MaskSource(None, path, origin=f"--mask {text}")


def _resolve(driver: Any, ref: str | int | None, label: str) -> int:
    if ref is None:
        return int(driver.range.start)
    if isinstance(ref, (int, np.integer)):
        if ref < 0:
            raise InputError(f"{label}: frame index {ref} is negative")
        return int(ref)
    index = driver.index_of(str(ref))
    if index is None:
        kind = "a frame index or a frame file's name" if driver.info.frame_names else "a frame index"
        raise InputError(f"{label}: {ref!r} is not {kind}")
    names = driver.info.frame_names
    if names is not None and str(ref) not in names and str(ref).isdigit() and index < len(names) \
            and names[index].isdigit() and int(names[index]) != index:
        log.warning("%s: frame %s is taken as index %d (file %s); frame files are named %s, %s, ...",
                    label, ref, index, names[index], names[0], names[min(1, len(names) - 1)])
    return index


def _dir_sources(driver: Any, folder: Path) -> list[MaskSource]:
    if not folder.is_dir():
        raise InputError(f"{folder}: --masks must be a folder of PNG annotations (Annotations/<video>/ layout)")
    files = sorted(p for p in folder.iterdir() if p.suffix.lower() == ".png" and p.is_file())
    if not files:
        raise InputError(f"{folder}: no PNG annotation in this folder")
    found, unnamed, outside = [], [], []
    for f in files:
        index = driver.index_of(f.stem)
        if index is None:
            unnamed.append(f.name)
            continue
        if driver.contains(index) is False:
            outside.append(f.name)
            continue
        found.append(MaskSource(index, f, origin=f"--masks {folder}"))
    if not found:
        what = f"frames {driver.range.start}:{driver.range.end or ''} of " if not driver.range.is_all else ""
        raise InputError(
            f"{folder}: no PNG here names a frame of {what}{driver.path} "
            f"(found {', '.join(files[i].name for i in range(min(3, len(files))))}"
            f"{', ...' if len(files) > 3 else ''}; names must be frame indices"
            f"{' or the frame files stems' if driver.info.frame_names else ''})"
        )
    if unnamed:
        log.warning("%s: %d PNG(s) name no frame and are ignored (%s%s)", folder, len(unnamed),
                    ", ".join(unnamed[:3]), ", ..." if len(unnamed) > 3 else "")
    if outside:
        log.warning("%s: %d annotation(s) of frames outside this run are ignored (%s%s)", folder, len(outside),
                    ", ".join(outside[:3]), ", ..." if len(outside) > 3 else "")
    return found


def _read(src: MaskSource, allow_empty: bool) -> tuple[np.ndarray, str]:
    if isinstance(src.mask, Path):
        arr, info = read_mask(src.mask, allow_empty=True)
        return arr, info.kind
    arr = np.asarray(src.mask)
    if arr.ndim != 2:
        raise InputError(f"{src.label}: an annotation must be a 2-D index mask, got shape {arr.shape}")
    if arr.dtype != np.uint8:
        if arr.size and (arr.min() < 0 or arr.max() > 255):
            raise InputError(f"{src.label}: object ids must be in 0..255, got {arr.min()}..{arr.max()}")
        arr = arr.astype(np.uint8)
    return np.ascontiguousarray(arr), "array"


_PALETTE = {tuple(int(x) for x in c): i for i, c in enumerate(davis_palette()[1:], start=1)}


def _colour_table(path: Path, arr: np.ndarray) -> dict[int, tuple[int, int, int]]:
    """id -> colour of a colour mask read as ``arr``."""
    from PIL import Image

    with Image.open(path) as im:
        rgb = np.asarray(im.convert("RGB"))
    table = {}
    for v in np.unique(arr):
        if v:
            ys, xs = np.nonzero(arr == v)
            table[int(v)] = tuple(int(c) for c in rgb[ys[0], xs[0]])
    return table  # type: ignore[return-value]


def _unify_colours(items: list[tuple[MaskSource, np.ndarray, str]],
                   colour_ids: Mapping[tuple[int, int, int], int] | None = None,
                   ) -> tuple[list[np.ndarray], list[dict[int, tuple[int, int, int]]]]:
    """Give the colour masks of a run one colour -> id table; returns the masks and each one's id -> colour.

    The table is ``colour_ids`` (``--labels`` colours) when it holds every
    colour; else DAVIS palette colours keep their palette index; else ids
    1.. in order of colour value over every file.
    """
    colour = [i for i, (_, _, kind) in enumerate(items) if kind == "colour"]
    masks = [arr for _, arr, _ in items]
    kept: list[dict[int, tuple[int, int, int]]] = [{} for _ in items]
    if not colour:
        return masks, kept
    tables = {i: _colour_table(items[i][0].mask, items[i][1]) for i in colour}  # type: ignore[arg-type]
    every = {c for t in tables.values() for c in t.values()}
    if colour_ids and all(c in colour_ids for c in every):
        rank = dict(colour_ids)
        log.info("colour masks: ids from the --labels colours")
    elif all(c in _PALETTE for c in every) or len(colour) < 2:
        return masks, [tables.get(i, {}) for i in range(len(items))]  # palette indices / one file's own order
    else:
        order = sorted(every)
        if len(order) > 255:
            last = items[colour[-1]][0]
            raise InputError(f"{last.label}: the colour masks of this run hold {len(order)} colours, more than the "
                             "255 objects an index mask can hold")
        rank = {c: k + 1 for k, c in enumerate(order)}
        log.info("colour masks: %d colours over %d files, ids 1..%d in order of colour value", len(order),
                 len(colour), len(order))
    for i in colour:
        lut = np.zeros(256, np.uint8)
        for v, c in tables[i].items():
            lut[v] = rank[c]
        masks[i] = lut[masks[i]]
        kept[i] = {rank[c]: c for c in tables[i].values()}
    return masks, kept


def load_annotations(
    driver: Any,
    sources: Iterable[MaskSource],
    *,
    masks_dir: str | Path | None = None,
    mode: AnnotationMode = "objects",
    resize_mask: bool = False,
    colour_ids: Mapping[tuple[int, int, int], int] | None = None,
) -> dict[int, Annotation]:
    """Read and check every annotation of a run -> {frame index: Annotation}, sorted by index.

    ``driver`` is the run's :class:`~vidprop.io.driver.VideoDriver` (frame
    names, size, frame range).  Raises InputError naming the file for: an
    unreadable file, a size that differs from the frames (unless
    ``resize_mask``), a frame outside the video where its length is known or
    outside the run's frame range, two annotations for one frame, an empty
    annotation in ``objects`` mode, more than 255 objects, or no annotation.
    """
    if mode not in ANNOTATION_MODES:
        raise InputError(f"annotation mode must be one of {', '.join(ANNOTATION_MODES)}, got {mode!r}")
    srcs = list(sources)
    if masks_dir is not None:
        srcs += _dir_sources(driver, Path(masks_dir))
    if not srcs:
        raise InputError("no annotation: give a mask (--mask) or a folder of masks (--masks)")
    resolved: list[tuple[int, MaskSource]] = []
    seen: dict[int, MaskSource] = {}
    for src in srcs:
        index = _resolve(driver, src.frame, src.label)
        if index in seen:
            raise InputError(f"{src.label}: frame {index} ({driver.frame_name(index)}) is annotated twice "
                             f"(also by {seen[index].label})")
        inside = driver.contains(index)
        if inside is False:
            n = driver.reported_length
            if n is not None and index >= n:
                how = "" if driver.length_known else ", as its container reports"
                raise InputError(f"{src.label}: annotates frame {index} but {driver.path} has {n} frames "
                                 f"(0..{n - 1}{how})")
            raise InputError(f"{src.label}: annotates frame {index}, outside this run's {driver.range.describe()}")
        seen[index] = src
        resolved.append((index, src))
    resolved.sort(key=lambda t: t[0])
    items = [(src, *_read(src, mode == "frame")) for _, src in resolved]
    masks, colours = _unify_colours(items, colour_ids)
    W, H = driver.size
    out: dict[int, Annotation] = {}
    for (index, src), arr, cols in zip(resolved, masks, colours):
        if arr.shape != (H, W):
            if not resize_mask:
                raise InputError(
                    f"{src.label}: mask size {arr.shape[1]}x{arr.shape[0]} differs from the frames of "
                    f"{driver.path} ({W}x{H}); pass --resize-mask for a nearest resize"
                )
            log.warning("%s: resizing the mask from %dx%d to %dx%d (nearest)", src.label, arr.shape[1], arr.shape[0],
                        W, H)
            had = bool(arr.any())
            arr = resize_mask_nearest(arr, (W, H))
            if had and not arr.any() and mode == "objects":
                raise InputError(f"{src.label}: no object is left after resizing the mask")
        ann = Annotation(index=index, name=driver.frame_name(index), mask=arr, source=src.label, colours=cols)
        if not ann.ids and mode == "objects":
            raise InputError(
                f"{src.label}: the mask is empty (no object: every pixel is background 0); an annotation of frame "
                f"{index} in --annotation-mode objects must hold an object (--annotation-mode frame takes an empty "
                "one as: every object left)"
            )
        out[index] = ann
    if not any(a.ids for a in out.values()):
        raise InputError(f"{next(iter(out.values())).source}: no annotation holds an object")
    return out


def annotation_record(annotations: Mapping[int, Annotation], *, mode: str, direction: str,
                      frames: Sequence[int] | None = None) -> dict[str, Any]:
    """The ``annotations.json`` document: which frames were annotated with which ids, mode and direction."""
    return {
        "mode": mode,
        "direction": direction,
        "annotations": [
            {"frame": a.index, "name": a.name, "ids": list(a.ids), "source": a.source}
            for a in sorted(annotations.values(), key=lambda a: a.index)
        ],
        **({"frames": [int(frames[0]), int(frames[-1]) + 1]} if frames else {}),
    }


def write_annotation_record(path: str | Path, record: Mapping[str, Any]) -> None:
    Path(path).write_text(json.dumps(record, indent=1) + "\n")
