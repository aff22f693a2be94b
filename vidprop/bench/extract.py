"""``vidprop bench extract``: DIFT extraction throughput, the published way vs vidprop's;
with ``--backbone``, every backbone side by side.

Builds the Stable Diffusion 2.1 U-Net and VAE from their configs with random
weights (no download; speed does not depend on weight values), a zero
(1, 77, 1024) prompt embedding, and times on the same frames, side by side:

(a) the published DIFT featurizer's computation
    (:class:`vidprop.features.published.PublishedDift`: the VAE encodes every
    ensemble copy, float32, sliced attention, one frame per call);
(b) :class:`vidprop.features.dift.DiftExtractor` (VAE once per frame, samples
    drawn from the latent distribution, SDPA attention, the chosen dtype,
    ``--batch-frames`` frames per call).

Each variant runs in its own worker process, so its peak memory is its own
(CPU: the resident-set high-water mark, reset after the model is built;
CUDA: ``torch.cuda.max_memory_allocated``).  The parent interleaves the two
workers frame batch by frame batch, so a load that comes and goes on a shared
machine falls on both.  FLOPs per frame are counted with
``torch.utils.flop_counter.FlopCounterMode`` during the warm-up, and a large
matmul in (b)'s dtype gives the machine's reachable rate for comparison.

    vidprop bench extract                      # CPU: 256x256, ensemble 4, 3 frames
    vidprop bench extract --device cuda        # GPU: 480x832, ensemble 8, bf16 for (b)

With ``--backbone sd adm dino ...`` (or ``--backbone all``) the backbones run
one after the other, each in its own worker process, at their real
architectures with random weights and their presets' settings (timestep,
read-out block, ensemble): seconds per frame at ``--size`` (each backbone's
nearest valid size), TFLOP per frame counted at the DAVIS size 480x832
(``--flops-size``; counted on the meta device, so it is exact whatever size
was timed) and peak memory.

    vidprop bench extract --backbone all --device cuda             # timed at 480x832
    vidprop bench extract --backbone sd adm dino --size 240x416    # a reduced size on a CPU
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from typing import Any

__all__ = ["main"]

_TAG = "@@extract-bench "
_VARIANTS = ("published", "vidprop")


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="vidprop bench extract",
        description="DIFT extraction throughput: the published featurizer's way vs vidprop's DiftExtractor "
        "(SD 2.1 architecture, random weights, no download).",
    )
    p.add_argument("--size", default=None, help="frame size HxW, multiples of 32 (default: 256x256 on CPU, 480x832 on CUDA)")
    p.add_argument("--ensemble", type=int, default=None, help="ensemble size (default: 4 on CPU, 8 on CUDA)")
    p.add_argument("--frames", type=int, default=3, help="timed frames per variant (default 3)")
    p.add_argument("--warmup", type=int, default=1, help="warm-up calls per variant, not timed (default 1)")
    p.add_argument(
        "--dtype",
        default=None,
        choices=["float32", "float16", "bfloat16"],
        help="dtype of vidprop's extractor (default: float32 on CPU, bfloat16 on CUDA); the published way is float32",
    )
    p.add_argument("--device", default="auto", help="cpu, cuda, cuda:N or auto (default)")
    p.add_argument("--channels-last", action="store_true", help="channels_last memory format for vidprop's models")
    p.add_argument("--compile", action="store_true", help="torch.compile vidprop's U-Net blocks and VAE encoder")
    p.add_argument("--batch-frames", type=int, default=1, help="frames per extract() call for vidprop (config batch_size)")
    p.add_argument("--t", type=int, default=51, help="diffusion timestep (default 51, the video preset)")
    p.add_argument("--up-ft-index", type=int, default=2, help="U-Net up-block (default 2, the video preset)")
    p.add_argument(
        "--published-full-forward",
        action="store_true",
        help="let the published way run the whole U-Net forward instead of stopping after the up-block "
        "(the published code stops there)",
    )
    p.add_argument("--threads", type=int, default=None, help="torch CPU threads per worker (default: torch's)")
    p.add_argument("--only", choices=_VARIANTS, default=None, help="run one variant only")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--backbone", nargs="+", metavar="NAME",
                   help="compare backbones instead: any of sd, adm, dino, clip, dinov2, sd+dinov2, cleandift, dinov3, or all "
                        "(timed at --size, default 480x832 on CUDA and 240x416 on a CPU)")
    p.add_argument("--flops-size", default="480x832", help="HxW at which FLOPs are counted with --backbone (default 480x832)")
    p.add_argument("--worker", choices=_VARIANTS, help=argparse.SUPPRESS)
    p.add_argument("--worker-backbone", help=argparse.SUPPRESS)
    return p


def _parse_size(text: str) -> tuple[int, int]:
    try:
        h, w = (int(v) for v in text.lower().split("x"))
    except ValueError:
        raise SystemExit(f"--size must look like HxW (e.g. 480x832), got {text!r}") from None
    if h <= 0 or w <= 0 or h % 32 or w % 32:
        raise SystemExit(f"--size {text}: height and width must be positive multiples of 32")
    return h, w


# --------------------------------------------------------------------------- worker
def _send(obj: dict[str, Any]) -> None:
    sys.stdout.write(_TAG + json.dumps(obj) + "\n")
    sys.stdout.flush()


def _start_peak_memory(device: Any) -> Any:
    """Reset the peak-memory mark of ``device`` (CUDA's counter, else the process RSS); returns a ``sync()``
    that waits for the device's queued work (a no-op on the CPU) so timings cover it."""
    import torch

    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
        return lambda: torch.cuda.synchronize(device)
    _rss_reset()
    return lambda: None


def _rss_reset() -> bool:
    """Free what malloc keeps, then reset the kernel's RSS high-water mark (Linux)."""
    try:
        import ctypes

        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except Exception:  # noqa: BLE001 - not glibc
        pass
    try:
        with open("/proc/self/clear_refs", "w") as fh:
            fh.write("5")
        return True
    except OSError:
        return False


def _rss_peak() -> int:
    try:
        with open("/proc/self/status") as fh:
            for line in fh:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def _flop_counter() -> Any:
    import torch
    from torch.utils.flop_counter import FlopCounterMode, sdpa_flop_count

    def cpu_sdpa(query, key, value, *_args, out_shape=None, **_kwargs):  # noqa: ANN001
        return sdpa_flop_count(query, key, value)

    custom = {}
    op = getattr(torch.ops.aten, "_scaled_dot_product_flash_attention_for_cpu", None)
    if op is not None:  # the CPU SDPA kernel has no formula in torch's registry
        custom[op] = cpu_sdpa
    return FlopCounterMode(display=False, custom_mapping=custom)


def _matmul_rate(device: Any, dtype: Any) -> float:
    """FLOP/s of a large square matmul: the rate this machine reaches on dense work."""
    import torch

    n = 4096 if device.type == "cuda" else 1536
    a = torch.randn(n, n, device=device, dtype=dtype)
    b = torch.randn(n, n, device=device, dtype=dtype)
    best = float("inf")
    for _ in range(4):
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        t0 = time.perf_counter()
        for _ in range(5 if device.type == "cuda" else 2):
            a @ b
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        best = min(best, time.perf_counter() - t0)
    return (5 if device.type == "cuda" else 2) * 2 * n**3 / best


def _worker(args: argparse.Namespace) -> int:
    import torch

    from vidprop.config import ExtractorConfig
    from vidprop.features.dift import DiftExtractor, resolve_device, resolve_dtype
    from vidprop.features.published import PublishedDift
    from vidprop.features.tiny import build_random_sd

    if args.threads:
        torch.set_num_threads(args.threads)
    device = resolve_device(args.device)
    h, w = _parse_size(args.size)
    E = args.ensemble
    parts = build_random_sd("sd21", seed=args.seed, with_text_encoder=False)
    parts["vae"].decoder = None  # only the encoder is used (the published code drops it too)
    emb = torch.zeros(1, 77, 1024)
    per_call = 1 if args.worker == "published" else args.batch_frames
    n_total = (args.warmup + args.frames) * per_call
    g = torch.Generator().manual_seed(args.seed)
    frames = torch.randint(0, 256, (n_total, 3, h, w), generator=g, dtype=torch.uint8)

    if args.worker == "published":
        model = PublishedDift(
            parts["unet"], parts["vae"], parts["scheduler"], prompt_embeds=emb, device=device,
            full_forward=args.published_full_forward,
        )
        unet, vae = model.unet, model.vae

        def step(batch: torch.Tensor, first: int) -> torch.Tensor:
            out = None
            for i in range(batch.shape[0]):
                out = model(batch[i : i + 1], t=args.t, up_ft_index=args.up_ft_index, ensemble_size=E)
            return out

        dtype = torch.float32
    else:
        dtype = resolve_dtype(args.dtype, device)
        cfg = ExtractorConfig(
            t=args.t, up_ft_index=args.up_ft_index, ensemble=E, device=str(device),
            dtype=str(dtype).replace("torch.", ""), batch_size=args.batch_frames,
            channels_last=args.channels_last, compile=args.compile, seed=args.seed,
        )
        model = DiftExtractor(parts["unet"], parts["vae"], parts["scheduler"], config=cfg, prompt_embeds=emb)
        unet, vae = model.unet, model.vae

        def step(batch: torch.Tensor, first: int) -> torch.Tensor:
            return model.extract(batch, indices=list(range(first, first + batch.shape[0])))

    del parts
    attn = sorted({type(p).__name__ for p in unet.attn_processors.values()})
    # what runs per frame: images through the VAE encoder, calls of up-blocks after the feature block
    counts = {"vae_images": 0, "later_up_blocks": 0}
    vae.encoder.register_forward_pre_hook(lambda _m, inp: counts.__setitem__("vae_images", counts["vae_images"] + inp[0].shape[0]))
    for blk in unet.up_blocks[args.up_ft_index + 1 :]:
        blk.register_forward_pre_hook(lambda _m, _i: counts.__setitem__("later_up_blocks", counts["later_up_blocks"] + 1))

    sync = _start_peak_memory(device)
    _send({"ready": True, "attention": attn, "dtype": str(dtype).replace("torch.", ""), "per_call": per_call,
           "threads": torch.get_num_threads(), "device": str(device)})

    pos = 0
    for line in sys.stdin:
        cmd = line.strip()
        if cmd in ("warmup", "step"):
            batch = frames[pos : pos + per_call]
            counts.update(vae_images=0, later_up_blocks=0)
            flops = None
            if cmd == "warmup" and pos == 0 and not args.compile:
                counter = _flop_counter()
                sync()
                t0 = time.perf_counter()
                with counter:
                    step(batch, pos)
                sync()
                flops = counter.get_total_flops() / per_call
            else:
                sync()
                t0 = time.perf_counter()
                step(batch, pos)
                sync()
            seconds = time.perf_counter() - t0
            pos += per_call
            _send({"seconds": seconds, "frames": per_call, "flops_per_frame": flops,
                   "vae_images_per_frame": counts["vae_images"] / per_call,
                   "later_up_block_calls": counts["later_up_blocks"]})
        elif cmd == "done":
            if device.type == "cuda":
                peak = torch.cuda.max_memory_allocated(device)
            else:
                peak = _rss_peak()
            rate = {}
            if args.worker == "vidprop":
                for dt in {torch.float32, dtype}:
                    rate[str(dt).replace("torch.", "")] = _matmul_rate(device, dt)
            _send({"peak_memory": peak, "matmul_rate": rate})
            return 0
    return 1


# --------------------------------------------------------------------------- parent
class _Worker:
    def __init__(self, name: str, argv: list[str], flag: str = "--worker") -> None:
        self.name = name
        self.log = tempfile.TemporaryFile(mode="w+")
        env = dict(os.environ)
        env.setdefault("HF_HUB_OFFLINE", "1")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "vidprop.bench.extract", *argv, flag, name],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=self.log, text=True, env=env,
        )

    def ask(self, cmd: str | None) -> dict[str, Any]:
        if cmd is not None:
            self.proc.stdin.write(cmd + "\n")
            self.proc.stdin.flush()
        for line in self.proc.stdout:
            if line.startswith(_TAG):
                return json.loads(line[len(_TAG) :])
        self.proc.wait()
        self.log.seek(0)
        tail = "".join(self.log.readlines()[-20:])
        raise RuntimeError(f"the {self.name} worker stopped (exit {self.proc.returncode}):\n{tail}")

    def close(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()
        self.log.close()


def _fmt_bytes(n: float) -> str:
    return f"{n / 2**30:.2f} GiB"


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    if args.worker_backbone:
        return _backbone_worker(args)
    if args.worker:
        return _worker(args)
    if args.backbone:
        return _compare_backbones(args)

    from vidprop.features.dift import resolve_device, resolve_dtype

    device = resolve_device(args.device)
    cuda = device.type == "cuda"
    args.size = args.size or ("480x832" if cuda else "256x256")
    h, w = _parse_size(args.size)
    args.ensemble = args.ensemble or (8 if cuda else 4)
    args.dtype = args.dtype or ("bfloat16" if cuda else "float32")
    resolve_dtype(args.dtype, device)
    if args.frames < 1 or args.warmup < 1 or args.batch_frames < 1 or args.ensemble < 1:
        raise SystemExit("--frames, --warmup, --batch-frames and --ensemble must be >= 1")
    fwd = ["--size", args.size, "--ensemble", str(args.ensemble), "--frames", str(args.frames),
           "--warmup", str(args.warmup), "--dtype", args.dtype, "--device", str(device),
           "--batch-frames", str(args.batch_frames), "--t", str(args.t), "--up-ft-index", str(args.up_ft_index),
           "--seed", str(args.seed)]
    for flag in ("channels_last", "compile", "published_full_forward"):
        if getattr(args, flag):
            fwd.append("--" + flag.replace("_", "-"))
    if args.threads:
        fwd += ["--threads", str(args.threads)]

    names = [args.only] if args.only else list(_VARIANTS)
    print(
        f"vidprop bench extract: SD 2.1 U-Net + VAE (random weights), {h}x{w}, ensemble {args.ensemble}, "
        f"t={args.t}, up_ft_index={args.up_ft_index}, {args.frames} timed frames after {args.warmup} warm-up call(s)",
        flush=True,
    )
    stop = "runs the whole U-Net forward" if args.published_full_forward else (
        f"stops after up_blocks[{args.up_ft_index}] like the published copied forward")
    opts = [f"batch {args.batch_frames} frame(s)/call"] + [o for o, on in (
        ("channels_last", args.channels_last), ("torch.compile", args.compile)) if on]
    print(f"(a) float32, sliced attention, VAE per ensemble copy, {stop}; (b) {args.dtype}, " + ", ".join(opts), flush=True)
    if not cuda and args.dtype != "float32":
        print("note: half precision is fast on CPUs with bf16/fp16 units (AVX512-BF16, AMX) only; elsewhere it is far slower than float32")
    t_start = time.perf_counter()
    workers = {n: _Worker(n, fwd) for n in names}  # both build their models at the same time
    try:
        info = {n: wk.ask(None) for n, wk in workers.items()}
        any_info = next(iter(info.values()))
        print(f"device: {any_info['device']}, {any_info['threads']} torch threads per worker; "
              f"models built in {time.perf_counter() - t_start:.0f} s", flush=True)
        warm = {n: [workers[n].ask("warmup") for _ in range(args.warmup)] for n in names}
        runs: dict[str, list[dict[str, Any]]] = {n: [] for n in names}
        units = {n: -(-args.frames // info[n]["per_call"]) for n in names}
        for u in range(max(units.values())):
            order = names if u % 2 == 0 else names[::-1]  # alternate who goes first
            for n in order:
                if u < units[n]:
                    runs[n].append(workers[n].ask("step"))
        final = {n: workers[n].ask("done") for n in names}
        for wk in workers.values():
            wk.proc.wait(timeout=60)
    finally:
        for wk in workers.values():
            wk.close()

    res: dict[str, dict[str, Any]] = {}
    for n in names:
        secs = sum(r["seconds"] for r in runs[n])
        nfr = sum(r["frames"] for r in runs[n])
        per = sorted(r["seconds"] / r["frames"] for r in runs[n])
        res[n] = {
            "fps": nfr / secs,
            "spf": secs / nfr,
            "spf_range": (per[0], per[-1]),
            "flops": warm[n][0]["flops_per_frame"],
            "peak": final[n]["peak_memory"],
            "vae": runs[n][-1]["vae_images_per_frame"],
            "later": runs[n][-1]["later_up_block_calls"],
        }
    rates = final.get("vidprop", {}).get("matmul_rate", {})

    label = {"published": "(a) published way", "vidprop": "(b) vidprop DiftExtractor"}
    col = 28
    rows: list[tuple[str, list[str]]] = [
        ("", [label[n] for n in names]),
        ("dtype", [info[n]["dtype"] for n in names]),
        ("attention processor", [",".join(info[n]["attention"]) for n in names]),
        ("frames per call", [str(info[n]["per_call"]) for n in names]),
        ("VAE-encoded images / frame", [f"{res[n]['vae']:g}" for n in names]),
        (f"up-blocks after [{args.up_ft_index}] run", [str(res[n]["later"]) for n in names]),
        ("seconds / frame (min-max)", [f"{res[n]['spf']:.2f} ({res[n]['spf_range'][0]:.2f}-{res[n]['spf_range'][1]:.2f})" for n in names]),
        ("frames / second", [f"{res[n]['fps']:.4f}" for n in names]),
        ("TFLOP / frame", [f"{res[n]['flops'] / 1e12:.3f}" if res[n]["flops"] else "n/a (--compile)" for n in names]),
        ("achieved TFLOP/s", [f"{res[n]['flops'] * res[n]['fps'] / 1e12:.3f}" if res[n]["flops"] else "n/a" for n in names]),
        ("peak " + ("GPU memory allocated" if cuda else "RSS (weights incl.)"), [_fmt_bytes(res[n]["peak"]) for n in names]),
    ]
    print(f"{'':<30}" + "".join(f"{c:<{col}}" for c in rows[0][1]))
    for name, vals in rows[1:]:
        print(f"{name:<30}" + "".join(f"{v:<{col}}" for v in vals))
    if rates:
        print("machine: large matmul reaches " + ", ".join(f"{r / 1e12:.3f} TFLOP/s in {k}" for k, r in sorted(rates.items())))
    if len(names) == 2:
        ratio = res["vidprop"]["fps"] / res["published"]["fps"]
        same = args.dtype == "float32"
        fr = res["published"]["flops"] / res["vidprop"]["flops"] if res["vidprop"]["flops"] else float("nan")
        print(f"speed-up (b)/(a): {ratio:.2f}x frames per second; FLOP ratio (a)/(b): {fr:.2f}x")
        if same:
            print(f"goal: (b) >= 2x (a) at the same dtype (float32): {'MET' if ratio >= 2 else 'NOT MET'} ({ratio:.2f}x)")
        else:
            print(f"goal check needs --dtype float32 for (b) (it ran {args.dtype}; (a) is float32)")
    print(f"total wall time {time.perf_counter() - t_start:.0f} s")
    return 0


# --------------------------------------------------------------------------- backbones side by side
def _hw(text: str) -> tuple[int, int]:
    try:
        h, w = (int(v) for v in text.lower().split("x"))
    except ValueError:
        raise SystemExit(f"a size must look like HxW (e.g. 480x832), got {text!r}") from None
    if h <= 0 or w <= 0:
        raise SystemExit(f"size {text}: height and width must be positive")
    return h, w


def _backbone_worker(args: argparse.Namespace) -> int:
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

    sync = _start_peak_memory(device)
    times = []
    for k in range(args.warmup + args.frames):
        batch = frames[k * n : (k + 1) * n]
        sync()
        t = time.perf_counter()
        ext.extract(batch, indices=list(range(k * n, (k + 1) * n)), prompt="")
        sync()
        if k >= args.warmup:
            times.append((time.perf_counter() - t) / n)
    peak = torch.cuda.max_memory_allocated(device) if device.type == "cuda" else _rss_peak()
    cfg = ext.config
    _send({"name": name, "label": spec.label, "preset": spec.preset, "size": list(size), "flops_size": list(fsize),
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


def _compare_backbones(args: argparse.Namespace) -> int:
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
        wk = _Worker(name, fwd, flag="--worker-backbone")
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
        ("peak " + ("GPU mem" if cuda else "RSS"), [_fmt_bytes(r["peak"]) for r in res]),
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


if __name__ == "__main__":  # pragma: no cover - worker entry point
    raise SystemExit(main())
