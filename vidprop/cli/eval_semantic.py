"""``vidprop eval pf-willow`` and ``vidprop eval cub``: the DIFT paper's other semantic-correspondence benchmarks."""

from __future__ import annotations

import argparse
from pathlib import Path

from vidprop.cli.common import progress_enabled
from vidprop.cli.match import add_pair_model_args, pair_config

__all__ = ["register_eval"]

RUN_NOTE = """\
output: OUT/config.yaml (what ran: settings, model, revision, vidprop version, date; written
first), OUT/parts/<group>.csv (one per finished {group}: a rerun into the same OUT with the
same settings skips them; other settings are refused without --overwrite), OUT/pairs.csv and
OUT/summary.json (PCK in percent at alpha 0.05 / 0.1 / 0.15, per image and per point, overall
and per {group}).
"""

WILLOW_EPILOG = """\
examples:
  vidprop eval pf-willow --root PF-WILLOW/ --out runs/willow                      # DIFT_sd (semantic preset)
  vidprop eval pf-willow --root PF-WILLOW/ --out runs/willow-dino --backbone dino   # preset spair-dino
  vidprop eval pf-willow --root PF-WILLOW/ --out runs/quick --limit 20

dataset: the PF-WILLOW release (Ham et al.) with test_pairs.csv (900 pairs, 10 keypoints each;
the pair list of CNNGeometric / HPF / DHPF / CATs); images at ROOT/car(G)/..., ROOT/duck(S)/...
scoring: a point is correct within alpha * max(w, h) of the bounding box of the TARGET's
keypoints; the published figure is PCK@0.1 per image.  The prompt is "a photo of a <class>"
(car, duck, motorbike, wine bottle) with the semantic preset.

""" + RUN_NOTE.format(group="subset")

CUB_EPILOG = """\
examples:
  vidprop eval cub --root cub_subsets/ --out runs/cub
  vidprop eval cub --root cub_subsets/ --out runs/cub-adm --backbone adm --weights 256x256_diffusion_uncond.pt
  vidprop eval cub --root cub_subsets/ --out runs/quick --subsets 0 1

dataset: the 14 CUB-200-2011 subsets of Neural Congealing (prepare_data.py --cub_acsm: 256x256
crops of ACSM's CUB validation birds): ROOT/cub_subset_<k>/images/*.png and
ROOT/cub_subset_<k>/pck/keypoints.pt (images x 15 x (x, y, visible)).
scoring: every pair of a subset in both directions, points visible in both images, correct
within alpha * max(H, W) of the target image; per point per subset, then the mean over the
subsets (the headline "mean_over_subsets"; the pooled per-point figure is reported too).
The prompt is "a photo of a bird" with the semantic preset.

""" + RUN_NOTE.format(group="subset")


def register_eval(ev: argparse._SubParsersAction) -> None:
    w = ev.add_parser("pf-willow", help="PF-WILLOW semantic correspondence (PCK@0.1 of the keypoint box, per image)",
                      description="Score semantic matching on PF-WILLOW: each source keypoint's best match in the "
                      "target, PCK at alpha 0.05/0.1/0.15 of the target keypoints' bounding box.",
                      epilog=WILLOW_EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    w.add_argument("--root", required=True, help="PF-WILLOW folder (test_pairs.csv and the image folders)")
    w.add_argument("--out", required=True, help="results folder")
    w.add_argument("--limit", type=int, help="only the first N pairs (a quick subset)")
    w.add_argument("--category", nargs="+", metavar="SUBSET", help="only these subsets, e.g. 'car(G)' 'duck(S)'")
    w.add_argument("--no-category-prompt", action="store_true", help='prompt "" instead of "a photo of a <class>"')
    w.add_argument("--overwrite", action="store_true", help="start over, replacing the results in --out")
    add_pair_model_args(w, "semantic")
    w.set_defaults(func=run_pfwillow_cmd)

    c = ev.add_parser("cub", help="CUB-200-2011 keypoint transfer (14 subsets, PCK@0.1 per point)",
                      description="Score semantic matching on CUB-200-2011 as DIFT did (Neural Congealing's 14 "
                      "subsets): keypoints transferred between every pair of a subset, PCK at alpha of the image size.",
                      epilog=CUB_EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    c.add_argument("--root", required=True, help="folder holding cub_subset_0/ ... cub_subset_13/")
    c.add_argument("--out", required=True, help="results folder")
    c.add_argument("--subsets", type=int, nargs="+", metavar="K", help="only these subsets (numbers)")
    c.add_argument("--no-category-prompt", action="store_true", help='prompt "" instead of "a photo of a bird"')
    c.add_argument("--overwrite", action="store_true", help="start over, replacing the results in --out")
    add_pair_model_args(c, "semantic")
    c.set_defaults(func=run_cub_cmd)


def _print(name: str, s: dict, headline: dict, label: str, out: str) -> None:
    o = s["overall"]
    print(f"{name}: {o['pairs']} pairs, {o['points']} points")
    print(f"  {label:<22}" + "  ".join(f"@{a}: {v:.2f}" for a, v in headline.items()))
    for kind in ("per_image", "per_point"):
        print(f"  PCK {kind.replace('_', ' '):<18}" + "  ".join(f"@{a}: {v:.2f}" for a, v in o[kind].items()))
    print(f"wrote {Path(out) / 'pairs.csv'}, {Path(out) / 'summary.json'}")


def run_pfwillow_cmd(args: argparse.Namespace) -> int:
    from vidprop.eval.pfwillow import read_pfwillow, run_pfwillow
    from vidprop.tasks.match import PairMatcher

    read_pfwillow(args.root, limit=args.limit, categories=args.category)  # fail before loading the model
    matcher = PairMatcher.from_pretrained(config=pair_config(args, "semantic"))
    s = run_pfwillow(matcher, args.root, args.out, limit=args.limit, categories=args.category,
                     use_category_prompt=not args.no_category_prompt, progress=progress_enabled(args),
                     overwrite=args.overwrite)
    _print("PF-WILLOW", s, s["overall"]["per_image"], "PCK per image (paper)", args.out)
    return 0


def run_cub_cmd(args: argparse.Namespace) -> int:
    from vidprop.eval.cub import read_cub, run_cub
    from vidprop.tasks.match import PairMatcher

    read_cub(args.root, subsets=args.subsets)
    matcher = PairMatcher.from_pretrained(config=pair_config(args, "semantic"))
    s = run_cub(matcher, args.root, args.out, subsets=args.subsets,
                category_prompt=None if args.no_category_prompt else "bird", progress=progress_enabled(args),
                overwrite=args.overwrite)
    _print("CUB-200-2011", s, s["mean_over_subsets"], "PCK mean of subsets", args.out)
    return 0
