"""``vidprop export``: convert finished result folders to COCO JSON or the YouTube-VOS layout."""

from __future__ import annotations

import argparse

__all__ = ["register", "run"]

EPILOG = """\
examples:
  vidprop export results/clip --format coco
  vidprop export results/clip results/judo --format coco,youtube-vos --overwrite

A result folder is what `vidprop segment` wrote: OUT/NAME/<frame>.png (indexed
PNGs).  coco writes OUT/NAME/coco.json (one image per frame, one annotation per
object and frame with its RLE mask, bbox and area; category_id = track_id = the
object id); youtube-vos writes OUT/NAME/youtube-vos/Annotations/NAME/<frame>.png.
Existing exports are replaced only with --overwrite.
"""


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "export",
        help="convert result folders to COCO JSON or the YouTube-VOS layout",
        description="Convert the PNG masks of finished `vidprop segment` result folders to other formats.",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("results", nargs="+", metavar="RESULTS", help="result folder(s) holding <frame>.png masks")
    p.add_argument("--format", required=True, metavar="F[,F...]", help="coco, youtube-vos, or both separated by a comma")
    p.add_argument("--overwrite", action="store_true", help="replace exports that already exist")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from vidprop.io.exports import export_results, parse_formats

    formats = parse_formats(args.format)
    for folder in args.results:
        done = export_results(folder, formats, overwrite=args.overwrite)
        written = ", ".join(str(p) for p in done.values()) or "nothing (png is what the folder holds)"
        print(f"{folder}: wrote {written}")
    return 0
