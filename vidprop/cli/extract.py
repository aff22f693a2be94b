"""``vidprop extract``: save the DIFT features of images and videos, with the settings that made them."""

from __future__ import annotations

import argparse
import logging

from vidprop.cli.common import (
    add_frame_range_args,
    add_model_args,
    add_progress_arg,
    config_from_args,
    progress_enabled,
)
from vidprop.io.video import BACKENDS

__all__ = ["register", "extract_config_from_args"]

log = logging.getLogger("vidprop")

EPILOG = """\
examples:
  vidprop extract cat.jpg --out cat.pt                       # as DIFT's extract_dift.py: (C, h, w) tensor
  vidprop extract photos/ --out feats/                        # feats/<image>.pt + <image>.json (settings)
  vidprop extract a.jpg b.png --out feats/ --format safetensors --save-dtype float16
  vidprop extract cat.jpg --out cat.pt --size 0 --t 0 --up-ft-index 2   # keep the image's size
  vidprop extract clip.mp4 --out feats/                       # feats/clip/chunk_00000.safetensors ... + index.json
  vidprop extract judo/frames --video --out feats/ --chunk 1  # a frame folder as a video, one file per frame
  vidprop extract clip.mp4 --out feats/ --frames 100:200      # a part of a video (--max-frames 20: a quick look)

inputs: image files; a folder (its images, sorted, not recursive); a video file;
with --video, folders are videos' frame folders.  Images and videos are extracted
in separate runs.

defaults: images use the `dift` preset, the defaults of DIFT's extract_dift.py
(768x768, t 261, up-ft-index 1 = stride 16 and 1280 channels on SD 2.1, ensemble 8,
empty prompt, float32); videos use the `davis-fast` preset (short side 480, t 51,
up-ft-index 2 = stride 8, 640 channels, ensemble 8; float16 on CUDA), the features
`vidprop segment` uses (--config davis: float32, as DIFT's DAVIS run).
--config, --size, --dtype and the other flags override them.

outputs:
  image   OUT/NAME.pt: torch.save of the (C, h, w) float32 CPU tensor, exactly as
          extract_dift.py writes it (torch.load gives the tensor), and OUT/NAME.json,
          the settings; or NAME.safetensors (tensor "features", settings in the
          metadata key "vidprop") or NAME.npz (arrays "features" and "vidprop").
          With one image and --out ending in .pt/.safetensors/.npz: that file.
  video   OUT/NAME/chunk_00000.safetensors ...: (N, C, h, w) for --chunk N frames
          (with --chunk 1: one file per frame, named after it) and OUT/NAME/index.json
          listing frames, files, shapes and settings (written last).
  Every file records the model id and revision, backbone, t, up-ft-index, ensemble,
  seed, prompt, input and model sizes, stride, dtypes and the vidprop version.
  Load them in Python:  from vidprop.features import load_features
                        feats, settings = load_features("feats/cat.pt")

re-running the same command skips files already complete (same settings, same
input, intact) and redoes damaged ones; files made with other settings need
--overwrite.

extract_dift.py flag -> vidprop flag: --img_size W H -> --size W H (0 keeps the
image's size), --model_id -> --model, --up_ft_index -> --up-ft-index,
--ensemble_size -> --ensemble, --input_path -> INPUT, --output_path -> --out.
"""


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "extract",
        help="save the DIFT features of images and videos (with their settings)",
        description="Save DIFT features (Stable Diffusion U-Net up-block activations) of still images or "
        "videos to .pt / .safetensors / .npz files that record the settings that made them.",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("inputs", nargs="+", metavar="INPUT", help="image files, folders of images, video files "
                                                              "(or frame folders with --video)")
    p.add_argument("--out", default="features", help="output folder (default: features/); for one image, "
                                                     "a .pt/.safetensors/.npz file name works too")
    p.add_argument("--video", action="store_true", help="treat folders as a video's frames (one video per folder)")
    p.add_argument("--name", help="a video's sub-folder name (default: the video file's stem or the frame "
                                  "folder's name; its parent's for a generic name like frames/)")
    p.add_argument("--overwrite", action="store_true", help="recompute and replace existing feature files")
    g = p.add_argument_group("saving")
    g.add_argument("--format", choices=["pt", "safetensors", "npz"],
                   help="file format (default: pt for images, as DIFT's script; safetensors for videos)")
    g.add_argument("--save-dtype", choices=["float32", "float16"], default="float32",
                   help="dtype of the saved tensors (default float32, exact; float16 halves the size)")
    g.add_argument("--upsample", action="store_true",
                   help="upsample the features to the input's size before saving (bilinear, align_corners=False, "
                        "as DIFT's demo); files get large: C x H x W values per frame")
    g.add_argument("--chunk", type=int, default=16, help="video frames per file (default 16; 1 = a file per frame)")
    g.add_argument("--backend", default="auto", choices=list(BACKENDS),
                   help="video decoder (default: decord if installed, else PyAV)")
    add_frame_range_args(p)
    add_progress_arg(p)
    m = add_model_args(p, None, preset_help="dift for images, davis-fast for videos")
    m.add_argument("--size", type=int, nargs="+", metavar="N",
                   help="model input size: N (square) or W H (floored to the backbone's input multiple, e.g. 32 for sd); 0 = the input's own size "
                        "(images: dift preset 768x768)")
    m.add_argument("--short-side", type=int, help="resize so the short side is this (videos: davis-fast 480; floored to the backbone's input multiple, e.g. 32 for sd, 14 for dinov2)")
    m.add_argument("--prompt", help='prompt (default: the preset\'s, "")')
    p.set_defaults(func=run)


def extract_config_from_args(args: argparse.Namespace, kind: str):
    """The preset for ``kind`` ("images" -> dift, "videos" -> davis-fast) with every given flag applied."""
    from vidprop.errors import ConfigError
    from vidprop.tasks.extract import IMAGE_PRESET, VIDEO_PRESET

    frames = None
    if args.size is not None and args.short_side is not None:
        raise ConfigError("give either --size or --short-side, not both")
    if args.size is not None:
        if len(args.size) > 2 or any(v < 0 for v in args.size):
            raise ConfigError(f"--size takes N or W H (non-negative), got {' '.join(map(str, args.size))}")
        w, h = (args.size * 2)[:2]
        frames = {"mode": "original"} if w == 0 or h == 0 else {"mode": "fixed", "width": w, "height": h}
    elif args.short_side is not None:
        frames = {"mode": "short_side", "short_side": args.short_side}
    cfg = config_from_args(args, IMAGE_PRESET if kind == "images" else VIDEO_PRESET, frames=frames)
    if args.prompt is not None:
        cfg = cfg.override(extractor={"prompt": args.prompt})
    return cfg


def run(args: argparse.Namespace) -> int:
    from vidprop.errors import ConfigError
    from vidprop.tasks.extract import FeatureSaver, SaveOptions, classify_inputs, extract_images, extract_video

    kind, paths = classify_inputs(args.inputs, video=args.video)
    if args.chunk < 1:
        raise ConfigError(f"--chunk must be >= 1, got {args.chunk}")
    if args.name and (kind != "videos" or len(paths) != 1):
        raise ConfigError("--name names one video's folder; give exactly one video with it")
    if kind != "videos" and (args.frames is not None or args.max_frames is not None):
        raise ConfigError("--frames / --max-frames select frames of a video; the inputs are still images")
    if args.frames is not None or args.max_frames is not None:
        from vidprop.io.driver import parse_frame_range

        parse_frame_range(args.frames, args.max_frames)  # a bad range fails before any work
    cfg = extract_config_from_args(args, kind)
    options = SaveOptions(format=args.format, save_dtype=args.save_dtype, upsample=args.upsample,
                          chunk=args.chunk, overwrite=args.overwrite)
    saver = FeatureSaver(cfg)  # the model is loaded when the first frame needs it
    progress = progress_enabled(args)
    if kind == "images":
        res = extract_images(paths, args.out, saver=saver, options=options, progress=progress)
        n = len(res.written)
        done = f", {len(res.skipped)} already complete" if res.skipped else ""
        if n:
            print(f"extracted {n} image(s) in {res.seconds:.1f} s, {res.fps:.2f} frames/s{done} -> {res.output}")
        else:
            print(f"nothing to do: all {len(res.skipped)} feature file(s) in {res.output} are already complete")
        return 0
    for video in paths:
        res = extract_video(video, args.out, saver=saver, options=options, name=args.name, backend=args.backend,
                            progress=progress, frames=args.frames, max_frames=args.max_frames)
        if res.frames_extracted:
            done = f", {len(res.skipped)} chunk file(s) already complete" if res.skipped else ""
            print(f"extracted {res.frames_extracted} of {res.frames_total} frames of {video} in {res.seconds:.1f} s, "
                  f"{res.fps:.2f} frames/s{done} -> {res.index}")
        else:
            print(f"nothing to do: the features of {video} in {res.output} are already complete")
    return 0
