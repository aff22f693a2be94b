"""What the video benchmarks (DAVIS, YouTube-VOS, JHMDB) share to run their units (sequences, videos) on an engine.

* :func:`split_task_argument`: a ``segmenter=`` / ``tracker=`` argument as a
  loaded task or a callable that builds one in each worker;
* :func:`segment_run` / :class:`SegmentRun`: a segmentation run's settings and
  paths, resolved before any model loads; :func:`segmenting_engine`: its
  engine, once the settings are checked and the run's record written;
* :class:`SegmenterWorker`: one Segmenter per engine worker (a benchmark
  subclasses it with its ``__call__``);
* :class:`UnwrittenUnits`: units that could not be written (a full disk),
  reported together at the end.

    run = segment_run(config, model, device, dtype, segmenter, engine, root, out)
    with segmenting_engine(run, SequenceWorker, len(todo), "sequence", record, overwrite=False) as eng:
        for outcome in eng.map(todo): ...
"""

from __future__ import annotations

import contextlib
import functools
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterator

from vidprop.engine import EngineOptions, open_engine
from vidprop.errors import ConfigError, WriteError
from vidprop.eval.records import check_run_settings, write_run_record
from vidprop.io.atomic import check_writable_target

__all__ = ["split_task_argument", "SegmentRun", "segment_run", "segmenting_engine", "SegmenterWorker",
           "UnwrittenUnits"]

log = logging.getLogger(__name__)


def split_task_argument(task: Any, what: str) -> tuple[Any, Callable[[], Any] | None]:
    """A ``segmenter=`` / ``tracker=`` argument -> (loaded task or None, callable that builds one or None)."""
    from vidprop.tasks.base import PropagationTask

    if task is None or isinstance(task, PropagationTask):
        return task, None
    if callable(task):
        return None, task
    raise ConfigError(f"{what} must be a loaded task or a callable returning one, got {type(task).__name__}")


@dataclass(frozen=True)
class SegmentRun:
    """The settings of a segmentation benchmark run, resolved before any model loads."""

    config: Any  # TaskConfig
    loaded: Any  # a Segmenter given loaded (in this process only), or None
    build: Callable[[], Any] | None  # a callable building one in each worker, or None
    engine: EngineOptions
    root: Path
    out: Path


def segment_run(config: Any, model: str | None, device: str | None, dtype: str | None, segmenter: Any,
                engine: EngineOptions | None, root: str | Path, out: str | Path) -> SegmentRun:
    """The run's TaskConfig (a preset name or TaskConfig with the model flags; a loaded segmenter's own), what
    builds the segmenter, and the paths (absolute when workers may run on other machines)."""
    from vidprop.config import TaskConfig, load_preset

    cfg = config if isinstance(config, TaskConfig) else load_preset(config)
    cfg = cfg.override(extractor={"model": model, "device": device, "dtype": dtype})
    loaded, build = split_task_argument(segmenter, "segmenter")
    if loaded is not None:
        cfg = loaded.config
    engine = engine or EngineOptions()
    if engine.kind != "sequential":  # workers may run elsewhere: absolute paths
        root, out = Path(root).resolve(), Path(out).resolve()
    return SegmentRun(cfg, loaded, build, engine, Path(root), Path(out))


@contextlib.contextmanager
def segmenting_engine(run: SegmentRun, worker: type, units: int, unit_word: str,
                      record: Callable[[Any, str | None], dict[str, Any]], *, overwrite: bool,
                      device: str | None = None, dtype: str | None = None) -> Iterator[Any]:
    """The engine whose ``worker`` s (a :class:`SegmenterWorker` subclass) propagate into ``run.out``.

    Before any model loads: the settings are checked against an earlier run's
    (a built segmenter's once it is built), a loaded segmenter is refused on
    Ray, ``run.out`` must be writable.  Then ``record(config, revision)`` is
    written to ``run.out/config.yaml``.  ``unit_word``: "sequence", "video"
    (for the messages).
    """
    cfg_path = run.out / "config.yaml"
    if run.build is None:  # the settings are known before any model loads
        check_run_settings(cfg_path, run.config, unit_word, overwrite)
    if run.loaded is not None and run.engine.kind != "sequential":
        raise ConfigError("a Segmenter object stays in this process: give config= or a callable that builds "
                          "the segmenter (segmenter=) to propagate on Ray workers")
    check_writable_target(run.out, True, folder=True)
    factory = functools.partial(worker, run.config, str(run.out), overwrite=overwrite, device=device, dtype=dtype,
                                segmenter=run.loaded, build=run.build)
    wants_gpu = not str(device or run.config.extractor.device).startswith("cpu")
    with open_engine(factory, run.engine, max_rows=units, wants_gpu=wants_gpu) as eng:
        cfg = eng.info["config"]
        if run.build is not None:  # a built segmenter's settings, checked before any unit runs
            check_run_settings(cfg_path, cfg, unit_word, overwrite)
        write_run_record(cfg_path, record(cfg, eng.info.get("revision")))
        yield eng


class UnwrittenUnits:
    """Units (sequences, videos) whose results could not be written (a full disk): each is logged with its
    reason and the others go on; :meth:`raise_if_any` raises one :class:`WriteError` for them at the end."""

    def __init__(self, unit_word: str, total: int) -> None:
        self.unit_word, self.total = unit_word, total
        self.failed: list[tuple[str, str]] = []

    def take(self, name: str, exc: BaseException) -> bool:
        """Record ``exc`` for unit ``name`` when it is a write failure (True); False: not one, the caller raises."""
        if not isinstance(exc, WriteError):
            return False
        log.error("%s %s failed: %s", self.unit_word, name, exc)
        self.failed.append((name, str(exc)))
        return True

    def raise_if_any(self) -> None:
        if not self.failed:
            return
        _, reason = self.failed[0]
        more = f" (and {len(self.failed) - 1} more, logged above)" if len(self.failed) > 1 else ""
        raise WriteError(f"{len(self.failed)} of {self.total} {self.unit_word}(s) could not be written, nothing "
                         f"scored: {reason}{more}; the other {self.unit_word}s are complete and a re-run "
                         "redoes only these")


class SegmenterWorker:
    """Holds one Segmenter for a results folder; built once per engine worker (the model loads once).

    ``config`` is the run's TaskConfig; ``segmenter`` an already loaded one
    (in-process runs only); ``build`` a callable returning one.
    """

    def __init__(self, config: Any, out: str | Path, *, overwrite: bool = False, device: str | None = None,
                 dtype: str | None = None, segmenter: Any = None, build: Callable[[], Any] | None = None) -> None:
        if segmenter is None:
            if build is not None:
                segmenter = build()
            else:
                from vidprop.tasks.segment import Segmenter

                segmenter = Segmenter.from_pretrained(config=config, device=device, dtype=dtype)
        self.segmenter = segmenter
        self.out = Path(out)
        self.overwrite = overwrite

    def info(self) -> dict[str, Any]:
        ext = getattr(self.segmenter, "extractor", None)
        return {"config": self.segmenter.config, "revision": getattr(ext, "model_revision", None)}
