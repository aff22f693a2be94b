"""``vidprop track``: propagate first-frame keypoints through a video."""

from __future__ import annotations

import argparse

from vidprop.cli.common import (
    add_frame_range_args,
    add_model_args,
    add_feature_cache_arg,
    add_progress_arg,
    check_feature_cache,
    add_propagation_args,
    add_video_output_args,
    config_from_args,
    progress_enabled,
)

__all__ = ["register", "add_crop_arg", "track_config_from_args"]

EPILOG = """\
examples:
  vidprop track clip.mp4 --keypoints first_frame.json --out results/
  vidprop track frames/ --keypoints first_frame.json --out results/ --name dance
  vidprop track clip.mp4 --keypoints first_frame.json --crop 256 --ensemble 4 --device cuda
  vidprop track clip.mp4 --keypoints frame100.json --frames 100:200   # keypoints of frame 100

keypoint file (JSON), pixel coordinates of the FIRST frame of the run (frame 0,
or START with --frames), (0, 0) = centre of
the top-left pixel, x to the right, y down:
  {"keypoints": {"head": [120.5, 40], "neck": [121, 62], "l_hand": [90, 130]},
   "skeleton": [["head", "neck"], ["neck", "l_hand"]]}
  - "keypoints": name -> [x, y] (order kept), or a list of [x, y] (joints 0..n-1);
    null instead of [x, y] = a joint absent from the first frame
  - "skeleton" (optional): limbs drawn on the overlay, pairs of names or indices
  - a plain list [[x, y], ...] works too (joints 0..n-1, no skeleton)
  - a CSV with columns joint,x,y (frame optional: frame 0's rows are used) also
    works, e.g. the keypoints.csv of an earlier run
  A keypoint outside the frame is reported and treated as vanished.

output: OUT/NAME/keypoints.json (per frame: {"frame", "name", "keypoints":
{joint: [x, y] or null when vanished}}), OUT/NAME/keypoints.csv (one row per
frame and joint: frame,joint,x,y,visible; x and y empty when not visible) and
OUT/NAME/overlay.mp4 (points and skeleton drawn on the frames).

method: DIFT features + label propagation, protocol B ("crw", the JHMDB
preset): frames resized to a square crop (default 320x320), one Gaussian
heatmap per joint on the feature grid, decoded back to pixels each frame.
"""


def add_crop_arg(p: argparse.ArgumentParser) -> None:
    """``--crop`` and ``--keypoint-rule``: the frame size and heatmap drawing of the keypoint commands."""
    p.add_argument("--crop", type=int, metavar="N",
                   help="resize frames to a square N x N (the JHMDB preset uses 320; floored to the backbone's input multiple, e.g. 32 for sd)")
    p.add_argument("--keypoint-rule", choices=["crw", "ideal"],
                   help="how first-frame heatmaps are drawn near the left/top border: crw (default, CRW's code, "
                        "as the published JHMDB numbers) or ideal (the full 4x4 Gaussian patch)")


def track_config_from_args(args: argparse.Namespace):
    """The preset (default jhmdb) with the flags of ``track`` (and ``eval jhmdb``) applied."""
    frames = {"mode": "square", "size": args.crop} if getattr(args, "crop", None) is not None else None
    cfg = config_from_args(args, "jhmdb", frames=frames)
    return cfg.override(propagation={"keypoint_rule": getattr(args, "keypoint_rule", None)})


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "track",
        help="propagate first-frame keypoints through a video",
        description="Track named keypoints given on the first frame through a video with DIFT "
        "features and label propagation; write their positions per frame (JSON, CSV) and an overlay video.",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("video", help="video file (mp4, avi, ...) or a folder of frames (sorted by name)")
    p.add_argument("--keypoints", required=True, help="first-frame keypoint file (JSON, see below)")
    add_video_output_args(p)
    add_frame_range_args(p)
    add_progress_arg(p)
    add_feature_cache_arg(p)
    add_model_args(p, "jhmdb")
    add_crop_arg(p)
    add_propagation_args(p)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from vidprop.tasks.budget import check_model_input
    from vidprop.tasks.track import Tracker, prepare_track

    cfg = track_config_from_args(args)
    # Everything that can be checked is checked before the model loads (the video is opened once, here).
    job = prepare_track(args.video, args.keypoints, args.out, name=args.name, overwrite=args.overwrite,
                        backend=args.backend, frames=args.frames, max_frames=args.max_frames)
    check_model_input(cfg, *job.driver.size, source=str(job.driver.path))  # a huge size: refused before loading
    check_feature_cache(args)
    tracker = Tracker.from_pretrained(config=cfg)
    res = job.run(tracker, overlay=not args.no_overlay, progress=progress_enabled(args),
                  feature_cache=args.feature_cache)
    extra = f" and {res.overlay.name}" if res.overlay else ""
    print(f"wrote keypoints of {res.num_frames} frames to {res.json.parent} ({res.json.name}, {res.csv.name}{extra})")
    if args.profile:
        print(f"profile: {res.profile}")
    return 0
