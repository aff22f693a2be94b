"""Atomic file and folder writing: write under a temporary name, then rename.

Nothing half-written is ever left under the final name: on an exception
(``KeyboardInterrupt`` and the CLI's SIGTERM exception included) the
temporary file or folder is removed.

* A result folder is written as a hidden ``.NAME.partial-XXXXXXXX`` folder
  beside its final place.  It holds a marker file naming the process that
  writes it (pid and host), so a later run can recognise, and remove, a
  partial folder whose process died without cleaning up (SIGKILL, power
  loss): :func:`remove_stale_partials`.  Folders without vidprop's marker,
  or whose process is still alive, are never touched.
* Files and folders get the permissions a plain ``open``/``mkdir`` would
  give them (``0o666``/``0o777`` minus the umask), not ``mkstemp``'s
  private ``0o600``/``0o700``.
* Replacing an existing result folder (``overwrite=True``) replaces what
  vidprop writes there (:data:`RESULT_PATTERNS`, and anything the new run
  wrote); other files a user put in the folder are kept, and logged.
"""

from __future__ import annotations

import contextlib
import errno
import fnmatch
import logging
import os
import secrets
import shutil
import socket
from pathlib import Path
from typing import Iterator, Sequence

from vidprop.errors import OutputError, OutputExistsError, WriteError

__all__ = [
    "atomic_file",
    "atomic_dir",
    "check_writable_target",
    "is_disk_full",
    "disk_full_error",
    "remove_stale_partials",
    "PARTIAL_MARKER",
    "RESULT_PATTERNS",
]

log = logging.getLogger(__name__)

#: Marker file inside a partial result folder: "<pid> <host>".
PARTIAL_MARKER = ".vidprop-partial"
#: What vidprop writes in a result folder; ``overwrite`` replaces these (and
#: whatever the new run writes) and keeps any other file.
RESULT_PATTERNS = ("*.png", "overlay.mp4", "keypoints.json", "keypoints.csv", "annotations.json", "labels.json",
                   "coco.json", "cvat-video.xml", "youtube-vis.json", "mots", "youtube-vos", "score-*.csv")


def _exists(path: Path) -> bool:
    try:
        return path.exists() or path.is_symlink()
    except OSError as exc:  # PermissionError on a parent, ...
        raise OutputError(f"{path}: cannot be checked ({exc.strerror or exc})") from exc


def _reason(exc: OSError) -> str:
    return exc.strerror or type(exc).__name__


#: errno values of a device or quota that takes no more data: a write fails for lack of room, not for a bug.
DISK_FULL_ERRNOS = frozenset(e for e in (errno.ENOSPC, getattr(errno, "EDQUOT", None), errno.EFBIG) if e is not None)


def is_disk_full(exc: BaseException) -> bool:
    """Whether ``exc`` is an OSError of a full disk or quota (ENOSPC, EDQUOT, EFBIG), PyAV's and PIL's included."""
    return isinstance(exc, OSError) and exc.errno in DISK_FULL_ERRNOS


def disk_full_error(path: str | Path, exc: OSError, partial: str = "the partial folder") -> WriteError:
    """One line naming ``path`` and the problem, for a write that failed on a full disk."""
    reason = {errno.ENOSPC: "no space left on device", errno.EFBIG: "file too large for the file system"}.get(
        exc.errno or 0, "disk quota exceeded" if exc.errno == getattr(errno, "EDQUOT", None) else _reason(exc))
    return WriteError(f"{path}: could not be written: {reason} ({partial} was removed); free some space or "
                      "choose another output folder, then run the same command again")


def check_writable_target(path: str | Path, overwrite: bool, *, folder: bool | None = None) -> None:
    """Check, before any work, that ``path`` can be written; one-line errors naming the path.

    Raises :class:`OutputExistsError` if ``path`` exists and ``overwrite`` is
    false, and :class:`OutputError` if it cannot be written: ``folder=True``
    (a result folder) and ``path`` is a file, ``folder=False`` (a file) and
    ``path`` is a folder, a parent of ``path`` is a file, or the nearest
    existing parent is not a folder vidprop may create entries in (checked
    by creating and removing a hidden folder there: permissions, read-only
    and pseudo file systems such as ``/proc``).  Nothing is left behind.
    """
    path = Path(path)
    if _exists(path):
        if not overwrite:
            raise OutputExistsError(f"{path} already exists; pass --overwrite (overwrite=True) to replace it")
        if folder is True and not path.is_dir():
            raise OutputError(f"{path}: exists and is not a folder; the results are a folder, choose another --out")
        if folder is False and path.is_dir():
            raise OutputError(f"{path}: is a folder; give a file name")
    parent = path.parent
    while not _exists(parent):
        if parent == parent.parent:
            break
        parent = parent.parent
    if not parent.is_dir():
        raise OutputError(f"{parent}: is a file, not a folder, so {path} cannot be written there; "
                          "--out needs a folder")
    probe = parent / f".vidprop-write-test-{os.getpid()}-{secrets.token_hex(4)}"
    try:
        probe.mkdir()
    except OSError as exc:
        raise OutputError(f"{path}: cannot write in {parent} ({_reason(exc)})") from None
    probe.rmdir()


def _make_parents(path: Path) -> None:
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise OutputError(f"{path}: cannot create its folder {path.parent} ({_reason(exc)})") from None


def _new_name(path: Path, kind: str, suffix: str | None = None) -> Path:
    """A hidden sibling of ``path``: ``.NAME.KIND-XXXXXXXX`` (``.STEM.KIND-XXXXXXXX.SUFFIX`` for a file)."""
    base = path.name if suffix is None else path.stem
    return path.parent / f".{base}.{kind}-{secrets.token_hex(4)}{suffix or ''}"


@contextlib.contextmanager
def atomic_file(path: str | Path, *, overwrite: bool = True, suffix: str | None = None) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; rename it to ``path`` on success.

    ``suffix`` is the temporary file's extension (defaults to ``path``'s, so
    libraries that pick a format by extension still work).  The file is
    created empty with the umask's permissions.  A full disk while writing
    becomes a :class:`~vidprop.errors.WriteError` naming ``path``.
    """
    path = Path(path)
    check_writable_target(path, overwrite, folder=False)
    _make_parents(path)
    ext = path.suffix if suffix is None else suffix
    while True:
        tmp_path = _new_name(path, "partial", ext)
        try:
            os.close(os.open(tmp_path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o666))
            break
        except FileExistsError:  # pragma: no cover - 32 random bits
            continue
        except OSError as exc:
            raise OutputError(f"{path}: cannot write in {path.parent} ({_reason(exc)})") from None
    try:
        yield tmp_path
        os.replace(tmp_path, path)
    except BaseException as exc:
        with contextlib.suppress(FileNotFoundError):
            tmp_path.unlink()
        if is_disk_full(exc):
            raise disk_full_error(path, exc, "the partial file") from exc
        raise


# --------------------------------------------------------------------------- partial folders
def _pid_alive(pid: int) -> bool:
    if os.name != "posix":  # os.kill(pid, 0) is no liveness check there: never remove
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # alive, another user's
        return True
    except OSError:  # pragma: no cover - be safe: treat as alive
        return True
    return True


def _marker_owner(folder: Path) -> tuple[int, str] | None:
    """(pid, host) from a partial folder's marker, None when it has no valid vidprop marker."""
    try:
        text = (folder / PARTIAL_MARKER).read_text().split()
        return int(text[0]), text[1]
    except (OSError, ValueError, IndexError):
        return None


def remove_stale_partials(path: str | Path) -> list[Path]:
    """Remove ``.NAME.partial-*`` folders of ``path`` left by vidprop runs that died; return them.

    Only folders holding vidprop's marker, written on this host by a process
    that no longer exists, are removed.
    """
    path = Path(path)
    removed: list[Path] = []
    if not path.parent.is_dir():
        return removed
    host = socket.gethostname()
    for folder in path.parent.glob(f".{glob_escape(path.name)}.partial-*"):
        if not folder.is_dir() or folder.is_symlink():
            continue
        owner = _marker_owner(folder)
        if owner is None or owner[1] != host or _pid_alive(owner[0]):
            continue
        shutil.rmtree(folder, ignore_errors=True)
        if not folder.exists():
            log.info("removed %s, left by an interrupted run (process %d)", folder, owner[0])
            removed.append(folder)
    return removed


def glob_escape(name: str) -> str:
    """``name`` with glob metacharacters escaped."""
    return "".join(f"[{c}]" if c in "*?[]" else c for c in name)


def _make_partial_dir(path: Path) -> Path:
    while True:
        tmp = _new_name(path, "partial")
        try:
            tmp.mkdir()  # mode 0o777 minus the umask
            break
        except FileExistsError:  # pragma: no cover - 32 random bits
            continue
        except OSError as exc:
            raise OutputError(f"{path}: cannot write in {path.parent} ({_reason(exc)})") from None
    try:
        (tmp / PARTIAL_MARKER).write_text(f"{os.getpid()} {socket.gethostname()}\n")
    except OSError as exc:
        shutil.rmtree(tmp, ignore_errors=True)
        if is_disk_full(exc):
            raise disk_full_error(path, exc) from exc
        raise OutputError(f"{path}: cannot write in {path.parent} ({_reason(exc)})") from None
    return tmp


def _is_result(name: str, patterns: Sequence[str]) -> bool:
    return any(fnmatch.fnmatchcase(name, p) for p in patterns)


@contextlib.contextmanager
def atomic_dir(path: str | Path, *, overwrite: bool = False,
               replaces: Sequence[str] = RESULT_PATTERNS) -> Iterator[Path]:
    """Yield a fresh temporary folder beside ``path``; move it to ``path`` on success.

    With ``overwrite`` an existing ``path`` is replaced only once the new
    folder is complete; of its old entries, those the new run wrote again
    and those matching ``replaces`` (vidprop's own result files) go, any
    other file or folder is kept (moved into the new folder, and logged).
    Partial folders of ``path`` left by dead runs are removed first.  A
    write that fails on a full disk (an ``OSError`` ENOSPC, EDQUOT or EFBIG
    from any writer inside the block, a background thread's re-raised
    included) becomes a :class:`~vidprop.errors.WriteError` naming ``path``.
    """
    path = Path(path)
    check_writable_target(path, overwrite, folder=True)
    _make_parents(path)
    remove_stale_partials(path)
    tmp = _make_partial_dir(path)
    try:
        yield tmp
        (tmp / PARTIAL_MARKER).unlink()
        if not _exists(path):
            os.replace(tmp, path)
            return
        trash = _new_name(path, "old")
        trash.mkdir()
        os.replace(path, trash / "old")
        try:
            os.replace(tmp, path)
        except BaseException:
            os.replace(trash / "old", path)  # put the old results back
            shutil.rmtree(trash, ignore_errors=True)
            raise
    except BaseException as exc:
        shutil.rmtree(tmp, ignore_errors=True)
        if is_disk_full(exc):  # from a writer inside the block (PNG, overlay, JSON ...): one line, nothing left
            raise disk_full_error(path, exc) from exc
        raise
    _finish_replacement(path, trash, replaces)


def _finish_replacement(path: Path, trash: Path, replaces: Sequence[str]) -> None:
    """Move the user's own entries of the old folder (``trash/old``) into the new ``path``; drop the rest."""
    old = trash / "old"
    kept = []
    for entry in sorted(old.iterdir()):
        if _exists(path / entry.name) or _is_result(entry.name, replaces):
            continue
        os.replace(entry, path / entry.name)
        kept.append(entry.name)
    if kept:
        log.info("%s: kept %d file(s) vidprop did not write: %s", path, len(kept), ", ".join(kept))
    shutil.rmtree(trash, ignore_errors=True)
