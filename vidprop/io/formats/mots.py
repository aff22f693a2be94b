"""``mots``: the MOTS (KITTI MOTS / MOTSChallenge) txt and PNG formats.

Written under ``mots/``:

* ``instances_txt/NAME.txt``: one line per object and frame,
  ``frame obj_id class_id height width rle`` with ``obj_id = class_id * 1000
  + id`` and ``rle`` the COCO RLE string (pycocotools, column-major), as the
  MOTS tools read it;
* ``instances/NAME/<frame:06d>.png``: one 16-bit greyscale PNG per frame,
  pixel = ``obj_id`` (0 background);
* ``labels.txt``: the class names, line k = class k (line 0 ``background``).

``frame`` is the video frame index.  Class ids: MOTS knows classes, not
object names; when every object's label is ``car`` or ``pedestrian`` the KITTI
ids are used (1, 2), otherwise each distinct label name is a class, 1, 2, ...
in the labels' id order; objects without a name are the class ``object``.

Read back (``--masks`` a MOTS folder or txt file, :func:`read_mots`): the
object id is ``obj_id % 1000`` (class 10, "ignore", is skipped); each frame
holding objects is an annotation; names come from ``labels.txt`` when present.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

from vidprop.errors import InputError
from vidprop.io.formats import ExportContext, FormatWriter
from vidprop.io.formats.coco import rle_of
from vidprop.io.formats.labels import LabelMap

__all__ = ["MotsWriter", "Mots", "read_mots", "MOTS_DIR", "KITTI_CLASSES"]

MOTS_DIR = "mots"
KITTI_CLASSES = {"car": 1, "pedestrian": 2}
IGNORE_CLASS = 10


#: The class of objects that have no name in the labels.
UNNAMED = "object"


def class_table(labels: LabelMap) -> dict[str, int]:
    """label name -> MOTS class id (see the module docstring); unnamed objects are class ``UNNAMED``."""
    names = [labels.names[i] for i in sorted(labels.names)]
    if names and all(n in KITTI_CLASSES for n in names):
        table = dict(KITTI_CLASSES)
    else:
        table = {}
        for n in names:
            table.setdefault(n, len(table) + 1)
    table.setdefault(UNNAMED, max(table.values(), default=0) + 1)
    if max(table.values()) > 65:
        raise InputError(f"MOTS holds at most 65 classes (obj_id = class * 1000 + id in 16 bits); the labels name "
                         f"{len(table)}")
    return table


class MotsWriter(FormatWriter):
    """Frames are written as they come (PNG) and as txt lines; classes are fixed from the labels."""

    fmt = "mots"

    def __init__(self, ctx: ExportContext) -> None:
        super().__init__(ctx)
        self.root = ctx.root / MOTS_DIR
        self.png_dir = self.root / "instances" / ctx.video
        self.png_dir.mkdir(parents=True, exist_ok=True)
        (self.root / "instances_txt").mkdir(parents=True, exist_ok=True)
        self.lines: list[str] = []
        self.table = class_table(ctx.labels)
        self.names = {c: n for n, c in self.table.items()}

    def _class(self, oid: int) -> int:
        return self.table[self.ctx.labels.names.get(oid, UNNAMED)]

    def add(self, index: int, name: str, mask: np.ndarray) -> None:
        self.check(mask)
        out = np.zeros(mask.shape, np.uint16)
        for oid in (int(v) for v in np.unique(mask) if v != 0):
            obj = self._class(oid) * 1000 + oid
            out[mask == oid] = obj
            rle, _, _ = rle_of(mask == oid)
            self.lines.append(f"{int(index)} {obj} {self._class(oid)} {mask.shape[0]} {mask.shape[1]} {rle['counts']}")
        Image.fromarray(out).save(self.png_dir / f"{int(index):06d}.png")

    def finish(self) -> Path:
        (self.root / "instances_txt" / f"{self.ctx.video}.txt").write_text("".join(f"{x}\n" for x in self.lines))
        top = max(self.names, default=0)
        (self.root / "labels.txt").write_text(
            "background\n" + "".join(f"{self.names.get(k, f'class {k}')}\n" for k in range(1, top + 1)))
        return self.root


@dataclass
class Mots:
    """A MOTS sequence read back: annotations by frame index and the class names of its objects."""

    masks: dict[int, np.ndarray]
    labels: LabelMap


def _class_names(folder: Path) -> dict[int, str]:
    for p in (folder / "labels.txt", folder.parent / "labels.txt", folder.parent.parent / "labels.txt"):
        if p.is_file():
            lines = [x.strip() for x in p.read_text().splitlines() if x.strip()]
            return {k: n for k, n in enumerate(lines) if k > 0}
    return {}


def _put(masks: dict[int, np.ndarray], frame: int, obj: int, binary: np.ndarray, where: str) -> int | None:
    cls, oid = divmod(int(obj), 1000)
    if cls == IGNORE_CLASS or oid == 0:
        return None
    if not 1 <= oid <= 255:
        raise InputError(f"{where}: object {obj} has instance id {oid}; vidprop reads ids 1..255")
    m = masks.setdefault(frame, np.zeros(binary.shape, np.uint8))
    m[binary] = oid
    return cls


def _read_txt(path: Path) -> tuple[dict[int, np.ndarray], dict[int, int]]:
    from pycocotools import mask as mask_util

    masks: dict[int, np.ndarray] = {}
    classes: dict[int, int] = {}
    for n, line in enumerate(path.read_text().splitlines(), start=1):
        parts = line.split()
        if not parts:
            continue
        if len(parts) != 6:
            raise InputError(f"{path}:{n}: a MOTS line is 'frame obj_id class_id height width rle'")
        try:
            frame, obj, _, h, w = (int(v) for v in parts[:5])
            binary = mask_util.decode({"size": [h, w], "counts": parts[5].encode()}).astype(bool)
        except Exception as exc:  # noqa: BLE001 - int() / pycocotools errors
            raise InputError(f"{path}:{n}: not a MOTS line ({exc})") from exc
        cls = _put(masks, frame, obj, binary, f"{path}:{n}")
        if cls is not None:
            classes[obj % 1000] = cls
    return masks, classes


def _read_pngs(folder: Path, files: list[Path]) -> tuple[dict[int, np.ndarray], dict[int, int]]:
    masks: dict[int, np.ndarray] = {}
    classes: dict[int, int] = {}
    for f in files:
        arr = np.asarray(Image.open(f)).astype(np.int64)
        for obj in (int(v) for v in np.unique(arr) if v != 0):
            cls = _put(masks, int(f.stem), obj, arr == obj, str(f))
            if cls is not None:
                classes[obj % 1000] = cls
    return masks, classes


def _png_files(folder: Path) -> list[Path]:
    return sorted(p for p in folder.glob("*.png") if p.stem.isdigit())


def is_mots(path: str | Path, video: str | None = None) -> bool:
    """Whether ``path`` looks like MOTS: a .txt file, a folder with ``instances_txt/`` or 16-bit instance PNGs."""
    path = Path(path)
    if path.is_file():
        return path.suffix.lower() == ".txt"
    if (path / "instances_txt").is_dir() or (path / "instances").is_dir():
        return True
    files = _png_files(path) if path.is_dir() else []
    if not files:
        return False
    with Image.open(files[0]) as im:
        return im.mode in ("I", "I;16", "I;16B", "I;16L")


def read_mots(path: str | Path, video: str | None = None) -> Mots:
    """A MOTS txt file, a MOTS folder (``instances_txt/`` or ``instances/``, the sequence ``video``) or a folder
    of 16-bit instance PNGs -> :class:`Mots`; InputError naming the file."""
    path = Path(path)
    if path.is_file():
        masks, classes = _read_txt(path)
        names = _class_names(path.parent)
    elif (path / "instances_txt").is_dir():
        txts = sorted((path / "instances_txt").glob("*.txt"))
        pick = [t for t in txts if video is not None and t.stem == video] or (txts if len(txts) == 1 else [])
        if not pick:
            raise InputError(f"{path}: instances_txt/ holds {len(txts)} sequences; none is named {video!r}")
        masks, classes = _read_txt(pick[0])
        names = _class_names(path / "instances_txt")
    else:
        folder = path
        if (path / "instances").is_dir():
            seqs = sorted(p for p in (path / "instances").iterdir() if p.is_dir())
            pick = [s for s in seqs if video is not None and s.name == video] or (seqs if len(seqs) == 1 else [])
            if not pick:
                raise InputError(f"{path}: instances/ holds {len(seqs)} sequences; none is named {video!r}")
            folder = pick[0]
        files = _png_files(folder)
        if not files:
            raise InputError(f"{folder}: no MOTS instance PNG (<frame>.png, 16-bit) here")
        masks, classes = _read_pngs(folder, files)
        names = _class_names(folder)
    if not masks:
        raise InputError(f"{path}: no object in this MOTS annotation")
    labels = LabelMap({oid: names[c] for oid, c in classes.items() if names.get(c, UNNAMED) != UNNAMED})
    return Mots(masks=dict(sorted(masks.items())), labels=labels)
