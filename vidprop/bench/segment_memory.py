"""Benchmark: peak RSS of `vidprop segment` on short and long synthetic videos, with and without annotations.

    vidprop bench segment-memory                        # 100 and 1,000 frames + 10 annotations over 1,000
    vidprop bench segment-memory --annotations 0        # first-frame runs only

Memory must not grow with video length or with the number of annotations:
only the context (anchors, at most ``max_anchors``, and the queue) is kept,
frames are streamed, results are written as they come, and a backward pass
spills its frames to a temporary file.  Each run is a separate process; its
peak RSS (ru_maxrss) is printed with the time per frame.  The annotated runs
use ``--masks`` with ``--annotations`` masks spread evenly over the longest
video (first one on frame 0), then the same with ``--direction both`` and the
first annotation at 10% of the video, then (``--entering``) objects that each
enter at their own frame with ``--direction both`` on the shortest video: one
backward pass per entering object, so memory must not grow with their number
either (its peak is compared with the shortest first-frame run).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time

__all__ = ["main"]

_CHILD = """
import json, resource, sys, time
from vidprop.cli import main
t0 = time.perf_counter()
rc = main(sys.argv[1:])
dt = time.perf_counter() - t0
print(json.dumps({"rc": rc, "seconds": dt, "peak_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}))
"""


def _run(cmd: list[str]) -> dict | None:
    res = subprocess.run(cmd, capture_output=True, text=True)
    if res.returncode != 0:
        print(f"  failed: {res.stderr.strip()[-500:]}")
        return None
    return json.loads(res.stdout.strip().splitlines()[-1])


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="vidprop bench segment-memory", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--lengths", default="100,1000", help="video lengths in frames")
    p.add_argument("--annotations", type=int, default=10,
                   help="annotated frames spread over the longest video (0: first-frame runs only)")
    p.add_argument("--entering", type=int, default=4,
                   help="objects entering at their own frames, --direction both, on the shortest video (0: none)")
    p.add_argument("--size", default="128x72", help="frame size WxH of the synthetic videos")
    p.add_argument("--short-side", type=int, default=64, help="model input short side")
    p.add_argument("--ensemble", type=int, default=1)
    p.add_argument("--model", help="diffusers folder (default: a tiny random SD written to a temp folder)")
    args = p.parse_args(argv)
    from vidprop.bench.common import memory_runs
    from vidprop.io.masks import write_indexed_png
    from vidprop.io.synthetic import SyntheticScene, write_video

    rows = []
    with memory_runs(args.size, args.lengths, args.model) as runs:
        w, h, lengths, tmp_path, model = runs.width, runs.height, runs.lengths, runs.tmp, runs.model
        print(f"peak RSS of `vidprop segment` ({runs.model_label}, frames {w}x{h}, "
              f"model input short side {args.short_side}, ensemble {args.ensemble}, DAVIS propagation preset)")
        base = ["--model", model, "--short-side", str(args.short_side), "--ensemble", str(args.ensemble),
                "--no-progress", "--no-overlay"]
        scene = None
        for n in lengths:
            scene = SyntheticScene(width=w, height=h, num_frames=n, num_objects=2, seed=0)
            video = write_video(scene, tmp_path / f"video{n}.mp4")
            write_indexed_png(tmp_path / "mask.png", scene.frame(0)[1])
            t0 = time.perf_counter()
            info = _run([sys.executable, "-c", _CHILD, "-q", "segment", str(video), "--mask",
                         str(tmp_path / "mask.png"), "--out", str(tmp_path / f"out{n}"), *base])
            if info is None:
                return 1
            written = len(list((tmp_path / f"out{n}" / f"video{n}").glob("*.png")))
            rows.append((f"{n} frames, first-frame mask", n, info))
            print(f"  {n:>6} frames, first-frame mask: peak RSS {info['peak_mb']:8.1f} MB, "
                  f"{1000 * info['seconds'] / n:6.1f} ms/frame, {written} masks written "
                  f"({time.perf_counter() - t0:.0f} s with start-up)")
        if len(rows) >= 2:
            a, b = rows[0][2]["peak_mb"], rows[-1][2]["peak_mb"]
            print(f"  peak RSS ratio {rows[-1][1]} vs {rows[0][1]} frames: {b / a:.3f} ({100 * (b - a) / a:+.1f}%)")
        k = args.annotations
        if k > 0 and scene is not None:
            n = lengths[-1]
            first_only = rows[-1][2]["peak_mb"]
            video = tmp_path / f"video{n}.mp4"
            for run, (label, start, extra) in enumerate((
                    (f"{k} annotations from frame 0", 0, []),
                    (f"{k} annotations from frame {n // 10}, --direction both", n // 10, ["--direction", "both"]))):
                masks = tmp_path / f"masks-{run}"  # a video under 10 frames starts both runs at frame 0
                masks.mkdir()
                frames = [start + round(i * (n - 1 - start) / max(1, k - 1)) for i in range(k)]
                for t in frames:
                    write_indexed_png(masks / f"{t:05d}.png", scene.frame(t)[1])
                t0 = time.perf_counter()
                info = _run([sys.executable, "-c", _CHILD, "-q", "segment", str(video), "--masks", str(masks),
                             "--out", str(tmp_path / f"ann{run}"), *base, *extra])
                if info is None:
                    return 1
                written = len(list((tmp_path / f"ann{run}" / f"video{n}").glob("*.png")))
                print(f"  {n:>6} frames, {label}: peak RSS {info['peak_mb']:8.1f} MB "
                      f"({100 * (info['peak_mb'] - first_only) / first_only:+.1f}% vs the first-frame run), "
                      f"{1000 * info['seconds'] / n:6.1f} ms/frame, {written} masks written "
                      f"({time.perf_counter() - t0:.0f} s with start-up)")
        e = args.entering
        if e > 0 and scene is not None:
            n = lengths[0]
            sc = SyntheticScene(width=w, height=h, num_frames=n, num_objects=2, seed=0)
            masks = tmp_path / "entering"
            masks.mkdir()
            for i in range(e):  # object i + 1 first annotated at its own frame (the scene's object 1 relabelled)
                t = round((i + 1) * (n - 1) / e)
                m = sc.frame(t)[1]
                write_indexed_png(masks / f"{t:05d}.png", ((m == m[m > 0].min()) * (i + 1)).astype("uint8"))
            t0 = time.perf_counter()
            info = _run([sys.executable, "-c", _CHILD, "-q", "segment", str(tmp_path / f"video{n}.mp4"), "--masks",
                         str(masks), "--out", str(tmp_path / "entering-out"), "--direction", "both", *base])
            if info is None:
                return 1
            first_only = rows[0][2]["peak_mb"]
            print(f"  {n:>6} frames, {e} objects entering at their own frames, --direction both ({e} backward "
                  f"passes): peak RSS {info['peak_mb']:8.1f} MB ({100 * (info['peak_mb'] - first_only) / first_only:+.1f}% "
                  f"vs the first-frame run), {1000 * info['seconds'] / n:6.1f} ms/frame "
                  f"({time.perf_counter() - t0:.0f} s with start-up)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
