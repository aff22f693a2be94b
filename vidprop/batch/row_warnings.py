"""A batch row's warnings, kept so they reach ``batch_report.json`` and, from a Ray worker, the driver's log.

A Ray worker's log lines stay in that worker's process; the row's result
carries its warnings back, and the driver logs them under the row's name.
"""

from __future__ import annotations

import contextlib
import logging
from typing import Iterator

__all__ = ["MAX_ROW_WARNINGS", "kept_warnings"]

#: At most this many warnings are kept per row (the report stays small).
MAX_ROW_WARNINGS = 20


@contextlib.contextmanager
def kept_warnings(logger_name: str = "vidprop") -> Iterator[list[str]]:
    """The messages (on one line) of the WARNING records of ``logger_name`` while the block runs: distinct, in
    order, at most :data:`MAX_ROW_WARNINGS`.  Errors are not kept (a failed row has its error)."""
    kept: list[str] = []

    class Keep(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            msg = " ".join(record.getMessage().split())
            if record.levelno == logging.WARNING and msg not in kept and len(kept) < MAX_ROW_WARNINGS:
                kept.append(msg)

    logger = logging.getLogger(logger_name)
    handler = Keep(logging.WARNING)
    logger.addHandler(handler)
    try:
        yield kept
    finally:
        logger.removeHandler(handler)
