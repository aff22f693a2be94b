"""``cvat-video``: CVAT for video 1.1 XML, one track per object with a mask shape per frame.

Written (``cvat-video.xml``): ``<meta><task>`` with the video's name, frame
count, ``start_frame`` / ``stop_frame`` (the run's first and last video
frame), the labels (name, ``#rrggbb`` colour, type ``mask``) and the original
size; then one ``<track id="ID-1" label=NAME source="auto">`` per object id
ID, holding for every frame where the object is present a
``<mask frame=F keyframe="1" outside="0" rle=... left top width height>``
(``F`` counts from the task's first frame; ``rle`` is CVAT's: comma-separated
run lengths over the object's bounding box, row by row, starting with a run
of background), and an ``outside="1"`` shape where it leaves the video.  CVAT
imports the file as tracks to correct.

Read back (``--masks FILE.xml``): every frame where some track has a
keyframe, not outside, is an annotation holding those tracks' masks; the
object id of track T is T+1 (vidprop writes the id minus one; CVAT numbers
the tracks of its exports 0, 1, ... in order); label names and colours
become the run's labels.
"""

from __future__ import annotations

import xml.etree.ElementTree as ET
from dataclasses import dataclass
from pathlib import Path
from xml.sax.saxutils import escape, quoteattr

import numpy as np

from vidprop.errors import InputError
from vidprop.io.formats import ExportContext, FormatWriter
from vidprop.io.formats.labels import LabelMap

__all__ = ["CvatVideoWriter", "CvatVideo", "read_cvat_video", "CVAT_FILE", "cvat_rle", "cvat_unrle"]

CVAT_FILE = "cvat-video.xml"


def cvat_rle(binary: np.ndarray) -> tuple[list[int], tuple[int, int, int, int]]:
    """(H, W) bool (not empty) -> (run lengths over its bbox row by row, starting with background; (left, top, w, h))."""
    ys, xs = np.nonzero(binary)
    top, left = int(ys.min()), int(xs.min())
    h, w = int(ys.max()) - top + 1, int(xs.max()) - left + 1
    flat = binary[top : top + h, left : left + w].reshape(-1).astype(np.int8)
    change = np.flatnonzero(np.diff(flat)) + 1
    bounds = np.concatenate([[0], change, [flat.size]])
    runs = np.diff(bounds).tolist()
    if flat[0]:
        runs = [0, *runs]
    return [int(r) for r in runs], (left, top, w, h)


def cvat_unrle(runs: list[int], box: tuple[int, int, int, int], size: tuple[int, int]) -> np.ndarray:
    """Inverse of :func:`cvat_rle` into an (H, W) bool of ``size`` = (W, H)."""
    left, top, w, h = box
    if sum(runs) != w * h:
        raise ValueError(f"the run lengths add up to {sum(runs)}, the box holds {w * h} pixels")
    flat = np.repeat(np.arange(len(runs)) % 2, runs).astype(bool)
    out = np.zeros((size[1], size[0]), bool)
    out[top : top + h, left : left + w] = flat.reshape(h, w)
    return out


class CvatVideoWriter(FormatWriter):
    """One track per object id; only run lengths and boxes are kept until :meth:`finish`."""

    fmt = "cvat-video"

    def __init__(self, ctx: ExportContext) -> None:
        super().__init__(ctx)
        self.frames: list[int] = []  # video indices, in order
        #: id -> [(position, runs, box)]
        self.tracks: dict[int, list[tuple[int, list[int], tuple[int, int, int, int]]]] = {}

    def add(self, index: int, name: str, mask: np.ndarray) -> None:
        self.check(mask)
        pos = len(self.frames)
        self.frames.append(int(index))
        for oid in (int(v) for v in np.unique(mask) if v != 0):
            runs, box = cvat_rle(mask == oid)
            self.tracks.setdefault(oid, []).append((pos, runs, box))

    def text(self) -> str:
        ctx, labels = self.ctx, self.ctx.labels
        start = self.frames[0] if self.frames else 0
        stop = self.frames[-1] if self.frames else 0
        lines = ['<?xml version="1.0" encoding="utf-8"?>', "<annotations>", "  <version>1.1</version>",
                 "  <meta>", "    <task>", f"      <name>{escape(ctx.video)}</name>",
                 f"      <size>{len(self.frames)}</size>", "      <mode>interpolation</mode>",
                 "      <overlap>0</overlap>", f"      <start_frame>{start}</start_frame>",
                 f"      <stop_frame>{stop}</stop_frame>", "      <labels>"]
        seen: set[str] = set()
        for oid in sorted(self.tracks):
            name = labels.name(oid)
            if name in seen:
                continue
            seen.add(name)
            r, g, b = labels.colour(oid)
            lines += ["        <label>", f"          <name>{escape(name)}</name>",
                      f"          <color>#{r:02x}{g:02x}{b:02x}</color>", "          <type>mask</type>",
                      "          <attributes>", "          </attributes>", "        </label>"]
        lines += ["      </labels>", "      <original_size>", f"        <width>{ctx.width}</width>",
                  f"        <height>{ctx.height}</height>", "      </original_size>", "    </task>", "  </meta>"]
        for oid in sorted(self.tracks):
            lines.append(f'  <track id="{oid - 1}" label={quoteattr(labels.name(oid))} source="auto">')
            shapes = self.tracks[oid]
            for n, (pos, runs, box) in enumerate(shapes):
                lines.append(_mask_line(pos, runs, box, outside=False))
                gone = pos + 1
                if gone < len(self.frames) and (n + 1 == len(shapes) or shapes[n + 1][0] != gone):
                    lines.append(_mask_line(gone, runs, box, outside=True))  # it leaves the video here
            lines.append("  </track>")
        lines.append("</annotations>")
        return "\n".join(lines) + "\n"

    def finish(self) -> Path:
        path = self.ctx.root / CVAT_FILE
        path.write_text(self.text())
        return path


def _mask_line(frame: int, runs: list[int], box: tuple[int, int, int, int], *, outside: bool) -> str:
    left, top, w, h = box
    return (f'    <mask frame="{frame}" keyframe="1" outside="{int(outside)}" occluded="0" '
            f'rle="{", ".join(map(str, runs))}" left="{left}" top="{top}" width="{w}" height="{h}" '
            f'z_order="0">\n    </mask>')


@dataclass
class CvatVideo:
    """A CVAT-for-video file read back: annotations by video frame index, labels, size."""

    masks: dict[int, np.ndarray]
    labels: LabelMap
    size: tuple[int, int]  # (W, H)
    name: str
    #: the task's frames: video indices start .. start + count - 1
    start: int = 0
    count: int = 0


def _int(el: ET.Element, key: str, path: Path) -> int:
    try:
        return int(float(el.attrib[key]))
    except (KeyError, ValueError) as exc:
        raise InputError(f"{path}: a <{el.tag}> has no integer {key!r}") from exc


def read_cvat_video(path: str | Path) -> CvatVideo:
    """Read a CVAT for video 1.1 XML (mask tracks) -> :class:`CvatVideo`; InputError naming the file."""
    path = Path(path)
    try:
        root = ET.parse(path).getroot()
    except (OSError, ET.ParseError) as exc:
        raise InputError(f"{path}: not a readable CVAT XML file ({exc})") from exc
    if root.tag != "annotations":
        raise InputError(f"{path}: not a CVAT XML file (its root is <{root.tag}>, expected <annotations>)")
    task = next((t for t in (root.find("meta/task"), root.find("meta/job")) if t is not None), None)
    size_el = root.find(".//original_size")
    if size_el is None:
        raise InputError(f"{path}: no <original_size> in <meta>: is it a CVAT for video export?")
    w, h = int(size_el.findtext("width", "0")), int(size_el.findtext("height", "0"))
    start = int((task.findtext("start_frame") if task is not None else None) or 0)
    count = int((task.findtext("size") if task is not None else None) or 0)
    name = (task.findtext("name") if task is not None else None) or path.stem
    colours: dict[str, tuple[int, int, int]] = {}
    for lab in root.iter("label"):
        text = (lab.findtext("color") or "").lstrip("#")
        if lab.findtext("name") and len(text) == 6:
            colours[lab.findtext("name")] = (int(text[:2], 16), int(text[2:4], 16), int(text[4:], 16))
    masks: dict[int, np.ndarray] = {}
    names: dict[int, str] = {}
    cols: dict[int, tuple[int, int, int]] = {}
    tracks = root.findall("track")
    if not any(t.find("mask") is not None for t in tracks):
        raise InputError(f"{path}: no track with mask shapes (CVAT for video, masks)")
    for track in tracks:
        oid = _int(track, "id", path) + 1
        if not 1 <= oid <= 255:
            raise InputError(f"{path}: track {oid - 1} gives object id {oid}; ids must be 1..255")
        label = track.attrib.get("label", "")
        names[oid] = label
        if label in colours:
            cols[oid] = colours[label]
        for shape in track.findall("mask"):
            if shape.attrib.get("keyframe", "1") != "1" or shape.attrib.get("outside", "0") == "1":
                continue
            frame = start + _int(shape, "frame", path)
            try:
                runs = [int(float(v)) for v in shape.attrib["rle"].split(",") if v.strip()]
                box = tuple(_int(shape, k, path) for k in ("left", "top", "width", "height"))
                binary = cvat_unrle(runs, box, (w, h))  # type: ignore[arg-type]
            except (KeyError, ValueError) as exc:
                raise InputError(f"{path}: track {oid - 1}, frame {frame}: a bad mask ({exc})") from exc
            m = masks.setdefault(frame, np.zeros((h, w), np.uint8))
            m[binary] = oid
    return CvatVideo(masks=dict(sorted(masks.items())), labels=LabelMap(names, cols), size=(w, h), name=name,
                     start=start, count=count or (max(masks) - start + 1 if masks else 0))
