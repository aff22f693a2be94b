"""The pieces both engines of :mod:`vidprop.engine` share: options, outcomes, placement, the Ray session.

:mod:`vidprop.engine` (which picks an engine) and :mod:`vidprop.ray_pool` (the Ray engine) both import this
module; it imports neither.  Import these names from :mod:`vidprop.engine`, which re-exports them.
"""

from __future__ import annotations

import contextlib
import logging
import math
from dataclasses import dataclass
from typing import Any, Iterator, Literal

from vidprop.errors import ConfigError, VidpropError

__all__ = [
    "ENGINES",
    "EngineOptions",
    "NoWorkersLeftError",
    "Outcome",
    "Placement",
    "WorkerLostError",
    "check_reachable",
    "quiet_worker_logs",
    "ray_session",
    "resolve_placement",
]

log = logging.getLogger(__name__)

ENGINES = ("sequential", "ray")

EngineKind = Literal["sequential", "ray"]


class WorkerLostError(VidpropError):
    """A row's worker process died every time it ran the row (killed, out of memory, crashed)."""


class NoWorkersLeftError(VidpropError):
    """Every Ray worker went away (machines lost, none could be placed again): the run stopped before its end.

    The rows that finished are the caller's (saved as they finished); running the same command again resumes.
    """

    exit_code = 1


@dataclass(frozen=True)
class EngineOptions:
    """How rows are spread.

    Attributes:
        kind: ``"sequential"`` (in this process, no Ray) or ``"ray"``.
        address: Ray cluster to join (``"auto"``, ``"HOST:PORT"``, ``"ray://HOST:10001"``);
            None: the Ray session of this process if one is initialised, else a local
            instance started for the run (every CPU and GPU of this machine) and shut down after.
        workers: Ray actors (default: one per GPU of the cluster, divided by
            ``gpus_per_worker``; 1 on a cluster without GPUs).  Never more than rows.
        gpus_per_worker: GPUs each actor reserves (default: 1 when the cluster has GPUs and
            the work wants them, else 0).  Fractions share a GPU (0.5: two actors per GPU).
        cpus_per_worker: CPUs each actor reserves, also its torch threads (default: 1 with
            GPUs; without, the cluster's CPUs divided evenly among the workers).
        retries: how many times a row whose worker process died (on a live machine) runs again.  A row
            whose worker's machine was lost runs again on another worker without counting.
        placement_timeout: seconds a Ray worker may wait for its resources (a new one after a machine was
            lost, or one more than the cluster fits); then it leaves the pool with a warning and the run goes
            on with fewer workers (it joins if resources appear later).
    """

    kind: EngineKind = "sequential"
    address: str | None = None
    workers: int | None = None
    gpus_per_worker: float | None = None
    cpus_per_worker: float | None = None
    retries: int = 2
    placement_timeout: float = 60.0

    def __post_init__(self) -> None:
        if self.kind not in ENGINES:
            raise ConfigError(f"engine must be one of {', '.join(ENGINES)}, got {self.kind!r}")
        if self.workers is not None and self.workers < 1:
            raise ConfigError(f"workers must be >= 1, got {self.workers}")
        if self.gpus_per_worker is not None and self.gpus_per_worker < 0:
            raise ConfigError(f"gpus per worker must be >= 0, got {self.gpus_per_worker}")
        if self.cpus_per_worker is not None and self.cpus_per_worker <= 0:
            raise ConfigError(f"cpus per worker must be > 0, got {self.cpus_per_worker}")
        if self.retries < 0:
            raise ConfigError(f"retries must be >= 0, got {self.retries}")
        if not self.placement_timeout > 0:
            raise ConfigError(f"placement timeout must be > 0 seconds, got {self.placement_timeout}")
        if self.kind == "sequential":
            given = [n for n, v in (("address", self.address), ("workers", self.workers),
                                    ("gpus per worker", self.gpus_per_worker),
                                    ("cpus per worker", self.cpus_per_worker)) if v is not None]
            if given:
                raise ConfigError(f"{', '.join(given)}: only for the ray engine (--engine ray)")


@dataclass(frozen=True)
class Outcome:
    """What became of one row: ``value`` (the worker's return) or ``error`` (what it raised)."""

    index: int
    value: Any = None
    error: BaseException | None = None


@dataclass(frozen=True)
class Placement:
    """The resolved size of a Ray pool."""

    workers: int
    gpus_per_worker: float
    cpus_per_worker: float


def resolve_placement(options: EngineOptions, resources: dict[str, float], max_rows: int, *,
                      wants_gpu: bool = True) -> Placement:
    """Workers, GPUs and CPUs per worker from the options and the cluster's resources (see :class:`EngineOptions`)."""
    gpus = float(resources.get("GPU", 0))
    cpus = float(resources.get("CPU", 1))
    gpw = options.gpus_per_worker
    if gpw is None:
        gpw = 1.0 if (gpus > 0 and wants_gpu) else 0.0
    if gpw > 0 and gpus > 0 and gpw > gpus:
        raise ConfigError(f"{gpw:g} GPUs per worker, but the Ray cluster has {gpus:g} GPUs")
    workers = options.workers
    if workers is None:
        workers = max(1, int(math.floor(gpus / gpw + 1e-9))) if gpw > 0 and gpus > 0 else 1
    workers = max(1, min(workers, max_rows))
    cpw = options.cpus_per_worker
    if cpw is None:
        cpw = 1.0 if gpw > 0 else max(1.0, float(math.floor(cpus / workers)))
    return Placement(workers, float(gpw), float(cpw))


def quiet_worker_logs() -> None:
    """Worker output reaches the driver's stderr through Ray: vidprop's warnings and errors, no library chatter."""
    import os

    logging.getLogger("vidprop").setLevel(logging.WARNING)
    for var, value in (("HF_HUB_DISABLE_PROGRESS_BARS", "1"), ("DIFFUSERS_VERBOSITY", "error"),
                       ("TRANSFORMERS_VERBOSITY", "error")):
        os.environ.setdefault(var, value)  # read when those libraries are imported (by the worker's factory)
    for noisy in ("diffusers", "transformers", "huggingface_hub", "PIL"):
        logging.getLogger(noisy).setLevel(logging.ERROR)


def check_reachable(address: str, timeout: float = 5.0) -> None:
    """Fail fast (Ray itself retries for minutes) when nothing listens at a ``HOST:PORT`` address."""
    import socket

    hostport = address.split("://", 1)[-1]
    host, sep, port = hostport.rpartition(":")
    if not sep or not port.isdigit():
        raise ConfigError(f"Ray address {address!r}: expected auto, HOST:PORT or ray://HOST:PORT")
    try:
        with socket.create_connection((host.strip("[]"), int(port)), timeout=timeout):
            pass
    except OSError as exc:
        raise ConfigError(f"could not reach the Ray cluster at {address} ({exc}); start its head node with "
                          "`ray start --head` or check the address") from None


@contextlib.contextmanager
def ray_session(address: str | None = None) -> Iterator[Any]:
    """Yield the ``ray`` module with a session: this process's, a cluster's (``address``) or a local one.

    A session started here is shut down on exit; one that was already
    initialised is left running.
    """
    try:
        import ray
    except ImportError:
        raise ConfigError("the ray engine needs Ray: pip install 'vidprop[ray]' (or pip install 'ray>=2.9')") from None
    started = False
    if not ray.is_initialized() and address and address != "auto":
        check_reachable(address)
    if not ray.is_initialized():
        kwargs: dict[str, Any] = {"include_dashboard": False, "logging_level": logging.WARNING,
                                  "configure_logging": True, "log_to_driver": True}
        try:
            if address:
                ray.init(address=address, **kwargs)
            else:
                ray.init(**kwargs)
        except ConnectionError as exc:
            raise ConfigError(f"could not join the Ray cluster at {address}: {exc}") from None
        started = True
        log.info("Ray %s: %s", "joined the cluster at " + address if address else "started a local instance",
                 {k: v for k, v in ray.cluster_resources().items() if k in ("CPU", "GPU", "memory")})
    try:
        yield ray
    finally:
        if started:
            ray.shutdown()
