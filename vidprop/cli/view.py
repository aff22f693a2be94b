"""``vidprop view``: a local web page to review results and explore correspondences."""

from __future__ import annotations

import argparse
import logging
from pathlib import Path

from vidprop.cli.common import progress_enabled
from vidprop.cli.match import add_pair_model_args, pair_config
from vidprop.cli.serving import SERVER_HELP, add_server_args, run_page

__all__ = ["register", "build_app"]

log = logging.getLogger("vidprop")

EPILOG = """\
examples:
  vidprop view results/shapes                 # one segment or track result
  vidprop view results/                       # a folder of results (segment --out, eval davis --out)
  vidprop view runs/davis-sd21 --open         # with each sequence's J&F; open the browser
  vidprop view --match cat1.jpg cat2.jpg --category cat     # click a point, see its match and heatmap
  vidprop view --match a.jpg b.jpg --model /models/sd21 --device cuda

The page is served on 127.0.0.1 at a free port unless --port; the URL to
open is printed.  Everything the page needs ships with vidprop: it works
offline and requests nothing from elsewhere.

segment result: frame slider, play/pause (space), previous/next frame (arrow
keys), overlay opacity, each object's colour and id with a toggle, original
and overlay side by side, and a download of the frame's mask (the indexed PNG
as written, usable as a first-frame mask).  track result: keypoints and the
skeleton over the frames.  match: both images' features are computed once at
start ("semantic" preset, 768x768); each click is then answered from them.

""" + SERVER_HELP


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "view",
        help="review results in the browser, or click through correspondences",
        description="Serve a local web page to review segment / track / eval davis results frame by frame, "
        "or (--match) to click a point on one image and see its DIFT match and cosine heatmap on another.",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("results", nargs="?", help="a result folder (OUT/NAME) or a folder of results (OUT)")
    p.add_argument("--match", nargs=2, metavar=("SRC", "TGT"), help="explore correspondences between two images")
    p.add_argument("--category", help='object category for --match: prompt "a photo of a CATEGORY"')
    p.add_argument("--prompt", help="explicit prompt for --match (overrides the preset's and --category)")
    add_server_args(p)
    add_pair_model_args(p, "semantic")
    p.set_defaults(func=run)


def build_app(args: argparse.Namespace):
    """The ASGI app for the parsed arguments (computes the match features, if any)."""
    from vidprop.errors import ConfigError
    from vidprop.view.app import create_app

    if bool(args.results) == bool(args.match):
        raise ConfigError("give a results folder (vidprop view RESULTS) or two images (vidprop view --match SRC TGT)")
    if args.results:
        return create_app(results=args.results)

    from vidprop.io.images import check_image_size, read_image
    from vidprop.tasks.match import MIN_SIDE, PairMatcher
    from vidprop.view.clicks import MatchSession

    src_path, tgt_path = args.match
    src, tgt = read_image(src_path), read_image(tgt_path)
    check_image_size(src, src_path, MIN_SIDE)
    check_image_size(tgt, tgt_path, MIN_SIDE)
    cfg = pair_config(args, "semantic")
    matcher = PairMatcher.from_pretrained(config=cfg)
    prompt = matcher.prompt(args.category, args.prompt)
    w, h = cfg.frames.target_size(src.shape[1], src.shape[0])
    log.info("computing the features of both images once (%dx%d model input, ensemble %d) ...", w, h,
             cfg.extractor.ensemble)
    session = MatchSession.from_matcher(matcher, src, tgt, prompt=prompt, names=(Path(src_path).name, Path(tgt_path).name),
                                        progress=progress_enabled(args))
    return create_app(match=session)


def run(args: argparse.Namespace) -> int:
    return run_page(args, "vidprop view", lambda: build_app(args))
