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
import time
from typing import Any

from vidprop.bench.extract_backbones import backbone_worker, compare_backbones
from vidprop.bench.extract_worker import VARIANTS, WorkerProcess, fmt_bytes, parse_size, variant_worker

__all__ = ["main"]


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
    p.add_argument("--only", choices=VARIANTS, default=None, help="run one variant only")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--backbone", nargs="+", metavar="NAME",
                   help="compare backbones instead: any of sd, adm, dino, clip, dinov2, sd+dinov2, cleandift, dinov3, or all "
                        "(timed at --size, default 480x832 on CUDA and 240x416 on a CPU)")
    p.add_argument("--flops-size", default="480x832", help="HxW at which FLOPs are counted with --backbone (default 480x832)")
    p.add_argument("--worker", choices=VARIANTS, help=argparse.SUPPRESS)
    p.add_argument("--worker-backbone", help=argparse.SUPPRESS)
    return p


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    if args.worker_backbone:
        return backbone_worker(args)
    if args.worker:
        return variant_worker(args)
    if args.backbone:
        return compare_backbones(args)

    from vidprop.features.dift import resolve_device, resolve_dtype

    device = resolve_device(args.device)
    cuda = device.type == "cuda"
    args.size = args.size or ("480x832" if cuda else "256x256")
    h, w = parse_size(args.size)
    args.ensemble = args.ensemble or (8 if cuda else 4)
    args.dtype = args.dtype or ("bfloat16" if cuda else "float32")
    resolve_dtype(args.dtype, device)
    if args.frames < 1 or args.warmup < 1 or args.batch_frames < 1 or args.ensemble < 1:
        raise SystemExit("--frames, --warmup, --batch-frames and --ensemble must be >= 1")
    names = [args.only] if args.only else list(VARIANTS)
    _print_settings(args, h, w, cuda)
    t_start = time.perf_counter()
    info, warm, runs, final = _run_variants(args, names, _worker_argv(args, device), t_start)
    res = {n: _summary(runs[n], warm[n], final[n]) for n in names}
    _print_table(args, names, info, res, cuda)
    rates = final.get("vidprop", {}).get("matmul_rate", {})
    if rates:
        print("machine: large matmul reaches " + ", ".join(f"{r / 1e12:.3f} TFLOP/s in {k}" for k, r in sorted(rates.items())))
    if len(names) == 2:
        _print_speed_up(args, res)
    print(f"total wall time {time.perf_counter() - t_start:.0f} s")
    return 0


def _worker_argv(args: argparse.Namespace, device: Any) -> list[str]:
    """The flags both variant workers get (the settings resolved by the parent)."""
    fwd = ["--size", args.size, "--ensemble", str(args.ensemble), "--frames", str(args.frames),
           "--warmup", str(args.warmup), "--dtype", args.dtype, "--device", str(device),
           "--batch-frames", str(args.batch_frames), "--t", str(args.t), "--up-ft-index", str(args.up_ft_index),
           "--seed", str(args.seed)]
    for flag in ("channels_last", "compile", "published_full_forward"):
        if getattr(args, flag):
            fwd.append("--" + flag.replace("_", "-"))
    if args.threads:
        fwd += ["--threads", str(args.threads)]
    return fwd


def _print_settings(args: argparse.Namespace, h: int, w: int, cuda: bool) -> None:
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


def _run_variants(args: argparse.Namespace, names: list[str], fwd: list[str], t_start: float) -> tuple[dict, dict, dict, dict]:
    """Run the variants' workers interleaved, frame batch by frame batch: (ready info, warm-up answers,
    timed answers, final answers) by variant."""
    workers = {n: WorkerProcess(n, fwd) for n in names}  # both build their models at the same time
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
    return info, warm, runs, final


def _summary(runs: list[dict[str, Any]], warm: list[dict[str, Any]], final: dict[str, Any]) -> dict[str, Any]:
    """One variant's figures from its workers' answers."""
    secs = sum(r["seconds"] for r in runs)
    nfr = sum(r["frames"] for r in runs)
    per = sorted(r["seconds"] / r["frames"] for r in runs)
    return {
        "fps": nfr / secs,
        "spf": secs / nfr,
        "spf_range": (per[0], per[-1]),
        "flops": warm[0]["flops_per_frame"],
        "peak": final["peak_memory"],
        "vae": runs[-1]["vae_images_per_frame"],
        "later": runs[-1]["later_up_block_calls"],
    }


def _print_table(args: argparse.Namespace, names: list[str], info: dict, res: dict, cuda: bool) -> None:
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
        ("peak " + ("GPU memory allocated" if cuda else "RSS (weights incl.)"), [fmt_bytes(res[n]["peak"]) for n in names]),
    ]
    print(f"{'':<30}" + "".join(f"{c:<{col}}" for c in rows[0][1]))
    for name, vals in rows[1:]:
        print(f"{name:<30}" + "".join(f"{v:<{col}}" for v in vals))


def _print_speed_up(args: argparse.Namespace, res: dict) -> None:
    ratio = res["vidprop"]["fps"] / res["published"]["fps"]
    same = args.dtype == "float32"
    fr = res["published"]["flops"] / res["vidprop"]["flops"] if res["vidprop"]["flops"] else float("nan")
    print(f"speed-up (b)/(a): {ratio:.2f}x frames per second; FLOP ratio (a)/(b): {fr:.2f}x")
    if same:
        print(f"goal: (b) >= 2x (a) at the same dtype (float32): {'MET' if ratio >= 2 else 'NOT MET'} ({ratio:.2f}x)")
    else:
        print(f"goal check needs --dtype float32 for (b) (it ran {args.dtype}; (a) is float32)")


if __name__ == "__main__":  # pragma: no cover - worker entry point
    raise SystemExit(main())
