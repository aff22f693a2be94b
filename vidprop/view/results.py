"""Finding vidprop results on disk: what a folder holds and where its frames come from.

A *result* is one video's output folder:

* ``segment`` (and each sequence of ``eval davis``): indexed PNG masks named
  like the frames (``00000.png ...``), usually ``overlay.mp4`` and
  ``source.json``;
* ``track``: ``keypoints.json`` (+ ``keypoints.csv``, ``overlay.mp4``, ``source.json``).

``vidprop view FOLDER`` accepts one result, or a folder whose sub-folders
are results (``segment --out``, ``eval davis --out``; hidden folders, such
as the temporary ``.NAME.partial-*`` of a run in progress, are skipped).
Score CSVs written by ``eval davis`` (``per-sequence_results-<set>.csv``)
give each sequence's J&F.

The original frames are not in a result folder.  They are found, in this
order, from ``source.json``; from ``keypoints.json``'s ``video``; from the
DAVIS root recorded in the parent's ``config.yaml`` (``eval davis``); else
the frames of ``overlay.mp4`` stand in for them (masks already drawn).

Every path comes from the server's own listing: a name given by a client is
only ever looked up among the listed results (see :func:`resolve_inside`).
"""

from __future__ import annotations

import csv
import json
import logging
import math
import os
import threading
from collections import OrderedDict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from vidprop.errors import InputError
from vidprop.io.davis_layout import davis_frames_dir
from vidprop.io.source import read_source_record
from vidprop.view.frames import FolderFrames, FrameSource, VideoFrames

__all__ = [
    "resolve_inside",
    "result_kind",
    "read_sequence_scores",
    "read_global_scores",
    "SegmentDetail",
    "TrackDetail",
    "ResultsIndex",
]

log = logging.getLogger(__name__)

OVERLAY = "overlay.mp4"
#: PIL modes of index masks.
MASK_MODES = ("P", "L", "1", "I", "I;16")
KEYPOINTS = "keypoints.json"


# --------------------------------------------------------------------------- safe paths
def resolve_inside(root: Path, *parts: str) -> Path | None:
    """``root/parts...`` resolved (symlinks followed) if it exists and lies inside ``root``; else None.

    Each part must be one plain file or folder name: empty names, ``.``,
    ``..``, separators, NUL and absolute paths are refused.
    """
    for part in parts:
        if (not isinstance(part, str) or part in ("", ".", "..") or "/" in part or "\\" in part or "\x00" in part
                or os.path.isabs(part)):
            return None
    base = Path(root).resolve()
    try:
        real = base.joinpath(*parts).resolve(strict=True)
    except (OSError, RuntimeError):  # missing, a symlink loop ...
        return None
    if real != base and base not in real.parents:
        return None
    return real


def _files(folder: Path, suffix: str) -> list[Path]:
    """Regular files ``*suffix`` of ``folder`` (not hidden, symlinks only when they stay inside ``folder``), sorted by name."""
    out = []
    base = folder.resolve()
    with os.scandir(folder) as it:
        for e in it:
            if e.name.startswith(".") or not e.name.lower().endswith(suffix):
                continue
            p = resolve_inside(base, e.name)
            if p is not None and p.is_file():
                out.append(Path(folder) / e.name)
    return sorted(out, key=lambda p: p.name)


def result_kind(folder: Path) -> str | None:
    """"track", "segment" or None (not a result folder).

    A folder of PNGs is a segment result when they are index masks (indexed or
    greyscale); a folder of RGB PNG frames is not.
    """
    if not folder.is_dir():
        return None
    if (folder / KEYPOINTS).is_file():
        return "track"
    if (folder / OVERLAY).is_file() or (folder / "source.json").is_file():
        return "segment"
    try:
        with os.scandir(folder) as it:
            first = next((e for e in it if e.name.lower().endswith(".png") and not e.name.startswith(".") and e.is_file()),
                         None)
    except OSError:
        return None
    return "segment" if first is not None and _is_mask_png(Path(first.path)) else None


def _is_mask_png(path: Path) -> bool:
    """An index mask (indexed or greyscale PNG), not an RGB frame (reads the header only)."""
    from PIL import Image

    try:
        with Image.open(path) as im:
            return im.mode in MASK_MODES
    except Exception:  # noqa: BLE001 - unreadable: not a mask
        return False


# --------------------------------------------------------------------------- scores
def _float(text: str) -> float:
    try:
        return float(text)
    except (TypeError, ValueError):
        return math.nan


def read_sequence_scores(folder: Path) -> dict[str, dict[str, Any]]:
    """Per-sequence J, F and J&F from ``folder/per-sequence_results-<set>.csv`` files.

    The CSV has one row per object, ``<sequence>_<k>, J-Mean, F-Mean``; a
    sequence's J (F) is the mean over its objects, and its J&F the mean of
    the objects' (J + F) / 2 (the per-object J&F that the benchmark's
    global J&F averages).  Rows without numbers are ignored.
    """
    objects: dict[str, list[tuple[float, float]]] = {}
    sets: dict[str, str] = {}
    for path in sorted(Path(folder).glob("per-sequence_results-*.csv")):
        set_name = path.stem[len("per-sequence_results-"):]
        try:
            with open(path, newline="") as fh:
                rows = list(csv.reader(fh))
        except OSError as exc:
            log.warning("%s: cannot read (%s)", path, exc)
            continue
        if not rows or [c.strip() for c in rows[0][:3]] != ["Sequence", "J-Mean", "F-Mean"]:
            log.warning("%s: not a per-sequence results CSV (expected the header Sequence,J-Mean,F-Mean)", path)
            continue
        for row in rows[1:]:
            if len(row) < 3:
                continue
            seq, _, k = row[0].strip().rpartition("_")
            j, f = _float(row[1]), _float(row[2])
            if not seq or not k.isdigit() or math.isnan(j) or math.isnan(f):
                continue
            objects.setdefault(seq, []).append((j, f))
            sets[seq] = set_name
    out = {}
    for seq, vals in objects.items():
        a = np.asarray(vals, dtype=np.float64)
        out[seq] = {"j": float(a[:, 0].mean()), "f": float(a[:, 1].mean()), "jf": float(a.mean()),
                    "objects": len(vals), "set": sets[seq]}
    return out


def read_global_scores(folder: Path) -> dict[str, dict[str, float]]:
    """``{set: {"J&F-Mean": ..., "J-Mean": ..., ...}}`` from ``folder/global_results-<set>.csv`` files."""
    out = {}
    for path in sorted(Path(folder).glob("global_results-*.csv")):
        try:
            with open(path, newline="") as fh:
                rows = list(csv.reader(fh))
        except OSError:
            continue
        if len(rows) >= 2 and "J&F-Mean" in rows[0]:
            row = {k.strip(): _float(v) for k, v in zip(rows[0], rows[1])}
            out[path.stem[len("global_results-"):]] = {k: v for k, v in row.items() if not math.isnan(v)}
    return out


# --------------------------------------------------------------------------- details
@dataclass
class Source:
    """Where a result's original frames come from (or None), and what to tell the user about it."""

    frames: FrameSource | None
    label: str  # "source", "overlay" or "none"
    note: str
    #: Index in ``frames`` of the result's first frame (a video file run over ``--frames START:END``).
    offset: int = 0


@dataclass
class SegmentDetail:
    name: str
    folder: Path
    masks: list[Path]
    width: int
    height: int
    ids: list[int]
    fps: float | None
    source: Source
    record: dict[str, Any] | None = None

    def describe(self) -> dict[str, Any]:
        return {
            "name": self.name, "kind": "segment", "frames": [p.stem for p in self.masks], "width": self.width,
            "height": self.height, "ids": self.ids, "fps": self.fps, "source": self.source.label,
            "source_note": self.source.note,
        }


@dataclass
class TrackDetail:
    name: str
    folder: Path
    data: dict[str, Any]
    width: int
    height: int
    fps: float | None
    source: Source
    frames: list[str] = field(default_factory=list)

    def describe(self) -> dict[str, Any]:
        return {
            "name": self.name, "kind": "track", "frames": self.frames, "width": self.width, "height": self.height,
            "fps": self.fps, "joints": self.data["joints"], "skeleton": self.data.get("skeleton", []),
            "source": self.source.label, "source_note": self.source.note,
        }


def _mask_header(path: Path) -> tuple[int, int, list[int]]:
    from PIL import Image

    try:
        with Image.open(path) as im:
            if im.mode not in MASK_MODES:
                raise InputError(f"{path}: a {im.mode} image is not an index mask (expected an indexed P or greyscale PNG)")
            arr = np.asarray(im)
    except InputError:
        raise
    except Exception as exc:  # noqa: BLE001 - PIL raises many kinds
        raise InputError(f"{path}: cannot read this mask ({exc})") from None
    return int(arr.shape[1]), int(arr.shape[0]), [int(v) for v in np.unique(arr) if v != 0]


def _load_keypoints(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, ValueError) as exc:
        raise InputError(f"{path}: not a readable keypoints file ({exc})") from None
    if not isinstance(data, dict) or not isinstance(data.get("joints"), list) or not isinstance(data.get("frames"), list):
        raise InputError(f"{path}: expected vidprop track output with \"joints\" and \"frames\"")
    return data


def _open_source(path: Path) -> FrameSource | None:
    try:
        if path.is_dir():
            return FolderFrames.open(path)
        if path.is_file():
            return VideoFrames(path)
    except InputError as exc:
        log.warning("%s", exc)
    return None


def _find_source(folder: Path, name: str, extra: Path | None = None) -> Source:
    """The original frames of the result in ``folder`` (see the module docstring for the order)."""
    tried = []
    record = read_source_record(folder)
    candidates: list[Path] = []
    if record:
        candidates.append(Path(record["video"]))
    if extra is not None:
        candidates.append(extra)
    cfg = folder.parent / "config.yaml"
    if cfg.is_file():
        try:
            import yaml

            rec = yaml.safe_load(cfg.read_text()) or {}
            root = rec.get("root") if isinstance(rec, dict) else None
            if isinstance(root, str) and "DAVIS" in str(rec.get("benchmark", "")):
                candidates.append(davis_frames_dir(Path(root), name))
        except Exception as exc:  # noqa: BLE001 - a broken config.yaml only loses this hint
            log.debug("%s: %s", cfg, exc)
    for n, path in enumerate(candidates):
        src = _open_source(path)
        if src is not None:
            offset = int(record.get("first_frame") or 0) if record and n == 0 and path.is_file() else 0
            return Source(src, "source", f"frames of {path}" + (f" from frame {offset}" if offset else ""), offset)
        tried.append(str(path))
    missing = f" ({', '.join(tried)} not found)" if tried else ""
    overlay = folder / OVERLAY
    if overlay.is_file() and resolve_inside(folder, OVERLAY) is not None:
        return Source(VideoFrames(overlay), "overlay", f"the original frames are unknown{missing}: showing {OVERLAY}")
    return Source(None, "none", f"the original frames are unknown{missing} and there is no {OVERLAY}")


# --------------------------------------------------------------------------- the index
class ResultsIndex:
    """The results under ``root`` (one result, or a folder of them), listed afresh on each request.

    Details (mask lists, parsed keypoints, opened frame sources) are cached
    per result and rebuilt when its folder changes; at most ``max_open``
    frame sources stay open.
    """

    def __init__(self, root: str | Path, *, max_open: int = 4) -> None:
        root = Path(root)
        if not root.exists():
            raise InputError(f"{root}: no such results folder")
        if not root.is_dir():
            raise InputError(f"{root}: is a file; give a result folder (OUT/NAME) or a folder of results (OUT)")
        self.root = root.resolve()
        self.max_open = max(1, max_open)
        self._lock = threading.Lock()
        self._details: OrderedDict[str, tuple[int, Any]] = OrderedDict()
        self._single = not self._sub_results()
        if not self.scan():
            raise InputError(f"{root}: no vidprop results here (expected mask PNGs, keypoints.json or overlay.mp4 in "
                             "this folder or in its sub-folders)")

    # -------------------------------------------------------------- listing
    def _sub_results(self) -> dict[str, tuple[Path, str]]:
        out = {}
        try:
            entries = sorted(os.scandir(self.root), key=lambda e: e.name)
        except OSError:
            return out
        for e in entries:
            if e.name.startswith("."):
                continue
            p = resolve_inside(self.root, e.name)
            if p is None or p == self.root or not p.is_dir():
                continue
            kind = result_kind(p)
            if kind:
                out[e.name] = (p, kind)
        return out

    def scan(self) -> dict[str, tuple[Path, str]]:
        """name -> (folder, kind) of every result; one entry named after ``root`` when it is itself a result."""
        if self._single:
            kind = result_kind(self.root)
            return {self.root.name: (self.root, kind)} if kind else {}
        return self._sub_results()

    @property
    def single(self) -> bool:
        """True when ``root`` is one result (decided when the index is made)."""
        return self._single

    def scores_folder(self) -> Path:
        return self.root.parent if self.single else self.root

    def listing(self) -> dict[str, Any]:
        """What the results page lists: each result's name, kind, frame count and J&F (when scored)."""
        results = self.scan()
        scores = read_sequence_scores(self.scores_folder())
        videos = []
        for name, (folder, kind) in results.items():
            frames = None
            try:
                if kind == "segment":
                    frames = len(_files(folder, ".png"))
                else:
                    rec = read_source_record(folder)
                    frames = rec.get("frames") if rec else None
            except OSError:
                pass
            s = scores.get(name, {})
            videos.append({"name": name, "kind": kind, "frames": frames, "jf": s.get("jf"), "j": s.get("j"),
                           "f": s.get("f"), "objects": s.get("objects"), "set": s.get("set")})
        return {"root": self.root.name, "single": self.single, "videos": videos,
                "global": read_global_scores(self.scores_folder()) if not self.single else {}}

    # -------------------------------------------------------------- one result
    def folder_of(self, name: str) -> tuple[Path, str] | None:
        """(folder, kind) of the result called ``name``; None for anything else."""
        if not isinstance(name, str):
            return None
        if self._single:
            kind = result_kind(self.root)
            return (self.root, kind) if name == self.root.name and kind else None
        if name.startswith("."):
            return None
        folder = resolve_inside(self.root, name)
        if folder is None or folder == self.root:
            return None
        kind = result_kind(folder)
        return (folder, kind) if kind else None

    def detail(self, name: str) -> SegmentDetail | TrackDetail | None:
        """Details of the listed result ``name`` (cached until its folder changes); None when unknown."""
        found = self.folder_of(name)
        if found is None:
            return None
        folder, kind = found
        stamp = folder.stat().st_mtime_ns
        with self._lock:  # building is cheap (listings and headers; videos open lazily): one at a time, no races
            cached = self._details.get(name)
            if cached is not None and cached[0] == stamp:
                self._details.move_to_end(name)
                return cached[1]
            detail = self._build(name, folder, kind)
            old = self._details.pop(name, None)
            if old is not None and old[1].source.frames is not None:
                old[1].source.frames.close()
            self._details[name] = (stamp, detail)
            while len(self._details) > self.max_open:
                _, (_, dropped) = self._details.popitem(last=False)
                if dropped.source.frames is not None:
                    dropped.source.frames.close()
        return detail

    def _build(self, name: str, folder: Path, kind: str) -> SegmentDetail | TrackDetail:
        if kind == "track":
            data = _load_keypoints(folder / KEYPOINTS)
            video = data.get("video")
            extra = Path(video) if isinstance(video, str) and video else None
            source = _find_source(folder, name, extra)
            frames = [str(f.get("name", f"{i:05d}")) if isinstance(f, dict) else f"{i:05d}"
                      for i, f in enumerate(data["frames"])]
            w, h = int(data.get("width") or 0), int(data.get("height") or 0)
            return TrackDetail(name, folder, data, w, h, data.get("fps"), source, frames)
        masks = _files(folder, ".png")
        if not masks:
            raise InputError(f"{folder}: no mask PNGs in this result")
        w, h, ids = _mask_header(masks[0])
        record = read_source_record(folder)
        fps = record.get("fps") if record else None
        return SegmentDetail(name, folder, masks, w, h, ids, fps, _find_source(folder, name), record)

    def close(self) -> None:
        with self._lock:
            for _, d in self._details.values():
                if d.source.frames is not None:
                    d.source.frames.close()
            self._details.clear()
