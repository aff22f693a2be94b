"""``vidprop score``: J&F of one result against a folder of ground-truth masks (DAVIS' exact metric code)."""

from __future__ import annotations

import argparse

__all__ = ["register", "run"]

EPILOG = """\
examples:
  vidprop score results/shapes --gt vidprop-example/shapes_gt
  vidprop score results/judo --gt DAVIS/Annotations/480p/judo --csv scores/judo
  vidprop score results/clip --gt gt/ --all-frames

Scores every ground-truth <frame>.png against the result's <frame>.png of the
same name with the DAVIS toolkit's J (region IoU) and F (boundary, tolerance
0.008 of the diagonal), per object and per frame.  The frames the run was
given as annotations (its annotations.json; the first frame of a first-frame
run) are not scored unless --all-frames.  Writes PREFIX-objects.csv (J&F,
J and F Mean / Recall / Decay per object) and PREFIX-frames.csv (J and F per
frame and object), PREFIX = RESULT/score unless --csv, and prints one summary
line: J&F = mean over objects of (J-Mean + F-Mean) / 2.
"""


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "score",
        help="J&F of a result against ground-truth masks",
        description="Score one result folder against a folder of ground-truth masks with the DAVIS J&F measures.",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("result", metavar="RESULT", help="a result folder (OUT/NAME with <frame>.png masks)")
    p.add_argument("--gt", required=True, metavar="GT_DIR", help="folder of ground-truth <frame>.png masks")
    p.add_argument("--csv", metavar="PREFIX", help="write PREFIX-objects.csv and PREFIX-frames.csv "
                   "(default RESULT/score)")
    p.add_argument("--all-frames", action="store_true", help="also score the frames given as annotations")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from pathlib import Path

    from vidprop.eval.score import score_result, write_score_csvs

    score = score_result(args.result, args.gt, all_frames=args.all_frames)
    objects, frames = write_score_csvs(score, args.csv or Path(args.result) / "score")
    for o in score.objects:
        print(f"object {o.object_id}: J&F {o.jf_mean:.4f} (J {o.j_mean:.4f}, F {o.f_mean:.4f})")
    print(score.summary())
    print(f"wrote {objects} and {frames}")
    return 0
