"""Many videos in one run: ``vidprop batch`` and its Python API.

    from vidprop.batch import run_batch
    from vidprop.engine import EngineOptions
    report = run_batch("videos.jsonl", "results/", task="segment",
                       engine=EngineOptions(kind="ray", workers=4))
    print(report.summary())          # also in results/batch_report.json

Input formats: :mod:`vidprop.batch.manifest`; running, completeness and the
report: :mod:`vidprop.batch.runner`; engines: :mod:`vidprop.engine`.
"""

from __future__ import annotations

from vidprop.batch.manifest import BatchRow, read_input, read_manifest, scan_folder
from vidprop.batch.runner import BatchReport, RowResult, RowRunner, run_batch

__all__ = ["BatchRow", "BatchReport", "RowResult", "RowRunner", "read_input", "read_manifest", "scan_folder",
           "run_batch"]
