"""Feature files: save a feature tensor with the settings that made it, read both back.

Three formats, chosen by the file's extension (see ``docs/extract.md``):

* ``.pt`` -- exactly what DIFT's ``extract_dift.py`` writes: ``torch.save`` of a
  CPU tensor (a still image's ``(C, h, w)`` map), so ``torch.load(path)``
  gives the tensor.  The settings go in a sidecar JSON file beside it
  (``name.pt`` -> ``name.json``).
* ``.safetensors`` -- one tensor under the key ``"features"``; the settings
  are a JSON string under the metadata key ``"vidprop"``.
* ``.npz`` -- the array ``features`` and a 0-d string array ``vidprop``
  holding the settings as JSON (readable with ``allow_pickle=False``).

A video is a folder of chunk files (``(N, C, h, w)`` each, ``.safetensors`` or
``.npz``) and an ``index.json`` listing every frame's file and position.

    >>> feats, meta = load_features("out/cat.pt")         # (C, h, w), {"t": 261, ...}
    >>> video = open_video_features("out/clip")            # index.json inside
    >>> f5 = video.frame(5)                                 # (C, h, w), one chunk read

Files are written under a temporary name and renamed when complete
(:func:`vidprop.io.atomic.atomic_file`); a failed write (a full disk ...)
removes the partial file and raises :class:`~vidprop.errors.WriteError`.
"""

from __future__ import annotations

import errno
import json
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any, Callable, Iterator, Literal, Mapping, Sequence

import numpy as np
import torch

from vidprop.errors import InputError, WriteError
from vidprop.io.atomic import atomic_file

__all__ = [
    "FORMATS",
    "FEATURES_KEY",
    "META_KEY",
    "INDEX_NAME",
    "format_of",
    "sidecar_path",
    "save_features",
    "load_features",
    "read_meta",
    "inspect_file",
    "differences",
    "FileStatus",
    "VideoFeatures",
    "open_video_features",
    "write_index",
    "chunk_files",
    "remove_feature_file",
]

log = logging.getLogger(__name__)

Format = Literal["pt", "safetensors", "npz"]
FORMATS: tuple[str, ...] = ("pt", "safetensors", "npz")
_SUFFIX = {".pt": "pt", ".safetensors": "safetensors", ".npz": "npz"}
#: Name of the tensor inside .safetensors / .npz files.
FEATURES_KEY = "features"
#: Name of the settings entry (safetensors metadata key, npz array name).
META_KEY = "vidprop"
#: The file listing a video's frames and chunks.
INDEX_NAME = "index.json"
_SAVE_DTYPES = {"float32": torch.float32, "float16": torch.float16}


def format_of(path: str | Path) -> str:
    """"pt", "safetensors" or "npz" from the file's extension; InputError otherwise."""
    fmt = _SUFFIX.get(Path(path).suffix.lower())
    if fmt is None:
        raise InputError(f"{path}: not a feature file (expected a .pt, .safetensors or .npz extension)")
    return fmt


def sidecar_path(path: str | Path) -> Path:
    """The settings file of a ``.pt`` feature file: ``name.pt`` -> ``name.json``."""
    return Path(path).with_suffix(".json")


# --------------------------------------------------------------------------- writing
def _write_pt(fh: IO[bytes], tensor: torch.Tensor, meta_json: str) -> None:
    torch.save(tensor, fh)


_SAFETENSORS_DTYPES = {torch.float32: "F32", torch.float16: "F16"}


def _write_safetensors(fh: IO[bytes], tensor: torch.Tensor, meta_json: str) -> None:
    """The safetensors layout, streamed from the tensor's memory (no serialised copy of it).

    An 8-byte little-endian header length, the JSON header (the tensor's dtype,
    shape and byte range; string metadata), padded with spaces to a multiple
    of 8 bytes, then the raw little-endian data.
    """
    data = tensor.numpy()  # shares memory; contiguous (save_features makes it so)
    header = {
        FEATURES_KEY: {"dtype": _SAFETENSORS_DTYPES[tensor.dtype], "shape": list(tensor.shape),
                       "data_offsets": [0, int(data.nbytes)]},
        "__metadata__": {META_KEY: meta_json},
    }
    text = json.dumps(header, separators=(",", ":")).encode()
    text += b" " * (-len(text) % 8)
    fh.write(len(text).to_bytes(8, "little"))
    fh.write(text)
    fh.write(memoryview(data.reshape(-1).view(np.uint8)))


def _write_npz(fh: IO[bytes], tensor: torch.Tensor, meta_json: str) -> None:
    np.savez(fh, **{FEATURES_KEY: tensor.numpy(), META_KEY: np.array(meta_json)})


_WRITERS: dict[str, Callable[[IO[bytes], torch.Tensor, str], None]] = {
    "pt": _write_pt,
    "safetensors": _write_safetensors,
    "npz": _write_npz,
}


def _write_error(path: Path, exc: OSError) -> WriteError:
    if exc.errno in (errno.ENOSPC, errno.EDQUOT):
        return WriteError(
            f"{path}: could not write the features: no space left on device (the partial file was removed); "
            "free some space or choose another --out, then run the same command again to resume"
        )
    return WriteError(f"{path}: could not write the features: {exc.strerror or exc}")


def _atomic_write(path: Path, write: Callable[[IO[bytes]], None]) -> None:
    """Write through ``write(fh)`` into a temporary file renamed to ``path``; OSError -> WriteError."""
    try:
        with atomic_file(path) as tmp, open(tmp, "wb") as fh:
            write(fh)
    except OSError as exc:
        raise _write_error(path, exc) from exc
    except WriteError as exc:  # a full disk, said for the features (atomic_file removed the partial file)
        if isinstance(exc.__cause__, OSError):
            raise _write_error(path, exc.__cause__) from exc.__cause__
        raise


def save_features(path: str | Path, features: torch.Tensor, meta: Mapping[str, Any]) -> Path:
    """Write ``features`` and the settings ``meta`` (JSON-able values) to ``path``; return ``path``.

    The format follows the extension.  The tensor is saved as given (moved
    to the CPU, contiguous, not sharing a larger storage), so its dtype is the
    file's; ``meta`` gains ``shape`` and ``save_dtype``.  An existing file is
    replaced (the caller decides whether that is allowed).
    """
    path = Path(path)
    fmt = format_of(path)
    if not isinstance(features, torch.Tensor):
        raise TypeError(f"features must be a torch.Tensor, got {type(features).__name__}")
    if features.dtype not in _SAVE_DTYPES.values():
        raise ValueError(f"features must be float32 or float16 to be saved, got {features.dtype}")
    tensor = features.detach().to("cpu")
    if not tensor.is_contiguous() or tensor.storage_offset() or tensor.untyped_storage().nbytes() != tensor.numel() * tensor.element_size():
        tensor = tensor.clone(memory_format=torch.contiguous_format)  # saves only its own values
    record = {**meta, "shape": list(tensor.shape), "save_dtype": str(tensor.dtype).replace("torch.", "")}
    meta_json = json.dumps(record, sort_keys=True)
    writer = _WRITERS[fmt]
    if fmt == "pt":
        side = sidecar_path(path)
        # Settings first: a sidecar without its tensor is an unfinished file that
        # a re-run redoes; a tensor without a sidecar could be anyone's.
        _atomic_write(side, lambda fh: fh.write((json.dumps(record, indent=2, sort_keys=True) + "\n").encode()))
        try:
            _atomic_write(path, lambda fh: writer(fh, tensor, meta_json))
        except BaseException:
            side.unlink(missing_ok=True)
            raise
    else:
        _atomic_write(path, lambda fh: writer(fh, tensor, meta_json))
    return path


# --------------------------------------------------------------------------- reading
def _meta_from_json(text: str, where: str) -> dict[str, Any]:
    try:
        meta = json.loads(text)
    except json.JSONDecodeError as exc:
        raise InputError(f"{where}: the settings are not valid JSON ({exc})") from None
    if not isinstance(meta, dict):
        raise InputError(f"{where}: the settings are not a JSON object")
    return meta


def read_meta(path: str | Path) -> dict[str, Any]:
    """The settings recorded with a feature file, reading as little as possible.

    ``{}`` for a file vidprop did not write (a ``.pt`` without its ``.json``,
    a safetensors/npz file without a ``vidprop`` entry).  InputError when the
    file is missing, truncated or unreadable.
    """
    path = Path(path)
    fmt = format_of(path)
    if not path.is_file():
        raise InputError(f"{path}: no such feature file")
    try:
        if fmt == "pt":
            side = sidecar_path(path)
            if not side.is_file():
                return {}
            return _meta_from_json(side.read_text(), str(side))
        if fmt == "safetensors":
            from safetensors import safe_open

            with safe_open(str(path), framework="pt") as f:
                text = (f.metadata() or {}).get(META_KEY)
            return _meta_from_json(text, str(path)) if text is not None else {}
        with np.load(path, allow_pickle=False) as z:
            return _meta_from_json(str(z[META_KEY]), str(path)) if META_KEY in z.files else {}
    except InputError:
        raise
    except Exception as exc:  # noqa: BLE001 - zip/safetensors/OS errors of many kinds
        raise InputError(f"{path}: cannot read this feature file ({_first_line(exc)})") from None


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return text[0] if text else type(exc).__name__


def _load_tensor(path: Path, fmt: str, mmap: bool = False) -> torch.Tensor:
    if fmt == "pt":
        obj = torch.load(path, map_location="cpu", weights_only=True, mmap=mmap)
        if not isinstance(obj, torch.Tensor):
            raise InputError(f"{path}: holds a {type(obj).__name__}, not a tensor")
        return obj
    if fmt == "safetensors":
        from safetensors import safe_open

        with safe_open(str(path), framework="pt") as f:
            if FEATURES_KEY not in f.keys():
                raise InputError(f"{path}: no '{FEATURES_KEY}' tensor in this file (keys: {', '.join(f.keys())})")
            return f.get_tensor(FEATURES_KEY)
    with np.load(path, allow_pickle=False) as z:
        if FEATURES_KEY not in z.files:
            raise InputError(f"{path}: no '{FEATURES_KEY}' array in this file (arrays: {', '.join(z.files)})")
        return torch.from_numpy(z[FEATURES_KEY])


def load_features(path: str | Path) -> tuple[torch.Tensor, dict[str, Any]]:
    """Read features and the settings that made them: ``(tensor, settings)``.

    * a ``.pt`` / ``.safetensors`` / ``.npz`` file: its tensor ((C, h, w) for an
      image, (N, C, h, w) for a video chunk) and its settings (``{}`` if
      vidprop did not write it);
    * a video's folder (or its ``index.json``): every frame stacked,
      (T, C, h, w), and the index -- for long videos read frames one at a
      time with :func:`open_video_features` instead.
    """
    path = Path(path)
    if path.is_dir() or path.name == INDEX_NAME:
        video = open_video_features(path)
        return video.stack(), dict(video.index)
    fmt = format_of(path)
    if not path.is_file():
        raise InputError(f"{path}: no such feature file")
    meta = read_meta(path)
    try:
        tensor = _load_tensor(path, fmt)
    except InputError:
        raise
    except Exception as exc:  # noqa: BLE001
        raise InputError(f"{path}: cannot read this feature file ({_first_line(exc)})") from None
    shape = meta.get("shape")
    if shape is not None and list(tensor.shape) != list(shape):
        raise InputError(f"{path}: holds a {tuple(tensor.shape)} tensor but its settings record {tuple(shape)}")
    return tensor, meta


# --------------------------------------------------------------------------- resuming
FileState = Literal["missing", "complete", "different", "foreign", "corrupt"]


@dataclass(frozen=True)
class FileStatus:
    """What is at an output path: ``missing``, ``complete`` (same settings, intact),
    ``different`` (intact, other settings), ``foreign`` (not written by vidprop)
    or ``corrupt`` (truncated / unreadable / unfinished); ``reason`` says why."""

    state: FileState
    reason: str = ""


def differences(found: Mapping[str, Any], expected: Mapping[str, Any]) -> list[str]:
    """``"key: found -> expected"`` for each key of ``expected`` whose value differs."""
    out = []
    for key, want in expected.items():
        have = found.get(key, "<absent>")
        if _jsonable(have) != _jsonable(want):
            out.append(f"{key}: {have!r} -> {want!r}")
    return out


def _jsonable(value: Any) -> Any:
    return json.loads(json.dumps(value, sort_keys=True))


def inspect_file(path: str | Path, expected: Mapping[str, Any], *, verify_tensor: bool = True) -> FileStatus:
    """Is ``path`` a complete feature file made with ``expected`` settings?

    Compares every key of ``expected`` with the file's recorded settings and
    checks that the file is whole (a truncated file does not open; with
    ``verify_tensor`` the tensor's shape is checked against the record).
    """
    path = Path(path)
    fmt = format_of(path)
    if not path.exists():
        if fmt == "pt" and sidecar_path(path).exists():
            return FileStatus("corrupt", f"{sidecar_path(path).name} has no {path.name} beside it")
        return FileStatus("missing")
    try:
        meta = read_meta(path)
    except InputError as exc:
        return FileStatus("corrupt", str(exc))
    if not meta:
        return FileStatus("foreign", "it has no vidprop settings" + (f" ({sidecar_path(path).name} is missing)" if fmt == "pt" else ""))
    diff = differences(meta, expected)
    if diff:
        return FileStatus("different", "; ".join(diff))
    if verify_tensor:
        try:
            tensor = _load_tensor(path, fmt, mmap=True)
        except Exception as exc:  # noqa: BLE001
            return FileStatus("corrupt", _first_line(exc))
        if list(tensor.shape) != list(meta.get("shape", [])) or str(tensor.dtype).replace("torch.", "") != meta.get("save_dtype"):
            return FileStatus("corrupt", f"holds a {tuple(tensor.shape)} {tensor.dtype} tensor, not what its settings record")
    return FileStatus("complete")


def remove_feature_file(path: str | Path) -> None:
    """Delete a feature file (and a .pt's sidecar) if present."""
    path = Path(path)
    path.unlink(missing_ok=True)
    if format_of(path) == "pt":
        sidecar_path(path).unlink(missing_ok=True)


# --------------------------------------------------------------------------- videos
def write_index(folder: str | Path, index: Mapping[str, Any]) -> Path:
    """Write a video's ``index.json`` atomically; OSError -> WriteError."""
    path = Path(folder) / INDEX_NAME
    text = json.dumps(index, indent=1, sort_keys=False) + "\n"
    _atomic_write(path, lambda fh: fh.write(text.encode()))
    return path


class VideoFeatures:
    """The features of one video: its ``index.json`` and chunk files, read a chunk at a time.

    ``len(video)`` frames; ``video.frame(i)`` -> (C, h, w); ``video.names``;
    ``video.settings`` (what made them); iterating yields (C, h, w) tensors in
    order, reading each chunk once.
    """

    def __init__(self, folder: str | Path) -> None:
        folder = Path(folder)
        if folder.name == INDEX_NAME:
            folder = folder.parent
        path = folder / INDEX_NAME
        if not path.is_file():
            raise InputError(f"{folder}: no {INDEX_NAME} here (not a video's feature folder, or its extraction did not finish)")
        try:
            index = json.loads(path.read_text())
            frames = index["frames"]
            chunks = index["chunks"]
        except (json.JSONDecodeError, KeyError, TypeError) as exc:
            raise InputError(f"{path}: not a valid feature index ({exc})") from None
        self.folder = folder
        self.index: dict[str, Any] = index
        self.chunks: list[dict[str, Any]] = chunks
        self._frames = frames
        self._cache: tuple[str, torch.Tensor] | None = None

    def __len__(self) -> int:
        return len(self._frames)

    @property
    def settings(self) -> dict[str, Any]:
        return dict(self.index.get("settings", {}))

    @property
    def names(self) -> list[str]:
        return [f["name"] for f in self._frames]

    def _chunk(self, name: str) -> torch.Tensor:
        if self._cache is None or self._cache[0] != name:
            tensor, _ = load_features(self.folder / name)
            self._cache = (name, tensor)
        return self._cache[1]

    def frame(self, i: int) -> torch.Tensor:
        """Frame ``i``'s features, (C, h, w) (negative ``i`` counts from the end)."""
        n = len(self)
        if not -n <= i < n:
            raise IndexError(f"frame {i} is out of range for {n} frames")
        entry = self._frames[i]
        return self._chunk(entry["file"])[entry["offset"]]

    def __iter__(self) -> Iterator[torch.Tensor]:
        for chunk in self.chunks:
            tensor = self._chunk(chunk["file"])
            yield from tensor.unbind(0)

    def stack(self) -> torch.Tensor:
        """All frames, (T, C, h, w)."""
        return torch.cat([self._chunk(c["file"]) for c in self.chunks]) if self.chunks else torch.empty(0)


def open_video_features(folder: str | Path) -> VideoFeatures:
    """Open a video's feature folder (or its ``index.json``) for reading frame by frame."""
    return VideoFeatures(folder)


def chunk_files(folder: Path, suffixes: Sequence[str] = (".safetensors", ".npz", ".pt")) -> list[Path]:
    """Feature files directly inside ``folder`` (sorted; hidden temporary files left out)."""
    if not folder.is_dir():
        return []
    return sorted(
        p for p in folder.iterdir() if p.is_file() and p.suffix.lower() in suffixes and not p.name.startswith(".")
    )

