"""Still images: reading with clear errors, resizing, and the match/heatmap drawings.

Coordinates are PIXEL coordinates: x to the right, y down, (0, 0) = the
top-left pixel (its centre).  Every reader raises :class:`InputError` naming
the file; nothing here knows about models.
"""

from __future__ import annotations

import colorsys
from pathlib import Path
from typing import Sequence

import numpy as np

from vidprop.errors import InputError
from vidprop.io.atomic import atomic_file

__all__ = [
    "read_image",
    "read_rgba",
    "read_image_size",
    "check_image_size",
    "parse_point",
    "parse_points",
    "check_points_inside",
    "resize_image",
    "point_colors",
    "draw_matches",
    "heatmap_overlay",
    "write_image",
]


def _open(path: str | Path, *, load: bool = True):
    """The PIL image at ``path`` (pixels decoded unless ``load=False``: the header only); InputError naming
    the file when it is missing, a folder, or not a readable image."""
    from PIL import Image, UnidentifiedImageError

    path = Path(path)
    if not path.exists():
        raise InputError(f"{path}: no such image file")
    if path.is_dir():
        raise InputError(f"{path}: is a folder, not an image file")
    try:
        im = Image.open(path)
        if load:
            im.load()
    except UnidentifiedImageError:
        raise InputError(f"{path}: not a readable image (unknown or corrupt format)") from None
    except (OSError, ValueError, SyntaxError) as exc:  # truncated files, bad headers ...
        raise InputError(f"{path}: could not read the image: {exc}") from None
    return im


def read_image(path: str | Path, *, exif_transpose: bool = True) -> np.ndarray:
    """Read an image as (H, W, 3) uint8 RGB (alpha dropped, greyscale and palettes expanded).

    ``exif_transpose`` applies the EXIF orientation (what image viewers show);
    dataset readers pass False so annotations stay in raw pixel coordinates.
    """
    from PIL import ImageOps

    im = _open(path)
    if exif_transpose:
        im = ImageOps.exif_transpose(im)
    if im.mode in ("I;16", "I;16B", "I;16L", "I"):
        arr = np.asarray(im, dtype=np.float64)
        top = max(float(arr.max()), 1.0)
        grey = np.clip(arr / top * 255.0 + 0.5, 0, 255).astype(np.uint8)
        return np.ascontiguousarray(np.repeat(grey[..., None], 3, axis=2))
    return np.array(im.convert("RGB"), dtype=np.uint8)  # writable, contiguous


def read_image_size(path: str | Path, *, exif_transpose: bool = True) -> tuple[int, int]:
    """(width, height) of an image as :func:`read_image` returns it, from its header only.

    Raises InputError (naming the file) when it is missing or not an image.
    """
    with _open(path, load=False) as im:
        w, h = im.size
        orientation = im.getexif().get(0x0112, 1) if exif_transpose else 1
    return (h, w) if orientation in (5, 6, 7, 8) else (w, h)


def _has_alpha(im) -> bool:
    return im.mode in ("RGBA", "LA", "PA", "RGBa", "La") or "transparency" in im.info


def read_rgba(path: str | Path, *, opaque: bool = False) -> np.ndarray:
    """Read an edit layer (sticker) as (H, W, 4) uint8 RGBA.

    An image without an alpha channel (or palette transparency) is an error
    unless ``opaque`` asks to treat it as fully opaque.
    """
    from PIL import ImageOps

    im = ImageOps.exif_transpose(_open(path))
    if not _has_alpha(im):
        if not opaque:
            raise InputError(
                f"{path}: the sticker has no alpha channel (mode {im.mode}); save it as a PNG with "
                "transparency, or pass --opaque to paste it as a fully opaque rectangle"
            )
        rgb = np.asarray(im.convert("RGB"), dtype=np.uint8)
        return np.concatenate([rgb, np.full(rgb.shape[:2] + (1,), 255, np.uint8)], axis=2)
    return np.array(im.convert("RGBA"), dtype=np.uint8)


def check_image_size(image: np.ndarray, path: str | Path, min_side: int) -> None:
    """InputError when either side of ``image`` is below ``min_side`` pixels."""
    h, w = image.shape[:2]
    if h < min_side or w < min_side:
        raise InputError(f"{path}: the image is {w}x{h}; at least {min_side}x{min_side} pixels are needed")


def parse_point(text: str, what: str = "point") -> tuple[float, float]:
    """``"120,80"`` -> (120.0, 80.0); InputError on anything else."""
    parts = str(text).replace(" ", "").split(",")
    try:
        if len(parts) != 2:
            raise ValueError
        x, y = float(parts[0]), float(parts[1])
    except ValueError:
        raise InputError(f"{what} {text!r} is not of the form X,Y (e.g. 120,80)") from None
    if not (np.isfinite(x) and np.isfinite(y)):
        raise InputError(f"{what} {text!r} is not finite")
    return x, y


def parse_points(texts: Sequence[str], what: str = "point") -> np.ndarray:
    """A list of ``"X,Y"`` strings -> (N, 2) float64 array."""
    pts = [parse_point(t, what) for t in texts]
    return np.asarray(pts, dtype=np.float64).reshape(-1, 2)


def check_points_inside(points: np.ndarray, width: int, height: int, path: str | Path, what: str = "point") -> None:
    """InputError naming the first point outside ``[0, width-1] x [0, height-1]``."""
    for i, (x, y) in enumerate(np.asarray(points, dtype=np.float64).reshape(-1, 2)):
        if not (0 <= x <= width - 1 and 0 <= y <= height - 1):
            raise InputError(
                f"{what} {i + 1} ({x:g},{y:g}) is outside {path} ({width}x{height}; "
                f"x must be in [0, {width - 1}], y in [0, {height - 1}])"
            )


def resize_image(image: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """Resize an (H, W, 3) uint8 image to ``size`` = (W, H) with PIL bicubic
    (PIL's default filter, antialiased when shrinking; what the DIFT code used)."""
    from PIL import Image

    if (image.shape[1], image.shape[0]) == tuple(size):
        return image
    return np.array(Image.fromarray(image).resize(tuple(int(s) for s in size), Image.BICUBIC))


def point_colors(n: int) -> list[tuple[int, int, int]]:
    """``n`` well separated saturated RGB colours (golden-ratio hues)."""
    out = []
    for i in range(n):
        r, g, b = colorsys.hsv_to_rgb((0.61803398875 * i) % 1.0, 0.85, 1.0)
        out.append((int(255 * r), int(255 * g), int(255 * b)))
    return out


def _canvas(src: np.ndarray, tgt: np.ndarray, gap: int) -> tuple[np.ndarray, int]:
    h = max(src.shape[0], tgt.shape[0])
    w = src.shape[1] + gap + tgt.shape[1]
    canvas = np.full((h, w, 3), 255, np.uint8)
    canvas[: src.shape[0], : src.shape[1]] = src[..., :3]
    off = src.shape[1] + gap
    canvas[: tgt.shape[0], off : off + tgt.shape[1]] = tgt[..., :3]
    return canvas, off


def draw_matches(
    src: np.ndarray,
    tgt: np.ndarray,
    src_points: np.ndarray,
    tgt_points: np.ndarray,
    *,
    inliers: np.ndarray | None = None,
    numbers: bool = True,
    gap: int = 10,
    max_lines: int = 300,
) -> np.ndarray:
    """Side-by-side picture: source left, target right, numbered points joined by lines.

    ``inliers`` (bool per match) draws outliers thin and grey.  With many
    matches (geometric mode) only ``max_lines`` evenly chosen ones are drawn
    and the numbers are left out.
    """
    import cv2

    canvas, off = _canvas(src, tgt, gap)
    src_points = np.asarray(src_points, dtype=np.float64).reshape(-1, 2)
    tgt_points = np.asarray(tgt_points, dtype=np.float64).reshape(-1, 2)
    n = len(src_points)
    keep = np.arange(n)
    if n > max_lines:
        keep = np.linspace(0, n - 1, max_lines).round().astype(int)
        numbers = False
    scale = max(canvas.shape[:2]) / 600.0
    radius = max(3, int(round(4 * scale)))
    thick = max(1, int(round(1.5 * scale)))
    font = 0.45 * max(scale, 0.8)
    colors = point_colors(n)
    for i in keep:
        a = (int(round(src_points[i, 0])), int(round(src_points[i, 1])))
        b = (int(round(tgt_points[i, 0])) + off, int(round(tgt_points[i, 1])))
        outlier = inliers is not None and not bool(inliers[i])
        color = (160, 160, 160) if outlier else colors[i]
        cv2.line(canvas, a, b, color, 1 if outlier else thick, cv2.LINE_AA)
        for p in (a, b):
            cv2.circle(canvas, p, radius, (0, 0, 0), -1, cv2.LINE_AA)
            cv2.circle(canvas, p, max(radius - 1, 1), color, -1, cv2.LINE_AA)
            if numbers:
                label = str(i + 1)
                org = (p[0] + radius + 1, p[1] - radius - 1)
                cv2.putText(canvas, label, org, cv2.FONT_HERSHEY_SIMPLEX, font, (0, 0, 0), thick + 2, cv2.LINE_AA)
                cv2.putText(canvas, label, org, cv2.FONT_HERSHEY_SIMPLEX, font, (255, 255, 255), thick, cv2.LINE_AA)
    return canvas


def heatmap_overlay(image: np.ndarray, heat: np.ndarray, *, alpha: float = 0.55,
                    peak: tuple[float, float] | None = None) -> np.ndarray:
    """Blend a (H, W) map (any range; min-max normalised) over ``image`` with the JET colour map."""
    import cv2

    heat = np.asarray(heat, dtype=np.float32)
    if heat.shape != image.shape[:2]:
        heat = cv2.resize(heat, (image.shape[1], image.shape[0]), interpolation=cv2.INTER_LINEAR)
    lo, hi = float(heat.min()), float(heat.max())
    norm = (heat - lo) / (hi - lo) if hi > lo else np.zeros_like(heat)
    colored = cv2.applyColorMap((norm * 255).astype(np.uint8), cv2.COLORMAP_JET)[..., ::-1]
    out = (image[..., :3].astype(np.float32) * (1 - alpha) + colored.astype(np.float32) * alpha)
    out = np.clip(out + 0.5, 0, 255).astype(np.uint8)
    if peak is not None:
        p = (int(round(peak[0])), int(round(peak[1])))
        r = max(4, int(round(max(image.shape[:2]) / 80)))
        cv2.drawMarker(out, p, (255, 255, 255), cv2.MARKER_CROSS, 2 * r, 3, cv2.LINE_AA)
        cv2.drawMarker(out, p, (0, 0, 0), cv2.MARKER_CROSS, 2 * r, 1, cv2.LINE_AA)
    return out


def write_image(path: str | Path, image: np.ndarray, *, overwrite: bool = True) -> Path:
    """Write an (H, W, 3|4) uint8 image atomically (format from the extension)."""
    from PIL import Image

    path = Path(path)
    if path.suffix.lower() not in (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp", ".ppm"):
        raise InputError(f"{path}: unsupported output image extension {path.suffix!r}; use .png or .jpg")
    img = Image.fromarray(np.ascontiguousarray(image))
    if path.suffix.lower() in (".jpg", ".jpeg") and img.mode == "RGBA":
        img = img.convert("RGB")
    with atomic_file(path, overwrite=overwrite) as tmp:
        img.save(tmp, quality=95) if path.suffix.lower() in (".jpg", ".jpeg") else img.save(tmp)
    return path
