"""vidprop.engine: pool sizing, the sequential engine, and Ray actors (retries after a killed worker)."""

from __future__ import annotations

import functools
import os
import signal
import sys
from pathlib import Path

import pytest

from vidprop.engine import EngineOptions, Placement, WorkerLostError, open_engine, resolve_placement, run_all
from vidprop.errors import ConfigError, InputError


# ---------------------------------------------------------------- workers used below (picklable: top level)
class Square:
    """Loads nothing; counts the rows it ran; a negative item is a row error."""

    def __init__(self, offset: int = 0) -> None:
        self.offset = offset
        self.pid = os.getpid()

    def info(self) -> dict:
        return {"offset": self.offset}

    def __call__(self, item: int) -> tuple[int, int]:
        if item < 0:
            raise InputError(f"row {item} is bad")
        return item * item + self.offset, os.getpid()


class BrokenFactory:
    def __call__(self) -> Square:
        raise InputError("the model folder /nowhere does not exist")


class Dies(Square):
    """Kills its own process on the first attempt of item 2 and on every attempt of item 7 (files count attempts)."""

    def __init__(self, marker_dir: str) -> None:
        super().__init__()
        self.marker_dir = Path(marker_dir)

    def __call__(self, item: int) -> tuple[int, int]:
        if item in (2, 7):
            attempts = self.marker_dir / f"attempts-{item}"
            n = int(attempts.read_text()) if attempts.exists() else 0
            attempts.write_text(str(n + 1))
            if item == 7 or n == 0:
                os.kill(os.getpid(), signal.SIGKILL)
        return super().__call__(item)


# ---------------------------------------------------------------- sizing
@pytest.mark.parametrize(
    "options, resources, rows, gpu, expected",
    [
        (EngineOptions(kind="ray"), {"CPU": 16, "GPU": 4}, 100, True, Placement(4, 1.0, 1.0)),
        (EngineOptions(kind="ray"), {"CPU": 16, "GPU": 4}, 3, True, Placement(3, 1.0, 1.0)),  # never more than rows
        (EngineOptions(kind="ray", gpus_per_worker=0.5), {"CPU": 16, "GPU": 4}, 100, True, Placement(8, 0.5, 1.0)),
        (EngineOptions(kind="ray", gpus_per_worker=2), {"CPU": 16, "GPU": 4}, 100, True, Placement(2, 2.0, 1.0)),
        (EngineOptions(kind="ray"), {"CPU": 16, "GPU": 4}, 100, False, Placement(1, 0.0, 16.0)),  # --device cpu
        (EngineOptions(kind="ray"), {"CPU": 16}, 100, True, Placement(1, 0.0, 16.0)),
        (EngineOptions(kind="ray", workers=4), {"CPU": 16}, 100, True, Placement(4, 0.0, 4.0)),
        (EngineOptions(kind="ray", workers=3, cpus_per_worker=2), {"CPU": 16, "GPU": 1}, 100, True,
         Placement(3, 1.0, 2.0)),
    ],
)
def test_pool_size_from_the_cluster(options, resources, rows, gpu, expected):
    assert resolve_placement(options, resources, rows, wants_gpu=gpu) == expected


def test_options_are_checked():
    for bad in (dict(kind="spark"), dict(kind="ray", workers=0), dict(kind="ray", gpus_per_worker=-1),
                dict(kind="ray", cpus_per_worker=0), dict(retries=-1), dict(workers=2), dict(address="auto")):
        with pytest.raises(ConfigError):
            EngineOptions(**bad)
    with pytest.raises(ConfigError, match="2 GPUs per worker, but the Ray cluster has 1 GPUs"):
        resolve_placement(EngineOptions(kind="ray", gpus_per_worker=2), {"CPU": 4, "GPU": 1}, 10)


# ---------------------------------------------------------------- sequential
def test_sequential_engine_builds_one_worker_and_keeps_row_errors():
    out = run_all(functools.partial(Square, 10), [3, -1, 4])
    assert [o.index for o in out] == [0, 1, 2]
    assert [o.value[0] if o.value else None for o in out] == [19, None, 26]
    assert isinstance(out[1].error, InputError) and "row -1 is bad" in str(out[1].error)
    assert {o.value[1] for o in out if o.value} == {os.getpid()}  # in this process
    with open_engine(Square, max_rows=1) as eng:
        assert eng.info == {"offset": 0}
    with pytest.raises(InputError, match="/nowhere"):
        run_all(BrokenFactory(), [1])


def test_sequential_engine_does_not_import_ray():
    import subprocess

    code = ("import sys; from vidprop.engine import run_all; from tests.test_engine import Square; "
            "assert [o.value[0] for o in run_all(Square, [2])] == [4]; print('ray' in sys.modules)")
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         cwd=Path(__file__).resolve().parents[1], env={**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1])})
    assert res.returncode == 0, res.stderr
    assert res.stdout.strip() == "False"


# ---------------------------------------------------------------- ray
@pytest.mark.ray
def test_ray_engine_same_values_errors_and_load_failures(ray_local, tmp_path):
    items = [3, -1, 4, 5, 0]
    seq = run_all(functools.partial(Square, 1), items)
    opts = EngineOptions(kind="ray", workers=2, gpus_per_worker=0)
    with open_engine(functools.partial(Square, 1), opts, max_rows=len(items)) as eng:
        assert eng.placement == Placement(2, 0.0, 1.0)
        assert eng.info == {"offset": 1}
        got = sorted(eng.map(items), key=lambda o: o.index)
    assert [o.value[0] if o.value else None for o in got] == [o.value[0] if o.value else None for o in seq]
    assert isinstance(got[1].error, InputError) and str(got[1].error) == str(seq[1].error)
    assert os.getpid() not in {o.value[1] for o in got if o.value}  # ran in the actors, not here
    with pytest.raises(InputError, match="/nowhere"):  # a worker that cannot load: raised before any row
        run_all(BrokenFactory(), [1, 2], EngineOptions(kind="ray", workers=1, gpus_per_worker=0))
    # logical GPUs: one per worker by default when the cluster has some
    with open_engine(Square, EngineOptions(kind="ray"), max_rows=5) as eng:
        assert eng.placement == Placement(2, 1.0, 1.0)


@pytest.mark.ray
def test_ray_engine_retries_a_row_whose_worker_was_killed(ray_local, tmp_path):
    opts = EngineOptions(kind="ray", workers=1, gpus_per_worker=0, retries=1)
    out = run_all(functools.partial(Dies, str(tmp_path)), [1, 2, 7, 3], opts)
    assert [o.value[0] if o.value else None for o in out] == [1, 4, None, 9]
    assert (tmp_path / "attempts-2").read_text() == "2"  # killed once, then done by a new worker process
    assert out[0].value[1] != out[1].value[1]
    # a row that kills its worker every time: reported after 1 + retries attempts; the rows after it still run
    assert isinstance(out[2].error, WorkerLostError) and "died 2 time(s)" in str(out[2].error)
    assert (tmp_path / "attempts-7").read_text() == "2"


def test_an_unreachable_cluster_address_fails_fast():
    import socket

    from vidprop.engine_core import check_reachable

    with socket.socket() as s:  # a port nothing listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    with pytest.raises(ConfigError, match=f"could not reach the Ray cluster at 127.0.0.1:{port}"):
        check_reachable(f"127.0.0.1:{port}", timeout=2)
    with pytest.raises(ConfigError, match="expected auto, HOST:PORT"):
        check_reachable("headnode")
