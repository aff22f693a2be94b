"""``vidprop bench extract``'s worker processes, both ends: the worker's measurements and the parent's handle.

Each variant or backbone runs in its own process (``python -m vidprop.bench.extract
--worker NAME`` or ``--worker-backbone NAME``), so its peak memory is its own.  A
worker answers the parent's commands on stdin with JSON lines tagged :data:`TAG`
on stdout (:func:`send`; :class:`WorkerProcess` reads them).
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

__all__ = ["TAG", "VARIANTS", "parse_size", "send", "start_peak_memory", "rss_reset", "rss_peak", "flop_counter",
           "matmul_rate", "variant_worker", "WorkerProcess", "fmt_bytes"]

TAG = "@@extract-bench "
#: What ``vidprop bench extract`` compares: (a) the published featurizer's way, (b) vidprop's extractor.
VARIANTS = ("published", "vidprop")


def parse_size(text: str) -> tuple[int, int]:
    try:
        h, w = (int(v) for v in text.lower().split("x"))
    except ValueError:
        raise SystemExit(f"--size must look like HxW (e.g. 480x832), got {text!r}") from None
    if h <= 0 or w <= 0 or h % 32 or w % 32:
        raise SystemExit(f"--size {text}: height and width must be positive multiples of 32")
    return h, w


# --------------------------------------------------------------------------- worker
def send(obj: dict[str, Any]) -> None:
    sys.stdout.write(TAG + json.dumps(obj) + "\n")
    sys.stdout.flush()


def start_peak_memory(device: Any) -> Any:
    """Reset the peak-memory mark of ``device`` (CUDA's counter, else the process RSS); returns a ``sync()``
    that waits for the device's queued work (a no-op on the CPU) so timings cover it."""
    import torch

    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
        return lambda: torch.cuda.synchronize(device)
    rss_reset()
    return lambda: None


def rss_reset() -> bool:
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


def rss_peak() -> int:
    try:
        with open("/proc/self/status") as fh:
            for line in fh:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def flop_counter() -> Any:
    import torch
    from torch.utils.flop_counter import FlopCounterMode, sdpa_flop_count

    def cpu_sdpa(query, key, value, *_args, out_shape=None, **_kwargs):  # noqa: ANN001
        return sdpa_flop_count(query, key, value)

    custom = {}
    op = getattr(torch.ops.aten, "_scaled_dot_product_flash_attention_for_cpu", None)
    if op is not None:  # the CPU SDPA kernel has no formula in torch's registry
        custom[op] = cpu_sdpa
    return FlopCounterMode(display=False, custom_mapping=custom)


def matmul_rate(device: Any, dtype: Any) -> float:
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


def variant_worker(args: argparse.Namespace) -> int:
    import torch

    from vidprop.config import ExtractorConfig
    from vidprop.features.dift import DiftExtractor, resolve_device, resolve_dtype
    from vidprop.features.published import PublishedDift
    from vidprop.features.tiny import build_random_sd

    if args.threads:
        torch.set_num_threads(args.threads)
    device = resolve_device(args.device)
    h, w = parse_size(args.size)
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

    sync = start_peak_memory(device)
    send({"ready": True, "attention": attn, "dtype": str(dtype).replace("torch.", ""), "per_call": per_call,
           "threads": torch.get_num_threads(), "device": str(device)})

    pos = 0
    for line in sys.stdin:
        cmd = line.strip()
        if cmd in ("warmup", "step"):
            batch = frames[pos : pos + per_call]
            counts.update(vae_images=0, later_up_blocks=0)
            flops = None
            if cmd == "warmup" and pos == 0 and not args.compile:
                counter = flop_counter()
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
            send({"seconds": seconds, "frames": per_call, "flops_per_frame": flops,
                   "vae_images_per_frame": counts["vae_images"] / per_call,
                   "later_up_block_calls": counts["later_up_blocks"]})
        elif cmd == "done":
            if device.type == "cuda":
                peak = torch.cuda.max_memory_allocated(device)
            else:
                peak = rss_peak()
            rate = {}
            if args.worker == "vidprop":
                for dt in {torch.float32, dtype}:
                    rate[str(dt).replace("torch.", "")] = matmul_rate(device, dt)
            send({"peak_memory": peak, "matmul_rate": rate})
            return 0
    return 1


# --------------------------------------------------------------------------- parent
class WorkerProcess:
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
            if line.startswith(TAG):
                return json.loads(line[len(TAG) :])
        self.proc.wait()
        self.log.seek(0)
        tail = "".join(self.log.readlines()[-20:])
        raise RuntimeError(f"the {self.name} worker stopped (exit {self.proc.returncode}):\n{tail}")

    def close(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()
        self.log.close()


def fmt_bytes(n: float) -> str:
    return f"{n / 2**30:.2f} GiB"
