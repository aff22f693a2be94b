"""``vidprop eval jhmdb``: JHMDB pose propagation and PCK (protocol B)."""

from __future__ import annotations

import argparse

from vidprop.cli.common import (
    add_engine_args,
    add_model_args,
    add_progress_arg,
    add_propagation_args,
    engine_from_args,
    progress_enabled,
)
from vidprop.cli.track import add_crop_arg, track_config_from_args

__all__ = ["register_eval"]

EPILOG = """\
examples:
  vidprop eval jhmdb --root JHMDB/ --split split1_test.txt --out runs/jhmdb
  vidprop eval jhmdb --root JHMDB/ --split split1_test.txt --out runs/jhmdb --videos pour/Bartender_pour_u_cm_np1_fr_med_1
  vidprop eval jhmdb --root JHMDB/ --split split1_test.txt --out runs/jhmdb --engine ray   # one Ray worker per GPU

dataset layout under --root:
  Rename_Images/<class>/<video>/00001.png ...
  joint_positions/<class>/<video>/joint_positions.mat   (pos_img: 2 x 15 x frames, 1-based)
split: a text file of <class>/<video> lines (the standard split-1 test list has 268 videos).

output: OUT/predictions/<class>/<video>.npz (predicted grid coordinates per frame,
written as each video finishes: a re-run skips the videos already done),
OUT/pck.csv (PCK@0.1 ... @0.5 per joint and their mean, in percent) and
OUT/config.yaml (settings, model id and revision, vidprop version).
"""


def register_eval(ev_sub: argparse._SubParsersAction) -> None:
    p = ev_sub.add_parser(
        "jhmdb",
        help="JHMDB keypoint propagation, PCK (protocol B)",
        description="Propagate the 15 JHMDB joints of frame 0 through every video of a split "
        "and score PCK as the CRW/UVC/TimeCycle scripts do.",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--root", required=True, help="JHMDB folder (holds Rename_Images/ and joint_positions/)")
    p.add_argument("--split", required=True, help="split file of <class>/<video> lines")
    p.add_argument("--out", default="runs/jhmdb", help="output folder (default: runs/jhmdb)")
    p.add_argument("--videos", nargs="+", metavar="CLASS/VIDEO", help="run and score only these entries of the split")
    p.add_argument("--overwrite", action="store_true", help="recompute every video, even those already done")
    add_progress_arg(p)
    add_engine_args(p)
    add_model_args(p, "jhmdb")
    add_crop_arg(p)
    add_propagation_args(p)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from vidprop.eval.jhmdb import evaluate_jhmdb

    cfg = track_config_from_args(args)
    engine = engine_from_args(args)
    res = evaluate_jhmdb(
        args.root,
        args.split,
        args.out,
        config=cfg,
        videos=args.videos,
        overwrite=args.overwrite,
        progress=progress_enabled(args),
        engine=engine,
    )
    print(res.format_table())
    print(
        f"{res.num_videos} videos ({res.num_resumed} resumed): PCK@0.1 {res.pck(0.1):.2f}  PCK@0.2 {res.pck(0.2):.2f}"
        f"  -> {args.out}/pck.csv"
    )
    return 0
