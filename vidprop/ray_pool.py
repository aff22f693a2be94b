"""The Ray engine of :mod:`vidprop.engine`: a pool of actors that outlives the machines it runs on.

Each worker is one Ray actor holding one loaded worker (its model).  The
pool, not Ray, restarts workers, so that it can tell apart the two ways a
worker goes away:

* its **process died** on a live machine (killed, out of host memory, a crash
  in a decoder): the row it was running may be the cause, so the row goes
  back to the queue and counts against its ``retries``; a row whose worker
  died ``retries + 1`` times ends with a :class:`~vidprop.engine.WorkerLostError`;
* its **machine was lost** (the node died, was preempted or cannot be
  reached): not the row's doing, so the row goes back to the queue without
  counting and runs on a worker that is alive.

Either way a new actor is asked for in its place (Ray puts it wherever the
resources are).  An actor that cannot be placed within
``placement_timeout`` seconds leaves the pool with one warning line and the
run goes on with fewer workers; it stays asked for, so it joins (as does any
worker started later) when resources appear: a node added to the cluster,
an autoscaler's new machine.  When no worker is left, :meth:`RayPool.map`
raises :class:`~vidprop.engine.NoWorkersLeftError` (one line); the rows that
finished before are the caller's, and a re-run resumes from them.

Actors are created with ``max_restarts=0``: a Ray-restarted actor waits for
its resources without limit, which is how a run used to hang on a lost node.
:meth:`RayPool.close` kills every actor (also on Ctrl-C); a driver that is
killed outright takes its actors with it (Ray's fate sharing).
"""

from __future__ import annotations

import contextlib
import logging
import os
import sys
import time
from dataclasses import dataclass
from typing import Any, Callable, Iterator, Sequence

from vidprop.engine_core import (
    EngineOptions,
    NoWorkersLeftError,
    Outcome,
    WorkerLostError,
    quiet_worker_logs,
    ray_session,
    resolve_placement,
)
from vidprop.errors import ConfigError

__all__ = ["RayPool", "PoolStats", "RowActor", "WorkerCall", "UNKNOWN_LOSSES"]

log = logging.getLogger(__name__)

#: A worker that stopped answering while its node still looks alive (a crashed machine not yet declared dead,
#: a network split) is counted as lost with its machine this many times per row; after that, as a process death.
UNKNOWN_LOSSES = 3

_TICK = 1.0  # longest wait between looks at deadlines and machines


class WorkerCall:
    """A picklable (ok, value-or-exception) return: worker exceptions travel as values, not Ray task errors."""

    __slots__ = ("ok", "value")

    def __init__(self, ok: bool, value: Any) -> None:
        self.ok, self.value = ok, value


class RowActor:
    """One worker process: placed and started first (light: the factory is not even unpickled), then
    :meth:`load` builds the worker (the model) once."""

    def __init__(self, threads: int) -> None:
        os.environ["OMP_NUM_THREADS"] = str(threads)
        quiet_worker_logs()
        self.threads = threads
        self.worker: Any = None

    def node(self) -> str:
        import ray

        return str(ray.get_runtime_context().get_node_id())

    def load(self, factory: Callable[[], Any]) -> WorkerCall:
        try:
            self.worker = factory()
        except Exception as exc:  # noqa: BLE001 - handed to the driver
            return WorkerCall(False, exc)
        if "torch" in sys.modules:  # the worker's compute threads = its CPUs
            sys.modules["torch"].set_num_threads(self.threads)
        info = getattr(self.worker, "info", None)
        return WorkerCall(True, dict(info() or {}) if callable(info) else {})

    def run(self, item: Any) -> WorkerCall:
        try:
            return WorkerCall(True, self.worker(item))
        except Exception as exc:  # noqa: BLE001 - handed to the driver
            return WorkerCall(False, exc)


@dataclass
class PoolStats:
    """What happened to the pool during a run."""

    started: int = 0  # actors asked for (the first ones and every replacement)
    joined_late: int = 0  # workers that became ready after their placement deadline (resources appeared)
    lost: int = 0  # workers lost with their machine
    died: int = 0  # worker processes that died on a live machine
    left: int = 0  # workers that left the pool (not placed in time, failed to load again)
    requeued: int = 0  # rows sent back to the queue because their worker went away (run again)

    def as_dict(self) -> dict[str, int]:
        return {"workers_lost": self.lost, "worker_processes_died": self.died, "workers_left": self.left,
                "workers_joined_late": self.joined_late, "rows_requeued": self.requeued}


@dataclass
class _Worker:
    actor: Any
    serial: int
    created: float
    phase: str = "placing"  # placing -> loading -> idle <-> busy
    ref: Any = None  # the outstanding call: node(), load() or run()
    load_ref: Any = None
    node: str | None = None
    row: int | None = None
    overdue: bool = False  # not placed within the deadline: warned, left the pool (joins if placed later)


class RayPool:
    """``map(items)`` over Ray actors that are replaced, dropped and joined as machines come and go."""

    def __init__(self, factory: Callable[[], Any], options: EngineOptions, max_rows: int, wants_gpu: bool) -> None:
        self._stack = contextlib.ExitStack()
        self.workers: list[_Worker] = []
        self.stats = PoolStats()
        self.info: dict[str, Any] = {}
        self._ready_once = False
        try:
            ray = self.ray = self._stack.enter_context(ray_session(options.address))
            self.placement = p = resolve_placement(options, ray.cluster_resources(), max_rows, wants_gpu=wants_gpu)
            log.info("Ray engine: %d worker(s), %g GPU and %g CPU each", p.workers, p.gpus_per_worker, p.cpus_per_worker)
            self._cls = ray.remote(RowActor).options(num_gpus=p.gpus_per_worker, num_cpus=p.cpus_per_worker,
                                                     max_restarts=0, max_task_retries=0)
            self._factory, self._threads = factory, max(1, int(p.cpus_per_worker))
            self.retries, self.placement_timeout = options.retries, options.placement_timeout
            self._stack.callback(self._kill_all)
            for _ in range(p.workers):
                self._spawn()
            self._wait_first()
        except BaseException:
            self._stack.close()
            raise

    # ------------------------------------------------------------------ actors
    def _spawn(self) -> None:
        self.stats.started += 1
        actor = self._cls.remote(self._threads)
        w = _Worker(actor, self.stats.started, time.monotonic())
        w.ref = actor.node.remote()
        w.load_ref = actor.load.remote(self._factory)  # queued behind node(): runs once the actor is placed
        self.workers.append(w)

    def _drop(self, w: _Worker) -> None:
        with contextlib.suppress(Exception):
            self.ray.kill(w.actor, no_restart=True)
        self.workers.remove(w)

    def _kill_all(self) -> None:
        for w in list(self.workers):
            self._drop(w)

    def _alive(self) -> list[_Worker]:
        """Workers that run rows or may soon: placed, or still within their placement deadline."""
        return [w for w in self.workers if w.phase != "placing" or not w.overdue]

    def _describe_need(self) -> str:
        p = self.placement
        free = {k: v for k, v in self.ray.available_resources().items() if k in ("CPU", "GPU")}
        return (f"each asks for {p.cpus_per_worker:g} CPU and {p.gpus_per_worker:g} GPU; free in the cluster: "
                + (", ".join(f"{v:g} {k}" for k, v in sorted(free.items())) or "nothing"))

    def _node_alive(self, node: str | None) -> bool:
        if node is None:
            return True
        with contextlib.suppress(Exception):
            for n in self.ray.nodes():
                if n.get("NodeID") == node:
                    return bool(n.get("Alive"))
        return True

    def _loss_cause(self, w: _Worker, exc: BaseException) -> str:
        """``node`` (its machine is gone), ``process`` (its process died on a live machine) or ``unknown``."""
        from ray.exceptions import ActorDiedError

        text = str(exc)
        if "node has died" in text or getattr(exc, "preempted", False) or not self._node_alive(w.node):
            return "node"
        if isinstance(exc, ActorDiedError):
            return "process"
        return "unknown"  # ActorUnavailableError: not answering, its machine not (yet) declared dead

    # ------------------------------------------------------------------ events
    def _refs(self) -> list[Any]:
        return [w.ref for w in self.workers if w.ref is not None]

    def _step(self, timeout: float) -> list[tuple[_Worker, Any, BaseException | None]]:
        """Wait up to ``timeout`` s for calls to return; (worker, value, actor error) of each that did."""
        refs = self._refs()
        if not refs:
            time.sleep(min(timeout, 0.2))
            return []
        done, rest = self.ray.wait(refs, num_returns=1, timeout=timeout)
        if not done:
            return []
        if rest:  # every other call that has returned too
            done += self.ray.wait(rest, num_returns=len(rest), timeout=0)[0]
        from ray.exceptions import RayActorError

        by_ref = {w.ref: w for w in self.workers if w.ref is not None}
        out = []
        for ref in done:
            w = by_ref[ref]
            try:
                out.append((w, self.ray.get(ref), None))
            except RayActorError as exc:
                out.append((w, None, exc))
        return out

    def _handle_setup(self, w: _Worker, value: Any) -> None:
        """node() or load() returned."""
        if w.phase == "placing":
            w.node, w.phase, w.ref = str(value), "loading", w.load_ref
            if w.overdue:
                log.info("a Ray worker was placed after all (node %s): it joins once its model is loaded", w.node[:8])
            return
        if not value.ok:  # load() raised
            if not self._ready_once:
                raise value.value  # as with no Ray: a model that does not load fails the run before any row
            self._drop(w)
            self.stats.left += 1
            log.warning("a Ray worker could not load on node %s (%s); going on with %d worker(s)", (w.node or "?")[:8],
                        value.value, len(self._alive()))
            return
        w.phase, w.ref = "idle", None
        if not self._ready_once:
            self.info, self._ready_once = value.value, True
        if w.overdue:
            self.stats.joined_late += 1
            log.info("a Ray worker joined on node %s; %d worker(s) now", (w.node or "?")[:8],
                     sum(x.phase in ("idle", "busy") for x in self.workers))

    def _handle_loss(self, w: _Worker, exc: BaseException) -> str:
        """A worker's actor went away: drop it, ask for a new one when that makes sense; returns the cause."""
        cause = self._loss_cause(w, exc)
        phase = w.phase
        self._drop(w)
        first_line = str(exc).splitlines()[0][:200] if str(exc) else type(exc).__name__
        if cause == "process" and phase in ("placing", "loading"):
            self.stats.died += 1
            self.stats.left += 1  # dying while loading the model would do it again: no replacement
            log.warning("a Ray worker's process died while starting (%s); going on with %d worker(s)", first_line,
                        len(self._alive()))
            return cause
        if cause == "process":
            self.stats.died += 1
        else:
            self.stats.lost += 1
            log.info("a Ray worker on node %s was lost (%s); asking Ray for another one", (w.node or "?")[:8],
                     "its node died" if cause == "node" else "it stopped answering")
        self._spawn()
        return cause

    def _check_deadlines(self) -> None:
        now = time.monotonic()
        late = [w for w in self.workers if w.phase == "placing" and not w.overdue
                and now - w.created > self.placement_timeout]
        for w in late:
            w.overdue = True
            self.stats.left += 1
        if late:
            log.warning("%d Ray worker(s) could not be placed within %gs (%s); going on with %d worker(s); "
                        "they join if resources appear", len(late), self.placement_timeout, self._describe_need(),
                        len(self._alive()))

    def _next_timeout(self) -> float:
        now = time.monotonic()
        waits = [w.created + self.placement_timeout - now for w in self.workers if w.phase == "placing" and not w.overdue]
        return max(0.05, min([_TICK, *waits]))

    def _wait_first(self) -> None:
        while not self._ready_once:
            self._check_deadlines()
            if not self._alive():
                need = self._describe_need()
                raise ConfigError(f"no Ray worker could be placed and started within {self.placement_timeout:g}s "
                                  f"({need}); lower --gpus-per-worker / --cpus-per-worker, or add machines")
            for w, value, exc in self._step(self._next_timeout()):
                if exc is not None:
                    self._handle_loss(w, exc)
                else:
                    self._handle_setup(w, value)

    # ------------------------------------------------------------------ rows
    def map(self, items: Sequence[Any]) -> Iterator[Outcome]:
        todo = list(range(len(items)))[::-1]  # pop() takes the next row; a row sent back goes last (runs next)
        deaths = [0] * len(items)
        unknown = [0] * len(items)
        finished = 0
        try:
            while finished < len(items):
                for w in self.workers:
                    if w.phase == "idle" and todo:
                        i = todo.pop()
                        w.phase, w.row, w.ref = "busy", i, w.actor.run.remote(items[i])
                self._check_deadlines()
                if not self._alive():
                    raise NoWorkersLeftError(
                        f"no Ray worker is left ({self.stats.lost} lost with their machines, {self.stats.left} could "
                        f"not be placed or started; {self._describe_need()}): {len(items) - finished} of {len(items)} "
                        "rows not done; the rows done are kept, run the same command again to resume")
                for w, value, exc in self._step(self._next_timeout()):
                    if w.phase != "busy":
                        if exc is not None:
                            self._handle_loss(w, exc)
                        else:
                            self._handle_setup(w, value)
                        continue
                    i = w.row
                    assert i is not None
                    if exc is None:
                        w.phase, w.row, w.ref = "idle", None, None
                        finished += 1
                        yield Outcome(i, value=value.value) if value.ok else Outcome(i, error=value.value)
                        continue
                    cause = self._handle_loss(w, exc)
                    if cause == "unknown":
                        unknown[i] += 1
                        if unknown[i] > UNKNOWN_LOSSES:
                            cause = "process"
                    if cause == "process":
                        deaths[i] += 1
                        if deaths[i] > self.retries:
                            finished += 1
                            yield Outcome(i, error=WorkerLostError(
                                f"the worker process died {deaths[i]} time(s) running this row "
                                f"(killed, out of memory or crashed): {str(exc).splitlines()[0][:300]}"))
                            continue
                    self.stats.requeued += 1
                    todo.append(i)
        finally:
            for w in self.workers:  # the caller stopped early (or the pool gave up): no row left running
                if w.phase == "busy" and w.ref is not None:
                    with contextlib.suppress(Exception):
                        self.ray.cancel(w.ref, force=True)
                    w.phase, w.row, w.ref = "idle", None, None

    def close(self) -> None:
        self._stack.close()
