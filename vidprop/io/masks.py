"""Reading first-frame masks as users really have them, and writing DAVIS-style PNGs.

Accepted inputs (:func:`read_mask`):

* indexed (P) PNG: the indices are the object ids;
* greyscale (L) with a few integer ids (0 = background); {0, 255} is one object;
* greyscale anti-aliased 0..255 (many grey levels): one object, thresholded
  at 128, logged;
* RGB(A) colour masks: each colour is an object (DAVIS palette colours keep
  their DAVIS index); a warning when there are suspiciously many colours.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

from vidprop.errors import InputError

__all__ = ["davis_palette", "read_mask", "MaskInfo", "write_indexed_png", "resize_mask_nearest"]

log = logging.getLogger(__name__)

#: Grey levels above which an L mask is taken as anti-aliased.
MAX_GREY_IDS = 32
#: Colours above which an RGB mask draws a warning.
MANY_COLOURS = 20


def davis_palette() -> np.ndarray:
    """(256, 3) uint8: the DAVIS palette (the PASCAL VOC colour map)."""
    pal = np.zeros((256, 3), dtype=np.uint8)
    for i in range(256):
        c, r, g, b = i, 0, 0, 0
        for j in range(8):
            r |= ((c >> 0) & 1) << (7 - j)
            g |= ((c >> 1) & 1) << (7 - j)
            b |= ((c >> 2) & 1) << (7 - j)
            c >>= 3
        pal[i] = (r, g, b)
    return pal


_PALETTE = davis_palette()


@dataclass(frozen=True)
class MaskInfo:
    """How a mask file was interpreted."""

    path: Path
    mode: str
    kind: str  # "indexed", "ids", "binary", "antialiased", "colour"
    ids: tuple[int, ...]


def read_mask(path: str | Path, *, allow_empty: bool = False) -> tuple[np.ndarray, MaskInfo]:
    """Read a first-frame mask -> ((H, W) uint8 index mask, how it was read).

    Raises InputError if the file is not an image or holds no object (unless ``allow_empty``).
    """
    path = Path(path)
    if not path.is_file():
        raise InputError(f"{path}: mask file not found")
    try:
        with Image.open(path) as im:
            im.load()
            mode = im.mode
            if mode == "P":
                arr = np.asarray(im)
                kind = "indexed"
            elif mode in ("1", "L", "LA", "I", "I;16", "I;16B", "I;16L", "F"):
                arr, kind = _from_grey(np.asarray(im.convert("L") if mode in ("1", "LA") else im), path, mode)
            elif mode in ("RGB", "RGBA", "CMYK", "YCbCr", "HSV"):
                rgb = np.asarray(im.convert("RGB"))
                if np.array_equal(rgb[..., 0], rgb[..., 1]) and np.array_equal(rgb[..., 1], rgb[..., 2]):
                    arr, kind = _from_grey(rgb[..., 0], path, mode)
                else:
                    arr, kind = _from_colour(rgb, path)
            else:
                raise InputError(f"{path}: unsupported mask image mode {mode!r}")
    except InputError:
        raise
    except Exception as exc:  # noqa: BLE001 - PIL.UnidentifiedImageError and others
        raise InputError(f"{path}: not a readable image ({exc})") from exc
    arr = np.ascontiguousarray(arr.astype(np.uint8))
    ids = tuple(int(v) for v in np.unique(arr) if v != 0)
    if not ids and not allow_empty:
        raise InputError(f"{path}: the mask is empty (no object: every pixel is background 0)")
    return arr, MaskInfo(path=path, mode=mode, kind=kind, ids=ids)


def _from_grey(grey: np.ndarray, path: Path, mode: str) -> tuple[np.ndarray, str]:
    if grey.dtype != np.uint8:
        if grey.max() > 255 or grey.min() < 0:
            raise InputError(f"{path}: {mode} mask values must be in 0..255, got {grey.min()}..{grey.max()}")
        grey = grey.astype(np.uint8)
    values = np.unique(grey)
    if len(values) > MAX_GREY_IDS:
        log.warning(
            "%s: greyscale mask with %d grey levels looks anti-aliased; using one object (pixels >= 128)",
            path,
            len(values),
        )
        return (grey >= 128).astype(np.uint8), "antialiased"
    if set(values.tolist()) <= {0, 255}:
        return (grey == 255).astype(np.uint8), "binary"
    return grey, "ids"


def _from_colour(rgb: np.ndarray, path: Path) -> tuple[np.ndarray, str]:
    flat = rgb.reshape(-1, 3)
    colours, inverse = np.unique(flat, axis=0, return_inverse=True)
    inverse = inverse.reshape(-1)
    nonblack = [tuple(c) for c in colours if tuple(c) != (0, 0, 0)]
    if len(nonblack) > 255:
        raise InputError(
            f"{path}: RGB mask has {len(nonblack)} colours; a mask needs one flat colour per object "
            "(anti-aliased or JPEG-compressed masks are not supported as colour masks)"
        )
    if len(nonblack) > MANY_COLOURS:
        log.warning(
            "%s: RGB mask has %d colours, each taken as an object; is it anti-aliased or JPEG-compressed?",
            path,
            len(nonblack),
        )
    pal = {tuple(int(x) for x in c): i for i, c in enumerate(_PALETTE[1:], start=1)}
    if all(tuple(int(x) for x in c) in pal for c in nonblack):
        lut = [0 if tuple(c) == (0, 0, 0) else pal[tuple(int(x) for x in c)] for c in colours]
    else:
        order = {c: i + 1 for i, c in enumerate(sorted(nonblack))}
        lut = [order.get(tuple(c), 0) for c in colours]
        log.info("%s: colour mask: %d objects, ids 1..%d in order of colour value", path, len(nonblack), len(nonblack))
    return np.asarray(lut, dtype=np.uint8)[inverse].reshape(rgb.shape[:2]), "colour"


def resize_mask_nearest(mask: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """NEAREST resize of an index mask to ``size`` = (W, H)."""
    return np.asarray(Image.fromarray(mask).resize(tuple(size), Image.NEAREST))


def write_indexed_png(path: str | Path, mask: np.ndarray) -> None:
    """Write an (H, W) uint8 index mask as a P-mode PNG with the DAVIS palette."""
    if mask.ndim != 2 or mask.dtype != np.uint8:
        raise ValueError(f"mask must be (H, W) uint8, got {mask.shape} {mask.dtype}")
    im = Image.frombytes("P", (mask.shape[1], mask.shape[0]), np.ascontiguousarray(mask).tobytes())
    im.putpalette(_PALETTE.reshape(-1).tolist())
    im.save(str(path), format="PNG")
