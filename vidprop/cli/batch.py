"""``vidprop batch``: segment or track many videos, in this process or on Ray workers."""

from __future__ import annotations

import argparse
import logging

from vidprop.cli.common import (
    add_engine_args,
    add_frame_range_args,
    add_model_args,
    add_feature_cache_arg,
    add_progress_arg,
    add_propagation_args,
    add_video_output_args,
    engine_from_args,
    extractor_overrides,
    progress_enabled,
    propagation_overrides,
)
from vidprop.errors import ConfigError

__all__ = ["register", "run"]

log = logging.getLogger("vidprop")

EPILOG = """\
examples:
  vidprop batch videos.jsonl --out results/
  vidprop batch clips/ --out results/ --task segment --short-side 384
  vidprop batch clips/ --out preview/ --max-frames 20 --config quick       # a quick look at every clip first
  vidprop batch people.csv --out tracks/ --task track --crop 320
  vidprop batch videos.jsonl --out results/ --engine ray                  # local Ray, one worker per GPU
  vidprop batch videos.jsonl --out results/ --engine ray --address auto   # the cluster of `ray start`
  vidprop batch videos.jsonl --out results/ --engine ray --workers 2 --device cpu

manifest (JSONL: one object per line; CSV: a header line), paths relative to the manifest:
  {"video": "clips/a.mp4", "mask": "masks/a.png"}
  {"video": "frames/b/", "mask": "masks/b.png", "name": "b-run2", "topk": 10, "overlay": false}
  video,keypoints,crop                  (CSV, --task track)
  clips/c.mp4,kp/c.json,256
columns: video (required), name, mask | masks (segment: "FRAME:PATH" items or an
annotations folder, as --mask FRAME:PATH / --masks DIR), keypoints (track), config
(a preset for this row), and per-row settings named like the flags: short_side, crop,
keypoint_rule, protocol, topk, temperature, n_last, radius, ensemble, t, up_ft_index,
seed, overlay, resize_mask, backend, frames (START:END), max_frames.  A row's settings
apply on top of the flags.

folder input: every video file and every sub-folder of frames, with its annotation
beside it: clip.mp4 + clip.png or clip_mask.png (segment), clip.json or
clip_keypoints.json (track).

output: OUT/<name>/ exactly as `vidprop segment` / `vidprop track` write it, and
OUT/batch_report.json (per video: status, error, frames, seconds, frames/s).  A
re-run skips the videos already complete and redoes the others; --overwrite
recomputes everything.  A failing video is reported in one line and the others go
on; the exit status is 1 when any video failed (2: nothing ran, bad input).
"""


def register(sub: argparse._SubParsersAction) -> None:
    from vidprop.cli.segment import add_format_arg, add_short_side_arg
    from vidprop.cli.track import add_crop_arg

    p = sub.add_parser(
        "batch",
        help="segment or track many videos (a manifest or a folder), optionally on Ray workers",
        description="Run `segment` or `track` on every video of a manifest (JSONL or CSV) or of a folder, "
        "in this process or spread over Ray workers (a local instance or a cluster) that each keep their "
        "model loaded; every video's output is what the single-video command writes.",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("input", help="manifest (.jsonl or .csv) or a folder of videos with their annotations")
    p.add_argument("--task", choices=["segment", "track"], default="segment",
                   help="segment (masks, default) or track (keypoints)")
    add_video_output_args(p, batch=True)
    p.add_argument("--resize-mask", action="store_true",
                   help="segment: nearest-resize a mask whose size differs from the frames")
    p.add_argument("--direction", choices=["forward", "both"], default="forward",
                   help="segment: both fills each object's frames before its first annotation (as segment)")
    add_format_arg(p)
    p.add_argument("--labels", metavar="FILE", help="segment: object names (and colours) for every row's outputs")
    add_frame_range_args(p)
    add_progress_arg(p)
    add_feature_cache_arg(p)
    add_engine_args(p)
    add_model_args(p, None, preset_help="davis-fast for segment, jhmdb for track")
    add_short_side_arg(p)
    add_crop_arg(p)
    add_propagation_args(p)
    p.set_defaults(func=run)


def overrides_from_args(args: argparse.Namespace) -> dict[str, dict]:
    """The config sections the batch's flags change for every row."""
    frames: dict = {}
    if args.short_side is not None:
        if args.task != "segment":
            raise ConfigError("--short-side is for --task segment; tracking resizes to a square (--crop)")
        frames = {"mode": "short_side", "short_side": args.short_side}
    if args.crop is not None:
        if args.task != "track":
            raise ConfigError("--crop is for --task track; segmentation keeps the aspect ratio (--short-side)")
        frames = {"mode": "square", "size": args.crop}
    propagation = propagation_overrides(args)
    if args.keypoint_rule is not None:
        if args.task != "track":
            raise ConfigError("--keypoint-rule is for --task track")
        propagation["keypoint_rule"] = args.keypoint_rule
    if args.resize_mask and args.task != "segment":
        raise ConfigError("--resize-mask is for --task segment")
    return {"frames": frames, "extractor": extractor_overrides(args), "propagation": propagation}


def run(args: argparse.Namespace) -> int:
    from vidprop.batch import run_batch

    overrides = overrides_from_args(args)
    engine = engine_from_args(args)
    report = run_batch(
        args.input,
        args.out,
        task=args.task,
        config=args.config,
        overrides=overrides,
        overlay=not args.no_overlay,
        resize_mask=args.resize_mask,
        backend=args.backend,
        frames=args.frames,
        max_frames=args.max_frames,
        overwrite=args.overwrite,
        engine=engine,
        progress=progress_enabled(args),
        direction=args.direction,
        formats=args.format,
        labels=args.labels,
        feature_cache=args.feature_cache,
    )
    print(f"batch: {report.summary()}")
    print(f"report: {report.out / 'batch_report.json'}")
    return 0 if report.ok else 1
