"""Benchmark: one propagation step, vidprop's tiled propagator vs the dense computation.

    vidprop bench propagate                    # DAVIS scale, protocol A
    vidprop bench propagate --protocol crw --grid 40x40 --context 7 --radius 5 --topk 10 --temperature 0.05
    vidprop bench propagate --window circle --grid 60x107 --channels 1024 --context 7 --radius 12 --topk 5  # DINOv3

Each variant runs in its own subprocess so its peak memory (RSS high-water
mark above the inputs) is its own.  The dense computation is the reference
code's way: the full (N*hw) x hw affinity, a dense hw x hw neighbourhood mask.
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
    ys, xs = torch.meshgrid(torch.arange(h), torch.arange(w), indexing="ij")
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
    return query, keys, labels


def _worker(args) -> None:
    from vidprop.config import PropagationConfig
    from vidprop.propagation.propagator import Propagator

    torch.set_num_threads(args.threads)
    query, keys, labels = _inputs(args)
    base = _rss_mb()
    times = []
    if args.worker == "dense":
        for _ in range(args.repeat):
            t0 = time.perf_counter()
            out = dense_step(query, keys, labels, protocol=args.protocol, temperature=args.temperature,
                             topk=args.topk, radius=args.radius, window=args.window)
            times.append(time.perf_counter() - t0)
    else:
        cfg = PropagationConfig(protocol=args.protocol, temperature=args.temperature, topk=args.topk,
                                n_last_frames=args.context, radius=args.radius, tile=args.tile, window=args.window)
        prop = Propagator(cfg)
        prop.reset(keys[0], labels[0])
        if args.protocol == "dino":
            for i in range(1, keys.shape[0]):
                prop.push(keys[i], labels[i])
        else:  # the short-term queue: frames 1..N-1 (slots are a ring; order does not matter)
            for i in range(1, keys.shape[0]):
                prop.push(keys[i], labels[i])
        base = _rss_mb()
        for _ in range(args.repeat):
            t0 = time.perf_counter()
            out = prop.predict(query)
            times.append(time.perf_counter() - t0)
    torch.save(out, args.out_file)
    print(json.dumps({"seconds": min(times), "peak_mb": _peak_mb() - base}))


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
    p.add_argument("--tile", type=int, default=8)
    p.add_argument("--repeat", type=int, default=2)
    p.add_argument("--threads", type=int, default=torch.get_num_threads())
    p.add_argument("--skip-dense", action="store_true", help="only time vidprop's propagator")
    p.add_argument("--worker", choices=["ours", "dense"], help=argparse.SUPPRESS)
    p.add_argument("--out-file", help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    args.h, args.w = (int(v) for v in args.grid.lower().split("x"))
    if args.worker:
        _worker(args)
        return 0
    import tempfile

    print(f"propagation step, protocol {'A (dino)' if args.protocol == 'dino' else 'B (crw)'}"
          f"{', ' + args.window + ' window' if args.window else ''}: grid {args.h}x{args.w}, "
          f"C={args.channels}, {args.context + 1} context frames, radius {args.radius:g}, top-k {args.topk}, "
          f"{args.threads} threads, torch {torch.__version__}")
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
            print(f"  {'vidprop (tiled)' if v == 'ours' else 'dense reference':<16} {results[v]['seconds']:8.3f} s/frame"
                  f"   peak memory above inputs {results[v]['peak_mb']:9.1f} MB")
    if "ours" in results and "dense" in results:
        a, b = results["ours"]["out"].double(), results["dense"]["out"].double()
        diff = (a - b).abs().max().item()
        agree = (a.argmax(0) == b.argmax(0)).double().mean().item()
        print(f"  speed-up {results['dense']['seconds'] / results['ours']['seconds']:.1f}x, "
              f"memory {results['dense']['peak_mb'] / max(results['ours']['peak_mb'], 1e-3):.1f}x less; "
              f"outputs: max |diff| {diff:.2e}, argmax agreement {100 * agree:.3f}%")
    return 0


if __name__ == "__main__":
    sys.exit(main())
