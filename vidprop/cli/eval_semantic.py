"""``vidprop eval pf-willow`` and ``vidprop eval cub``: the DIFT paper's other semantic-correspondence benchmarks."""

from __future__ import annotations

import argparse
from pathlib import Path

from vidprop.cli.common import add_engine_args, engine_from_args, progress_enabled
from vidprop.cli.match import add_attention_args, add_pair_model_args, attention_factory, load_attention, pair_config

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
  vidprop eval pf-willow --root PF-WILLOW/ --out runs/att --method attention --limit 5   # Hedlin et al.
  vidprop eval pf-willow --root PF-WILLOW/ --out runs/both --pck-protocol both
  vidprop eval pf-willow --root PF-WILLOW/ --out runs/willow --engine ray       # subsets over Ray workers

dataset: the PF-WILLOW release (Ham et al.) with test_pairs.csv (900 pairs, 10 keypoints each;
the pair list of CNNGeometric / HPF / DHPF / CATs, read by both papers' code); images at
ROOT/car(G)/..., ROOT/duck(S)/...  The prompt is "a photo of a <class>" (car, duck,
motorbike, wine bottle) with the semantic preset.

PCK protocols (--pck-protocol; default: the method's own), both per image:
  dift    alpha x max(w, h) of the bounding box of the TARGET's keypoints, original pixels.
          Compares to DIFT's PF-WILLOW PCK@0.1.
  hedlin  images and points rescaled to 512x512; alpha x (max(x_max, y_max) + 1) of the
          TARGET's keypoints there (the authors' box, whose minimum runs over -1 padding).
          Compares to Hedlin et al.'s PF-Willow 53.0 @0.05 and 84.3 @0.1.

""" + RUN_NOTE.format(group="subset")

CUB_EPILOG = """\
examples:
  vidprop eval cub --root cub_subsets/ --out runs/cub                          # DIFT's layout and protocol
  vidprop eval cub --root cub_subsets/ --out runs/cub-adm --backbone adm --weights 256x256_diffusion_uncond.pt
  vidprop eval cub --root cub_subsets/ --out runs/quick --subsets 0 1
  vidprop eval cub --root CUB_200_2011/ --out runs/cub-att --method attention   # Hedlin et al.'s
  vidprop eval cub --root CUB_200_2011/ --out runs/cub-both --pck-protocol both
  vidprop eval cub --root cub_subsets/ --out runs/cub --engine ray              # subsets over Ray workers

datasets (--root decides):
  subsets  Neural Congealing's 14 subsets (prepare_data.py --cub_acsm: 256x256 crops of ACSM's
           CUB validation birds): ROOT/cub_subset_<k>/images/*.png and
           ROOT/cub_subset_<k>/pck/keypoints.pt (images x 15 x (x, y, visible)); every pair of a
           subset in both directions (--subsets K ... picks some).
  release  the CUB_200_2011 release (images.txt, train_test_split.txt, image_class_labels.txt,
           bounding_boxes.txt, parts/part_locs.txt, images/), as Hedlin et al.'s loader: the
           test images of classes 1..N (--classes, default 3 as their code), every pair of a
           class once.
Points visible in both images count.  The prompt is "a photo of a bird" with the semantic preset.

PCK protocols (--pck-protocol; default: the method's own):
  dift    alpha x max(H, W) of the TARGET image, its own pixels; per point per group, then the
          mean over groups.  On the subsets: compares to DIFT's CUB-200-2011 PCK@0.1.
  hedlin  images and points rescaled to 512x512; alpha x max(w, h) of the TARGET's bird box
          x 512 / W; per image (mean over pairs).  On the release (classes 1-3): compares to
          Hedlin et al.'s CUB-200 61.6 @0.05 and 77.5 @0.1.  The subsets keep no box: the crop's
          side / 1.1 stands for its larger side (the crop is the box grown 5 % a side).

""" + RUN_NOTE.format(group="subset or class")


def register_eval(ev: argparse._SubParsersAction) -> None:
    w = ev.add_parser("pf-willow", help="PF-WILLOW semantic correspondence (PCK of the keypoint box, per image)",
                      description="Score semantic matching on PF-WILLOW: each source keypoint's best match in the "
                      "target, PCK at alpha 0.05/0.1/0.15 of the target's keypoints under DIFT's or Hedlin et al.'s "
                      "protocol.",
                      epilog=WILLOW_EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    w.add_argument("--root", required=True, help="PF-WILLOW folder (test_pairs.csv and the image folders)")
    w.add_argument("--out", required=True, help="results folder")
    w.add_argument("--limit", type=int, help="only the first N pairs (a quick subset)")
    w.add_argument("--category", nargs="+", metavar="SUBSET", help="only these subsets, e.g. 'car(G)' 'duck(S)'")
    w.add_argument("--no-category-prompt", action="store_true", help='prompt "" instead of "a photo of a <class>"')
    w.add_argument("--overwrite", action="store_true", help="start over, replacing the results in --out")
    _add_method_args(w)
    add_pair_model_args(w, "semantic")
    add_attention_args(w)
    add_engine_args(w)
    w.set_defaults(func=run_pfwillow_cmd)

    c = ev.add_parser("cub", help="CUB-200-2011 keypoint transfer (DIFT's 14 subsets or the release, as Hedlin et al.)",
                      description="Score semantic matching on CUB-200-2011 as DIFT did (Neural Congealing's 14 "
                      "subsets) or as Hedlin et al. did (the release's test pairs): keypoints transferred between the "
                      "pairs of each group, PCK at alpha 0.05/0.1/0.15 under DIFT's or Hedlin et al.'s protocol.",
                      epilog=CUB_EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    c.add_argument("--root", required=True, help="folder holding cub_subset_0/ ... cub_subset_13/, or the "
                   "CUB_200_2011 release folder (Hedlin et al.'s layout)")
    c.add_argument("--out", required=True, help="results folder")
    c.add_argument("--subsets", type=int, nargs="+", metavar="K", help="only these subsets (numbers; subsets layout)")
    c.add_argument("--classes", type=int, default=3, metavar="N",
                   help="classes 1..N of the release layout (default 3, as Hedlin et al.'s code)")
    c.add_argument("--no-category-prompt", action="store_true", help='prompt "" instead of "a photo of a bird"')
    c.add_argument("--overwrite", action="store_true", help="start over, replacing the results in --out")
    _add_method_args(c)
    add_pair_model_args(c, "semantic")
    add_attention_args(c)
    add_engine_args(c)
    c.set_defaults(func=run_cub_cmd)


def _add_method_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--method", choices=["dift", "attention"], default="dift",
                   help="DIFT features (default) or Hedlin et al.'s attention matcher (slow: minutes per point)")
    p.add_argument("--pck-protocol", choices=["dift", "hedlin", "both"],
                   help="PCK protocol (default: dift for --method dift, hedlin for --method attention); "
                        "both: score both, the method's own first")


def _engine(args: argparse.Namespace):
    """The engine of the --engine flags."""
    return engine_from_args(args)


def _models(args: argparse.Namespace, engine) -> tuple[object, object]:
    """(matcher, attention): the DIFT PairMatcher or Hedlin et al.'s AttentionMatcher, as --method says; on Ray
    what builds it (each worker loads it once)."""
    if args.method == "attention":
        return None, attention_factory(args) if engine.kind != "sequential" else load_attention(args)
    if engine.kind != "sequential":
        return pair_config(args, "semantic"), None
    from vidprop.tasks.match import PairMatcher

    return PairMatcher.from_pretrained(config=pair_config(args, "semantic")), None


def _print(name: str, s: dict, out: str) -> None:
    """Each protocol's figures: what it measures, its published figure first, and the numbers it compares to."""
    o = s["overall"]
    print(f"{name}: {o['pairs']} pairs, {o['points']} points ({s['method']}, {s['dtype']})")
    for proto, r in s["protocols"].items():
        print(f"{proto} protocol: {r['description']}")
        lines = {f"PCK {r['headline']} (as published)": r["headline_values"]}
        for kind in ("per_image", "per_point"):
            if r["overall"][kind] is not r["headline_values"]:  # the published figure is printed once
                lines[f"PCK {kind.replace('_', ' ')}"] = r["overall"][kind]
        width = max(len(k) for k in lines) + 2
        for label, values in lines.items():
            print(f"  {label + ':':<{width}}" + "  ".join(f"@{a}: {v:.2f}" for a, v in values.items()))
        print(f"  compare to: {r['compare_to']}")
    print(f"wrote {Path(out) / 'pairs.csv'}, {Path(out) / 'summary.json'}")


def run_pfwillow_cmd(args: argparse.Namespace) -> int:
    from vidprop.eval.pck import resolve_protocols
    from vidprop.eval.pfwillow import read_pfwillow, run_pfwillow

    engine = _engine(args)
    read_pfwillow(args.root, limit=args.limit, categories=args.category)  # fail before loading the model
    protocols = resolve_protocols(args.method, args.pck_protocol)
    matcher, attention = _models(args, engine)
    s = run_pfwillow(matcher, args.root, args.out, limit=args.limit, categories=args.category,
                     use_category_prompt=not args.no_category_prompt, attention=attention, protocols=protocols,
                     progress=progress_enabled(args), overwrite=args.overwrite, engine=engine)
    _print("PF-WILLOW", s, args.out)
    return 0


def run_cub_cmd(args: argparse.Namespace) -> int:
    from vidprop.errors import ConfigError
    from vidprop.eval.cub import PUBLISHED_CLASSES, cub_layout, read_cub, read_cub_release, run_cub
    from vidprop.eval.pck import resolve_protocols

    engine = _engine(args)
    layout, folder = cub_layout(args.root)
    if layout == "release":  # fail before loading the model
        if args.subsets is not None:
            raise ConfigError(f"{args.root} is the CUB_200_2011 release: pick classes with --classes N, not --subsets")
        read_cub_release(folder, classes=args.classes)
    else:
        read_cub(args.root, subsets=args.subsets)
    protocols = resolve_protocols(args.method, args.pck_protocol)
    matcher, attention = _models(args, engine)
    s = run_cub(matcher, args.root, args.out, subsets=args.subsets, classes=args.classes,
                category_prompt=None if args.no_category_prompt else "bird", attention=attention,
                protocols=protocols, progress=progress_enabled(args), overwrite=args.overwrite, engine=engine)
    _print(s["benchmark"], s, args.out)
    if layout == "release" and args.classes != PUBLISHED_CLASSES:
        print(f"note: classes 1-{args.classes}; Hedlin et al.'s published run used classes 1-{PUBLISHED_CLASSES}")
    return 0
