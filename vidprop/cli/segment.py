"""``vidprop segment``: propagate annotated masks (first frame, later frames, corrections) through a video."""

from __future__ import annotations

import argparse
import logging

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

__all__ = ["register", "segment_config_from_args", "add_short_side_arg", "add_format_arg"]

log = logging.getLogger("vidprop")

EPILOG = """\
examples:
  vidprop segment clip.mp4 --mask first.png --out results/
  vidprop segment frames/ --mask 00000.png --out results/ --name judo
  vidprop segment clip.mp4 --mask first.png --model /models/sd21 --device cuda --dtype bf16
  vidprop segment clip.mp4 --mask first.png --protocol crw --topk 10 --temperature 0.05
  # an object that enters at frame 40, a correction at frame 70
  vidprop segment clip.mp4 --mask first.png --mask 40:car.png --mask 70:fixed.png
  # annotations of any frames in the DAVIS / YouTube-VOS Annotations/<video>/ layout, both directions
  vidprop segment frames/ --masks Annotations/judo/ --direction both --format png,coco
  # results for CVAT (tracks to correct), names from a labelmap; then propagate CVAT's corrections again
  vidprop segment clip.mp4 --mask first.png --labels labelmap.txt --format png,cvat-video
  vidprop segment clip.mp4 --masks corrected/annotations.xml --direction both --out results/ --overwrite
  # objects by clicks (SAM 2 makes their masks): two clicks on one, a box around another on frame 10
  vidprop segment clip.mp4 --points 320,180,340,200 --neg-points 300,150 --box 10:40,60,200,220 --out results/
  # a second run on the same video with other annotations reads the features instead of computing them
  vidprop segment clip.mp4 --mask first.png --mask 70:fixed.png --feature-cache ~/.cache/vidprop/features
  # a quick look at the first 20 frames
  vidprop segment clip.mp4 --mask first.png --max-frames 20
  vidprop segment clip.mp4 --mask first.png --backbone adm --weights 256x256_diffusion_uncond.pt  # davis-adm
  vidprop segment clip.mp4 --mask first.png --backbone dino                      # DINO ViT-B/8, davis-dino
  vidprop segment clip.mp4 --mask first.png --backbone dinov3                    # DINOv3 ViT-L/16, davis-dinov3

masks: an indexed (P) PNG (indices = object ids), a greyscale PNG with a few
integer ids ({0,255} = one object), an anti-aliased greyscale mask (one object,
thresholded at 128), or an RGB colour mask (one object per colour; the colour
masks of one run share one colour -> id table).

annotations: --mask PATH annotates the first frame of the run (frame 0, or
START with --frames); --mask FRAME:PATH (repeatable) annotates frame FRAME, an
index or, for a frame folder, a frame file's name (00035); --masks DIR takes
every PNG of DIR whose name names a frame (or --masks takes a CVAT for video
1.1 XML export, or a MOTS folder or txt file: every frame with a keyframe or
an object is an annotation).  In --annotation-mode objects (the
default, YouTube-VOS semantics) the ids an annotation holds are exact on its
frame and the other objects keep being propagated; a new id is a new object
(absent before it is first annotated).  In --annotation-mode frame an
annotation is the complete labelling of its frame: objects it does not hold
leave the video there.  Annotated frames stay in the context as anchors (at
most --max-anchors, default 8; the first always stays).  Frames before the
first annotation are background unless --direction both: then each object's
frames before its own first annotation come from a backward pass from there
(docs/annotations.md).

labels: --labels FILE names the objects in every output (JSON or YAML
{"1": "car"} or {"1": {"name": "car", "color": [255, 0, 0]}}, or CVAT's /
Datumaro's labelmap.txt, one "name:r,g,b::" line per id after background).
An RGB colour mask's colours are kept: the PNGs' palette and the categories
carry them (colours of --labels decide which colour is which id).

output: OUT/NAME/00000.png ... (png: indexed PNGs, DAVIS palette or the run's
colours, the input's size; named like the input frames for a frame folder),
OUT/NAME/coco.json (coco: RLE masks per object and frame, bbox, area, label
names; pycocotools reads it), OUT/NAME/youtube-vos/Annotations/NAME/*.png
(youtube-vos: the submission layout), OUT/NAME/cvat-video.xml (cvat-video:
CVAT for video 1.1, one mask track per object), OUT/NAME/mots/ (mots: MOTS
txt and 16-bit PNGs), OUT/NAME/youtube-vis.json (youtube-vis: the YouTube-VIS
instance JSON), OUT/NAME/labels.json (names and colours, when known),
OUT/NAME/overlay.mp4, and
OUT/NAME/annotations.json (which frames were annotated with which ids, the
mode and direction) when the run had more than a first-frame mask.
"""


def segment_config_from_args(args: argparse.Namespace):
    """The preset with the flags of ``segment`` (and ``eval davis``, ``eval youtube-vos``) applied."""
    short = getattr(args, "short_side", None)
    frames = {"mode": "short_side", "short_side": short} if short is not None else None  # 0 is refused, not ignored
    cfg = config_from_args(args, "davis-fast", frames=frames)
    return cfg.override(propagation={"max_anchors": getattr(args, "max_anchors", None)})


def add_short_side_arg(p: argparse.ArgumentParser) -> None:
    p.add_argument("--short-side", type=int,
                   help="resize frames so the short side is this (floored to the backbone's input multiple when it is "
                        "not one, with a log line: 32 for sd/adm/cleandift, 8 for dino, 14 for dinov2/clip; dinov3 "
                        "presets round any value UP to a multiple of 16, as its notebook)")


def add_format_arg(p: argparse.ArgumentParser) -> None:
    """``--format`` of ``segment`` and ``batch``."""
    from vidprop.io.exports import FORMATS

    p.add_argument("--format", default="png", metavar="F[,F...]",
                   help=f"outputs, separated by commas: {', '.join(FORMATS)} (default png)")


def add_annotation_args(p: argparse.ArgumentParser) -> None:
    """How annotations are read and applied (``segment``)."""
    g = p.add_argument_group("annotations")
    g.add_argument("--mask", action="append", metavar="[FRAME:]PATH",
                   help="an annotation: PATH for the first frame, FRAME:PATH for frame FRAME (repeatable)")
    g.add_argument("--masks", metavar="DIR|FILE",
                   help="a folder of <frame>.png annotations (Annotations/<video>/ layout), a CVAT for video XML "
                        "or a MOTS folder / txt file")
    g.add_argument("--labels", metavar="FILE",
                   help="object names (and colours): JSON/YAML id -> name, or a CVAT/Datumaro labelmap.txt")
    g.add_argument("--resize-mask", action="store_true",
                   help="nearest-resize a mask whose size differs from the frames")
    g.add_argument("--annotation-mode", choices=["objects", "frame"], default="objects",
                   help="objects (default): an annotation is exact for the ids it holds, the others keep going; "
                        "frame: it is the complete labelling of its frame")
    g.add_argument("--direction", choices=["forward", "both"], default="forward",
                   help="both: also fill each object's frames before its first annotation, propagating "
                        "backwards from there")
    g.add_argument("--max-anchors", type=int, metavar="N",
                   help="annotated frames kept as context (default 8; the first always stays)")


def add_prompt_args(p: argparse.ArgumentParser) -> None:
    """Objects annotated by clicks or a box, their masks made by SAM 2 (``segment``)."""
    from vidprop.annotate.prompts import DEFAULT_PROMPT_MODEL

    g = p.add_argument_group("click-to-mask (SAM 2)")
    g.add_argument("--points", action="append", metavar="[FRAME:]X,Y[,X,Y...]",
                   help="clicks on one object (pixels of the frame; FRAME as in --mask, default the first frame); "
                        "its mask comes from SAM 2 and is annotated like --mask FRAME:PATH (repeatable: one object each)")
    g.add_argument("--neg-points", action="append", metavar="[FRAME:]X,Y[,X,Y...]",
                   help="clicks NOT on the object of the --points given at the same position (i-th with i-th)")
    g.add_argument("--box", action="append", metavar="[FRAME:]X0,Y0,X1,Y1",
                   help="a box around one object (repeatable: one object each)")
    g.add_argument("--prompt-model", default=DEFAULT_PROMPT_MODEL, metavar="ID_OR_FOLDER",
                   help=f"the SAM 2 checkpoint, a Hub id or a local folder in transformers' format (default: "
                        f"{DEFAULT_PROMPT_MODEL}; loaded only when --points or --box is given)")


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "segment",
        help="propagate annotated masks through a video",
        description="Propagate a segmentation (one or many objects, annotated on the first frame or any "
        "frames) through a video with DIFT features and write DAVIS-style indexed PNGs (or COCO, "
        "YouTube-VOS) plus an overlay video.",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("video", help="video file (mp4, avi, ...) or a folder of frames (sorted by name)")
    add_annotation_args(p)
    add_prompt_args(p)
    add_format_arg(p)
    add_video_output_args(p)
    add_frame_range_args(p)
    add_progress_arg(p)
    add_feature_cache_arg(p)
    add_model_args(p, "davis-fast")
    add_short_side_arg(p)
    add_propagation_args(p)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from vidprop.annotate.clicks import add_prompt_annotations, object_prompts, resolve_prompts
    from vidprop.errors import InputError
    from vidprop.io.annotations import parse_mask_arg
    from vidprop.io.exports import parse_formats
    from vidprop.tasks.budget import check_model_input
    from vidprop.tasks.segment import Segmenter, prepare_segment

    cfg = segment_config_from_args(args)
    formats = parse_formats(args.format)
    sources = [parse_mask_arg(m) for m in args.mask or []]
    prompts = object_prompts(args.points or [], args.neg_points or [], args.box or [])
    if not sources and not args.masks and not prompts:
        raise InputError("no annotation: give --mask PATH (the first frame), --mask FRAME:PATH, --masks DIR, "
                         "--points X,Y or --box X0,Y0,X1,Y1")
    # Everything that can be checked is checked before the model loads (the video is opened once, here).
    job = prepare_segment(
        args.video, None, args.out, annotations=sources, masks=args.masks, mode=args.annotation_mode,
        name=args.name, overwrite=args.overwrite, resize_mask=args.resize_mask, backend=args.backend,
        frames=args.frames, max_frames=args.max_frames, labels=args.labels,
        allow_no_annotation=bool(prompts),
    )
    check_model_input(cfg, *job.driver.size, source=str(job.driver.path))  # a huge size: refused before loading
    resolved = resolve_prompts(job.driver, prompts)
    if prompts and args.annotation_mode != "objects":
        raise InputError("--points / --box annotate objects: use them with --annotation-mode objects")
    check_feature_cache(args)
    if resolved:
        from vidprop.annotate.prompts import ClickToMask

        prompter = ClickToMask.load(args.prompt_model, device=args.device)
        ids = add_prompt_annotations(job, resolved, prompter)
        del prompter  # free it before the segmentation model loads
        log.info("click-to-mask: object id(s) %s", ", ".join(map(str, ids)))
    seg = Segmenter.from_pretrained(config=cfg)
    res = job.run(seg, overlay=not args.no_overlay, direction=args.direction, formats=formats,
                  progress=progress_enabled(args), feature_cache=args.feature_cache)
    extra = [res.overlay.name] if res.overlay else []
    extra += [str(p.relative_to(res.output_dir)) for p in res.exports.values()]
    what = f"{res.num_frames} masks" if "png" in formats else f"{res.num_frames} frames"
    print(f"wrote {what} to {res.output_dir}" + (f" and {', '.join(extra)}" if extra else ""))
    if args.profile:
        print(f"profile: {res.profile}")
    return 0
