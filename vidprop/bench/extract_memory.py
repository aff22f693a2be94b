"""Benchmark: peak RSS of `vidprop extract` on a short and a long synthetic video.

    vidprop bench extract-memory                       # 20 and 200 frames, tiny random model
    vidprop bench extract-memory --lengths 20,200,1000 --no-upsample

Memory must not grow with video length: frames stream through the decoder,
features are written a chunk (``--chunk`` frames) at a time and dropped.  By
default the features are upsampled to the frame size (``--upsample``), so each
frame's saved features are large (C x H x W float32: 7.5 MB at 456x256 with
the tiny model's 16 channels) and keeping them would show at once.  Each run
is a separate process; its peak RSS (ru_maxrss) is printed with the time per
frame and the bytes written.

At most three chunks are held at once (one being filled, one queued for the
writer thread, one being written), so memory reaches its plateau after three
chunks: the default ``--chunk 4`` puts both default lengths past it (with
``--chunk 16`` a 20-frame video holds one and a quarter chunks, a 200-frame
one three).  Where on that plateau the peak falls depends on timing (how far
the writer lags) and on the C allocator, so two runs of the same length can
differ by a chunk or two; the highest RSS in each quarter of a run shows
whether memory grows during it (it does not: the quarters are level).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time

__all__ = ["main"]

_CHILD = """
import json, resource, sys, threading, time
from vidprop.cli import main

samples = []  # (seconds since start, RSS MB), every 50 ms

def rss_mb():
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return 0.0

def sample():
    while True:
        samples.append((time.perf_counter() - t0, rss_mb()))
        time.sleep(0.05)

t0 = time.perf_counter()
threading.Thread(target=sample, daemon=True).start()
rc = main(sys.argv[1:])
dt = time.perf_counter() - t0
quarters = [max([m for s, m in samples if q * dt / 4 <= s < (q + 1) * dt / 4] or [0.0]) for q in range(4)]
print(json.dumps({"rc": rc, "seconds": dt, "quarters_mb": quarters,
                  "peak_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}))
"""


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="vidprop bench extract-memory", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--lengths", default="20,200", help="video lengths in frames (default 20,200)")
    p.add_argument("--size", default="456x256", help="frame size WxH of the synthetic videos (default 456x256)")
    p.add_argument("--short-side", type=int, default=256, help="model input short side, a multiple of 32 (default 256)")
    p.add_argument("--chunk", type=int, default=4, help="frames per feature file (default 4)")
    p.add_argument("--ensemble", type=int, default=1)
    p.add_argument("--no-upsample", action="store_true", help="save the features at the model's stride")
    p.add_argument("--model", help="diffusers folder (default: a tiny random SD written to a temp folder)")
    args = p.parse_args(argv)
    from vidprop.bench.common import memory_runs
    from vidprop.io.synthetic import SyntheticScene, write_video

    rows = []
    with memory_runs(args.size, args.lengths, args.model) as runs:
        w, h, lengths, tmp_path, model = runs.width, runs.height, runs.lengths, runs.tmp, runs.model
        print(f"peak RSS of `vidprop extract` ({runs.model_label}, frames {w}x{h}, "
              f"model input short side {args.short_side}, ensemble {args.ensemble}, davis-fast preset, chunk {args.chunk}, "
              f"{'features at the model stride' if args.no_upsample else 'features upsampled to the frame size'}, "
              "float32 safetensors)")
        for n in lengths:
            scene = SyntheticScene(width=w, height=h, num_frames=n, num_objects=2, seed=0)
            video = write_video(scene, tmp_path / f"video{n}.mp4")
            out = tmp_path / f"out{n}"
            cmd = [sys.executable, "-c", _CHILD, "-q", "extract", str(video), "--out", str(out), "--model", model,
                   "--short-side", str(args.short_side), "--ensemble", str(args.ensemble), "--chunk", str(args.chunk),
                   "--no-progress"] + ([] if args.no_upsample else ["--upsample"])
            t0 = time.perf_counter()
            res = subprocess.run(cmd, capture_output=True, text=True)
            info = json.loads(res.stdout.strip().splitlines()[-1]) if res.stdout.strip() else {"rc": res.returncode}
            if res.returncode != 0 or info["rc"] != 0:
                print(f"  {n} frames: failed: {res.stderr.strip()[-500:]}")
                return 1
            files = list((out / f"video{n}").glob("*.safetensors"))
            written = sum(f.stat().st_size for f in files) / 2**20
            rows.append((n, info["peak_mb"], info["seconds"]))
            print(f"  {n:>6} frames: peak RSS {info['peak_mb']:8.1f} MB, {1000 * info['seconds'] / n:6.1f} ms/frame, "
                  f"{len(files)} files, {written:,.0f} MB written ({time.perf_counter() - t0:.0f} s with start-up); "
                  "highest RSS in each quarter of the run: " + " / ".join(f"{m:.0f}" for m in info["quarters_mb"]) + " MB")
            for f in files:  # free the temporary disk space before the next run
                f.unlink()
    if len(rows) >= 2:
        a, b = rows[0][1], rows[-1][1]
        print(f"  peak RSS ratio {rows[-1][0]} vs {rows[0][0]} frames: {b / a:.3f} ({100 * (b - a) / a:+.1f}%)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
