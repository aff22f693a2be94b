"""The toolkit's CSVs and printed tables, and a per-sequence bar chart."""

from __future__ import annotations

import csv
import logging
import math
from pathlib import Path
from typing import Sequence

import numpy as np
from PIL import Image

from vidprop.eval.davis.scoring import DavisScores
from vidprop.io.atomic import atomic_file

__all__ = ["GLOBAL_COLUMNS", "SEQUENCE_COLUMNS", "write_csvs", "format_tables", "write_summary_image"]

log = logging.getLogger(__name__)

GLOBAL_COLUMNS = ("J&F-Mean", "J-Mean", "J-Recall", "J-Decay", "F-Mean", "F-Recall", "F-Decay")
SEQUENCE_COLUMNS = ("Sequence", "J-Mean", "F-Mean")


def _csv_float(v: float) -> str:
    return "" if math.isnan(v) else "%.3f" % v


def write_csvs(scores: DavisScores, out_dir: str | Path, set: str | None = None) -> tuple[Path, Path]:
    """Write ``global_results-<set>.csv`` and ``per-sequence_results-<set>.csv`` (atomically).

    Same content as the toolkit's (pandas ``to_csv(index=False, float_format="%.3f")``).
    Existing files are replaced.
    """
    set = set or scores.set
    out_dir = Path(out_dir)
    g_path = out_dir / f"global_results-{set}.csv"
    s_path = out_dir / f"per-sequence_results-{set}.csv"
    with atomic_file(g_path, overwrite=True) as tmp:
        with open(tmp, "w", newline="") as fh:
            w = csv.writer(fh, lineterminator="\n")
            w.writerow(GLOBAL_COLUMNS)
            w.writerow([_csv_float(scores.global_row[c]) for c in GLOBAL_COLUMNS])
    with atomic_file(s_path, overwrite=True) as tmp:
        with open(tmp, "w", newline="") as fh:
            w = csv.writer(fh, lineterminator="\n")
            w.writerow(SEQUENCE_COLUMNS)
            for name, jm, fm in scores.per_sequence_rows():
                w.writerow([name, _csv_float(jm), _csv_float(fm)])
    log.info("wrote %s and %s", g_path, s_path)
    return g_path, s_path


def _trim_zeros(strs: list[str]) -> list[str]:
    """pandas' ``_trim_zeros_float``: drop trailing zeros equally from all numbers, keep one decimal."""
    import re

    number = re.compile(r"^\s*[\+-]?[0-9]+\.[0-9]*$")

    def should_trim(vals: list[str]) -> bool:
        nums = [x for x in vals if number.match(x)]
        return len(nums) > 0 and all(x.endswith("0") for x in nums)

    while should_trim(strs):
        strs = [x[:-1] if number.match(x) else x for x in strs]
    return [x + "0" if number.match(x) and x.endswith(".") else x for x in strs]


def _pandas_float_column(values: Sequence[float]) -> list[str]:
    """A float column as pandas' ``DataFrame.to_string(index=False)`` prints it (display.precision 6)."""
    digits = 6

    def fmt(spec: str) -> list[str]:
        return _trim_zeros(["NaN" if math.isnan(v) else spec.format(v) for v in values])

    strs = fmt("{:.6f}")
    too_long = max((len(x) for x in strs), default=0) > digits + 6
    a = np.abs(np.asarray(values, dtype=np.float64))
    with np.errstate(invalid="ignore"):
        large = bool(np.any(a > 1e6))
        small = bool(np.any((a < 10**-digits) & (a > 0)))
    if small or (too_long and large):
        strs = fmt("{:.6e}")
    return strs


def _pandas_table(columns: Sequence[str], cols: Sequence[list[str]], numeric: Sequence[bool]) -> str:
    out_cols = []
    for name, vals, is_num in zip(columns, cols, numeric):
        header = (" " + name) if is_num else name
        width = max([len(header), *(len(v) for v in vals)])
        out_cols.append([header.rjust(width)] + [v.rjust(width) for v in vals])
    return "\n".join(" ".join(row) for row in zip(*out_cols))


def format_tables(scores: DavisScores) -> str:
    """The two tables ``evaluation_method.py`` prints after a fresh evaluation (same text)."""
    g_cols = [_pandas_float_column([scores.global_row[c]]) for c in GLOBAL_COLUMNS]
    table_g = _pandas_table(GLOBAL_COLUMNS, g_cols, [True] * len(GLOBAL_COLUMNS))
    rows = scores.per_sequence_rows()
    s_cols = [
        [r[0] for r in rows],
        _pandas_float_column([r[1] for r in rows]),
        _pandas_float_column([r[2] for r in rows]),
    ]
    table_s = _pandas_table(SEQUENCE_COLUMNS, s_cols, [False, True, True])
    return (
        f"--------------------------- Global results for {scores.set} ---------------------------\n"
        f"{table_g}\n"
        f"\n---------- Per sequence results for {scores.set} ----------\n"
        f"{table_s}\n"
    )


def write_summary_image(scores: DavisScores, path: str | Path) -> Path:
    """A horizontal bar chart of per-sequence J&F (PNG, drawn with PIL), written atomically."""
    from PIL import ImageDraw, ImageFont

    path = Path(path)
    seqs = [s for s in scores.sequences if s.objects]
    font = ImageFont.load_default()
    row_h, label_w, bar_w, pad = 16, 170, 520, 10
    title_h = 34
    width = pad + label_w + bar_w + 60 + pad
    height = title_h + row_h * max(len(seqs), 1) + 2 * pad + 16
    img = Image.new("RGB", (width, height), "white")
    d = ImageDraw.Draw(img)
    jf = scores.jf_mean
    d.text((pad, pad), f"DAVIS-2017 {scores.set}: J&F {jf:.3f}  J {scores.global_row['J-Mean']:.3f}  "
                       f"F {scores.global_row['F-Mean']:.3f}  ({len(scores.objects)} objects)", fill="black", font=font)
    x0 = pad + label_w
    top = title_h
    for i, s in enumerate(seqs):
        y = top + i * row_h
        v = s.jf_mean
        name = s.name if len(s.name) <= 26 else s.name[:25] + "~"
        d.text((pad, y + 2), name, fill="black", font=font)
        colour = (70, 130, 180) if v >= jf else (220, 120, 60)
        d.rectangle([x0, y + 2, x0 + max(1, int(round(bar_w * min(max(v, 0.0), 1.0)))), y + row_h - 3], fill=colour)
        d.text((x0 + int(bar_w * min(max(v, 0.0), 1.0)) + 4, y + 2), f"{v:.3f}", fill="black", font=font)
    bottom = top + row_h * max(len(seqs), 1)
    for t in (0.0, 0.25, 0.5, 0.75, 1.0):
        x = x0 + int(round(bar_w * t))
        d.line([x, top, x, bottom], fill=(210, 210, 210))
        d.text((x - 8, bottom + 3), f"{t:.2f}", fill="grey", font=font)
    xm = x0 + int(round(bar_w * min(max(jf, 0.0), 1.0)))
    d.line([xm, top - 4, xm, bottom], fill=(200, 0, 0), width=2)
    with atomic_file(path, overwrite=True) as tmp:
        img.save(tmp, format="PNG")
    return path
