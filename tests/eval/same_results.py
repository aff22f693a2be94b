"""Comparing two runs of a pair benchmark (e.g. in process vs on Ray workers)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any


def assert_same_results(a: Path, b: Path) -> dict[str, Any]:
    """``pairs.csv`` byte for byte and ``summary.json`` but its timing; returns a's summary (without seconds)."""
    assert (b / "pairs.csv").read_text() == (a / "pairs.csv").read_text()
    sa, sb = (json.loads((d / "summary.json").read_text()) for d in (a, b))
    sa.pop("seconds"), sb.pop("seconds")
    assert sa == sb
    return sa
