"""What a batch runs: manifest files (JSONL or CSV) and folders of videos, read into validated rows.

Manifest columns (JSONL: keys of one object per line; CSV: a header line; an
empty cell or ``null`` means "not given"):

==================  =========================================================
``video``           required: a video file or a folder of frames
``name``            output sub-folder ``OUT/<name>/`` (default: as ``vidprop segment``
                    names it: the file's stem, the folder's name)
``mask``            segment: the first-frame mask image
``masks``           segment: several annotations, ``FRAME:PATH`` items (a JSON list, or
                    ``;``-separated in CSV; as ``segment --mask FRAME:PATH``) or an
                    annotations folder (as ``segment --masks DIR``)
``keypoints``       track: the first-frame keypoint file
``config``          a preset name or YAML file replacing the batch's ``--config`` for this row
settings            per-row values of the command's flags, named like them:
                    ``short_side`` (segment), ``crop`` and ``keypoint_rule`` (track),
                    ``protocol``, ``topk``, ``temperature``, ``n_last``, ``radius``,
                    ``ensemble``, ``t``, ``up_ft_index``, ``seed``, ``overlay``,
                    ``resize_mask`` (segment), ``backend``, ``frames`` ("START:END"),
                    ``max_frames`` (a part of the video, as ``--frames`` / ``--max-frames``)
==================  =========================================================

Relative paths are relative to the manifest's folder.  A row's settings
apply on top of its preset and the batch's flags.  The model, device, dtype
and batch size are the batch's (one model per worker).

Folder input (``vidprop batch FOLDER``): every video file (``.mp4``, ``.avi``,
``.mov``, ``.mkv``, ``.webm`` ...) and every sub-folder of images is a video; its
annotation lies beside it with the same name:

* segment: ``clip.png`` or ``clip_mask.png`` (first-frame mask), or a folder
  ``clip_masks/`` of per-frame annotations;
* track: ``clip.json`` or ``clip_keypoints.json`` (or ``.csv``).

A video without its annotation is an error naming it.  Every problem of a
manifest (unknown column, missing ``video``, a wrong value, two rows with the
same output name) is raised before any work, naming the line.
"""

from __future__ import annotations

import csv
import io
import json
import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Literal, Mapping, Sequence

from vidprop.errors import InputError
from vidprop.io.video import BACKENDS, IMAGE_EXTENSIONS

__all__ = [
    "TASKS",
    "VIDEO_EXTENSIONS",
    "SETTING_COLUMNS",
    "BatchRow",
    "read_manifest",
    "scan_folder",
    "read_input",
    "default_name",
    "check_names",
]

log = logging.getLogger(__name__)

Task = Literal["segment", "track"]
TASKS = ("segment", "track")

#: File extensions taken for videos in a folder input.
VIDEO_EXTENSIONS = (".mp4", ".avi", ".mov", ".mkv", ".webm", ".m4v", ".mpg", ".mpeg", ".wmv", ".flv", ".ts")

_TRUE = {"1", "true", "yes", "y", "on"}
_FALSE = {"0", "false", "no", "n", "off"}


def _int(v: Any) -> int:
    if isinstance(v, bool):
        raise ValueError("expected an integer")
    if isinstance(v, float):
        if not v.is_integer():
            raise ValueError("expected an integer")
        return int(v)
    return int(str(v).strip())


def _float(v: Any) -> float:
    if isinstance(v, bool):
        raise ValueError("expected a number")
    return float(str(v).strip()) if not isinstance(v, (int, float)) else float(v)


def _bool(v: Any) -> bool:
    if isinstance(v, bool):
        return v
    s = str(v).strip().lower()
    if s in _TRUE:
        return True
    if s in _FALSE:
        return False
    raise ValueError("expected true or false")


def _choice(*choices: str) -> Callable[[Any], str]:
    def parse(v: Any) -> str:
        s = str(v).strip()
        if s not in choices:
            raise ValueError(f"expected one of {', '.join(choices)}")
        return s

    return parse


def _frame_range(v: Any) -> str:
    """``"START:END"`` (as ``--frames``), checked here so a bad value names its line before any work."""
    from vidprop.errors import InputError
    from vidprop.io.driver import parse_frame_range

    s = _str(v)
    try:
        parse_frame_range(s)
    except InputError as exc:
        raise ValueError(str(exc).removeprefix("--frames ")) from None
    return s


def _positive_int(v: Any) -> int:
    n = _int(v)
    if n < 1:
        raise ValueError("expected an integer >= 1")
    return n


def _str(v: Any) -> str:
    if isinstance(v, (dict, list, bool)):
        raise ValueError("expected a string")
    s = str(v).strip()
    if not s:
        raise ValueError("empty")
    return s


@dataclass(frozen=True)
class _Setting:
    parse: Callable[[Any], Any]
    section: str | None  # config section it changes, None = an output option
    field: str
    task: Task | None = None  # only for this task


#: Per-row settings: column -> how it is parsed and what it changes.
SETTING_COLUMNS: dict[str, _Setting] = {
    "short_side": _Setting(_int, "frames", "short_side", "segment"),
    "crop": _Setting(_int, "frames", "size", "track"),
    "keypoint_rule": _Setting(_choice("crw", "ideal"), "propagation", "keypoint_rule", "track"),
    "protocol": _Setting(_choice("dino", "crw"), "propagation", "protocol"),
    "topk": _Setting(_int, "propagation", "topk"),
    "temperature": _Setting(_float, "propagation", "temperature"),
    "n_last": _Setting(_int, "propagation", "n_last_frames"),
    "radius": _Setting(_float, "propagation", "radius"),
    "ensemble": _Setting(_int, "extractor", "ensemble"),
    "t": _Setting(_int, "extractor", "t"),
    "up_ft_index": _Setting(_int, "extractor", "up_ft_index"),
    "seed": _Setting(_int, "extractor", "seed"),
    "overlay": _Setting(_bool, None, "overlay"),
    "resize_mask": _Setting(_bool, None, "resize_mask", "segment"),
    "backend": _Setting(_choice(*BACKENDS), None, "backend"),
    "frames": _Setting(_frame_range, None, "frames"),
    "max_frames": _Setting(_positive_int, None, "max_frames"),
}
_INPUT_COLUMNS = {"video": None, "name": None, "mask": "segment", "masks": "segment", "keypoints": "track", "config": None}
COLUMNS = tuple(_INPUT_COLUMNS) + tuple(SETTING_COLUMNS)


@dataclass(frozen=True)
class BatchRow:
    """One video of a batch, validated.

    ``where`` names the row in messages (``manifest.csv line 4``, or the video
    for a folder input).  ``masks`` holds ``FRAME:PATH`` items or one folder.
    ``settings``: column -> parsed value of the per-row settings given.
    """

    where: str
    video: Path
    name: str
    mask: Path | None = None
    masks: tuple[str, ...] | Path | None = None
    keypoints: Path | None = None
    config: str | None = None
    settings: Mapping[str, Any] = field(default_factory=dict)
    line: int | None = None

    def config_changes(self) -> dict[str, dict[str, Any]]:
        """The row's settings as config sections (``{"propagation": {"topk": 5}}``)."""
        out: dict[str, dict[str, Any]] = {}
        for col, value in self.settings.items():
            s = SETTING_COLUMNS[col]
            if s.section is None:
                continue
            out.setdefault(s.section, {})[s.field] = value
            if col == "short_side":
                out["frames"]["mode"] = "short_side"
            elif col == "crop":
                out["frames"]["mode"] = "square"
        return out

    def option(self, column: str, default: Any) -> Any:
        """An output option of the row (``overlay``, ``resize_mask``, ``backend``, ``frames``, ``max_frames``),
        else ``default``."""
        return self.settings.get(column, default)


def default_name(video: Path) -> str:
    """The output name ``vidprop segment``/``track`` give a video: a file's stem, a frame folder's name."""
    from vidprop.io.video import VideoInfo

    if video.is_dir():
        return VideoInfo(path=video, backend="folder", width=0, height=0).name
    return video.stem if video.suffix else video.name


def _check_name(name: str, where: str) -> str:
    bad = (not name or name in (".", "..") or name.startswith(".") or "/" in name or "\\" in name
           or "\0" in name or name == "batch_report.json")
    if bad:
        raise InputError(f"{where}: {name!r} cannot be an output folder name (a plain name without '/', "
                         "not starting with '.')")
    return name


def _path(value: Any, base: Path) -> Path:
    p = Path(_str(value)).expanduser()
    return p if p.is_absolute() else base / p


def _masks(value: Any, base: Path, csv_cell: bool) -> tuple[str, ...] | Path:
    """``masks``: a folder, or FRAME:PATH items (JSON list, or ';'-separated in a CSV cell)."""
    if isinstance(value, list):
        items = [_str(v) for v in value]
    else:
        text = _str(value)
        items = [s.strip() for s in text.split(";") if s.strip()] if csv_cell or ";" in text else [text]
    if not items:
        raise ValueError("empty")
    if len(items) == 1 and ":" not in items[0]:
        return _path(items[0], base)  # an annotations folder
    out = []
    for it in items:
        frame, sep, path = it.partition(":")
        if not sep or not frame.strip() or not path.strip():
            raise ValueError(f"expected FRAME:PATH items or one folder, got {it!r}")
        p = Path(path.strip()).expanduser()
        out.append(f"{frame.strip()}:{p if p.is_absolute() else base / p}")
    return tuple(out)


def _row(data: Mapping[str, Any], where: str, line: int | None, base: Path, task: Task, csv_cell: bool) -> BatchRow:
    unknown = [k for k in data if k not in COLUMNS]
    if unknown:
        raise InputError(f"{where}: unknown column {unknown[0]!r} (known: {', '.join(COLUMNS)})")
    given = {k: v for k, v in data.items() if v is not None and not (isinstance(v, str) and not v.strip())}
    for col in given:
        only = _INPUT_COLUMNS.get(col) if col in _INPUT_COLUMNS else SETTING_COLUMNS[col].task
        if only is not None and only != task:
            hint = " (use --task track)" if only == "track" else " (use --task segment)"
            raise InputError(f"{where}: column {col!r} is for {only} rows, this batch runs {task}{hint}")
    if "video" not in given:
        raise InputError(f"{where}: no 'video' given")

    def parsed(col: str, fn: Callable[[Any], Any]) -> Any:
        try:
            return fn(given[col])
        except (ValueError, TypeError) as exc:
            raise InputError(f"{where}: column {col!r}: {exc} (got {given[col]!r})") from None

    video = parsed("video", lambda v: _path(v, base))
    name = _check_name(parsed("name", _str), where) if "name" in given else default_name(video)
    settings = {col: parsed(col, SETTING_COLUMNS[col].parse) for col in given if col in SETTING_COLUMNS}
    row = BatchRow(
        where=where,
        line=line,
        video=video,
        name=name,
        mask=parsed("mask", lambda v: _path(v, base)) if "mask" in given else None,
        masks=parsed("masks", lambda v: _masks(v, base, csv_cell)) if "masks" in given else None,
        keypoints=parsed("keypoints", lambda v: _path(v, base)) if "keypoints" in given else None,
        config=parsed("config", _str) if "config" in given else None,
        settings=settings,
    )
    if row.config is not None and not Path(row.config).is_absolute() and (base / row.config).is_file():
        row = _replace(row, config=str(base / row.config))
    if task == "segment":
        if row.mask is None and row.masks is None:
            raise InputError(f"{where}: no 'mask' (or 'masks') given for the video {given['video']}")
        if row.mask is not None and row.masks is not None:
            raise InputError(f"{where}: give 'mask' or 'masks', not both")
    elif row.keypoints is None:
        raise InputError(f"{where}: no 'keypoints' given for the video {given['video']}")
    return row


def _replace(row: BatchRow, **changes: Any) -> BatchRow:
    from dataclasses import replace

    return replace(row, **changes)


def _json_lines(path: Path, text: str) -> list[tuple[int, dict[str, Any]]]:
    rows = []
    for n, raw in enumerate(text.splitlines(), start=1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        try:
            obj = json.loads(line)
        except json.JSONDecodeError as exc:
            raise InputError(f"{path}: line {n}: not valid JSON ({exc.msg})") from None
        if not isinstance(obj, dict):
            raise InputError(f"{path}: line {n}: expected a JSON object with a 'video' key, got {type(obj).__name__}")
        rows.append((n, obj))
    return rows


def _csv_lines(path: Path, text: str, delimiter: str) -> list[tuple[int, dict[str, Any]]]:
    reader = csv.reader(io.StringIO(text), delimiter=delimiter)
    header: list[str] | None = None
    rows = []
    for cells in reader:
        n = reader.line_num
        if not any(c.strip() for c in cells) or cells[0].lstrip().startswith("#"):
            continue
        if header is None:
            header = [c.strip() for c in cells]
            dup = {c for c in header if header.count(c) > 1}
            if dup:
                raise InputError(f"{path}: line {n}: column {sorted(dup)[0]!r} appears twice in the header")
            if "video" not in header:
                raise InputError(f"{path}: line {n}: the header has no 'video' column (got {', '.join(header)})")
            unknown = [c for c in header if c not in COLUMNS]
            if unknown:
                raise InputError(f"{path}: line {n}: unknown column {unknown[0]!r} (known: {', '.join(COLUMNS)})")
            continue
        if len(cells) > len(header):
            raise InputError(f"{path}: line {n}: {len(cells)} cells but the header has {len(header)} columns")
        rows.append((n, {h: c for h, c in zip(header, cells) if c.strip()}))
    return rows


def read_manifest(path: str | Path, task: Task = "segment") -> list[BatchRow]:
    """Rows of a ``.jsonl``/``.ndjson`` or ``.csv``/``.tsv`` manifest, validated (see the module doc)."""
    path = Path(path)
    if task not in TASKS:
        raise InputError(f"task must be segment or track, got {task!r}")
    if not path.is_file():
        raise InputError(f"{path}: no such manifest file")
    try:
        text = path.read_text(encoding="utf-8-sig")
    except (OSError, UnicodeDecodeError) as exc:
        raise InputError(f"{path}: cannot read the manifest ({exc})") from None
    suffix = path.suffix.lower()
    if suffix in (".jsonl", ".ndjson"):
        items, is_csv = _json_lines(path, text), False
    elif suffix in (".csv", ".tsv"):
        items, is_csv = _csv_lines(path, text, "\t" if suffix == ".tsv" else ","), True
    else:
        raise InputError(f"{path}: a manifest is a .jsonl (one JSON object per line) or a .csv file")
    base = path.resolve().parent  # absolute: workers may run in another folder or on another machine
    rows = [_row(data, f"{path}: line {n}", n, base, task, is_csv) for n, data in items]
    if not rows:
        raise InputError(f"{path}: the manifest lists no videos")
    check_names(rows)
    return rows


def check_names(rows: Sequence[BatchRow]) -> None:
    """Refuse two rows with the same output folder (case-insensitively: some file systems are)."""
    seen: dict[str, BatchRow] = {}
    for r in rows:
        key = r.name.casefold()
        if key in seen:
            first = seen[key]
            raise InputError(
                f"{r.where}: output name {r.name!r} is already used by {first.where.rsplit(': ', 1)[-1]} "
                f"({first.video}); give one of them another 'name'"
            )
        seen[key] = r


def _has_images(folder: Path) -> bool:
    return any(p.suffix.lower() in IMAGE_EXTENSIONS and p.is_file() for p in folder.iterdir())


def scan_folder(folder: str | Path, task: Task = "segment") -> list[BatchRow]:
    """Rows of a folder of videos with their annotations beside them (naming rule in the module doc)."""
    if not Path(folder).is_dir():
        raise InputError(f"{folder}: no such folder")
    folder = Path(folder).resolve()
    entries = sorted(p for p in folder.iterdir() if not p.name.startswith("."))
    names = {p.name for p in entries}
    video_stems = {p.stem for p in entries if p.is_file() and p.suffix.lower() in VIDEO_EXTENSIONS}
    video_stems |= {p.name for p in entries if p.is_dir()}
    videos: list[Path] = []
    for p in entries:
        if p.is_file() and p.suffix.lower() in VIDEO_EXTENSIONS:
            videos.append(p)
        elif p.is_dir() and not (p.name.endswith("_masks") and p.name[: -len("_masks")] in video_stems):
            if _has_images(p):
                videos.append(p)
            else:
                log.debug("%s: no images in this folder; not a video", p)
    if not videos:
        raise InputError(f"{folder}: no videos in this folder (video files {', '.join(VIDEO_EXTENSIONS[:5])} ... "
                         "or sub-folders of frames)")
    stems: dict[str, Path] = {}
    rows = []
    for v in videos:
        stem = v.stem if v.is_file() else v.name
        if stem in stems:
            raise InputError(f"{folder}: {stems[stem].name} and {v.name} would both be named {stem!r}; rename one")
        stems[stem] = v
        where = str(v)
        if task == "segment":
            found = [c for c in (f"{stem}.png", f"{stem}_mask.png") if c in names and (folder / c).is_file()]
            ann = folder / f"{stem}_masks"
            if len(found) > 1 or (found and ann.is_dir()):
                raise InputError(f"{where}: several annotations beside it ({', '.join(found + ([ann.name] if ann.is_dir() else []))}); "
                                 "keep one")
            if ann.is_dir():
                rows.append(BatchRow(where=where, video=v, name=stem, masks=ann))
            elif found:
                rows.append(BatchRow(where=where, video=v, name=stem, mask=folder / found[0]))
            else:
                raise InputError(f"{where}: no mask beside it (expected {stem}.png, {stem}_mask.png or a folder {stem}_masks/)")
        else:
            found = [c for c in (f"{stem}.json", f"{stem}_keypoints.json", f"{stem}.csv", f"{stem}_keypoints.csv")
                     if c in names and (folder / c).is_file()]
            if len(found) > 1:
                raise InputError(f"{where}: several keypoint files beside it ({', '.join(found)}); keep one")
            if not found:
                raise InputError(f"{where}: no keypoint file beside it (expected {stem}.json or {stem}_keypoints.json)")
            rows.append(BatchRow(where=where, video=v, name=stem, keypoints=folder / found[0]))
    check_names(rows)
    return rows


def read_input(source: str | Path, task: Task = "segment") -> list[BatchRow]:
    """A manifest file or a folder of videos -> validated rows."""
    source = Path(source)
    if source.is_dir():
        return scan_folder(source, task)
    return read_manifest(source, task)
