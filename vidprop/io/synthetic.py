"""Synthetic footage: textured objects moving over a textured background.

Used by the examples, the tests and the benchmarks (the project never ships
third-party footage).  Everything is deterministic given the seed.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

import numpy as np

__all__ = ["SyntheticScene", "write_video", "write_frame_folder", "write_davis_layout"]


def _texture(rng: np.random.Generator, h: int, w: int, base: tuple[int, int, int], scale: int) -> np.ndarray:
    import cv2

    small = rng.integers(0, 256, size=(max(2, h // scale), max(2, w // scale), 3), dtype=np.uint8)
    tex = cv2.resize(small, (w, h), interpolation=cv2.INTER_CUBIC).astype(np.float32)
    out = 0.55 * np.asarray(base, np.float32) + 0.45 * tex
    return np.clip(out, 0, 255).astype(np.uint8)


@dataclass
class SyntheticScene:
    """A scene of ``num_objects`` textured discs and boxes moving with constant velocity.

    ``object_ids`` are the mask ids of the objects (need not be consecutive).
    Frame t: objects translated by ``velocity * t`` pixels (wrapping inside
    the frame); objects later in the list are drawn on top.
    """

    width: int = 160
    height: int = 96
    num_frames: int = 12
    num_objects: int = 2
    seed: int = 0
    object_ids: tuple[int, ...] | None = None

    def __post_init__(self) -> None:
        rng = np.random.default_rng(self.seed)
        h, w = self.height, self.width
        bh, bw = 3 * h, 3 * w  # background larger than the frame: the camera pans
        self._background = _texture(rng, bh, bw, (90, 110, 90), scale=6)
        self._pan = rng.uniform(-0.6, 0.6, size=2)
        ids = self.object_ids or tuple(range(1, self.num_objects + 1))
        if len(ids) != self.num_objects:
            raise ValueError("object_ids must have num_objects entries")
        self.object_ids = tuple(ids)
        self._objects = []
        colours = [(220, 60, 50), (50, 80, 220), (230, 200, 40), (200, 60, 200), (40, 200, 200)]
        for k in range(self.num_objects):
            r = int(min(h, w) * rng.uniform(0.14, 0.22))
            tex = _texture(rng, 2 * r + 1, 2 * r + 1, colours[k % len(colours)], scale=3)
            yy, xx = np.mgrid[-r : r + 1, -r : r + 1]
            shape = (yy**2 + xx**2 <= r * r) if k % 2 == 0 else (np.abs(yy) <= r * 0.8) & (np.abs(xx) <= r)
            start = np.array([rng.uniform(r, h - r), rng.uniform(r, w - r)])
            vel = rng.uniform(-1.5, 1.5, size=2)
            self._objects.append((tex, shape, start, vel, r))

    def positions(self, t: int) -> list[tuple[float, float]]:
        """Centre (y, x) of each object at frame t."""
        return [tuple(self._center(obj, t)) for obj in self._objects]

    def _center(self, obj: tuple, t: int) -> np.ndarray:
        _, _, start, vel, r = obj
        c = start + vel * t
        lo = np.array([r, r], dtype=float)
        hi = np.array([self.height - 1 - r, self.width - 1 - r], dtype=float)
        span = hi - lo
        u = np.mod(c - lo, 2 * span)
        return lo + np.where(u > span, 2 * span - u, u)  # bounce inside the frame

    def frame(self, t: int) -> tuple[np.ndarray, np.ndarray]:
        """(H, W, 3) uint8 RGB frame and its (H, W) uint8 index mask."""
        h, w = self.height, self.width
        oy = int(round(h + self._pan[0] * t)) % (2 * h)
        ox = int(round(w + self._pan[1] * t)) % (2 * w)
        img = self._background[oy : oy + h, ox : ox + w].copy()
        mask = np.zeros((h, w), np.uint8)
        for obj, oid in zip(self._objects, self.object_ids):
            tex, shape, _, _, r = obj
            cy, cx = (int(round(v)) for v in self._center(obj, t))
            y0, x0 = cy - r, cx - r
            ys = slice(max(0, y0), min(h, y0 + 2 * r + 1))
            xs = slice(max(0, x0), min(w, x0 + 2 * r + 1))
            sub = shape[ys.start - y0 : ys.stop - y0, xs.start - x0 : xs.stop - x0]
            img[ys, xs][sub] = tex[ys.start - y0 : ys.stop - y0, xs.start - x0 : xs.stop - x0][sub]
            mask[ys, xs][sub] = oid
        return img, mask

    def frames(self) -> Iterator[tuple[np.ndarray, np.ndarray]]:
        for t in range(self.num_frames):
            yield self.frame(t)


def write_video(scene: SyntheticScene, path: str | Path, fps: float = 10, lossless: bool = False) -> Path:
    """Encode the scene as H.264 MP4 (``lossless`` uses crf 0)."""
    from vidprop.io.writers import VideoWriter

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    vw = VideoWriter(path, fps, scene.width, scene.height, crf=0 if lossless else 18)
    try:
        for img, _ in scene.frames():
            vw.write(img)
    finally:
        vw.close()
    return path


def write_frame_folder(scene: SyntheticScene, folder: str | Path, ext: str = ".png") -> Path:
    """Write frames as ``00000.png ...`` (or .jpg) into ``folder``."""
    from PIL import Image

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    for t, (img, _) in enumerate(scene.frames()):
        Image.fromarray(img).save(folder / f"{t:05d}{ext}", quality=95)
    return folder


def write_davis_layout(scenes: dict[str, SyntheticScene], root: str | Path, set: str = "val") -> Path:
    """Write ``scenes`` ({sequence name: scene}) as a DAVIS-2017 layout that ``vidprop eval davis`` runs on:
    ``ImageSets/2017/<set>.txt``, ``JPEGImages/480p/<name>/00000.jpg ...`` (the frames, at the scene's size)
    and ``Annotations/480p/<name>/00000.png ...`` (indexed PNGs of every frame, so it can be scored)."""
    from PIL import Image

    from vidprop.io.davis_layout import davis_annotations_dir, davis_frames_dir
    from vidprop.io.masks import write_indexed_png

    root = Path(root)
    (root / "ImageSets" / "2017").mkdir(parents=True, exist_ok=True)
    (root / "ImageSets" / "2017" / f"{set}.txt").write_text("".join(f"{n}\n" for n in scenes))
    for name, scene in scenes.items():
        img_dir = davis_frames_dir(root, name)
        ann_dir = davis_annotations_dir(root, name)
        img_dir.mkdir(parents=True, exist_ok=True)
        ann_dir.mkdir(parents=True, exist_ok=True)
        for t, (img, mask) in enumerate(scene.frames()):
            Image.fromarray(img).save(img_dir / f"{t:05d}.jpg", quality=95)
            write_indexed_png(ann_dir / f"{t:05d}.png", mask)
    return root
