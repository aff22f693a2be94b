"""Where independent rows of work run: in this process one after the other, or on Ray workers.

A *row* is a unit that needs nothing from the others: one video of a batch,
one sequence of a benchmark.  A *worker* is built once per worker process by a
picklable factory (this is where a model is loaded, so it stays loaded for
every row the worker runs) and is then called once per row::

    class Worker:
        def __init__(self):                  # once per worker process
            self.seg = Segmenter.from_pretrained(config="davis-fast")
        def info(self):                      # optional: what the driver may want to record
            return {"config": self.seg.config}
        def __call__(self, item):             # once per row
            return segment_video(item.video, item.mask, "out/", segmenter=self.seg)

    with open_engine(Worker, EngineOptions(kind="ray", workers=2), max_rows=len(items)) as engine:
        for outcome in engine.map(items):   # as rows finish (any order under Ray)
            outcome.index, outcome.value, outcome.error

Engines:

* ``sequential`` (default): the worker is built in this process and rows run
  in order.  Ray is not imported.
* ``ray``: a pool of Ray actors (:mod:`vidprop.ray_pool`), one per worker,
  each holding its model; each actor has one row in flight at a time, the
  next row goes to whichever actor finishes first.  ``address=None`` uses the
  Ray session already initialised in this process, else starts a local Ray
  instance for the run and shuts it down afterwards; ``"auto"`` or
  ``"HOST:PORT"`` joins an existing cluster.  A row whose worker's process
  dies (killed, out of host memory, crashed) runs again on a new worker up to
  ``retries`` times, then comes back with a :class:`WorkerLostError`; a row
  whose worker's machine is lost runs again on a live worker without
  counting.  A worker that cannot be placed within ``placement_timeout``
  leaves the pool (one warning) and joins if resources appear; with no
  worker left, ``map`` raises :class:`NoWorkersLeftError`.

Ray Core actors rather than Ray Data: a row is a whole video (seconds to
minutes of work) whose outputs are files the worker writes itself, so there
is nothing to stream between stages; the driver needs each row's result as
soon as it finishes (progress, report, one line per failure) and a failing
row must not fail the others.  Actors give exactly that, with Ray's
scheduling, placement over machines and fault tolerance, and without Ray
Data's start-up cost, block bookkeeping and its own progress output.
"""

from __future__ import annotations

import contextlib
import logging
from typing import Any, Callable, Iterable, Iterator, Sequence

from vidprop.engine_core import (
    ENGINES,
    EngineOptions,
    NoWorkersLeftError,
    Outcome,
    Placement,
    WorkerLostError,
    quiet_worker_logs,
    ray_session,
    resolve_placement,
)

__all__ = [
    "ENGINES",
    "EngineOptions",
    "NoWorkersLeftError",
    "Outcome",
    "Placement",
    "WorkerLostError",
    "open_engine",
    "quiet_worker_logs",
    "ray_session",
    "resolve_placement",
    "run_all",
]

log = logging.getLogger(__name__)


# ====================================================================== engines
class _SequentialEngine:
    def __init__(self, factory: Callable[[], Any]) -> None:
        self.worker = factory()
        info = getattr(self.worker, "info", None)
        self.info: dict[str, Any] = dict(info() or {}) if callable(info) else {}
        self.placement = Placement(1, 0.0, 0.0)

    def map(self, items: Sequence[Any]) -> Iterator[Outcome]:
        for i, item in enumerate(items):
            try:
                value = self.worker(item)
            except Exception as exc:  # noqa: BLE001 - handed to the caller, as under Ray
                yield Outcome(i, error=exc)
            else:
                yield Outcome(i, value=value)

    def close(self) -> None:
        self.worker = None


@contextlib.contextmanager
def open_engine(
    factory: Callable[[], Any],
    options: EngineOptions | None = None,
    *,
    max_rows: int,
    wants_gpu: bool = True,
) -> Iterator[Any]:
    """Build the workers (loading their models; a load error is raised here) and yield the engine.

    The engine has ``map(items) -> Iterator[Outcome]`` (rows in any order
    under Ray), ``info`` (the first worker's ``info()`` dict) and
    ``placement`` (workers, GPUs and CPUs per worker).  ``max_rows`` caps the
    number of Ray workers; ``wants_gpu=False`` (a CPU run) reserves no GPU by
    default.  ``factory`` must be picklable for Ray (a top-level class or
    function, or a ``functools.partial`` of one).
    """
    options = options or EngineOptions()
    if options.kind == "sequential":
        engine: Any = _SequentialEngine(factory)
    else:
        from vidprop.ray_pool import RayPool

        engine = RayPool(factory, options, max(1, max_rows), wants_gpu)
    try:
        yield engine
    finally:
        engine.close()


def run_all(factory: Callable[[], Any], items: Iterable[Any], options: EngineOptions | None = None,
            *, wants_gpu: bool = True) -> list[Outcome]:
    """Every row's :class:`Outcome`, in the order of ``items``."""
    items = list(items)
    if not items:
        return []
    with open_engine(factory, options, max_rows=len(items), wants_gpu=wants_gpu) as engine:
        out = list(engine.map(items))
    return sorted(out, key=lambda o: o.index)
