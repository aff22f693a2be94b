"""``vidprop annotate``: label a video in the browser -- click an object, propagate, fix a frame, go on."""

from __future__ import annotations

import argparse
import logging
import threading
from pathlib import Path
from typing import Any

from vidprop.cli.common import add_feature_cache_arg, add_model_args, add_propagation_args
from vidprop.cli.serving import SERVER_HELP, add_server_args, run_page

__all__ = ["register", "LazyPrompter"]

log = logging.getLogger("vidprop")

EPILOG = """\
examples:
  vidprop annotate clip.mp4                         # results/clip/, the page at http://127.0.0.1:PORT/
  vidprop annotate frames/ --mask 00000.png --out labels/ --port 8765
  vidprop annotate clip.mp4 --out labels/           # again: resumes the session saved in labels/clip/
  vidprop annotate clip.mp4 --prompt-model /models/sam2.1-hiera-large --device cuda

On the page: pick an object id (its colour shows), click on the object (shift+click or right click: not
the object) or drag a box -- SAM 2 makes its mask -- or paint it with the brush / eraser; propagate
forward, backward or both ways from the frame shown (frames stream in, with a progress bar); scrub to
the frames the confidence timeline marks red, correct them, propagate again from there (from cached
features: nothing is extracted twice); undo / redo; export PNG, COCO or YouTube-VOS.  Every change is
saved at once in OUT/NAME (exactly `vidprop segment`'s layout, so `vidprop view`, `export` and `eval`
read it; the session itself in OUT/NAME/.annotate/), and running the same command again resumes.

The page is served on 127.0.0.1 at a free port unless --port; the URL to open is printed on one
line.  The SAM 2 model is loaded at the first click (not for brush-only work).

""" + SERVER_HELP


class LazyPrompter:
    """The click-to-mask model, loaded on its first use (a brush-only session never loads it)."""

    def __init__(self, model: str, device: str | None) -> None:
        self.model, self.device = model, device
        self._loaded: Any = None
        self._lock = threading.Lock()

    def __call__(self, image: Any, points: Any, labels: Any, box: Any) -> Any:
        with self._lock:
            if self._loaded is None:
                from vidprop.annotate.prompts import ClickToMask

                self._loaded = ClickToMask.load(self.model, device=self.device)
            return self._loaded(image, points, labels, box)


def register(sub: argparse._SubParsersAction) -> None:
    from vidprop.annotate.prompts import DEFAULT_PROMPT_MODEL
    from vidprop.cli.segment import add_short_side_arg

    p = sub.add_parser(
        "annotate",
        help="label a video interactively in the browser (clicks, propagation, corrections)",
        description="Serve a local page to label a video: add objects by clicks / a box (SAM 2) or a brush, "
        "propagate them with DIFT features (computed once, cached), correct any frame and propagate again, "
        "export PNG / COCO / YouTube-VOS.",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("video", help="video file (mp4, avi, ...) or a folder of frames (sorted by name)")
    p.add_argument("--mask", action="append", metavar="[FRAME:]PATH",
                   help="start with this annotation (PATH: the first frame; FRAME:PATH: frame FRAME; repeatable)")
    p.add_argument("--out", default="results", help="output folder: OUT/NAME/ holds the session (default: results/)")
    p.add_argument("--name", help="sub-folder name (default: the video's name)")
    p.add_argument("--backend", default="auto", help="video decoder: auto, decord or pyav")
    p.add_argument("--prompt-model", default=DEFAULT_PROMPT_MODEL, metavar="ID_OR_FOLDER",
                   help=f"the SAM 2 checkpoint for clicks and boxes (default: {DEFAULT_PROMPT_MODEL})")
    add_feature_cache_arg(p, default_help="vidprop's folder in your user cache, e.g. ~/.cache/vidprop/features")
    add_server_args(p)
    add_model_args(p, "davis-fast")
    add_short_side_arg(p)
    add_propagation_args(p)
    p.set_defaults(func=run)


def build_session(args: argparse.Namespace):
    """Check the inputs (before the model loads), load the model, open or resume the session."""
    from vidprop.annotate.annotator import Annotator
    from vidprop.annotate.session import AnnotateSession
    from vidprop.cli.segment import segment_config_from_args
    from vidprop.tasks.feature_cache import FeatureCache, default_cache_dir
    from vidprop.io.annotations import load_annotations, parse_mask_arg
    from vidprop.io.driver import VideoDriver
    from vidprop.tasks.segment import Segmenter

    cfg = segment_config_from_args(args)
    driver = VideoDriver(args.video, backend=args.backend)
    sources = [parse_mask_arg(m) for m in args.mask or []]
    initial = load_annotations(driver, sources) if sources else {}
    name = args.name or driver.info.name
    out_dir = Path(args.out) / name
    AnnotateSession.check_out(out_dir)
    cache = FeatureCache(args.feature_cache or default_cache_dir())
    cache.check_writable()
    seg = Segmenter.from_pretrained(config=cfg)
    prompter = LazyPrompter(args.prompt_model, args.device)
    ann = Annotator(args.video, seg, cache=cache, backend=args.backend, prompter=prompter, name=name)
    session = AnnotateSession(ann, args.out)
    session.load()
    for t, a in initial.items():
        ann.add_mask(t, a.mask)
    if initial:
        session.save_state()
    return session


def run(args: argparse.Namespace) -> int:
    from vidprop.annotate.app import create_annotate_app

    # the port is bound (and the server flags checked) before the session and its model load
    return run_page(args, "vidprop annotate", lambda: create_annotate_app(build_session(args)))
