"""``vidprop eval spair`` and ``vidprop eval hpatches``: the published protocols (docs/static-pairs.md)."""

from __future__ import annotations

import argparse

from vidprop.cli.common import add_engine_args, engine_from_args, progress_enabled
from vidprop.cli.match import (add_attention_args, add_geometric_matching_args, add_pair_model_args, attention_factory,
                               load_attention, pair_config)

__all__ = ["register_eval"]

SPAIR_EPILOG = """\
examples:
  vidprop eval spair --root SPair-71k/ --out runs/spair
  vidprop eval spair --root SPair-71k/ --out runs/quick --limit 50 --category cat dog
  vidprop eval spair --root SPair-71k/ --out runs/att --method attention --limit 20   # Hedlin et al.
  vidprop eval spair --root SPair-71k/ --out runs/both --pck-protocol both
  vidprop eval spair --root SPair-71k/ --out runs/spair --engine ray    # categories over Ray workers
  vidprop eval spair --root SPair-71k/ --out runs/att --method attention --engine ray   # each GPU optimises a category

PCK protocols (--pck-protocol; default: the method's own):
  dift    alpha x max(h, w) of the TARGET box, original image size.  Compares to DIFT's
          table (test, PCK@0.1 per image): DIFT_sd 52.9, DINO 33.9, OpenCLIP 38.4.
  hedlin  images and points rescaled to 512x512, alpha x max(h, w) of the SOURCE box in
          that space.  Compares to Hedlin et al.'s 28.9 @0.05 and 45.4 @0.1 (per image).
  sd-dino Zhang et al.'s (Junyi42/sd-dino pck_spair_pascal.py): the target letterboxed to
          840x840, the prediction snapped to the centre of its 14-pixel patch, distance
          STRICTLY below alpha x max(h, w) of the target box in that space, points pooled per
          category, then the mean over categories ("category mean").  With --sample 20 (their
          pairs) and the spair-sd-dinov2 preset it compares to their 59.9 @0.1.

output: OUT/config.yaml (what ran: settings, model, revision, vidprop version, date; written
first), OUT/parts/<category>.csv (one per finished category: a rerun into the same OUT with
the same settings skips them; other settings are refused without --overwrite), OUT/pairs.csv
(one row per pair, columns per protocol) and OUT/summary.json: PCK in percent at alpha
0.05 / 0.1 / 0.15, per image and per point, overall and per category, each under the
protocol that produced it, with the precision (dtype) the model ran in.
"""

HPATCHES_EPILOG = """\
examples:
  vidprop eval hpatches --root hpatches-sequences-release/ --out runs/hpatches --keypoints superpoint-1k/
  vidprop eval hpatches --root hpatches-sequences-release/ --out runs/sift       # SIFT keypoints
  vidprop eval hpatches --root hpatches-sequences-release/ --out runs/quick --limit 4
  vidprop eval hpatches --root hpatches-sequences-release/ --out runs/sift --engine ray   # sequences over Ray workers

As DIFT's published evaluation: --keypoints DIR reads DIR/<sequence>-<i>.kp ('x y' rows; the
1,000 SuperPoint keypoints per image DIFT distributes), duplicates removed; without it,
OpenCV SIFT keypoints.  The 8 high-resolution sequences the standard download removes are
skipped (--include-high-res keeps them); the preset computes in float32 (--dtype float16 is
faster on a GPU and is recorded in the results).

output: OUT/config.yaml (what ran; written first), OUT/parts/<sequence>.csv (one per finished
sequence: a rerun with the same settings skips them; other settings are refused without
--overwrite), OUT/pairs.csv (one row per pair 1-i) and OUT/summary.json: percent of pairs
whose mean corner error is <= 1 / 3 / 5 px, for all (i_ and v_), illumination (i_) and
viewpoint (v_) pairs.
"""


def register_eval(ev: argparse._SubParsersAction) -> None:
    p = ev.add_parser("spair", help="SPair-71k semantic correspondence (PCK)",
                      description="Score semantic matching on SPair-71k: each source keypoint's best match in the "
                      "target, PCK at alpha 0.05/0.1/0.15 under DIFT's or Hedlin et al.'s protocol.",
                      epilog=SPAIR_EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--root", required=True, help="SPair-71k folder (PairAnnotation/, JPEGImages/)")
    p.add_argument("--out", required=True, help="results folder")
    p.add_argument("--split", default="test", choices=["test", "val", "trn"], help="annotation split (default test)")
    p.add_argument("--limit", type=int, help="only the first N pairs (a quick subset)")
    p.add_argument("--category", nargs="+", help="only these categories")
    p.add_argument("--no-category-prompt", action="store_true", help='prompt "" instead of "a photo of a {category}"')
    p.add_argument("--method", choices=["dift", "attention"], default="dift",
                   help="DIFT features (default) or Hedlin et al.'s attention matcher (slow: minutes per point)")
    p.add_argument("--pck-protocol", choices=["dift", "hedlin", "sd-dino", "both"],
                   help="PCK protocol (default: dift for --method dift, hedlin for --method attention); "
                        "sd-dino: Zhang et al.'s (SD + DINOv2); both: dift and hedlin, the method's own first")
    p.add_argument("--sample", type=int, metavar="N",
                   help="N pairs per category drawn as sd-dino's script draws them (np.random.seed(42), "
                        "np.random.choice with replacement; their default 20); default: every pair")
    p.add_argument("--overwrite", action="store_true", help="replace existing results in --out")
    add_pair_model_args(p, "semantic")
    add_attention_args(p)
    add_engine_args(p)
    p.set_defaults(func=run_spair_cmd)

    h = ev.add_parser("hpatches", help="HPatches homography estimation accuracy",
                      description="Score geometric matching on HPatches as DIFT's evaluation: keypoints (SuperPoint "
                      "files or SIFT), DIFT descriptors, mutual nearest neighbours, homography; accuracy at 1/3/5 px "
                      "mean corner error.",
                      epilog=HPATCHES_EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    h.add_argument("--root", required=True, help="hpatches-sequences-release folder")
    h.add_argument("--out", required=True, help="results folder")
    h.add_argument("--limit", type=int, help="only the first N sequences (sorted by name)")
    h.add_argument("--keypoints", metavar="DIR", help="folder of <sequence>-<i>.kp keypoint files (DIFT's "
                   "SuperPoint keypoints); default: SIFT")
    h.add_argument("--max-keypoints", type=int, default=1000, help="SIFT keypoints per image (default 1000)")
    h.add_argument("--include-high-res", action="store_true",
                   help="keep the 8 high-resolution sequences the standard download removes")
    add_geometric_matching_args(h)
    h.add_argument("--overwrite", action="store_true", help="replace existing results in --out")
    add_pair_model_args(h, "geometric")
    add_engine_args(h)
    h.set_defaults(func=run_hpatches_cmd)


def run_spair_cmd(args: argparse.Namespace) -> int:
    from vidprop.eval.pck import check_protocol_boxes, resolve_protocols
    from vidprop.eval.spair import read_spair, run_spair
    from vidprop.io.atomic import check_writable_target
    from vidprop.tasks.match import PairMatcher
    from pathlib import Path

    engine = engine_from_args(args)
    check_writable_target(Path(args.out) / "summary.json", True, folder=False)  # writable, before loading (a rerun resumes)
    pairs = read_spair(args.root, args.split, limit=args.limit, categories=args.category)  # fail before loading
    protocols = resolve_protocols(args.method, args.pck_protocol)
    check_protocol_boxes(pairs, protocols, Path(args.root) / "PairAnnotation" / args.split)
    if args.sample is not None and args.sample < 1:
        from vidprop.errors import ConfigError

        raise ConfigError(f"--sample must be >= 1, got {args.sample}")
    attention = matcher = None
    if args.method == "attention":  # on Ray, each worker loads it once
        attention = attention_factory(args) if engine.kind != "sequential" else load_attention(args)
    elif engine.kind != "sequential":
        matcher = pair_config(args, "semantic")  # each Ray worker loads the model
    else:
        matcher = PairMatcher.from_pretrained(config=pair_config(args, "semantic"))
    s = run_spair(matcher, args.root, args.out, split=args.split, limit=args.limit, categories=args.category,
                  use_category_prompt=not args.no_category_prompt, attention=attention, protocols=protocols,
                  progress=progress_enabled(args), overwrite=args.overwrite, engine=engine, sample=args.sample)
    o = s["overall"]
    print(f"SPair-71k {args.split}: {o['pairs']} pairs, {o['points']} points ({args.method}, {s['dtype']})")
    for name, r in s["protocols"].items():
        print(f"{name} protocol: {r['description']}")
        for kind in ("per_image", "per_point"):
            vals = "  ".join(f"@{a}: {v:.2f}" for a, v in r["overall"][kind].items())
            print(f"  PCK {kind.replace('_', ' '):<9} {vals}")
        if name == "sd-dino":
            vals = "  ".join(f"@{a}: {v:.2f}" for a, v in r["overall"]["category_mean"].items())
            print(f"  PCK category mean {vals}")
        print(f"  compare to: {r['compare_to']}")
    if not s["published"]:
        print("NOT the published run: " + "; ".join(s["differences_from_published"]))
    print(f"wrote {Path(args.out) / 'pairs.csv'}, {Path(args.out) / 'summary.json'}")
    return 0


def run_hpatches_cmd(args: argparse.Namespace) -> int:
    from pathlib import Path

    from vidprop.eval.hpatches import hpatches_keypoints, read_hpatches, run_hpatches
    from vidprop.io.atomic import check_writable_target
    from vidprop.tasks.match import PairMatcher

    engine = engine_from_args(args)
    check_writable_target(Path(args.out) / "summary.json", True, folder=False)  # writable, before loading (a rerun resumes)
    seqs = read_hpatches(args.root, limit=args.limit, include_high_res=args.include_high_res)
    if args.keypoints is not None:  # every keypoint file readable before loading the model
        for seq in seqs:
            for i in range(1, 7):
                hpatches_keypoints(args.keypoints, seq.name, i)
    cfg = pair_config(args, "geometric", geometric=True)
    matcher = cfg if engine.kind != "sequential" else PairMatcher.from_pretrained(config=cfg)  # Ray: each worker loads it
    s = run_hpatches(matcher, args.root, args.out, limit=args.limit, keypoints=args.keypoints,
                     max_keypoints=args.max_keypoints, include_high_res=args.include_high_res,
                     progress=progress_enabled(args),
                     overwrite=args.overwrite, engine=engine)
    kp = (f"keypoints from {args.keypoints}" if args.keypoints else f"SIFT keypoints (<= {args.max_keypoints})")
    print(f"HPatches: {s['sequences']} sequences, {kp}, {s['dtype']}; homography accuracy (mean corner error)")
    if s["published"]:
        print("DIFT's published protocol (compare with its HPatches table)")
    else:
        print("NOT DIFT's published protocol: " + "; ".join(s["differences_from_published"]))
    for group, r in s["accuracy"].items():
        vals = "  ".join(f"<={k}: {v:.1f}" for k, v in r.items() if k != "pairs")
        print(f"  {group:<12} ({r['pairs']} pairs)  {vals}")
    print(f"wrote {Path(args.out) / 'pairs.csv'}, {Path(args.out) / 'summary.json'}")
    return 0
