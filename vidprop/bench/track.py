"""Benchmark: keypoint tracking per frame.

    vidprop bench track                       # both parts below
    vidprop bench track --skip-track --frames 20

1. ``track`` end to end (decode, DIFT extraction, propagation, JSON/CSV and
   overlay writing) on a synthetic clip with the tiny random Stable Diffusion
   (written to a temporary folder; nothing is downloaded), JHMDB preset.
2. Protocol B propagation of 15 keypoint heatmaps over a sequence at the
   JHMDB scale (40 x 40 grid, frame 0 + 7 short-term frames, C = 640, top-k
   10, radius 5, temperature 0.05): vidprop's Propagator against the plain
   dense computation (full (N*hw) x hw affinity, dense disc mask; the
   ``dense_step`` of :mod:`vidprop.bench.propagation`) fed the same
   front-padded queue, with their outputs compared frame by frame.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

__all__ = ["main"]


def _bench_track(args: argparse.Namespace) -> None:
    from vidprop.config import load_preset
    from vidprop.features.tiny import save_random_sd
    from vidprop.io.synthetic import SyntheticScene, write_video
    from vidprop.tasks.track import Tracker, track_video

    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        model = save_random_sd(tmp / "tiny-sd")
        scene = SyntheticScene(width=args.width, height=args.height, num_frames=args.track_frames, num_objects=2, seed=0)
        video = write_video(scene, tmp / "clip.mp4")
        rng = np.random.default_rng(0)
        pts = rng.uniform([0, 0], [args.width, args.height], size=(15, 2)).tolist()
        (tmp / "kp.json").write_text(json.dumps({"keypoints": pts}))
        cfg = load_preset("jhmdb").override(frames={"size": args.crop}, extractor={"ensemble": args.ensemble})
        tracker = Tracker.from_pretrained(str(model), config=cfg, device="cpu")
        track_video(video, tmp / "kp.json", tmp / "out", tracker=tracker, name="warmup", progress=False)
        t0 = time.perf_counter()
        res = track_video(video, tmp / "kp.json", tmp / "out", tracker=tracker, progress=False)
        dt = time.perf_counter() - t0
    print(f"track, tiny random SD, {args.width}x{args.height} clip of {res.num_frames} frames -> {args.crop}x{args.crop} "
          f"crop, ensemble {args.ensemble}, 15 joints, JSON+CSV+overlay:")
    print(f"  {dt / res.num_frames * 1000:8.1f} ms/frame end to end ({res.profile})")


def _bench_propagation(args: argparse.Namespace) -> None:
    from vidprop.bench.propagation import dense_step
    from vidprop.config import PropagationConfig
    from vidprop.propagation.keypoints import heatmaps_to_keypoints, keypoints_to_heatmaps
    from vidprop.propagation.propagator import Propagator

    g = torch.Generator().manual_seed(0)
    h = w = args.grid
    T, L = args.frames, args.context
    feats = [torch.randn(args.channels, h, w, generator=g) for _ in range(T)]
    pts = np.random.default_rng(0).uniform(0, args.grid, size=(15, 2))
    first = keypoints_to_heatmaps(pts, (h, w))
    kw = dict(temperature=args.temperature, topk=args.topk, radius=args.radius)
    prop = Propagator(PropagationConfig(protocol="crw", n_last_frames=L, **kw))

    def ours() -> list[torch.Tensor]:
        prop.reset(feats[0], first)
        return [prop.step(f) for f in feats[1:]]

    def dense() -> list[torch.Tensor]:
        short = [(feats[0], first)] * L  # front padding with copies of frame 0
        outs = []
        for f in feats[1:]:
            keys = torch.stack([feats[0]] + [k for k, _ in short])
            labels = torch.stack([first] + [s for _, s in short])
            out = dense_step(f, keys, labels, protocol="crw", **kw)
            outs.append(out)
            short = short[1:] + [(f, out)]
        return outs

    print(f"protocol B keypoint propagation: grid {h}x{w}, C={args.channels}, 1+{L} context frames, top-k {args.topk}, "
          f"radius {args.radius:g}, T {args.temperature:g}, 16 label channels, {T - 1} propagated frames")
    timings, outs = {}, {}
    for name, fn in (("vidprop Propagator", ours), ("dense reference", dense)):
        best = float("inf")
        for _ in range(args.repeat):
            t0 = time.perf_counter()
            outs[name] = fn()
            best = min(best, time.perf_counter() - t0)
        timings[name] = best / (T - 1)
        print(f"  {name:<20} {timings[name] * 1000:8.1f} ms/frame")
    a, b = outs["vidprop Propagator"], outs["dense reference"]
    diff = max((x.double() - y.double()).abs().max().item() for x, y in zip(a, b))
    kdiff = max(float(np.abs(heatmaps_to_keypoints(x) - heatmaps_to_keypoints(y)).max()) for x, y in zip(a, b))
    print(f"  speed-up {timings['dense reference'] / timings['vidprop Propagator']:.1f}x; outputs over all frames: "
          f"max |soft diff| {diff:.2e}, max decoded keypoint diff {kdiff:.2e} cells")


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="vidprop bench track", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--track-frames", type=int, default=16, help="frames of the synthetic clip for part 1")
    p.add_argument("--width", type=int, default=320)
    p.add_argument("--height", type=int, default=240)
    p.add_argument("--crop", type=int, default=320, help="square crop (JHMDB: 320)")
    p.add_argument("--ensemble", type=int, default=8)
    p.add_argument("--frames", type=int, default=11, help="frames of the propagation sequence for part 2 (frame 0 included)")
    p.add_argument("--grid", type=int, default=40)
    p.add_argument("--channels", type=int, default=640)
    p.add_argument("--context", type=int, default=7, help="short-term frames (videoLen)")
    p.add_argument("--topk", type=int, default=10)
    p.add_argument("--radius", type=float, default=5)
    p.add_argument("--temperature", type=float, default=0.05)
    p.add_argument("--repeat", type=int, default=2)
    p.add_argument("--threads", type=int, default=torch.get_num_threads(),
                   help="torch CPU threads (default: torch's default, %(default)s here)")
    p.add_argument("--skip-track", action="store_true", help="only part 2")
    p.add_argument("--skip-propagation", action="store_true", help="only part 1")
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads")
    if not args.skip_track:
        _bench_track(args)
    if not args.skip_propagation:
        _bench_propagation(args)
    return 0


if __name__ == "__main__":
    sys.exit(main())
