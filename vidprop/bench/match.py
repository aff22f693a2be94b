"""Benchmark: one semantic DIFT match, and Hedlin et al.'s attention matcher per query point.

    vidprop bench match                      # tiny random SD on CPU, paper settings
    vidprop bench match --model /models/sd14 --device cuda --attention-size 512

Prints the wall time of one semantic match (features of both images, the
"semantic" preset, plus the full-resolution argmax of a few points) and, for
the attention matcher, the time per query point split into optimisation and
inference with the U-Net call count (a forward pre-hook counts the calls and
the samples in them).  With the tiny random model the times say nothing about
a real checkpoint; the call counts are exact for any model.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np

__all__ = ["main"]


def _image(rng: np.random.Generator, w: int, h: int) -> np.ndarray:
    import cv2

    small = rng.random((max(h // 16, 2), max(w // 16, 2), 3))
    return (cv2.resize(small, (w, h), interpolation=cv2.INTER_CUBIC).clip(0, 1) * 255).astype(np.uint8)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="vidprop bench match", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", help="diffusers folder (default: a tiny random SD written to a temp folder)")
    p.add_argument("--device", default="cpu", help="device (default cpu)")
    p.add_argument("--image", default="640x480", help="size WxH of the synthetic source/target images")
    p.add_argument("--points", type=int, default=5, help="query points of the semantic match")
    p.add_argument("--size", type=int, help="semantic model input side (default: the preset's 768)")
    p.add_argument("--ensemble", type=int, help="semantic ensemble (default: the preset's 8)")
    p.add_argument("--repeat", type=int, default=3, help="timed semantic matches (median printed)")
    p.add_argument("--attention-size", type=int, default=512, help="attention image side (paper 512)")
    p.add_argument("--steps", type=int, default=129)
    p.add_argument("--rounds", type=int, default=5)
    p.add_argument("--crops", type=int, default=20)
    p.add_argument("--attention-batch", type=int, default=5)
    p.add_argument("--attention-points", type=int, default=1, help="attention query points timed")
    p.add_argument("--skip-attention", action="store_true")
    args = p.parse_args(argv)

    import torch

    from vidprop.config import load_preset
    from vidprop.features.attention import AttentionMatcher, AttentionSettings
    from vidprop.features.tiny import save_random_sd
    from vidprop.tasks.match import PairMatcher

    w, h = (int(v) for v in args.image.lower().split("x"))
    rng = np.random.default_rng(0)
    src, tgt = _image(rng, w, h), _image(rng, w, h)
    pts = np.stack([rng.integers(0, w, args.points), rng.integers(0, h, args.points)], axis=1)
    with tempfile.TemporaryDirectory() as tmp:
        model = args.model or str(save_random_sd(Path(tmp) / "tiny-sd"))
        label = "tiny random SD" if not args.model else model
        threads = torch.get_num_threads()

        # ------------------------------------------------------------ semantic
        cfg = load_preset("semantic")
        frames = {"mode": "fixed", "width": args.size, "height": args.size} if args.size else {}
        cfg = cfg.override(frames=frames, extractor={"model": model, "device": args.device, "ensemble": args.ensemble})
        matcher = PairMatcher.from_pretrained(config=cfg)
        fw, fh = cfg.frames.target_size(w, h)
        matcher.match_semantic(src, tgt, pts, category="cat")  # warm-up
        times = []
        for _ in range(args.repeat):
            t0 = time.perf_counter()
            matcher.match_semantic(src, tgt, pts, category="cat")
            times.append(time.perf_counter() - t0)
        print(f"vidprop bench match ({label}, device {args.device}, {threads} CPU threads; images {w}x{h})")
        print(f"semantic match (preset 'semantic': {fw}x{fh} input, t={cfg.extractor.t}, "
              f"up_ft_index={cfg.extractor.up_ft_index}, ensemble {cfg.extractor.ensemble}; features of both images "
              f"+ full-resolution argmax of {args.points} points): median {statistics.median(times):.3f} s "
              f"over {args.repeat} runs (min {min(times):.3f} s)")
        if args.skip_attention:
            return 0

        # ------------------------------------------------------------ attention
        s = AttentionSettings(image_size=args.attention_size, steps=args.steps, rounds=args.rounds, crops=args.crops,
                              batch_size=args.attention_batch)
        att = AttentionMatcher.from_pretrained(model, s, device=args.device)
        counts = {"calls": 0, "samples": 0}

        def pre_hook(_module, inputs):
            counts["calls"] += 1
            counts["samples"] += int(inputs[0].shape[0])

        handle = att.unet.register_forward_pre_hook(pre_hook)
        opt_t, inf_t, opt_c, inf_c = [], [], [], []
        try:
            for qi in range(args.attention_points):
                point = (float(pts[qi % len(pts)][0]), float(pts[qi % len(pts)][1]))
                counts.update(calls=0, samples=0)
                t0 = time.perf_counter()
                emb, _ = att.optimize(src, point, generator=att.generator(qi, 0))
                opt_t.append(time.perf_counter() - t0)
                opt_c.append(dict(counts))
                counts.update(calls=0, samples=0)
                t0 = time.perf_counter()
                att.infer(tgt, emb, generator=att.generator(qi, 1))
                inf_t.append(time.perf_counter() - t0)
                inf_c.append(dict(counts))
        finally:
            handle.remove()
        n = args.attention_points
        print(f"attention matcher (Hedlin et al.; {s.image_size}x{s.image_size}, {s.steps} steps x {s.rounds} rounds, "
              f"{s.crops} crops, batch {s.batch_size}; mean over {n} point(s)):")
        print(f"  optimise : {sum(opt_t) / n:8.3f} s/point  U-Net calls {opt_c[0]['calls']} "
              f"(forward+backward), samples {opt_c[0]['samples']}")
        print(f"  infer    : {sum(inf_t) / n:8.3f} s/point  U-Net calls {inf_c[0]['calls']} (forward), "
              f"samples {inf_c[0]['samples']}")
        print(f"  total    : {(sum(opt_t) + sum(inf_t)) / n:8.3f} s/point  U-Net calls "
              f"{opt_c[0]['calls'] + inf_c[0]['calls']}, samples {opt_c[0]['samples'] + inf_c[0]['samples']} "
              f"(the spec: {s.steps * s.rounds} optimisation + {s.rounds * s.crops} inference samples)")
    return 0


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main())
