"""The DAVIS-2017 folder layout: sequence lists, frames, annotations, id PNGs."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Iterable

import numpy as np
from PIL import Image

from vidprop.errors import ConfigError, InputError
from vidprop.io.davis_layout import RESOLUTION, davis_annotations_dir, davis_frames_dir

__all__ = ["SETS", "VOID_LABEL", "RESOLUTION", "DavisSequence", "read_set", "find_sequences", "read_ids"]

#: Subsets of DAVIS-2017 (``ImageSets/2017/<set>.txt``).
SETS = ("val", "train", "test-dev")
#: Void label of the annotations (set to 0: not excluded in the semi-supervised task).
VOID_LABEL = 255


@dataclass(frozen=True)
class DavisSequence:
    """One sequence of a DAVIS folder: its JPEG frames and annotation PNGs (sorted)."""

    name: str
    images: tuple[Path, ...]
    annotations: tuple[Path, ...]

    @property
    def frames_dir(self) -> Path:
        return self.images[0].parent

    @property
    def frame_names(self) -> tuple[str, ...]:
        """Frame names as the toolkit takes them: the annotation files' stems."""
        return tuple(p.stem for p in self.annotations)


def read_set(root: str | Path, set: str = "val") -> list[str]:
    """Sequence names listed in ``<root>/ImageSets/2017/<set>.txt``."""
    if set not in SETS:
        raise ConfigError(f"unknown DAVIS set {set!r}; expected one of {', '.join(SETS)}")
    root = Path(root)
    if not root.is_dir():
        raise InputError(f"{root}: DAVIS folder not found")
    path = root / "ImageSets" / "2017" / f"{set}.txt"
    if not path.is_file():
        raise InputError(f"{path}: sequence list of the {set!r} set not found (is {root} a DAVIS-2017 folder?)")
    names = [line.strip() for line in path.read_text().splitlines() if line.strip()]
    if not names:
        raise InputError(f"{path}: the sequence list is empty")
    return names


def find_sequences(
    root: str | Path, names: Iterable[str], *, need: str = "all"
) -> list[DavisSequence]:
    """Locate the frames and annotations of each sequence.

    ``need="all"``: every frame needs its annotation (scoring);
    ``need="first"``: only the first annotation (propagation).
    """
    root = Path(root)
    out = []
    for name in names:
        img_dir = davis_frames_dir(root, name)
        ann_dir = davis_annotations_dir(root, name)
        images = tuple(sorted(img_dir.glob("*.jpg"))) if img_dir.is_dir() else ()
        if not images:
            raise InputError(f"sequence {name}: no frames in {img_dir} (expected 00000.jpg ...)")
        anns = tuple(sorted(ann_dir.glob("*.png"))) if ann_dir.is_dir() else ()
        if not anns:
            raise InputError(f"sequence {name}: no annotations in {ann_dir} (expected 00000.png ...)")
        if anns[0].stem != images[0].stem:
            raise InputError(
                f"sequence {name}: the first annotation {anns[0]} does not match the first frame {images[0].name}"
            )
        if need == "all" and len(anns) != len(images):
            raise InputError(
                f"sequence {name}: {len(anns)} annotations in {ann_dir} for {len(images)} frames in {img_dir}; "
                "scoring needs every frame annotated (test-dev has first-frame annotations only)"
            )
        out.append(DavisSequence(name, images, anns))
    return out


def read_ids(path: Path, what: str) -> np.ndarray:
    """A single-channel PNG of ids -> (H, W) integer array; InputError naming the file otherwise."""
    if not path.is_file():
        raise InputError(f"{path}: {what} not found")
    try:
        with Image.open(path) as im:
            mode = im.mode
            arr = np.asarray(im)
    except (OSError, ValueError, SyntaxError) as exc:
        raise InputError(f"{path}: cannot read this {what} ({exc})") from exc
    if arr.ndim != 2:
        channels = arr.shape[2] if arr.ndim == 3 else arr.ndim
        raise InputError(
            f"{path}: {mode} image with {channels} channels; a {what} must be a single-channel indexed (P) "
            "or greyscale (L) PNG whose values are object ids"
        )
    if arr.dtype == bool:
        arr = arr.astype(np.uint8)
    if not np.issubdtype(arr.dtype, np.integer):
        raise InputError(f"{path}: {mode} image of {arr.dtype} values; a {what} must hold integer object ids")
    return arr
