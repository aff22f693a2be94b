"""Keypoint files: first-frame keypoints in, tracks out; JHMDB ``joint_positions.mat``.

Keypoint file format (what ``vidprop track --keypoints`` reads)
------------------------------------------------------------------
A JSON file with named points in PIXEL coordinates of the first frame
(x to the right, y down, (0, 0) = centre of the top-left pixel)::

    {
      "keypoints": {"head": [120.5, 40], "neck": [121, 62], "l_hand": [90, 130]},
      "skeleton": [["head", "neck"], ["neck", "l_hand"]]
    }

* ``keypoints``: an object ``name -> [x, y]`` (order kept), or a list of
  ``[x, y]`` (joints named ``0 .. n-1``);
* ``skeleton`` (optional): limbs drawn on the overlay, pairs of joint names
  (or of indices 0..n-1);
* a plain list ``[[x, y], ...]`` is accepted too (joints ``0 .. n-1``, no skeleton);
* ``null`` instead of ``[x, y]`` marks a joint that is absent in the first
  frame (it is reported as not visible in every frame).

A CSV file with a header holding ``joint``, ``x`` and ``y`` columns is also
read (``frame`` optional: only frame 0's rows are used), so a ``keypoints.csv``
written by ``vidprop track`` can start another run.

Tracks (what ``vidprop track`` writes)
--------------------------------------
``keypoints.json``::

    {"video": ..., "width": W, "height": H, "fps": 25.0,
     "joints": ["head", ...], "skeleton": [["head", "neck"], ...],
     "frames": [{"frame": 0, "name": "00000", "keypoints": {"head": [x, y], "neck": null}}, ...]}

``null`` is a joint that vanished (its heatmap became empty).
``keypoints.csv``: one row per frame and joint, columns
``frame, joint, x, y, visible`` (x and y empty when not visible).
"""

from __future__ import annotations

import csv
import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Sequence

import numpy as np

from vidprop.errors import InputError

__all__ = [
    "KeypointSet",
    "read_keypoints",
    "parse_keypoints",
    "write_tracks_json",
    "write_tracks_csv",
    "read_jhmdb_mat",
    "draw_keypoints",
    "joint_colours",
]


@dataclass(frozen=True)
class KeypointSet:
    """Named first-frame keypoints: ``xy`` (J, 2) float64 pixels, NaN for an absent joint."""

    names: tuple[str, ...]
    xy: np.ndarray
    #: Limbs as pairs of joint indices.
    skeleton: tuple[tuple[int, int], ...] = field(default=())

    def __post_init__(self) -> None:
        xy = np.asarray(self.xy, dtype=np.float64).reshape(-1, 2)
        object.__setattr__(self, "xy", xy)
        if len(self.names) != len(xy):
            raise ValueError(f"{len(self.names)} names for {len(xy)} points")
        for a, b in self.skeleton:
            if not (0 <= a < len(xy) and 0 <= b < len(xy)):
                raise ValueError(f"skeleton pair ({a}, {b}) refers to a joint outside 0..{len(xy) - 1}")

    def __len__(self) -> int:
        return len(self.names)

    @property
    def skeleton_names(self) -> list[list[str]]:
        return [[self.names[a], self.names[b]] for a, b in self.skeleton]


# ---------------------------------------------------------------- reading
def _point(value: Any, where: str) -> tuple[float, float]:
    if value is None:
        return (math.nan, math.nan)
    if (
        not isinstance(value, (list, tuple))
        or len(value) != 2
        or not all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in value)
    ):
        raise ValueError(f"{where}: expected [x, y] (two numbers) or null, got {json.dumps(value)[:60]}")
    x, y = float(value[0]), float(value[1])
    if not (math.isfinite(x) and math.isfinite(y)):
        raise ValueError(f"{where}: coordinates must be finite numbers, got {value}")
    return x, y


def parse_keypoints(data: Any) -> KeypointSet:
    """Build a :class:`KeypointSet` from decoded JSON (see the module docstring); ValueError names the field."""
    skeleton_raw: Any = None
    if isinstance(data, dict):
        unknown = set(data) - {"keypoints", "skeleton"}
        if unknown:
            raise ValueError(f"unknown field(s) {sorted(unknown)}; expected 'keypoints' and optional 'skeleton'")
        if "keypoints" not in data:
            raise ValueError("missing field 'keypoints'")
        points, skeleton_raw = data["keypoints"], data.get("skeleton")
        prefix = "keypoints"
    elif isinstance(data, list):
        points, prefix = data, "keypoints"
    else:
        raise ValueError(f"expected an object with 'keypoints' or a list of [x, y], got {type(data).__name__}")
    if isinstance(points, dict):
        names = [str(k) for k in points]
        xy = [_point(v, f"{prefix}[{json.dumps(k)}]") for k, v in points.items()]
    elif isinstance(points, list):
        names = [str(i) for i in range(len(points))]
        xy = [_point(v, f"{prefix}[{i}]") for i, v in enumerate(points)]
    else:
        raise ValueError(f"'keypoints' must be an object name -> [x, y] or a list of [x, y], got {type(points).__name__}")
    if not names:
        raise ValueError("'keypoints' is empty")
    index = {n: i for i, n in enumerate(names)}
    skeleton: list[tuple[int, int]] = []
    if skeleton_raw is not None:
        if not isinstance(skeleton_raw, list):
            raise ValueError(f"'skeleton' must be a list of [joint, joint] pairs, got {type(skeleton_raw).__name__}")
        for i, pair in enumerate(skeleton_raw):
            where = f"skeleton[{i}]"
            if not isinstance(pair, (list, tuple)) or len(pair) != 2:
                raise ValueError(f"{where}: expected a pair [joint, joint], got {json.dumps(pair)[:60]}")
            ends = []
            for end in pair:
                if isinstance(end, str) and end in index:
                    ends.append(index[end])
                elif isinstance(end, int) and not isinstance(end, bool) and 0 <= end < len(names):
                    ends.append(end)
                else:
                    raise ValueError(f"{where}: {json.dumps(end)} is not a joint name (or index 0..{len(names) - 1})")
            skeleton.append((ends[0], ends[1]))
    return KeypointSet(tuple(names), np.asarray(xy, dtype=np.float64), tuple(skeleton))


def _read_csv_keypoints(path: Path) -> KeypointSet:
    with open(path, newline="") as f:
        reader = csv.DictReader(f)
        cols = [c.strip() for c in (reader.fieldnames or [])]
        missing = {"joint", "x", "y"} - set(cols)
        if missing:
            raise InputError(f"{path}: line 1: the header must name the columns joint, x, y (missing {sorted(missing)})")
        reader.fieldnames = cols
        names: list[str] = []
        xy: list[tuple[float, float]] = []
        for row in reader:
            line = reader.line_num
            if "frame" in row and str(row["frame"]).strip() not in ("", "0"):
                continue
            name = (row.get("joint") or "").strip()
            if not name:
                raise InputError(f"{path}: line {line}: empty joint name")
            if name in names:
                raise InputError(f"{path}: line {line}: joint {name!r} appears twice for frame 0")
            xs, ys = (row.get("x") or "").strip(), (row.get("y") or "").strip()
            visible = (row.get("visible") or "1").strip()
            if (not xs and not ys) or visible in ("0", "false", "False"):
                x = y = math.nan
            else:
                try:
                    x, y = float(xs), float(ys)
                except ValueError:
                    raise InputError(f"{path}: line {line}: x and y must be numbers, got {xs!r}, {ys!r}") from None
                if not (math.isfinite(x) and math.isfinite(y)):
                    raise InputError(f"{path}: line {line}: x and y must be finite numbers")
            names.append(name)
            xy.append((x, y))
    if not names:
        raise InputError(f"{path}: no keypoints for frame 0")
    return KeypointSet(tuple(names), np.asarray(xy, dtype=np.float64))


def read_keypoints(path: str | Path) -> KeypointSet:
    """Read a first-frame keypoint file (.json, or .csv); :class:`InputError` names the line or field at fault."""
    path = Path(path)
    if not path.is_file():
        raise InputError(f"{path}: no such keypoint file")
    if path.suffix.lower() == ".csv":
        return _read_csv_keypoints(path)
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise InputError(f"{path}: cannot read this keypoint file ({exc})") from exc
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise InputError(f"{path}: line {exc.lineno}, column {exc.colno}: not valid JSON ({exc.msg})") from None
    try:
        return parse_keypoints(data)
    except ValueError as exc:
        raise InputError(f"{path}: {exc}") from None


# ---------------------------------------------------------------- writing
def _num(v: float) -> float:
    return round(float(v), 3)


def write_tracks_json(
    path: str | Path,
    names: Sequence[str],
    xy: np.ndarray,
    visible: np.ndarray,
    *,
    skeleton: Sequence[Sequence[str]] = (),
    frame_names: Sequence[str] | None = None,
    meta: dict[str, Any] | None = None,
    frame_indices: Sequence[int] | None = None,
) -> None:
    """Write tracks ``xy`` (T, J, 2) pixels with ``visible`` (T, J) as ``keypoints.json`` (see module doc).

    ``frame_indices``: the frames' indices in the video (default 0..T-1).
    """
    T = len(xy)
    frames = []
    for t in range(T):
        kp = {n: ([_num(xy[t, j, 0]), _num(xy[t, j, 1])] if visible[t, j] else None) for j, n in enumerate(names)}
        index = int(frame_indices[t]) if frame_indices is not None else t
        frames.append({"frame": index, "name": frame_names[t] if frame_names else f"{index:05d}", "keypoints": kp})
    doc = {**(meta or {}), "joints": list(names), "skeleton": [list(p) for p in skeleton], "frames": frames}
    Path(path).write_text(json.dumps(doc, indent=1) + "\n")


def write_tracks_csv(path: str | Path, names: Sequence[str], xy: np.ndarray, visible: np.ndarray,
                     frame_indices: Sequence[int] | None = None) -> None:
    """One row per frame and joint: ``frame, joint, x, y, visible`` (x, y empty when not visible).

    ``frame_indices``: the frames' indices in the video (default 0..T-1).
    """
    with open(path, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["frame", "joint", "x", "y", "visible"])
        for t in range(len(xy)):
            index = int(frame_indices[t]) if frame_indices is not None else t
            for j, n in enumerate(names):
                if visible[t, j]:
                    w.writerow([index, n, f"{xy[t, j, 0]:.3f}", f"{xy[t, j, 1]:.3f}", 1])
                else:
                    w.writerow([index, n, "", "", 0])


# ---------------------------------------------------------------- JHMDB
def read_jhmdb_mat(path: str | Path, num_frames: int | None = None) -> np.ndarray:
    """``joint_positions.mat`` -> (T, J, 2) float64 0-based pixel (x, y) (``pos_img`` minus 1).

    ``num_frames``: the number of frames of the video; a .mat that disagrees is an InputError.
    """
    path = Path(path)
    if not path.is_file():
        raise InputError(f"{path}: no such ground-truth file")
    from scipy.io import loadmat

    try:
        mat = loadmat(str(path))
    except Exception as exc:  # noqa: BLE001 - scipy raises several kinds
        raise InputError(f"{path}: cannot read this .mat file ({exc})") from exc
    if "pos_img" not in mat:
        keys = sorted(k for k in mat if not k.startswith("__"))
        raise InputError(f"{path}: has no 'pos_img' array (found: {', '.join(keys) or 'nothing'})")
    pos = np.asarray(mat["pos_img"])
    if pos.ndim == 2 and pos.shape[0] == 2:  # a one-frame clip loses its trailing axis in MATLAB
        pos = pos[:, :, None]
    if pos.ndim != 3 or pos.shape[0] != 2 or not np.issubdtype(pos.dtype, np.number):
        raise InputError(f"{path}: 'pos_img' must be a numeric (2, joints, frames) array, got shape {pos.shape}")
    if num_frames is not None and pos.shape[2] != num_frames:
        raise InputError(f"{path}: 'pos_img' has {pos.shape[2]} frames but the video has {num_frames}")
    return np.ascontiguousarray(pos.astype(np.float64).transpose(2, 1, 0) - 1.0)


# ---------------------------------------------------------------- drawing
def joint_colours(n: int) -> np.ndarray:
    """(n, 3) uint8 distinct RGB colours (HSV wheel, full saturation)."""
    import cv2

    hsv = np.zeros((1, max(n, 1), 3), np.uint8)
    hsv[0, :, 0] = (np.arange(max(n, 1)) * 180 / max(n, 1)).astype(np.uint8)
    hsv[0, :, 1:] = 255
    return cv2.cvtColor(hsv, cv2.COLOR_HSV2RGB)[0, :n]


def draw_keypoints(
    frame: np.ndarray,
    xy: np.ndarray,
    visible: np.ndarray,
    skeleton: Iterable[tuple[int, int]] = (),
    colours: np.ndarray | None = None,
    radius: int | None = None,
) -> np.ndarray:
    """A copy of ``frame`` (H, W, 3) RGB with the visible points and the limbs between visible joints."""
    import cv2

    out = np.ascontiguousarray(frame.copy())
    if colours is None:
        colours = joint_colours(len(xy))
    h, w = frame.shape[:2]
    r = radius or max(2, round(min(h, w) / 80))
    shift = 4  # sub-pixel drawing
    s = 1 << shift

    def pt(j: int) -> tuple[int, int]:
        return int(round(xy[j, 0] * s)), int(round(xy[j, 1] * s))

    for a, b in skeleton:
        if visible[a] and visible[b]:
            cv2.line(out, pt(a), pt(b), (255, 255, 255), max(1, r // 2), cv2.LINE_AA, shift)
    for j in range(len(xy)):
        if visible[j]:
            c = tuple(int(v) for v in colours[j])
            cv2.circle(out, pt(j), r * s, c, -1, cv2.LINE_AA, shift)
            cv2.circle(out, pt(j), r * s, (0, 0, 0), 1, cv2.LINE_AA, shift)
    return out
