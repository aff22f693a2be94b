"""``vidprop bench segment``: end-to-end ``segment`` throughput with the SD 2.1 architecture.

Builds the Stable Diffusion 2.1 U-Net and VAE from their configs with random
weights (no download; speed does not depend on weight values) and a zero
(1, 77, 1024) prompt embedding, writes a synthetic 854x480 video with two
moving objects, and runs :func:`vidprop.tasks.segment.segment_video` on it
with the DAVIS preset (short side 480 -> 480x832 model input, protocol A
propagation, indexed PNGs and the H.264 overlay written on a background
thread).  It prints frames per second end to end and where the time went:

- on the main thread: waiting for decoded frames, extraction, propagation,
  mask decoding, waiting for the writer;
- on the helper threads (overlapped with the main thread): decoding plus
  resizing, and writing PNGs and the overlay.

    vidprop bench segment                          # CPU: 6 frames, ensemble 1
    vidprop bench segment --device cuda            # GPU: 100 frames, ensemble 8, bf16
"""

from __future__ import annotations

import argparse
import resource
import tempfile
import time
from pathlib import Path

__all__ = ["main"]


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="vidprop bench segment", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--size", default="854x480", help="synthetic video size WxH (default 854x480, DAVIS 480p)")
    p.add_argument("--frames", type=int, default=None, help="video length (default: 6 on CPU, 100 on CUDA)")
    p.add_argument("--warmup-frames", type=int, default=None,
                   help="frames of an untimed first run (default: 0 on CPU, 4 on CUDA: kernel selection, compile)")
    p.add_argument("--short-side", type=int, default=480, help="model input short side (default 480, the DAVIS preset)")
    p.add_argument("--ensemble", type=int, default=None, help="ensemble size (default: 1 on CPU, 8 on CUDA as the preset)")
    p.add_argument("--device", default="auto", help="cpu, cuda, cuda:N or auto (default)")
    p.add_argument("--dtype", default=None, choices=["float32", "float16", "bfloat16"],
                   help="extractor dtype (default: float32 on CPU, bfloat16 on CUDA)")
    p.add_argument("--batch-frames", type=int, default=1, help="frames per extraction call (config batch_size)")
    p.add_argument("--channels-last", action="store_true", help="channels_last memory format for the models")
    p.add_argument("--compile", action="store_true", help="torch.compile the U-Net blocks and VAE encoder")
    p.add_argument("--no-overlay", action="store_true", help="write the PNGs only")
    p.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's)")
    p.add_argument("--seed", type=int, default=0)
    return p


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    import torch

    from vidprop.bench.common import random_sd_extractor, torch_device
    from vidprop.config import load_preset
    from vidprop.io.masks import write_indexed_png
    from vidprop.io.synthetic import SyntheticScene, write_video
    from vidprop.tasks.segment import Segmenter, segment_video

    device, dtype = torch_device(args.threads, args.device, args.dtype)
    cuda = device.type == "cuda"
    frames = args.frames or (100 if cuda else 6)
    warmup = args.warmup_frames if args.warmup_frames is not None else (4 if cuda else 0)
    ensemble = args.ensemble or (8 if cuda else 1)
    w, h = (int(v) for v in args.size.lower().split("x"))

    cfg = load_preset("davis").override(
        frames={"short_side": args.short_side},
        extractor={"model": "random SD 2.1 architecture", "ensemble": ensemble, "device": str(device),
                   "dtype": str(dtype).replace("torch.", ""), "batch_size": args.batch_frames,
                   "channels_last": args.channels_last, "compile": args.compile, "seed": args.seed},
    )
    t0 = time.perf_counter()
    ext = random_sd_extractor("sd21", cfg.extractor, args.seed)
    segmenter = Segmenter(ext, cfg)
    built = time.perf_counter() - t0
    mw, mh = cfg.frames.target_size(w, h)
    print(f"vidprop bench segment: SD 2.1 U-Net + VAE (random weights), synthetic {w}x{h} video, model input {mw}x{mh}, "
          f"ensemble {ensemble}, t={cfg.extractor.t}, up_ft_index={cfg.extractor.up_ft_index}, DAVIS propagation "
          f"(top-k {cfg.propagation.topk}, {cfg.propagation.n_last_frames} last frames, radius {cfg.propagation.radius})")
    print(f"device {device}, dtype {cfg.extractor.dtype}, batch {args.batch_frames} frame(s)/call"
          + (", channels_last" if args.channels_last else "") + (", torch.compile" if args.compile else "")
          + (f", {torch.get_num_threads()} torch threads" if not cuda else "") + f"; models built in {built:.0f} s")

    with tempfile.TemporaryDirectory(prefix="vidprop-bench-segment-") as tmp:
        tmp_path = Path(tmp)
        scene = SyntheticScene(width=w, height=h, num_frames=frames, num_objects=2, seed=args.seed)
        video = write_video(scene, tmp_path / "synthetic.mp4", fps=24)
        write_indexed_png(tmp_path / "mask.png", scene.frame(0)[1])
        if warmup:
            short = SyntheticScene(width=w, height=h, num_frames=warmup, num_objects=2, seed=args.seed)
            wvideo = write_video(short, tmp_path / "warmup.mp4", fps=24)
            segment_video(wvideo, tmp_path / "mask.png", tmp_path / "warm", segmenter=segmenter,
                          overlay=not args.no_overlay, progress=False)
        if cuda:
            torch.cuda.synchronize(device)
            torch.cuda.reset_peak_memory_stats(device)
        res = segment_video(video, tmp_path / "mask.png", tmp_path / "out", segmenter=segmenter,
                            overlay=not args.no_overlay, progress=True)
        if cuda:
            torch.cuda.synchronize(device)
        prof = res.timing
        written = len(list(res.output_dir.glob("*.png")))

    print(f"{res.num_frames} frames ({written} PNGs{', overlay.mp4' if res.overlay else ''}) in {prof.total:.2f} s: "
          f"{prof.fps:.3f} frames/s end to end ({1000 * prof.total / max(1, prof.frames):.0f} ms/frame)")
    print(f"  {'main thread':<28}{'seconds':>10}{'share':>8}{'ms/frame':>11}")
    for stage, sec in prof.seconds.items():
        label = {"decode": "wait for decoded frames", "write": "wait for the writer"}.get(stage, stage)
        print(f"  {label:<28}{sec:>10.2f}{100 * sec / prof.total:>7.0f}%{1000 * sec / prof.frames:>11.1f}")
    other = prof.total - sum(prof.seconds.values())
    print(f"  {'other (setup, loop)':<28}{other:>10.2f}{100 * other / prof.total:>7.0f}%{1000 * other / prof.frames:>11.1f}")
    print("  helper threads (overlapped)")
    for stage, sec in prof.background.items():
        print(f"  {stage:<28}{sec:>10.2f}{'':>8}{1000 * sec / prof.frames:>11.1f}")
    if cuda:
        print(f"peak GPU memory: {torch.cuda.max_memory_allocated(device) / 2**30:.2f} GiB")
    print(f"peak RSS: {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20:.2f} GiB")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
