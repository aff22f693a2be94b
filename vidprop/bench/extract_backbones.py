"""``vidprop bench extract --backbone``: every backbone side by side, each in a worker process of its own.

Real architectures with random weights and their presets' settings: seconds
per frame at ``--size`` (each backbone's nearest valid size), TFLOP per frame
counted on the meta device at ``--flops-size`` and peak memory.
"""

from __future__ import annotations

import argparse
import time
from typing import Any

from vidprop.bench.extract_worker import WorkerProcess, fmt_bytes, rss_peak, send, start_peak_memory

__all__ = ["backbone_worker", "compare_backbones"]


def _hw(text: str) -> tuple[int, int]:
    try:
        h, w = (int(v) for v in text.lower().split("x"))
    except ValueError:
        raise SystemExit(f"a size must look like HxW (e.g. 480x832), got {text!r}") from None
    if h <= 0 or w <= 0:
        raise SystemExit(f"size {text}: height and width must be positive")
    return h, w


def backbone_worker(args: argparse.Namespace) -> int:
    import torch

    from vidprop.bench.backbones import BENCH_BACKBONES, build_bench_extractor, count_flops, nearest_size
    from vidprop.features.dift import resolve_device

    if args.threads:
        torch.set_num_threads(args.threads)
    name = args.worker_backbone
    spec = BENCH_BACKBONES[name]
    device = resolve_device(args.device)
    t0 = time.perf_counter()
    ext = build_bench_extractor(name, device=str(device), dtype=args.dtype)
    built = time.perf_counter() - t0
    mult = int(ext.multiple)
    size = nearest_size(*_hw(args.size), mult)
    fsize = nearest_size(*_hw(args.flops_size), mult)
    flops, feat_there = count_flops(name, fsize)
    flops_timed = count_flops(name, size)[0] if size != fsize else flops
    params = sum(p.numel() for m in _modules(ext) for p in m.parameters())
    n = spec.per_call
    g = torch.Generator().manual_seed(args.seed)
    frames = torch.randint(0, 256, ((args.warmup + args.frames) * n, 3, *size), generator=g, dtype=torch.uint8)

    sync = start_peak_memory(device)
    times = []
    for k in range(args.warmup + args.frames):
        batch = frames[k * n : (k + 1) * n]
        sync()
        t = time.perf_counter()
        ext.extract(batch, indices=list(range(k * n, (k + 1) * n)), prompt="")
        sync()
        if k >= args.warmup:
            times.append((time.perf_counter() - t) / n)
    peak = torch.cuda.max_memory_allocated(device) if device.type == "cuda" else rss_peak()
    cfg = ext.config
    send({"name": name, "label": spec.label, "preset": spec.preset, "size": list(size), "flops_size": list(fsize),
           "flops": flops, "flops_timed": flops_timed, "seconds": times, "peak": peak, "built_s": built,
           "params": params, "stride": int(ext.stride), "features": feat_there, "dtype": str(ext.dtype).replace("torch.", ""),
           "settings": _settings_text(name, cfg), "threads": torch.get_num_threads(), "device": str(device)})
    return 0


def _modules(ext: Any) -> list[Any]:
    if hasattr(ext, "sd"):  # the fusion: SD U-Net + VAE + DINOv2
        return [ext.sd.unet, ext.sd.vae, ext.dino.model]
    return [m for m in (getattr(ext, "unet", None), getattr(ext, "vae", None), getattr(ext, "model", None)) if m is not None]


def _settings_text(name: str, cfg: Any) -> str:
    if name in ("sd", "cleandift", "adm"):
        return f"t {cfg.t}, block {cfg.up_ft_index}, E {cfg.ensemble}" + (", clean" if cfg.clean else "")
    if name == "sd+dinov2":
        return f"t {cfg.t}, blocks {','.join(map(str, cfg.fusion_sd_blocks))}, pairs"
    return ("last block" if cfg.layer == -1 else f"block {cfg.layer}") + (" + norm" if cfg.final_norm else ", no norm")


def compare_backbones(args: argparse.Namespace) -> int:
    from vidprop.bench.backbones import BENCH_BACKBONES
    from vidprop.features.dift import resolve_device

    names = list(BENCH_BACKBONES) if args.backbone == ["all"] else args.backbone
    bad = [n for n in names if n not in BENCH_BACKBONES]
    if bad:
        raise SystemExit(f"unknown backbone(s) {bad}; choose from {', '.join(BENCH_BACKBONES)} or all")
    device = resolve_device(args.device)
    cuda = device.type == "cuda"
    args.size = args.size or ("480x832" if cuda else "240x416")
    args.dtype = args.dtype or ("float16" if cuda else "float32")
    _hw(args.size), _hw(args.flops_size)
    if args.frames < 1 or args.warmup < 0:
        raise SystemExit("--frames must be >= 1 and --warmup >= 0")
    print(f"vidprop bench extract --backbone: {len(names)} backbone(s) at their real architectures, random weights, "
          f"their presets' settings; timed at {args.size} (each backbone's nearest valid size), {args.frames} frame(s) "
          f"after {args.warmup} warm-up; FLOPs counted at {args.flops_size}; {args.dtype} on {device}", flush=True)
    fwd = ["--size", args.size, "--flops-size", args.flops_size, "--frames", str(args.frames), "--warmup", str(args.warmup),
           "--dtype", args.dtype, "--device", str(device), "--seed", str(args.seed)]
    if args.threads:
        fwd += ["--threads", str(args.threads)]
    t_start = time.perf_counter()
    res = []
    for name in names:  # one at a time: each alone on the machine, its own peak memory
        wk = WorkerProcess(name, fwd, flag="--worker-backbone")
        try:
            r = wk.ask(None)
            wk.proc.wait(timeout=60)
        finally:
            wk.close()
        res.append(r)
        print(f"  {name}: {sum(r['seconds']) / len(r['seconds']):.2f} s/frame at {r['size'][0]}x{r['size'][1]}", flush=True)

    col = 23
    rows: list[tuple[str, list[str]]] = [
        ("", [r["name"] for r in res]),
        ("architecture", [r["label"] for r in res]),
        ("preset", [r["preset"] for r in res]),
        ("settings", [r["settings"] for r in res]),
        ("parameters (M)", [f"{r['params'] / 1e6:.0f}" for r in res]),
        ("flops size*", [f"{r['flops_size'][0]}x{r['flops_size'][1]}" for r in res]),
        ("features there (C h w)", [" ".join(map(str, r["features"])) + f" /{r['stride']}" for r in res]),
        ("TFLOP/frame there", [f"{r['flops'] / 1e12:.3f}" for r in res]),
        ("timed at", [f"{r['size'][0]}x{r['size'][1]}" for r in res]),
        ("seconds/frame", [f"{sum(r['seconds']) / len(r['seconds']):.2f}" for r in res]),
        ("achieved TFLOP/s", [f"{r['flops_timed'] * len(r['seconds']) / sum(r['seconds']) / 1e12:.3f}" for r in res]),
        ("peak " + ("GPU mem" if cuda else "RSS"), [fmt_bytes(r["peak"]) for r in res]),
    ]
    print()
    for name, vals in rows:
        print(f"{name:<26}" + "".join(f"{v[:col - 1]:<{col}}" for v in vals))
    print(f"* {args.flops_size} or the backbone's nearest valid size; sd+dinov2 per image (its features are computed "
          f"a pair at a time; its PCA dimensions are capped by a pair's positions: 1536 channels at its 960x960); "
          f"{res[0]['threads']} torch threads")
    if not cuda and args.size != "480x832":
        print(f"note: timed at a reduced size ({args.size}) on the CPU; FLOPs are at {args.flops_size}")
    print(f"total wall time {time.perf_counter() - t_start:.0f} s")
    return 0
