"""Make the quickstart's example: a small synthetic video and its first-frame mask.

    python examples/make_example.py            # writes ./vidprop-example/
    vidprop segment vidprop-example/shapes.mp4 --mask vidprop-example/shapes_mask.png --out results/ --config quick
    vidprop score results/shapes --gt vidprop-example/shapes_gt     # J&F against the true masks
    python examples/make_example.py --davis    # also ./vidprop-example/DAVIS/, a layout `vidprop eval davis` runs on

Two textured objects (ids 1 and 2) move over a textured, panning background;
the ground-truth masks of every frame are written too (``shapes_gt/``), so
``vidprop score`` checks a result against them.
``--davis`` also writes the same footage as a two-sequence DAVIS-2017
layout (``DAVIS/``: ImageSets, JPEGImages/480p, Annotations/480p with every
frame's mask), to try ``vidprop eval davis``.  The files go to ``./vidprop-example/`` (``--out`` to choose); the copy
tracked in the repository (``examples/data/``) is never rewritten unless
``--out examples/data`` is asked for.
"""

from __future__ import annotations

import argparse
import shutil
from pathlib import Path

from vidprop.io.masks import write_indexed_png
from vidprop.io.synthetic import SyntheticScene, write_davis_layout, write_video

DEFAULT_OUT = "vidprop-example"


def main(argv: list[str] | None = None) -> Path:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", default=DEFAULT_OUT, help=f"output folder (default: ./{DEFAULT_OUT}/)")
    p.add_argument("--frames", type=int, default=40)
    p.add_argument("--width", type=int, default=854)
    p.add_argument("--height", type=int, default=480)
    p.add_argument("--davis", action="store_true", help="also write DAVIS/, a DAVIS-2017 layout of two sequences")
    args = p.parse_args(argv)
    out = Path(args.out)
    scene = SyntheticScene(width=args.width, height=args.height, num_frames=args.frames, num_objects=2, seed=1)
    out.mkdir(parents=True, exist_ok=True)
    write_video(scene, out / "shapes.mp4", fps=12)
    write_indexed_png(out / "shapes_mask.png", scene.frame(0)[1])
    gt = out / "shapes_gt"
    gt.mkdir(parents=True, exist_ok=True)
    for t, (_, m) in enumerate(scene.frames()):
        write_indexed_png(gt / f"{t:05d}.png", m)
    print(f"wrote {out / 'shapes.mp4'}, {out / 'shapes_mask.png'} and {gt}/")
    # --config quick: a 256 short side and one noise sample, about 2 minutes on a CPU (the full settings: hours)
    print(f"next: vidprop segment {out / 'shapes.mp4'} --mask {out / 'shapes_mask.png'} --out results/ "
          "--config quick")
    print(f"then: vidprop score results/shapes --gt {gt}   # J&F of the result against the true masks")
    if args.davis:
        davis = out / "DAVIS"
        if davis.exists():
            shutil.rmtree(davis)  # a layout of other footage must not mix in
        second = SyntheticScene(width=args.width, height=args.height, num_frames=args.frames, num_objects=3, seed=2)
        write_davis_layout({"shapes": scene, "shapes3": second}, davis)
        print(f"wrote {davis}/ (DAVIS-2017 layout, set val: shapes, shapes3)")
        print(f"next: vidprop eval davis --root {davis} --set val --out runs/example --config quick")
    return out


if __name__ == "__main__":
    main()
