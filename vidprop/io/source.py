"""``source.json``: where a result folder's input frames came from.

``segment`` and ``track`` write their results without the original frames;
this small record lets a reader (``vidprop view``) find them again::

    {"video": "/abs/path/clip.mp4", "kind": "video", "width": 854, "height": 480,
     "fps": 25.0, "frames": 70, "first_frame": 0, "task": "segment", "vidprop_version": "0.1.0"}

``kind`` is ``"video"`` for a video file and ``"frames"`` for a folder of
images (frame ``NAME`` of the result is the folder's image with that stem).
``first_frame`` is the video's index of the result's first frame (not 0 for a
run over ``--frames START:END``): the result's k-th frame is the video's frame
``first_frame + k``.
The path is absolute (resolved when the result was written).
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

__all__ = ["SOURCE_FILE", "write_source_record", "read_source_record"]

log = logging.getLogger(__name__)

#: Name of the record inside a result folder.
SOURCE_FILE = "source.json"


def write_source_record(folder: str | Path, info: Any, *, frames: int, task: str, first_frame: int = 0) -> Path:
    """Write ``folder/source.json`` for a result made from the video described by ``info`` (a VideoInfo)."""
    from vidprop import __version__

    path = Path(info.path).resolve()
    record = {
        "video": str(path),
        "kind": "frames" if path.is_dir() else "video",
        "width": int(info.width),
        "height": int(info.height),
        "fps": float(info.fps) if info.fps else None,
        "frames": int(frames),
        "first_frame": int(first_frame),
        "task": task,
        "vidprop_version": __version__,
    }
    out = Path(folder) / SOURCE_FILE
    out.write_text(json.dumps(record, indent=1) + "\n")
    return out


def read_source_record(folder: str | Path) -> dict[str, Any] | None:
    """The record of ``folder`` (a dict with at least ``video``), or None when absent or unreadable (logged)."""
    path = Path(folder) / SOURCE_FILE
    if not path.is_file():
        return None
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        log.warning("%s: unreadable source record (%s)", path, exc)
        return None
    if not isinstance(data, dict) or not isinstance(data.get("video"), str):
        log.warning("%s: a source record needs a \"video\" path", path)
        return None
    return data
