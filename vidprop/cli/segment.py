"""``vidprop segment``: propagate a first-frame mask through a video."""

from __future__ import annotations

import argparse
import logging

from vidprop.cli.common import (
    add_model_args,
    add_progress_arg,
    add_propagation_args,
    add_video_output_args,
    config_from_args,
    progress_enabled,
)

__all__ = ["register", "segment_config_from_args", "add_short_side_arg"]

log = logging.getLogger("vidprop")

EPILOG = """\
examples:
  vidprop segment clip.mp4 --mask first.png --out results/
  vidprop segment frames/ --mask 00000.png --out results/ --name judo
  vidprop segment clip.mp4 --mask first.png --model /models/sd21 --device cuda --dtype bf16
  vidprop segment clip.mp4 --mask first.png --protocol crw --topk 10 --temperature 0.05
  vidprop segment clip.mp4 --mask first.png --backbone adm --weights 256x256_diffusion_uncond.pt  # davis-adm
  vidprop segment clip.mp4 --mask first.png --backbone dino                      # DINO ViT-B/8, davis-dino

masks: an indexed (P) PNG (indices = object ids), a greyscale PNG with a few
integer ids ({0,255} = one object), an anti-aliased greyscale mask (one object,
thresholded at 128), or an RGB colour mask (one object per colour).

output: OUT/NAME/00000.png ... (indexed PNGs, DAVIS palette, the input's size;
named like the input frames for a frame folder) and OUT/NAME/overlay.mp4.
"""


def segment_config_from_args(args: argparse.Namespace):
    """The preset with the flags of ``segment`` (and ``eval davis``) applied."""
    frames = {"mode": "short_side", "short_side": args.short_side} if getattr(args, "short_side", None) else None
    return config_from_args(args, "davis-fast", frames=frames)


def add_short_side_arg(p: argparse.ArgumentParser) -> None:
    p.add_argument("--short-side", type=int, help="resize frames so the short side is this (multiple of 32)")


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "segment",
        help="propagate a first-frame mask through a video",
        description="Propagate a first-frame segmentation (one or many objects) through a video "
        "with DIFT features and write DAVIS-style indexed PNGs plus an overlay video.",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("video", help="video file (mp4, avi, ...) or a folder of frames (sorted by name)")
    p.add_argument("--mask", required=True, help="first-frame mask image")
    p.add_argument("--resize-mask", action="store_true", help="nearest-resize a mask whose size differs from the frames")
    add_video_output_args(p)
    add_progress_arg(p)
    add_model_args(p, "davis-fast")
    add_short_side_arg(p)
    add_propagation_args(p)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from vidprop.tasks.segment import Segmenter, segment_video

    cfg = segment_config_from_args(args)
    # Check the cheap things before loading the model.
    from pathlib import Path

    from vidprop.io.atomic import check_writable_target
    from vidprop.io.masks import read_mask
    from vidprop.io.video import open_video

    reader = open_video(args.video, backend=args.backend)
    logging.disable(logging.WARNING)  # the real read below logs how the mask was interpreted
    try:
        read_mask(args.mask)
    finally:
        logging.disable(logging.NOTSET)
    check_writable_target(Path(args.out) / (args.name or reader.info.name), args.overwrite)
    seg = Segmenter.from_pretrained(config=cfg)
    res = segment_video(
        args.video,
        args.mask,
        args.out,
        segmenter=seg,
        name=args.name,
        overwrite=args.overwrite,
        overlay=not args.no_overlay,
        resize_mask=args.resize_mask,
        backend=args.backend,
        progress=progress_enabled(args),
    )
    print(f"wrote {res.num_frames} masks to {res.output_dir}" + (f" and {res.overlay.name}" if res.overlay else ""))
    if args.profile:
        print(f"profile: {res.profile}")
    return 0
