"""``vidprop eval youtube-vos``: propagate every YouTube-VOS video from its annotations; write the submission."""

from __future__ import annotations

import argparse

from vidprop.errors import ConfigError

__all__ = ["register_eval", "run"]

EPILOG = """\
examples:
  vidprop eval youtube-vos --root YTVOS/ --split valid --out runs/ytvos
  vidprop eval youtube-vos --root YTVOS/ --out runs/try --videos 003234408d,0043f083b5 --no-zip
  vidprop eval youtube-vos --root YTVOS/ --out runs/ytvos --device cuda --dtype bf16

layout (2018 and 2019 alike): ROOT/valid/JPEGImages/<video>/<frame>.jpg (the scored
frames, every 5th frame), ROOT/valid/Annotations/<video>/<frame>.png (each object's
mask on the frame where it first appears), ROOT/valid/meta.json (which frames each
object is scored on) and, optionally, ROOT/valid_all_frames/JPEGImages/<video>/
(every frame; also found as ROOT/all_frames/valid_all_frames/).  With every frame
available the propagation runs over all of them (--scored-frames-only: only the
scored ones).

Each video is propagated in objects mode: the ids of an annotation PNG are exact
on its frame, objects first annotated later are absent before their frame and
followed after it.

output: OUT/Annotations/<video>/<frame>.png for the scored frames, OUT/config.yaml
(settings, model, version, split, date) and OUT/submission.zip (Annotations/ at its
root) to upload to the challenge server (CodaLab).  Resumable: complete videos are
skipped (--overwrite redoes them); resuming with other settings is an error.
YouTube-VOS has no public ground truth for valid/test: nothing is scored here.
"""


def register_eval(sub: argparse._SubParsersAction) -> None:
    from vidprop.cli.common import add_engine_args, add_model_args, add_progress_arg, add_propagation_args
    from vidprop.cli.segment import add_short_side_arg
    from vidprop.eval.ytvos import SPLITS

    p = sub.add_parser(
        "youtube-vos",
        help="YouTube-VOS: propagate every video from its annotations, write the submission zip",
        description="Propagate every video of a YouTube-VOS split from its given annotations (objects that "
        "first appear at later frames included) and write the official submission layout and zip.",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--root", required=True, metavar="DIR", help="YouTube-VOS folder holding valid/ (and valid_all_frames/)")
    p.add_argument("--split", default="valid", choices=SPLITS, help="which split (default: valid)")
    p.add_argument("--out", required=True, metavar="DIR", help="output folder: OUT/Annotations/, config.yaml, submission.zip")
    p.add_argument("--videos", metavar="A,B,...", help="comma-separated subset of videos (default: every video)")
    p.add_argument("--scored-frames-only", action="store_true",
                   help="propagate over the scored frames only, even when every frame is available")
    p.add_argument("--overwrite", action="store_true", help="recompute videos whose masks already exist")
    p.add_argument("--no-zip", action="store_true", help="do not write submission.zip")
    p.add_argument("--max-anchors", type=int, metavar="N",
                   help="annotated frames kept as context (default 8; the first always stays)")
    add_progress_arg(p)
    add_engine_args(p)
    add_model_args(p, "davis-fast")
    add_short_side_arg(p)
    add_propagation_args(p)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from vidprop.cli.common import engine_from_args, progress_enabled
    from vidprop.cli.segment import segment_config_from_args
    from vidprop.eval.ytvos import run_ytvos

    videos = [v.strip() for v in args.videos.split(",") if v.strip()] if args.videos else None
    if args.videos is not None and not videos:
        raise ConfigError("--videos is empty; give names separated by commas")
    cfg = segment_config_from_args(args)
    engine = engine_from_args(args)
    res = run_ytvos(args.root, args.out, args.split, videos=videos, config=cfg, all_frames=not args.scored_frames_only,
                    overwrite=args.overwrite, progress=progress_enabled(args), make_zip=not args.no_zip, engine=engine)
    print(f"{len(res.videos)} videos: {len(res.propagated)} propagated, {len(res.skipped)} already complete; "
          f"masks in {res.out / 'Annotations'}" + (f", submission {res.zip}" if res.zip else ""))
    return 0
