"""Benchmark: peak RSS of `vidprop segment` on a short and a long synthetic video.

    vidprop bench segment-memory                  # 100 and 1,000 frames, tiny random model

Memory must not grow with video length: only the context queue is kept, frames
are streamed, results are written as they come.  Each run is a separate
process; its peak RSS (ru_maxrss) is printed with the time per frame.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

__all__ = ["main"]

_CHILD = """
import json, resource, sys, time
from vidprop.cli import main
t0 = time.perf_counter()
rc = main(sys.argv[1:])
dt = time.perf_counter() - t0
print(json.dumps({"rc": rc, "seconds": dt, "peak_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}))
"""


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="vidprop bench segment-memory", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--lengths", default="100,1000", help="video lengths in frames")
    p.add_argument("--size", default="128x72", help="frame size WxH of the synthetic videos")
    p.add_argument("--short-side", type=int, default=64, help="model input short side")
    p.add_argument("--ensemble", type=int, default=1)
    p.add_argument("--model", help="diffusers folder (default: a tiny random SD written to a temp folder)")
    args = p.parse_args(argv)
    from vidprop.features.tiny import save_random_sd
    from vidprop.io.masks import write_indexed_png
    from vidprop.io.synthetic import SyntheticScene, write_video

    w, h = (int(v) for v in args.size.lower().split("x"))
    lengths = [int(n) for n in args.lengths.split(",")]
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        tmp_path = Path(tmp)
        model = args.model or str(save_random_sd(tmp_path / "tiny-sd"))
        print(f"peak RSS of `vidprop segment` ({'tiny random SD' if not args.model else model}, frames {w}x{h}, "
              f"model input short side {args.short_side}, ensemble {args.ensemble}, DAVIS propagation preset)")
        for n in lengths:
            scene = SyntheticScene(width=w, height=h, num_frames=n, num_objects=2, seed=0)
            video = write_video(scene, tmp_path / f"video{n}.mp4")
            write_indexed_png(tmp_path / "mask.png", scene.frame(0)[1])
            cmd = [sys.executable, "-c", _CHILD, "-q", "segment", str(video), "--mask", str(tmp_path / "mask.png"),
                   "--out", str(tmp_path / f"out{n}"), "--model", model, "--short-side", str(args.short_side),
                   "--ensemble", str(args.ensemble), "--no-progress"]
            t0 = time.perf_counter()
            res = subprocess.run(cmd, capture_output=True, text=True)
            if res.returncode != 0:
                print(f"  {n} frames: failed: {res.stderr.strip()[-500:]}")
                return 1
            info = json.loads(res.stdout.strip().splitlines()[-1])
            written = len(list((tmp_path / f"out{n}" / f"video{n}").glob("*.png")))
            rows.append((n, info["peak_mb"], info["seconds"]))
            print(f"  {n:>6} frames: peak RSS {info['peak_mb']:8.1f} MB, {1000 * info['seconds'] / n:6.1f} ms/frame, "
                  f"{written} masks written ({time.perf_counter() - t0:.0f} s with start-up)")
    if len(rows) >= 2:
        a, b = rows[0][1], rows[-1][1]
        print(f"  peak RSS ratio {rows[-1][0]} vs {rows[0][0]} frames: {b / a:.3f} ({100 * (b - a) / a:+.1f}%)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
