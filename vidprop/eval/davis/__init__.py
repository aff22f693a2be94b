"""DAVIS-2017 semi-supervised evaluation: J&F exactly as the official toolkit.

The numbers are those of ``davis2017-evaluation`` (``evaluation_method.py
--task semi-supervised``) to the last printed digit; see
``docs/davis-eval.md``.  What vidprop does better: it always recomputes
(old CSVs are never shown instead of a fresh score), fails with a clear
:class:`~vidprop.errors.InputError` naming the file on a missing frame, an RGB
PNG, a wrong size or a too-high object id, and scores sequences in parallel.

Python API::

    from vidprop.eval.davis import score_davis, write_csvs, format_tables
    scores = score_davis("DAVIS", "runs/x", set="val", workers=4)
    print(format_tables(scores))          # the toolkit's two tables
    write_csvs(scores, "runs/x")          # global_results-val.csv, per-sequence_results-val.csv
    scores.global_row["J&F-Mean"]

    from vidprop.eval.davis import run_davis   # propagate every sequence, then score
    run_davis("DAVIS", "runs/x", set="val", config="davis")

The package is split along its seams: :mod:`.metrics` (J, F and the
statistics), :mod:`.dataset` (the folder layout), :mod:`.scoring` (a results
folder against the annotations), :mod:`.report` (CSVs, tables, chart) and
:mod:`.runner` (propagation of every sequence, then scoring).

Metrics (pure functions on boolean ``(T, H, W)`` stacks): :func:`db_eval_iou`
(J), :func:`db_eval_boundary` (F, with :func:`seg2bmap` and a disk dilation of
``ceil(0.008 * hypot(H, W))`` pixels) and :func:`db_statistics` (Mean, Recall,
Decay per object).
"""

from __future__ import annotations

from vidprop.eval.davis.dataset import RESOLUTION, SETS, VOID_LABEL, DavisSequence, find_sequences, read_ids, read_set
from vidprop.eval.davis.metrics import (
    BOUND_TH,
    jf_frame,
    boundary_radius,
    db_eval_boundary,
    db_eval_iou,
    db_statistics,
    decay_bins,
    disk,
    seg2bmap,
)
from vidprop.eval.davis.report import GLOBAL_COLUMNS, SEQUENCE_COLUMNS, format_tables, write_csvs, write_summary_image
from vidprop.eval.davis.runner import run_davis, run_note, sequence_is_complete
from vidprop.eval.davis.scoring import DavisScores, ObjectScore, SequenceScore, score_davis, score_sequence

__all__ = [
    "SETS",
    "BOUND_TH",
    "VOID_LABEL",
    "RESOLUTION",
    "GLOBAL_COLUMNS",
    "SEQUENCE_COLUMNS",
    "db_eval_iou",
    "seg2bmap",
    "disk",
    "boundary_radius",
    "db_eval_boundary",
    "decay_bins",
    "db_statistics",
    "DavisSequence",
    "read_set",
    "find_sequences",
    "read_ids",
    "ObjectScore",
    "SequenceScore",
    "DavisScores",
    "score_sequence",
    "score_davis",
    "write_csvs",
    "format_tables",
    "write_summary_image",
    "sequence_is_complete",
    "run_davis",
    "run_note",
    "jf_frame",
]
