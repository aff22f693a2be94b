"""Reading first-frame masks as users really have them, and writing DAVIS-style PNGs.

Accepted inputs (:func:`read_mask`):

* indexed (P) PNG: the indices are the object ids;
* greyscale (L) with a few integer ids (0 = background); {0, 255} is one object;
* greyscale anti-aliased 0..255 (many grey levels): one object, thresholded
  at 128, logged;
* RGB(A) colour masks: each colour is an object (DAVIS palette colours keep
  their DAVIS index); a warning when there are suspiciously many colours;
* 16-bit greyscale: {0, 65535} is one object, values up to 255 are ids;
  anything else is refused with a hint;
* JPEG (lossy) masks, binary or with a few colours or grey levels: the
  compression artefacts around edges would each become an object, so every
  pixel is snapped to the mask's few dominant colours (found in its flat
  areas), with a warning saying so (:func:`snap_lossy`).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

from vidprop.errors import InputError

__all__ = ["davis_palette", "read_mask", "MaskInfo", "write_indexed_png", "resize_mask_nearest", "snap_lossy"]

log = logging.getLogger(__name__)

#: Grey levels above which an L mask is taken as anti-aliased.
MAX_GREY_IDS = 32
#: Colours above which an RGB mask draws a warning.
MANY_COLOURS = 20
#: Formats whose compression changes pixel values.
LOSSY_FORMATS = ("JPEG", "MPO")
#: Lossy masks: a pixel is "flat" when its 3x3 neighbourhood varies by at most this per channel.
FLAT_TOLERANCE = 12
#: Lossy masks: flat colours closer than this (max over channels) are the same colour.
SAME_COLOUR = 40
#: Lossy masks: a dominant colour covers at least this many flat pixels.
MIN_COLOUR_PIXELS = 16


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
    kind: str  # "indexed", "ids", "binary", "antialiased", "colour", "lossy"
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
            if im.format in LOSSY_FORMATS and mode in ("L", "RGB", "CMYK", "YCbCr"):
                arr, kind = snap_lossy(np.asarray(im.convert("RGB")), path, im.format), "lossy"
            elif mode == "P":
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
        lo, hi = grey.min(), grey.max()
        if lo >= 0 and hi == 65535 and set(np.unique(grey).tolist()) == {0, 65535}:
            return (grey == 65535).astype(np.uint8), "binary"  # a 16-bit binary mask, as {0, 255}
        if lo < 0 or hi > 255:
            raise InputError(
                f"{path}: {mode} (16/32-bit) mask with values {lo}..{hi}; vidprop reads {{0, 65535}} as one "
                "object and values 0..255 as object ids: save it as an 8-bit PNG (indexed, or greyscale "
                "with one value per object)"
            )
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


def snap_lossy(rgb: np.ndarray, path: Path, fmt: str = "JPEG") -> np.ndarray:
    """(H, W, 3) uint8 of a lossy (JPEG) mask -> (H, W) uint8 ids, every pixel snapped to a dominant colour.

    The dominant colours are found where the mask is flat (3x3 neighbourhood
    within :data:`FLAT_TOLERANCE`), so the blends and ringing that JPEG puts
    along edges never become colours of their own: flat colours are taken
    by decreasing pixel count, one within :data:`SAME_COLOUR` of a kept one
    joins it, one with at least :data:`MIN_COLOUR_PIXELS` pixels starts a new
    one.  Each pixel then takes the nearest dominant colour (Euclidean).  The
    one nearest black (within :data:`SAME_COLOUR`) is the background; the
    others are numbered as in a colour mask (DAVIS palette indices when each
    is within :data:`SAME_COLOUR` of a palette colour, else 1..n by colour
    value; a grey mask's levels by grey value).  Logged as a warning.
    """
    import cv2

    kernel = np.ones((3, 3), np.uint8)
    spread = (cv2.dilate(rgb, kernel).astype(np.int16) - cv2.erode(rgb, kernel)).max(axis=2)
    packed = _pack(rgb)  # (H, W) int32 colour codes: 1-D uniques are much faster than axis=0
    codes, counts = np.unique(packed[spread <= FLAT_TOLERANCE], return_counts=True)
    colours = np.stack([(codes >> 16) & 255, (codes >> 8) & 255, codes & 255], axis=1)
    centres: list[np.ndarray] = []
    for i in np.argsort(-counts, kind="stable"):
        c = colours[i].astype(np.int16)
        if centres and np.abs(np.stack(centres) - c).max(axis=1).min() <= SAME_COLOUR:
            continue
        if counts[i] < MIN_COLOUR_PIXELS:
            break
        centres.append(c)
        if len(centres) > 256:
            raise InputError(f"{path}: a {fmt} image with more than 255 distinct flat colours is not a mask; "
                             "save the mask as PNG")
    if not centres:
        raise InputError(f"{path}: a {fmt} mask with no flat area of one colour; save the mask as PNG")
    cen = np.stack(centres).astype(np.float32)  # (K, 3)
    flat_px = rgb.reshape(-1, 3).astype(np.float32)
    d = (flat_px ** 2).sum(1)[:, None] - 2 * flat_px @ cen.T + (cen ** 2).sum(1)[None, :]  # (HW, K)
    nearest = d.argmin(axis=1)
    bg = int(np.abs(cen).max(axis=1).argmin())
    if np.abs(cen[bg]).max() > SAME_COLOUR:
        bg = -1
    objects = [k for k in range(len(cen)) if k != bg]
    if not objects:
        raise InputError(f"{path}: a {fmt} (lossy) mask in which no object can be told from the background; "
                         "save the mask as PNG")
    pal = _PALETTE.astype(np.float32)
    snapped = [int(np.abs(pal[1:] - cen[k]).max(axis=1).argmin()) + 1 for k in objects]
    grey = all(cen[k].max() - cen[k].min() <= FLAT_TOLERANCE for k in objects)
    if not grey and len(set(snapped)) == len(snapped) \
            and all(np.abs(pal[j] - cen[k]).max() <= SAME_COLOUR for j, k in zip(snapped, objects)):
        ids = snapped
    else:
        order = sorted(objects, key=lambda k: tuple(cen[k].tolist()))
        ids = [order.index(k) + 1 for k in objects]
    lut = np.zeros(len(cen), np.uint8)
    for k, i in zip(objects, ids):
        lut[k] = i
    log.warning(
        "%s: a %s (lossy) mask; its %d colours were snapped to the %d dominant ones (%s -> ids %s); "
        "save masks as PNG to keep them exact",
        path, fmt, len(np.unique(packed)), len(cen),
        ", ".join(str(tuple(int(v) for v in cen[k])) for k in objects), ", ".join(map(str, ids)),
    )
    return lut[nearest].reshape(rgb.shape[:2])


def _pack(rgb: np.ndarray) -> np.ndarray:
    """(H, W, 3) uint8 -> (H, W) int32 ``r << 16 | g << 8 | b``."""
    c = rgb.astype(np.int32)
    return (c[..., 0] << 16) | (c[..., 1] << 8) | c[..., 2]


def resize_mask_nearest(mask: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """NEAREST resize of an index mask to ``size`` = (W, H)."""
    return np.asarray(Image.fromarray(mask).resize(tuple(size), Image.NEAREST))


def write_indexed_png(path: str | Path, mask: np.ndarray, palette: np.ndarray | None = None) -> None:
    """Write an (H, W) uint8 index mask as a P-mode PNG with the DAVIS palette (or ``palette``, (256, 3) uint8)."""
    if mask.ndim != 2 or mask.dtype != np.uint8:
        raise ValueError(f"mask must be (H, W) uint8, got {mask.shape} {mask.dtype}")
    pal = _PALETTE if palette is None else np.asarray(palette, np.uint8)
    if pal.shape != (256, 3):
        raise ValueError(f"palette must be (256, 3), got {pal.shape}")
    im = Image.frombytes("P", (mask.shape[1], mask.shape[0]), np.ascontiguousarray(mask).tobytes())
    im.putpalette(pal.reshape(-1).tolist())
    im.save(str(path), format="PNG")
