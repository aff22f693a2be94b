"""Progress of long work, in a terminal and in logs.

:func:`progress_bar` returns a tqdm bar when stderr is a terminal, and
otherwise a :class:`LogProgress` that writes an INFO log line every few
percent or seconds (``nohup``, batch schedulers, CI logs), so progress is
visible either way.  Both offer the part of tqdm's interface vidprop uses:
``update``, ``set_postfix_str``, ``close``, iteration and ``with``.

    with progress_bar(total=len(frames), desc="segment", unit="frame", enabled=progress) as bar:
        for ...:
            bar.update(1)
"""

from __future__ import annotations

import logging
import sys
import time
from typing import Any, Callable, Iterable, Iterator

__all__ = ["progress_bar", "LogProgress", "stderr_is_terminal"]

log = logging.getLogger(__name__)


def stderr_is_terminal() -> bool:
    """Whether stderr is an interactive terminal (where a live bar can redraw)."""
    try:
        return sys.stderr.isatty()
    except (AttributeError, ValueError):  # replaced or closed stderr
        return False


class LogProgress:
    """A tqdm-like counter that logs ``desc: n/total (p%), rate unit/s, ETA`` lines.

    A line is written when the count crosses another ``percent_step`` percent
    of ``total``, or ``every`` seconds after the last line (the only rule when
    the total is unknown), and a final line on :meth:`close`.  Lines are never
    closer than ``min_gap`` seconds, except the final one.
    """

    def __init__(
        self,
        iterable: Iterable | None = None,
        *,
        total: int | None = None,
        desc: str = "",
        unit: str = "it",
        percent_step: float = 5.0,
        every: float = 30.0,
        min_gap: float = 1.0,
        clock: Callable[[], float] = time.monotonic,
        logger: logging.Logger | None = None,
    ) -> None:
        if total is None and iterable is not None and hasattr(iterable, "__len__"):
            total = len(iterable)  # type: ignore[arg-type]
        self.iterable = iterable
        self.total = total
        self.desc = desc or "progress"
        self.unit = unit
        self.n = 0
        self.postfix = ""
        self.percent_step = percent_step
        self.every = every
        self.min_gap = min_gap
        self._clock = clock
        self._log = logger or log
        self._start = clock()
        self._last_time = self._start
        self._last_bucket = 0
        self._closed = False

    def _line(self) -> str:
        elapsed = self._clock() - self._start
        rate = self.n / elapsed if elapsed > 0 else 0.0
        if self.total:
            pct = 100.0 * self.n / self.total
            text = f"{self.desc}: {self.n}/{self.total} {self.unit}s ({pct:.0f}%), {rate:.3g} {self.unit}/s"
            if 0 < self.n < self.total and rate > 0:
                text += f", about {_duration((self.total - self.n) / rate)} left"
        else:
            text = f"{self.desc}: {self.n} {self.unit}s, {rate:.3g} {self.unit}/s"
        if self.postfix:
            text += f" ({self.postfix})"
        return text

    def update(self, n: int = 1) -> None:
        self.n += n
        now = self._clock()
        if now - self._last_time < self.min_gap:
            return
        due = now - self._last_time >= self.every
        if self.total:
            bucket = int(100.0 * self.n / self.total // self.percent_step)
            due = due or bucket > self._last_bucket
        if due and self.n < (self.total or float("inf")):
            self._emit(now)

    def _emit(self, now: float) -> None:
        self._log.info("%s", self._line())
        self._last_time = now
        if self.total:
            self._last_bucket = int(100.0 * self.n / self.total // self.percent_step)

    def set_postfix_str(self, text: str, refresh: bool = True) -> None:  # noqa: ARG002 - tqdm's signature
        self.postfix = str(text)

    def set_description(self, desc: str) -> None:
        self.desc = desc

    def close(self) -> None:
        if not self._closed:
            self._closed = True
            if self.n:
                self._emit(self._clock())

    def __iter__(self) -> Iterator[Any]:
        if self.iterable is None:
            raise TypeError("this progress counter was made without an iterable")
        try:
            for item in self.iterable:
                yield item
                self.update(1)
        finally:
            self.close()

    def __enter__(self) -> "LogProgress":
        return self

    def __exit__(self, *_: Any) -> None:
        self.close()


def _duration(seconds: float) -> str:
    s = int(round(seconds))
    if s < 120:
        return f"{s} s"
    if s < 7200:
        return f"{s // 60} min"
    return f"{s // 3600} h {s % 3600 // 60} min"


def progress_bar(
    iterable: Iterable | None = None,
    *,
    total: int | None = None,
    desc: str = "",
    unit: str = "it",
    enabled: bool = True,
    leave: bool = False,
    terminal: bool | None = None,
) -> Any:
    """A progress display: tqdm on a terminal, periodic log lines elsewhere, nothing when not ``enabled``.

    ``terminal`` forces the choice (default: whether stderr is a terminal).
    """
    from tqdm.auto import tqdm

    if not enabled:
        return tqdm(iterable, total=total, disable=True)
    if terminal if terminal is not None else stderr_is_terminal():
        return tqdm(iterable, total=total, desc=desc, unit=unit, leave=leave, file=sys.stderr)
    return LogProgress(iterable, total=total, desc=desc, unit=unit)
