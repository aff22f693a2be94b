"""Progress shown as log lines when stderr is not a terminal."""

from __future__ import annotations

import logging

from vidprop.progress import LogProgress, progress_bar


class Clock:
    def __init__(self) -> None:
        self.t = 0.0

    def __call__(self) -> float:
        return self.t


def _lines(caplog) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.name == "vidprop.progress"]


def test_logs_every_five_percent_and_at_the_end(caplog):
    clock = Clock()
    bar = LogProgress(total=100, desc="segment", unit="frame", clock=clock, every=1e9)
    with caplog.at_level(logging.INFO, logger="vidprop.progress"):
        for _ in range(100):
            clock.t += 2.0  # 0.5 frames/s
            bar.update(1)
        bar.close()
    lines = _lines(caplog)
    # 5, 10, ..., 95 percent, then the final line (100 % is the final one, not an update's)
    assert len(lines) == 20
    assert lines[0] == "segment: 5/100 frames (5%), 0.5 frame/s, about 3 min left"
    assert lines[-1] == "segment: 100/100 frames (100%), 0.5 frame/s"


def test_time_rule_and_min_gap(caplog):
    clock = Clock()
    bar = LogProgress(total=None, desc="jhmdb", unit="video", clock=clock, every=30.0, min_gap=1.0)
    with caplog.at_level(logging.INFO, logger="vidprop.progress"):
        for _ in range(10):
            clock.t += 10.0
            bar.update(1)
        bar.set_postfix_str("PCK 50")
        bar.close()
    lines = _lines(caplog)
    # unknown total: a line at 30 s, 60 s, 90 s, then the final one
    assert lines == [
        "jhmdb: 3 videos, 0.1 video/s",
        "jhmdb: 6 videos, 0.1 video/s",
        "jhmdb: 9 videos, 0.1 video/s",
        "jhmdb: 10 videos, 0.1 video/s (PCK 50)",
    ]


def test_fast_updates_are_throttled(caplog):
    clock = Clock()
    bar = LogProgress(total=1000, desc="x", clock=clock)
    with caplog.at_level(logging.INFO, logger="vidprop.progress"):
        for _ in range(1000):
            clock.t += 0.0001  # the whole run takes 0.1 s: only the final line
            bar.update(1)
        bar.close()
    assert len(_lines(caplog)) == 1


def test_progress_bar_choice():
    from tqdm.auto import tqdm

    assert isinstance(progress_bar(total=3, terminal=False), LogProgress)
    assert isinstance(progress_bar(total=3, terminal=True), tqdm)
    off = progress_bar(range(3), enabled=False)
    assert list(off) == [0, 1, 2]
    it = progress_bar([1, 2, 3], terminal=False)
    assert list(it) == [1, 2, 3] and it.n == 3
