"""``vidprop eval davis``: propagate every DAVIS-2017 sequence, then score J&F like the official toolkit."""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

from vidprop.errors import ConfigError

__all__ = ["register_eval", "run"]

log = logging.getLogger("vidprop")

EPILOG = """\
examples:
  # propagate every val sequence with the paper's settings, then score
  vidprop eval davis --root DAVIS/ --set val --out runs/dift-val
  # only score masks you already have (RESULTS/<seq>/00001.png ...)
  vidprop eval davis --root DAVIS/ --results runs/dift-val --score-only
  # a quick look at two sequences, other settings, 2 scoring processes
  vidprop eval davis --root DAVIS/ --out runs/try --sequences bike-packing,blackswan --topk 10 --workers 2
  # test-dev: masks only (no public ground truth; zip OUT and submit it)
  vidprop eval davis --root DAVIS/ --set test-dev --out runs/dift-testdev
  # sequences spread over Ray workers (one per GPU; or a cluster: --address auto)
  vidprop eval davis --root DAVIS/ --out runs/dift-val --engine ray

layout: ROOT/ImageSets/2017/<set>.txt, ROOT/JPEGImages/480p/<seq>/00000.jpg ...,
ROOT/Annotations/480p/<seq>/00000.png ... (indexed PNGs, 255 = void).

presets: `davis` (default) is DIFT's published run exactly (float32 features;
the sequence `shooting` with 10 context frames instead of 28, as DIFT's script);
`davis-fast` has no per-sequence change and half precision on a GPU: NOT the
published protocol. `--backbone dinov3` runs `davis-dinov3` (the DINOv3 authors'
notebook protocol; `--config davis-dinov3-paper` for the paper's text) and prints
the J&F published for the model size it recognises (ViT-L/16 at 960: 79.9).  Changing a setting with a flag makes any run unpublished.
OUT/config.yaml and the printed tables say which preset produced the run.

propagation writes OUT/<seq>/<frame>.png (indexed PNGs, one per frame) and
OUT/config.yaml (settings, model id and revision, vidprop version, date).  It
resumes: a sequence whose folder is complete is skipped (--overwrite redoes it);
an interrupted sequence leaves only a temporary folder.

scoring is exactly the official davis2017-evaluation (semi-supervised): first
and last frames not scored, void counts as background, every object one entry,
J&F = (J-Mean + F-Mean) / 2.  It always recomputes, prints the toolkit's two
tables and writes global_results-<set>.csv, per-sequence_results-<set>.csv and
per-sequence_jf-<set>.png into the results folder (or --out).
"""


def register_eval(sub: argparse._SubParsersAction) -> None:
    from vidprop.cli.common import add_engine_args, add_model_args, add_progress_arg, add_propagation_args
    from vidprop.cli.segment import add_short_side_arg
    from vidprop.eval.davis import SETS

    p = sub.add_parser(
        "davis",
        help="DAVIS-2017 video object segmentation: propagate, then score J&F",
        description="Propagate the first-frame annotation of every DAVIS-2017 sequence with DIFT features, "
        "then score J&F exactly as the official davis2017-evaluation toolkit (or only score existing masks).",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--root", required=True, metavar="DIR",
                   help="DAVIS-2017 folder holding ImageSets/, JPEGImages/480p/ and Annotations/480p/")
    p.add_argument("--set", default="val", choices=SETS, help="which subset (default: val)")
    p.add_argument("--out", metavar="DIR", help="output folder: OUT/<seq>/*.png, config.yaml, CSVs")
    p.add_argument("--results", metavar="DIR", help="existing masks to score (RESULTS/<seq>/<frame>.png); "
                                                    "implies --score-only")
    p.add_argument("--score-only", action="store_true", help="do not propagate; score --results (or --out)")
    p.add_argument("--sequences", metavar="A,B,...", help="comma-separated subset of sequences (default: the set's list)")
    p.add_argument("--workers", type=int, metavar="N",
                   help="scoring processes (default: min(4, CPUs)); with --engine ray also the Ray workers "
                        "that propagate (default there: one per GPU)")
    p.add_argument("--overwrite", action="store_true", help="recompute sequences whose masks already exist")
    p.add_argument("--no-summary", action="store_true", help="do not draw the per-sequence J&F bar chart")
    add_progress_arg(p)
    add_engine_args(p, workers=False)
    add_model_args(p, "davis")
    add_short_side_arg(p)
    add_propagation_args(p)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from vidprop.cli.common import engine_from_args, progress_enabled
    from vidprop.cli.segment import segment_config_from_args
    from vidprop.eval.davis import format_tables, run_davis, run_note, score_davis, write_csvs, write_summary_image
    from vidprop.eval.davis.runner import published_reference
    from vidprop.io.atomic import check_writable_target

    progress = progress_enabled(args)
    sequences = [s.strip() for s in args.sequences.split(",") if s.strip()] if args.sequences else None
    if args.sequences is not None and not sequences:
        raise ConfigError("--sequences is empty; give names separated by commas, e.g. --sequences bike-packing,dogs-jump")
    if args.workers is not None and args.workers < 1:
        raise ConfigError(f"--workers must be >= 1, got {args.workers}")
    score_only = args.score_only or args.results is not None
    engine = engine_from_args(args, shared_workers=True)
    if score_only:
        results = args.results or args.out
        if not results:
            raise ConfigError("--score-only needs the masks to score: --results DIR")
        if args.set == "test-dev":
            raise ConfigError("test-dev has no public ground truth beyond the first frames; it cannot be scored here")
        check_writable_target(Path(args.out or results) / f"global_results-{args.set}.csv", True, folder=False)
        scores = score_davis(args.root, results, args.set, sequences=sequences, workers=args.workers,
                             progress=progress)
        report_dir = Path(args.out or results)
    else:
        if not args.out:
            raise ConfigError("--out DIR is needed to write the masks (or score existing ones: --results DIR)")
        cfg = segment_config_from_args(args)
        ref = published_reference(cfg)
        if ref is not None:
            print(ref["note"], flush=True)
        scores = run_davis(args.root, args.out, args.set, sequences=sequences, config=cfg,
                           overwrite=args.overwrite, workers=args.workers, progress=progress, engine=engine)
        report_dir = Path(args.out)
        if scores is None:
            print(f"wrote the {args.set} masks to {report_dir} (no public ground truth to score them)")
            return 0
    g_path, s_path = write_csvs(scores, report_dir)
    written = [g_path, s_path]
    if not args.no_summary:
        written.append(write_summary_image(scores, report_dir / f"per-sequence_jf-{scores.set}.png"))
    note = run_note(report_dir) or (run_note(args.results) if score_only and args.results else None)
    if note:
        print(note)
    sys.stdout.write(format_tables(scores))
    print("\nwrote " + ", ".join(str(p) for p in written))
    return 0
