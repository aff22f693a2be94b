"""Benchmark: ``vidprop batch`` on the sequential engine and on Ray with 1, 2, ... workers, side by side.

    vidprop bench batch                                  # tiny random SD on the CPU, 8 synthetic videos
    vidprop bench batch --videos 16 --frames 24 --workers 1,2,4
    vidprop bench batch --threads 1 --cpus-per-worker 1        # every engine with 1 torch thread per worker
    vidprop bench batch --device cuda --architecture sd21 --gpus-per-worker 1    # on a GPU machine
    vidprop bench batch --lose-node                      # a simulated 2-node cluster, a node lost halfway

Every run segments the same synthetic videos (``segment`` settings, no
overlay) into a fresh folder.  Per engine it prints the start-up time (the
model load; for Ray: actors started and each loading its model), the time
spent on the rows after that, rows/s and frames/s of that steady part, and
with GPUs the frames/s per GPU.  Ray's own start-up (``ray.init`` of a local
instance) and shut-down are printed apart.  The Ray workers' outputs are
checked against the sequential run's (masks byte for byte when the thread
counts agree, else the share of identical masks).  Nothing is downloaded:
the model is a random one written to a temporary folder (``--architecture
sd21`` has the real SD 2.1 shapes) unless ``--model`` names one.

``--lose-node``: the run time on a simulated Ray cluster (``--nodes`` nodes of
``--cpus-per-node`` CPUs, one worker each) without and with a node lost when
half the videos are done, and the rows redone (:mod:`vidprop.bench.batch_lose_node`).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

__all__ = ["main"]


def _make_videos(folder: Path, n: int, frames: int, width: int, height: int) -> Path:
    from vidprop.io.masks import write_indexed_png
    from vidprop.io.synthetic import SyntheticScene, write_video

    lines = []
    for k in range(n):
        sc = SyntheticScene(width=width, height=height, num_frames=frames, num_objects=2, seed=100 + k)
        write_video(sc, folder / f"clip{k:03d}.mp4")
        write_indexed_png(folder / f"clip{k:03d}.png", sc.frame(0)[1])
        lines.append(json.dumps({"video": f"clip{k:03d}.mp4", "mask": f"clip{k:03d}.png"}))
    manifest = folder / "videos.jsonl"
    manifest.write_text("\n".join(lines) + "\n")
    return manifest


def _masks(out: Path) -> dict[str, bytes]:
    return {str(p.relative_to(out)): p.read_bytes() for p in sorted(out.glob("*/*.png"))}


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="vidprop bench batch", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--videos", type=int, default=8, help="synthetic videos (default 8)")
    p.add_argument("--frames", type=int, default=12, help="frames per video (default 12)")
    p.add_argument("--width", type=int, default=160)
    p.add_argument("--height", type=int, default=96)
    p.add_argument("--short-side", type=int, default=96, help="segment's frame size (multiple of 32)")
    p.add_argument("--ensemble", type=int, default=2)
    p.add_argument("--architecture", choices=["tiny", "sd21"], default="tiny",
                   help="random model: tiny (default) or the SD 2.1 shapes (use on a GPU)")
    p.add_argument("--model", help="a local diffusers folder instead of a random model")
    p.add_argument("--device", default="cpu", help="cpu (default) or cuda")
    p.add_argument("--workers", default="1,2", help="Ray worker counts to run (default 1,2)")
    p.add_argument("--gpus-per-worker", type=float, help="GPUs per Ray worker (default: 1 with --device cuda, else 0)")
    p.add_argument("--cpus-per-worker", type=float, help="CPUs (torch threads) per Ray worker "
                                                         "(default: the machine's CPUs divided among the workers)")
    p.add_argument("--threads", type=int, help="torch threads of the sequential engine (default: torch's default)")
    p.add_argument("--skip-sequential", action="store_true")
    lose = p.add_argument_group("--lose-node: a simulated Ray cluster that loses a machine halfway")
    lose.add_argument("--lose-node", action="store_true",
                      help="run on a simulated cluster, without and with a worker node lost when half the videos are done")
    lose.add_argument("--nodes", type=int, default=2, help="worker nodes, one worker each (default 2)")
    lose.add_argument("--cpus-per-node", type=int, default=1, help="CPUs of each worker node (default 1)")
    lose.add_argument("--kill", action="store_true", help="kill the node outright instead of stopping it")
    lose.add_argument("--placement-timeout", type=float, default=60.0,
                      help="seconds a replacement worker may wait for room (default 60)")
    return p


def _model_text(args: argparse.Namespace) -> str:
    return "model " + args.model if args.model else args.architecture + " random SD"


def _lose_node(args: argparse.Namespace, manifest: Path, tmp: Path, overrides: dict[str, Any]) -> int:
    from vidprop.bench.batch_lose_node import run_lose_node

    print(f"vidprop batch (segment, no overlay) on a simulated Ray cluster: {args.nodes} worker nodes of "
          f"{args.cpus_per_node} CPU(s), one worker each; {args.videos} synthetic {args.width}x{args.height} "
          f"videos x {args.frames} frames, short side {args.short_side}, ensemble {args.ensemble}, "
          f"{_model_text(args)}; node {'killed' if args.kill else 'stopped'} when half the videos are done")
    for line in run_lose_node(manifest, tmp, overrides=overrides, videos=args.videos, nodes=args.nodes,
                              cpus_per_node=args.cpus_per_node, graceful=not args.kill,
                              placement_timeout=args.placement_timeout, masks=_masks):
        print(line)
    return 0


@dataclass
class _Runs:
    """The engines' runs: one table row each, Ray's own overhead, the masks' comparison with the sequential run."""

    videos: int
    total_frames: int
    rows: list[tuple] = field(default_factory=list)
    checks: list[str] = field(default_factory=list)
    init_s: float | None = None
    shutdown_s: float | None = None

    def record(self, label: str, workers: int, threads: str, gpus: float, rep: Any, wall: float) -> None:
        startup = float(rep.engine.get("startup_seconds", 0.0))
        run = max(wall - startup, 1e-9)
        fps = self.total_frames / run
        self.rows.append((label, workers, threads, startup, run, self.videos / run, fps,
                          fps / gpus if gpus > 0 else None, rep.count("done")))


def _run_ray(args: argparse.Namespace, runs: _Runs, manifest: Path, tmp: Path, overrides: dict[str, Any],
             ref: dict[str, bytes] | None) -> None:
    """The Ray engine at each ``--workers`` count (a local Ray instance, started and shut down here)."""
    try:
        import ray
    except ImportError:
        print("Ray is not installed (pip install 'vidprop[ray]'): only the sequential engine was run")
        return
    counts = [int(x) for x in args.workers.split(",") if x.strip()]
    if not counts:
        return
    from vidprop.batch import run_batch
    from vidprop.engine import EngineOptions

    cuda = args.device.startswith("cuda")
    gpw = args.gpus_per_worker if args.gpus_per_worker is not None else (1.0 if cuda else 0.0)
    ncpu = os.cpu_count() or 1
    t0 = time.perf_counter()
    ray.init(include_dashboard=False, logging_level="ERROR", log_to_driver=False)
    runs.init_s = time.perf_counter() - t0
    try:
        for n in counts:
            if args.cpus_per_worker:
                cpw = args.cpus_per_worker
            else:  # with GPUs one CPU each; on the CPU the machine's cores shared out
                cpw = 1.0 if cuda else max(1.0, float(ncpu // n))
            eng = EngineOptions(kind="ray", workers=n, gpus_per_worker=gpw, cpus_per_worker=cpw)
            out = tmp / f"out-ray{n}"
            t0 = time.perf_counter()
            rep = run_batch(manifest, out, overrides=overrides, overlay=False, progress=False, engine=eng)
            runs.record("ray", n, f"{int(cpw)} each", n * gpw, rep, time.perf_counter() - t0)
            if ref is not None:
                got = _masks(out)
                same = sum(got.get(k) == v for k, v in ref.items())
                runs.checks.append(f"ray x{n}: {same}/{len(ref)} masks byte-identical to the sequential run")
    finally:
        t0 = time.perf_counter()
        ray.shutdown()
        runs.shutdown_s = time.perf_counter() - t0


def _print_runs(runs: _Runs, cuda: bool) -> None:
    head = f"{'engine':<11}{'workers':>8}{'threads':>9}{'start-up s':>12}{'rows s':>9}{'rows/s':>9}{'frames/s':>10}"
    head += f"{'frames/s/GPU':>14}" if cuda else ""
    print(head)
    for label, n, threads, startup, run, rps, fps, per_gpu, done in runs.rows:
        line = f"{label:<11}{n:>8}{threads:>9}{startup:>12.2f}{run:>9.2f}{rps:>9.3f}{fps:>10.2f}"
        line += f"{per_gpu:>14.2f}" if cuda and per_gpu is not None else ""
        print(line + ("" if done == runs.videos else f"  ({done}/{runs.videos} rows done!)"))
    if runs.init_s is not None:
        print(f"Ray overhead: ray.init of a local instance {runs.init_s:.2f}s, shutdown {runs.shutdown_s:.2f}s "
              "(start-up above: starting the actors and loading one model each, in parallel)")
    for c in runs.checks:
        print(c)
    print("start-up = engine ready (model loaded); rows s = the rest of the run; rows/s and frames/s over that part")


def main(argv: list[str] | None = None) -> int:
    p = _parser()
    args = p.parse_args(argv)
    if args.lose_node and args.nodes < 2:
        p.error("--lose-node needs --nodes 2 or more (one is lost)")

    import logging

    import torch

    from vidprop.batch import run_batch

    logging.getLogger("vidprop").setLevel(logging.WARNING)  # the figures, not every video's log lines

    if args.threads:
        torch.set_num_threads(args.threads)
    cuda = args.device.startswith("cuda")
    runs = _Runs(videos=args.videos, total_frames=args.videos * args.frames)
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        model = args.model
        if model is None:
            from vidprop.features.tiny import save_random_sd

            model = str(save_random_sd(tmp / "model", architecture=args.architecture))
        manifest = _make_videos(tmp, args.videos, args.frames, args.width, args.height)
        overrides = {"frames": {"mode": "short_side", "short_side": args.short_side},
                     "extractor": {"model": model, "ensemble": args.ensemble, "device": args.device}}
        if args.lose_node:
            return _lose_node(args, manifest, tmp, overrides)
        print(f"vidprop batch (segment, no overlay): {args.videos} synthetic {args.width}x{args.height} videos x "
              f"{args.frames} frames = {runs.total_frames} frames, short side {args.short_side}, ensemble {args.ensemble}, "
              f"{_model_text(args)} on {args.device}; {os.cpu_count() or 1} CPUs, torch {torch.__version__}")
        ref = None
        if not args.skip_sequential:
            out = tmp / "out-seq"
            t0 = time.perf_counter()
            rep = run_batch(manifest, out, overrides=overrides, overlay=False, progress=False)
            runs.record("sequential", 1, str(torch.get_num_threads()), 1.0 if cuda else 0.0, rep, time.perf_counter() - t0)
            ref = _masks(out)
        _run_ray(args, runs, manifest, tmp, overrides, ref)
    _print_runs(runs, cuda)
    return 0


if __name__ == "__main__":
    sys.exit(main())
