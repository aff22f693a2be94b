"""Atomic file and folder writing: write under a temporary name, then rename.

Nothing half-written is ever left under the final name: on an exception the
temporary file or folder is removed.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
from pathlib import Path
from typing import Iterator

from vidprop.errors import OutputExistsError

__all__ = ["atomic_file", "atomic_dir", "check_writable_target", "remove_partials"]


def check_writable_target(path: str | Path, overwrite: bool) -> None:
    """Raise :class:`OutputExistsError` if ``path`` exists and ``overwrite`` is false."""
    path = Path(path)
    if path.exists() and not overwrite:
        raise OutputExistsError(f"{path} already exists; pass --overwrite (overwrite=True) to replace it")


@contextlib.contextmanager
def atomic_file(path: str | Path, *, overwrite: bool = True, suffix: str | None = None) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; rename it to ``path`` on success.

    ``suffix`` is the temporary file's extension (defaults to ``path``'s, so
    libraries that pick a format by extension still work).
    """
    path = Path(path)
    check_writable_target(path, overwrite)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.stem}.partial-", suffix=path.suffix if suffix is None else suffix,
                               dir=path.parent)
    os.close(fd)
    tmp_path = Path(tmp)
    try:
        yield tmp_path
        os.replace(tmp_path, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            tmp_path.unlink()
        raise


@contextlib.contextmanager
def atomic_dir(path: str | Path, *, overwrite: bool = False) -> Iterator[Path]:
    """Yield a fresh temporary folder beside ``path``; move it to ``path`` on success.

    With ``overwrite`` an existing ``path`` is replaced only once the new
    folder is complete.
    """
    path = Path(path)
    check_writable_target(path, overwrite)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{path.name}.partial-", dir=path.parent))
    try:
        yield tmp
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    if path.exists():
        trash = Path(tempfile.mkdtemp(prefix=f".{path.name}.old-", dir=path.parent))
        os.replace(path, trash / "old")
        os.replace(tmp, path)
        shutil.rmtree(trash, ignore_errors=True)
    else:
        os.replace(tmp, path)


def remove_partials(path: str | Path) -> list[Path]:
    """Remove the temporary folders and files :func:`atomic_dir` / :func:`atomic_file` left for ``path``.

    A process killed while writing ``path`` (SIGKILL, power loss) leaves its
    ``.<name>.partial-XXXXXXXX`` (and ``.<name>.old-XXXXXXXX``) beside it; call
    this before writing ``path`` again, when no other process is writing it.
    Returns what was removed.
    """
    import re

    path = Path(path)
    if not path.parent.is_dir():
        return []
    rand = r"\.(partial|old)-[A-Za-z0-9_]{8}"
    patterns = [re.compile(r"\." + re.escape(path.name) + rand + "$")]  # atomic_dir
    if path.suffix:  # atomic_file keeps the extension: .<stem>.partial-XXXXXXXX<suffix>
        patterns.append(re.compile(r"\." + re.escape(path.stem) + rand + re.escape(path.suffix) + "$"))
    removed = []
    for p in path.parent.iterdir():
        if any(pt.match(p.name) for pt in patterns):
            if p.is_dir() and not p.is_symlink():
                shutil.rmtree(p, ignore_errors=True)
            else:
                with contextlib.suppress(FileNotFoundError):
                    p.unlink()
            removed.append(p)
    return removed
