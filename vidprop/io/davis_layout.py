"""The DAVIS-2017 folder layout, shared by the DAVIS reader, the viewer and the synthetic layouts.

``ROOT/JPEGImages/<RESOLUTION>/<sequence>/00000.jpg ...`` holds a sequence's
frames and ``ROOT/Annotations/<RESOLUTION>/<sequence>/`` its masks.  It lives
here, below both ``vidprop.eval.davis`` and ``vidprop.view``, so the viewer
finds a DAVIS result's frames without importing the benchmark.
"""

from __future__ import annotations

from pathlib import Path

__all__ = ["RESOLUTION", "davis_annotations_dir", "davis_frames_dir"]

#: The frame resolution vidprop reads from a DAVIS-2017 folder.
RESOLUTION = "480p"


def davis_frames_dir(root: Path, sequence: str) -> Path:
    """``root/JPEGImages/480p/sequence``: the frames of one DAVIS sequence."""
    return Path(root) / "JPEGImages" / RESOLUTION / sequence


def davis_annotations_dir(root: Path, sequence: str) -> Path:
    """``root/Annotations/480p/sequence``: the masks of one DAVIS sequence."""
    return Path(root) / "Annotations" / RESOLUTION / sequence
