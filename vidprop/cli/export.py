"""``vidprop export``: convert finished result folders (or folders of them) to the formats labelling tools read."""

from __future__ import annotations

import argparse

__all__ = ["register", "run"]

EPILOG = """\
examples:
  vidprop export results/clip --format coco
  vidprop export results/clip results/judo --format coco,youtube-vos --overwrite
  vidprop export batch-out/ --format cvat-video,mots --labels labelmap.txt   # every result of a batch
  vidprop export eval-out/ --format youtube-vis                              # every sequence of an eval

A result folder is what `vidprop segment` wrote: OUT/NAME/<frame>.png (indexed
PNGs).  A folder whose sub-folders are results (what `batch` and `eval davis`
write) exports each of them.  Formats: coco (coco.json), youtube-vos
(youtube-vos/Annotations/NAME/), cvat-video (cvat-video.xml, CVAT for video
1.1), mots (mots/: MOTS txt and PNG), youtube-vis (youtube-vis.json).  Names
and colours come from the folder's labels.json (written by a run that had
them) and --labels.  Existing exports are replaced only with --overwrite.
"""


def register(sub: argparse._SubParsersAction) -> None:
    from vidprop.io.exports import FORMATS

    p = sub.add_parser(
        "export",
        help="convert result folders to COCO, YouTube-VOS/VIS, CVAT for video or MOTS",
        description="Convert the PNG masks of finished result folders (segment, batch, eval) to other formats.",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("results", nargs="+", metavar="RESULTS",
                   help="result folder(s) holding <frame>.png masks, or folders of them")
    p.add_argument("--format", required=True, metavar="F[,F...]",
                   help=f"one or more of {', '.join(f for f in FORMATS if f != 'png')}, separated by commas")
    p.add_argument("--labels", metavar="FILE",
                   help="object names (and colours): JSON/YAML id -> name, or a CVAT/Datumaro labelmap.txt")
    p.add_argument("--overwrite", action="store_true", help="replace exports that already exist")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from vidprop.io.atomic import check_writable_target
    from vidprop.io.exports import EXPORT_TARGETS, export_results, parse_formats, result_folders
    from vidprop.io.formats.labels import read_labels

    formats = parse_formats(args.format)
    labels = read_labels(args.labels) if args.labels else None
    folders = [f for r in args.results for f in result_folders(r)]
    for folder in folders:  # every target checked before any work
        for f in formats:
            if f != "png":
                check_writable_target(folder / EXPORT_TARGETS[f], args.overwrite)
    for folder in folders:
        done = export_results(folder, formats, overwrite=args.overwrite, labels=labels)
        written = ", ".join(str(p) for p in done.values()) or "nothing (png is what the folder holds)"
        print(f"{folder}: wrote {written}")
    return 0
