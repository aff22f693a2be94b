"""Make the quickstart's example: a small synthetic video and its first-frame mask.

    python examples/make_example.py            # writes examples/data/
    vidprop segment examples/data/shapes.mp4 --mask examples/data/shapes_mask.png --out results/

Two textured objects (ids 1 and 2) move over a textured, panning background;
the ground-truth masks of every frame are written too, for a quick check.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from vidprop.io.masks import write_indexed_png
from vidprop.io.synthetic import SyntheticScene, write_video


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", default=str(Path(__file__).parent / "data"), help="output folder")
    p.add_argument("--frames", type=int, default=40)
    p.add_argument("--width", type=int, default=854)
    p.add_argument("--height", type=int, default=480)
    args = p.parse_args()
    out = Path(args.out)
    scene = SyntheticScene(width=args.width, height=args.height, num_frames=args.frames, num_objects=2, seed=1)
    write_video(scene, out / "shapes.mp4", fps=12)
    write_indexed_png(out / "shapes_mask.png", scene.frame(0)[1])
    gt = out / "shapes_gt"
    gt.mkdir(parents=True, exist_ok=True)
    for t, (_, m) in enumerate(scene.frames()):
        write_indexed_png(gt / f"{t:05d}.png", m)
    print(f"wrote {out / 'shapes.mp4'}, {out / 'shapes_mask.png'} and {gt}/")


if __name__ == "__main__":
    main()
