"""Benchmark: one propagation step, vidprop's banded kernel vs the machine's GEMM limit and the dense computation.

    vidprop bench propagate                    # DAVIS scale, protocol A
    vidprop bench propagate --protocol crw --grid 40x40 --context 7 --radius 5 --topk 10 --temperature 0.05
    vidprop bench propagate --window circle --grid 60x107 --channels 1024 --context 7 --radius 12 --topk 5  # DINOv3
    vidprop bench propagate --device cuda      # the same code path on a GPU

Each variant runs in its own subprocess so its peak memory (RSS high-water
mark above the inputs) is its own.  The dense computation is the reference
code's way: the full (N*hw) x hw affinity, a dense hw x hw neighbourhood mask.

``vs limit``: in the same process and on the same threads as vidprop's step,
interleaved with it (best of ``--repeat`` each, so machine load affects both
alike), a plain well-shaped GEMM ((2048 x C) @ (C x 2048), repeated) of the
FLOP count of the windowed cosines: 2 C per (query, key) pair, every query
against every offset its window allows in each windowed frame (the window's
offsets, as the issue counted them: 961 for a square of radius 15; pairs that
fall outside the frame at the borders are not subtracted) plus every key of
the global frames.  ``vs limit`` = vidprop's time / that GEMM's time.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time

import torch
import torch.nn.functional as F

__all__ = ["main", "dense_step"]


def _rss_mb() -> float:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


def _peak_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def dense_step(query, keys, labels, *, protocol, temperature, topk, radius, window=None):
    """Dense protocol A/B step. query (C, h, w); keys (N, C, h, w) (frame 0 first); labels (N, K, h, w)."""
    N, C, h, w = keys.shape
    q = F.normalize(query.reshape(C, -1), dim=0)  # (C, hw)
    k = F.normalize(keys.reshape(N, C, -1), dim=1)  # (N, C, hw)
    ys, xs = torch.meshgrid(torch.arange(h, device=keys.device), torch.arange(w, device=keys.device), indexing="ij")
    ys, xs = ys.reshape(-1), xs.reshape(-1)
    dy, dx = ys[:, None] - ys[None], xs[:, None] - xs[None]  # (hw keys, hw queries)
    if protocol == "dino":
        if window == "circle":  # DINOv3's notebook: distance <= radius
            mask = ((dy * dy + dx * dx).float().sqrt() <= radius).float()
        else:
            mask = ((dy.abs() <= radius) & (dx.abs() <= radius)).float()
        aff = torch.exp(torch.einsum("nck,cq->nkq", k, q) / temperature) * mask  # (N, hw, hw)
        aff = aff.reshape(N * h * w, h * w)
        tk_min = torch.topk(aff, dim=0, k=topk).values.min(dim=0).values
        aff[aff < tk_min] = 0
        aff = aff / aff.sum(dim=0, keepdim=True)
        segs = labels.reshape(N, labels.shape[1], -1).permute(1, 0, 2).reshape(labels.shape[1], -1)
        return (segs @ aff).reshape(-1, h, w)
    D = torch.where((dy * dy + dx * dx).float().sqrt() < radius, 0.0, -1e10)
    A = torch.einsum("nck,cq->nkq", k, q)
    A[1:] += D
    A = A.reshape(N * h * w, h * w) / temperature
    wts, ids = torch.topk(A, topk, dim=0)
    wts = torch.softmax(wts, dim=0)
    segs = labels.reshape(N, labels.shape[1], -1).permute(1, 0, 2).reshape(labels.shape[1], -1)
    return (segs[:, ids] * wts[None]).sum(1).reshape(-1, h, w)


def _inputs(args):
    g = torch.Generator().manual_seed(0)
    h, w = args.h, args.w
    n = args.context + 1
    keys = torch.randn(n, args.channels, h, w, generator=g)
    query = torch.randn(args.channels, h, w, generator=g)
    labels = torch.softmax(4 * torch.randn(n, args.k, h, w, generator=g), dim=1)
    labels[0] = F.one_hot(labels[0].argmax(0), args.k).permute(2, 0, 1).float()
    dev = torch.device(args.device)
    return query.to(dev), keys.to(dev), labels.to(dev)


def window_flops(h: int, w: int, channels: int, n_windowed: int, n_global: int, radius: float, window: str) -> tuple[int, int]:
    """FLOPs of one frame's windowed cosines: (window offsets x queries, as the issue counts; pairs inside the frame)."""
    from vidprop.propagation.affinity import window_allows, window_reach, window_size

    p = window_reach(radius, window)  # type: ignore[arg-type]
    d = torch.arange(-p, p + 1)
    ok = window_allows(d[:, None], d[None, :], radius, window)  # type: ignore[arg-type]
    # pairs inside the frame: for each allowed offset, the queries whose key stays inside
    iny = (h - d.abs()).clamp(min=0)
    inx = (w - d.abs()).clamp(min=0)
    inside = int((ok * iny[:, None] * inx[None, :]).sum())
    hw = h * w
    full = window_size(radius, window) * hw  # type: ignore[arg-type]
    return 2 * channels * (n_windowed * full + n_global * hw * hw), 2 * channels * (n_windowed * inside + n_global * hw * hw)


def plain_gemm(flops: int, channels: int, device: torch.device, dtype: torch.dtype = torch.float32):
    """A closure running plain (2048 x C) @ (C x m) GEMMs that add up to ``flops``."""
    a = torch.randn(2048, channels, device=device, dtype=dtype)
    b = torch.randn(channels, 2048, device=device, dtype=dtype)
    out = torch.empty(2048, 2048, device=device, dtype=dtype)
    per = 2 * 2048 * 2048 * channels
    reps, rest = divmod(flops, per)
    m = int(round(rest / (2 * 2048 * channels)))

    def run() -> None:
        for _ in range(reps):
            torch.mm(a, b, out=out)
        if m:
            torch.mm(a, b[:, :m], out=out[:, :m])

    return run


def _timed(fn, device: torch.device) -> float:
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    t0 = time.perf_counter()
    fn()
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    return time.perf_counter() - t0


def _peak(device: torch.device, base: float) -> float:
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) / 2**20 - base
    return _peak_mb() - base


def _base(device: torch.device) -> float:
    if device.type == "cuda":
        torch.cuda.synchronize(device)
        torch.cuda.reset_peak_memory_stats(device)
        return torch.cuda.memory_allocated(device) / 2**20
    return _rss_mb()


def _worker(args) -> None:
    from vidprop.config import PropagationConfig
    from vidprop.propagation.propagator import Propagator

    torch.set_num_threads(args.threads)
    dev = torch.device(args.device)
    query, keys, labels = _inputs(args)
    base = _base(dev)
    times: list[float] = []
    result: dict = {}
    if args.worker == "dense":
        def step() -> None:
            result["out"] = dense_step(query, keys, labels, protocol=args.protocol, temperature=args.temperature,
                                       topk=args.topk, radius=args.radius, window=args.window)

        for _ in range(args.repeat):
            times.append(_timed(step, dev))
        out = result["out"]
        peak = _peak(dev, base)
    else:
        cfg = PropagationConfig(protocol=args.protocol, temperature=args.temperature, topk=args.topk,
                                n_last_frames=args.context, radius=args.radius, tile=args.tile, window=args.window)
        prop = Propagator(cfg)
        prop.reset(keys[0], labels[0])
        for i in range(1, keys.shape[0]):  # protocol B: the short-term queue (a ring; order does not matter)
            prop.push(keys[i], labels[i])
        base = _base(dev)

        def step() -> None:
            result["out"] = prop.predict(query)

        times.append(_timed(step, dev))  # warm-up, and the peak memory before the GEMM's buffers exist
        peak = _peak(dev, base)
        times.clear()
        n_win, n_glob = (args.context + 1, 0) if args.protocol == "dino" else (args.context, 1)
        flops, inside = window_flops(args.h, args.w, args.channels, n_win, n_glob, args.radius,
                                     prop.protocol.window)
        gemm = plain_gemm(flops, args.channels, dev)
        limit: list[float] = []
        for _ in range(args.repeat):  # interleaved, so load hits both alike
            limit.append(_timed(gemm, dev))
            times.append(_timed(step, dev))
        out = result["out"]
        result.update(limit=min(limit), flops=flops, inside=inside)
    torch.save(out.cpu(), args.out_file)
    print(json.dumps({"seconds": min(times), "peak_mb": peak,
                      **{k: v for k, v in result.items() if k != "out"}}))


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="vidprop bench propagate", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--protocol", choices=["dino", "crw"], default="dino")
    p.add_argument("--window", choices=["square", "circle"],
                   help="protocol A's window (default square; circle: distance <= radius, DINOv3's notebook)")
    p.add_argument("--grid", default="60x104", help="feature grid HxW (DAVIS 480x832 at stride 8: 60x104)")
    p.add_argument("--channels", type=int, default=640)
    p.add_argument("--context", type=int, default=28, help="previous frames besides frame 0 (A: 28 -> 29 context frames)")
    p.add_argument("--radius", type=float, default=15)
    p.add_argument("--topk", type=int, default=15)
    p.add_argument("--temperature", type=float, default=0.2)
    p.add_argument("--k", type=int, default=3, help="label channels")
    p.add_argument("--tile", type=int, default=8, help="query tile side and key strip width")
    p.add_argument("--repeat", type=int, default=3, help="timed repeats (best of), interleaved with the GEMM limit")
    p.add_argument("--threads", type=int, default=torch.get_num_threads())
    p.add_argument("--device", default="cpu", help="cpu or cuda (the same code path)")
    p.add_argument("--skip-dense", action="store_true", help="only time vidprop's propagator and the GEMM limit")
    p.add_argument("--worker", choices=["ours", "dense"], help=argparse.SUPPRESS)
    p.add_argument("--out-file", help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    try:
        args.h, args.w = (int(v) for v in args.grid.lower().split("x"))
    except ValueError:
        p.error(f"--grid must be HxW, got {args.grid!r}")
    if args.device.startswith("cuda") and not torch.cuda.is_available():
        p.error(f"--device {args.device}: no CUDA device is available")
    if args.worker:
        _worker(args)
        return 0
    import tempfile

    print(f"propagation step, protocol {'A (dino)' if args.protocol == 'dino' else 'B (crw)'}"
          f"{', ' + args.window + ' window' if args.window else ''}: grid {args.h}x{args.w}, "
          f"C={args.channels}, {args.context + 1} context frames, radius {args.radius:g}, top-k {args.topk}, "
          f"tile {args.tile}, {args.threads} threads, {args.device}, torch {torch.__version__}")
    results = {}
    with tempfile.TemporaryDirectory() as tmp:
        variants = ["ours"] + ([] if args.skip_dense else ["dense"])
        for v in variants:
            out_file = os.path.join(tmp, f"{v}.pt")
            cmd = [sys.executable, "-m", "vidprop.bench.propagation", *(argv or []), "--worker", v, "--out-file", out_file]
            res = subprocess.run(cmd, capture_output=True, text=True)
            if res.returncode != 0:
                print(f"{v}: failed (exit {res.returncode}): {res.stderr.strip().splitlines()[-1] if res.stderr.strip() else ''}")
                continue
            results[v] = json.loads(res.stdout.strip().splitlines()[-1])
            results[v]["out"] = torch.load(out_file)
            r = results[v]
            print(f"  {'vidprop (banded)' if v == 'ours' else 'dense reference':<16} {r['seconds']:8.3f} s/frame"
                  f"   peak memory above inputs {r['peak_mb']:9.1f} MB")
            if v == "ours":
                print(f"  {'plain GEMM':<16} {r['limit']:8.3f} s       {r['flops'] / 1e9:.1f} GFLOP of windowed cosines "
                      f"({r['inside'] / 1e9:.1f} GFLOP inside the frame), {r['flops'] / r['limit'] / 1e9:.1f} GFLOP/s")
    ours, dense = results.get("ours"), results.get("dense")
    parts = []
    if ours and dense:
        a, b = ours["out"].double(), dense["out"].double()
        diff = (a - b).abs().max().item()
        flips = int((a.argmax(0) != b.argmax(0)).sum())
        parts.append(f"vs dense: {dense['seconds'] / ours['seconds']:.1f}x "
                     f"({dense['peak_mb'] / max(ours['peak_mb'], 1e-3):.1f}x less memory), "
                     f"max |diff| {diff:.2e}, argmax flips {flips}")
    if ours:
        print(("   ".join(parts) + "   " if parts else "") + f"vs limit: {ours['seconds'] / ours['limit']:.2f}x")
    return 0 if ours and (dense or args.skip_dense) else 1


if __name__ == "__main__":
    sys.exit(main())
