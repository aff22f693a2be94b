"""Atomic writing: one-line output errors, permissions from the umask, stale partial folders, --overwrite."""

from __future__ import annotations

import os
import socket
import stat
import subprocess
import sys

import pytest

from vidprop.errors import OutputError, OutputExistsError
from vidprop.io.atomic import PARTIAL_MARKER, atomic_dir, atomic_file, check_writable_target, remove_stale_partials


def _mode(path) -> int:
    return stat.S_IMODE(os.stat(path).st_mode)


@pytest.fixture
def umask():
    """Set the process umask for one test, restore it after."""
    saved = os.umask(0o022)
    os.umask(saved)
    yield lambda m: os.umask(m)
    os.umask(saved)


def _dead_pid() -> int:
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


def test_check_writable_target_one_line_errors(tmp_path):
    (tmp_path / "taken").mkdir()
    with pytest.raises(OutputExistsError, match="taken already exists.*--overwrite"):
        check_writable_target(tmp_path / "taken", False)
    check_writable_target(tmp_path / "taken", True, folder=True)
    (tmp_path / "afile").write_text("x")
    with pytest.raises(OutputError, match=r"afile: exists and is not a folder"):
        check_writable_target(tmp_path / "afile", True, folder=True)
    with pytest.raises(OutputError, match=r"taken: is a folder; give a file name"):
        check_writable_target(tmp_path / "taken", True, folder=False)
    # --out is a file: the results folder would be created under it
    with pytest.raises(OutputError, match=r"afile: is a file, not a folder, so .*afile/clip cannot be written"):
        check_writable_target(tmp_path / "afile" / "clip", False)
    with pytest.raises(OutputError, match=r"afile: is a file.*afile/deeper/clip"):
        check_writable_target(tmp_path / "afile" / "deeper" / "clip", False)
    # a pseudo file system: mkdir fails there even for root
    with pytest.raises(OutputError) as exc:
        check_writable_target("/proc/vidprop-test/clip", False)
    assert "/proc/vidprop-test/clip: cannot write in /proc (" in str(exc.value)
    assert "\n" not in str(exc.value)
    # missing parents are fine (created later) and the check leaves nothing behind
    check_writable_target(tmp_path / "new" / "deep" / "clip", False)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["afile", "taken"]


@pytest.mark.skipif(os.name != "posix" or os.geteuid() == 0, reason="root may write anywhere")
def test_check_writable_target_permission_denied(tmp_path):
    ro = tmp_path / "ro"
    ro.mkdir()
    ro.chmod(0o500)
    try:
        with pytest.raises(OutputError, match=r"ro/clip: cannot write in .*ro \(Permission denied\)"):
            check_writable_target(ro / "clip", False)
    finally:
        ro.chmod(0o700)


def test_modes_follow_the_umask(tmp_path, umask):
    for mask, dmode, fmode in [(0o022, 0o755, 0o644), (0o002, 0o775, 0o664), (0o077, 0o700, 0o600)]:
        umask(mask)
        with atomic_dir(tmp_path / f"d{mask:o}") as tmp:
            (tmp / "a.txt").write_text("a")
        assert _mode(tmp_path / f"d{mask:o}") == dmode
        with atomic_file(tmp_path / f"f{mask:o}.txt") as tmp:
            tmp.write_text("b")
        assert _mode(tmp_path / f"f{mask:o}.txt") == fmode
        assert (tmp_path / f"f{mask:o}.txt").read_text() == "b"
    assert not list(tmp_path.glob(".*"))
    assert not (tmp_path / "d22" / PARTIAL_MARKER).exists()  # the marker never reaches the result


def test_partial_folder_is_marked_and_removed_on_error(tmp_path):
    with pytest.raises(KeyboardInterrupt):
        with atomic_dir(tmp_path / "res") as tmp:
            assert tmp.name.startswith(".res.partial-")
            pid, host = (tmp / PARTIAL_MARKER).read_text().split()
            assert (int(pid), host) == (os.getpid(), socket.gethostname())
            (tmp / "00000.png").write_bytes(b"x")
            raise KeyboardInterrupt
    assert list(tmp_path.iterdir()) == []


def test_stale_partials_of_dead_runs_are_removed_and_nothing_else(tmp_path):
    host = socket.gethostname()

    def partial(name, marker):
        d = tmp_path / name
        d.mkdir()
        (d / "00000.png").write_bytes(b"x")
        if marker is not None:
            (d / PARTIAL_MARKER).write_text(marker)
        return d

    dead = partial(".res.partial-dead0001", f"{_dead_pid()} {host}\n")
    alive = partial(".res.partial-alive001", f"{os.getpid()} {host}\n")
    unmarked = partial(".res.partial-user0001", None)
    elsewhere = partial(".res.partial-other001", f"{_dead_pid()} some-other-host\n")
    other_output = partial(".res2.partial-dead0002", f"{_dead_pid()} {host}\n")
    garbage = partial(".res.partial-garbage1", "not a pid\n")

    assert remove_stale_partials(tmp_path / "res") == [dead]
    assert not dead.exists()
    assert all(p.exists() for p in (alive, unmarked, elsewhere, other_output, garbage))
    # a run writing the same output removes the stale folders of its output first
    stale = partial(".res.partial-dead0003", f"{_dead_pid()} {host}\n")
    with atomic_dir(tmp_path / "res") as tmp:
        assert not stale.exists()
        (tmp / "00000.png").write_bytes(b"y")
    assert (tmp_path / "res" / "00000.png").read_bytes() == b"y"


def test_overwrite_replaces_vidprop_files_and_keeps_the_users(tmp_path, caplog):
    res = tmp_path / "res"
    with atomic_dir(res) as tmp:
        for name in ("00000.png", "00001.png", "00002.png", "overlay.mp4"):
            (tmp / name).write_bytes(b"old")
    (res / "notes.txt").write_text("mine")
    (res / "extra").mkdir()
    (res / "extra" / "x.png").write_bytes(b"mine too")
    with pytest.raises(OutputExistsError):
        with atomic_dir(res):
            pass
    with caplog.at_level("INFO", logger="vidprop.io.atomic"):
        with atomic_dir(res, overwrite=True) as tmp:  # a shorter run without overlay
            for name in ("00000.png", "00001.png"):
                (tmp / name).write_bytes(b"new")
    assert sorted(p.name for p in res.iterdir()) == ["00000.png", "00001.png", "extra", "notes.txt"]
    assert (res / "00000.png").read_bytes() == b"new" and (res / "notes.txt").read_text() == "mine"
    assert (res / "extra" / "x.png").read_bytes() == b"mine too"
    assert "kept 2 file(s) vidprop did not write: extra, notes.txt" in caplog.text
    assert sorted(p.name for p in tmp_path.iterdir()) == ["res"]  # no hidden leftovers


def test_overwrite_failure_keeps_the_old_results(tmp_path):
    res = tmp_path / "res"
    with atomic_dir(res) as tmp:
        (tmp / "00000.png").write_bytes(b"old")
    with pytest.raises(RuntimeError):
        with atomic_dir(res, overwrite=True) as tmp:
            (tmp / "00000.png").write_bytes(b"new")
            raise RuntimeError("midway")
    assert (res / "00000.png").read_bytes() == b"old"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["res"]


# ---------------------------------------------------------------- a full disk
def _enospc(*_a, **_k):
    import errno

    raise OSError(errno.ENOSPC, "No space left on device")


def test_a_full_disk_inside_a_result_folder_is_one_line_naming_it_and_nothing_is_left(tmp_path):
    import errno

    from vidprop.errors import WriteError

    out = tmp_path / "res" / "clip"
    with pytest.raises(WriteError) as info:
        with atomic_dir(out) as tmp:
            (tmp / "00000.png").write_bytes(b"x")
            _enospc()
    msg = str(info.value)
    assert msg.startswith(f"{out}: could not be written: no space left on device (the partial folder was removed)")
    assert "\n" not in msg and isinstance(info.value.__cause__, OSError) and info.value.__cause__.errno == errno.ENOSPC
    assert list((tmp_path / "res").iterdir()) == []
    # the old results stay when a replacement fills the disk
    out.mkdir()
    (out / "00000.png").write_bytes(b"old")
    with pytest.raises(WriteError, match="quota"):
        with atomic_dir(out, overwrite=True):
            raise OSError(errno.EDQUOT, "Disk quota exceeded")
    assert [p.name for p in (tmp_path / "res").iterdir()] == ["clip"] and (out / "00000.png").read_bytes() == b"old"


def test_a_full_disk_while_writing_a_file_and_other_errors_pass_through(tmp_path):
    from vidprop.errors import WriteError

    with pytest.raises(WriteError, match=r"report\.json: could not be written: no space left on device \(the "
                                         r"partial file was removed\)"):
        with atomic_file(tmp_path / "report.json") as tmp:
            tmp.write_text("{")
            _enospc()
    assert list(tmp_path.iterdir()) == []
    with pytest.raises(PermissionError):  # not a full disk: unchanged
        with atomic_dir(tmp_path / "x"):
            raise PermissionError(13, "Permission denied")
    assert list(tmp_path.iterdir()) == []
