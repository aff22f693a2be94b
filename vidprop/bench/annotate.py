"""``vidprop bench annotate``: the labelling loop's latencies -- first propagation, a correction, a click.

On one synthetic video (two moving objects), with random weights of the
chosen architecture (no download; speed does not depend on weight values):

1. the first propagation of an annotated first frame through
   :class:`~vidprop.annotate.Annotator` (features extracted into an empty
   feature cache, then propagated);
2. a correction at the middle frame re-propagated to the end, reading the
   cached features (nothing extracted);
3. a full re-run at the same settings without the cache, as every correction
   cost before (``Segmenter.run`` with both annotations: extraction + propagation);

and prints the times, the ratios (the correction against the full re-run and
against the first propagation) and whether the correction's masks equal the
re-run's pixel for pixel; then the click-to-mask latency of a SAM 2 model
(a tiny random one unless ``--prompt-model``): the first click on a frame
(image encoder + mask decoder) and a further click on it (mask decoder only).

    vidprop bench annotate                                  # tiny SD, 64x40 model input, 16 frames
    vidprop bench annotate --arch sd21 --config quick       # SD 2.1 architecture, short side 256
    vidprop bench annotate --arch sd21 --device cuda --frames 60
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np

__all__ = ["main"]


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="vidprop bench annotate", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--arch", choices=["tiny", "sd21"], default="tiny", help="U-Net + VAE architecture (random weights)")
    p.add_argument("--config", default="quick", help="preset of frame sizes, extraction and propagation (default quick)")
    p.add_argument("--size", default=None, help="video size WxH (default: 96x64 for tiny, 854x480 for sd21)")
    p.add_argument("--short-side", type=int, default=None, help="model input short side (default: 64 for tiny, "
                                                                  "the preset's for sd21)")
    p.add_argument("--frames", type=int, default=16, help="video length (default 16)")
    p.add_argument("--device", default="auto", help="cpu, cuda, cuda:N or auto (default)")
    p.add_argument("--prompt-model", help="a SAM 2 folder or Hub id to time (default: a tiny random SAM 2)")
    p.add_argument("--clicks", type=int, default=5, help="timed further clicks (default 5)")
    p.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's)")
    p.add_argument("--seed", type=int, default=0)
    return p


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    import torch

    from vidprop.annotate import Annotator
    from vidprop.annotate.prompts import ClickToMask
    from vidprop.annotate.tiny_sam import save_random_sam2
    from vidprop.bench.common import random_sd_extractor, torch_device
    from vidprop.config import load_preset
    from vidprop.io.synthetic import SyntheticScene, write_frame_folder
    from vidprop.tasks.segment import Segmenter

    device, dtype = torch_device(args.threads, args.device, None)
    tiny = args.arch == "tiny"
    w, h = (int(v) for v in (args.size or ("96x64" if tiny else "854x480")).lower().split("x"))
    cfg = load_preset(args.config)
    short = args.short_side or (64 if tiny else cfg.frames.short_side)
    cfg = cfg.override(frames={"short_side": short},
                       extractor={"model": f"random {args.arch} architecture", "device": str(device),
                                  "dtype": str(dtype).replace("torch.", ""), "seed": args.seed})
    t0 = time.perf_counter()
    ext = random_sd_extractor(args.arch, cfg.extractor, args.seed)
    seg = Segmenter(ext, cfg)
    mw, mh = cfg.frames.target_size(w, h)
    n = args.frames
    mid = n // 2
    print(f"vidprop bench annotate: {args.arch} U-Net + VAE (random weights), preset {cfg.name}, synthetic {w}x{h} "
          f"video of {n} frames, model input {mw}x{mh}, ensemble {cfg.extractor.ensemble}, device {device}, "
          f"{torch.get_num_threads()} torch threads; built in {time.perf_counter() - t0:.0f} s")

    with tempfile.TemporaryDirectory(prefix="vidprop-bench-annotate-") as tmp:
        tmp_path = Path(tmp)
        scene = SyntheticScene(width=w, height=h, num_frames=n, num_objects=2, seed=args.seed, object_ids=(1, 2))
        video = write_frame_folder(scene, tmp_path / "clip")
        ann = Annotator(video, seg, cache=tmp_path / "cache")
        ann.add_mask(0, scene.frame(0)[1])
        t0 = time.perf_counter()
        first = list(ann.propagate(0))
        t_first = time.perf_counter() - t0
        fix = np.where(scene.frame(mid)[1] == 1, 1, 0).astype(np.uint8)
        ann.add_mask(mid, fix)
        t0 = time.perf_counter()
        corr = list(ann.propagate(mid))
        t_corr = time.perf_counter() - t0
        from vidprop.io.images import read_image
        from vidprop.io.video import list_frames

        frames = [read_image(p, exif_transpose=False) for p in list_frames(video)]
        t0 = time.perf_counter()
        fresh = list(seg.run(frames, annotations=dict(ann.annotations)))
        t_full = time.perf_counter() - t0
        same = all(np.array_equal(m, fresh[t]) for t, m, _ in corr)
        print(f"first propagation (features extracted, {len(first)} frames)   {t_first:8.2f} s")
        print(f"correction at frame {mid} re-propagated to the end ({len(corr)} frames, cached features)   "
              f"{t_corr:8.2f} s")
        print(f"full re-run without the cache (extract + propagate {n} frames)   {t_full:8.2f} s")
        print(f"correction vs full re-run: {t_full / t_corr:.1f}x faster; vs first propagation: "
              f"{t_first / t_corr:.1f}x faster; masks identical to the re-run: {'yes' if same else 'NO'}")

        sam_path = args.prompt_model or save_random_sam2(tmp_path / "tiny-sam2", seed=args.seed)
        sam = ClickToMask.load(sam_path, device=str(device))
        image = frames[0]
        ys, xs = np.nonzero(scene.frame(0)[1] == 1)
        pt = [(float(xs.mean()), float(ys.mean()))]
        sam(image, pt, [1])  # warm-up (first call's one-off costs)
        sam(frames[1], pt, [1])
        t0 = time.perf_counter()
        sam(frames[2], pt, [1])
        t_new = time.perf_counter() - t0
        times = []
        for k in range(args.clicks):
            t0 = time.perf_counter()
            sam(frames[2], [*pt, (pt[0][0] + k + 1, pt[0][1])], [1, 0])
            times.append(time.perf_counter() - t0)
        what = "tiny random SAM 2, 128x128 input" if not args.prompt_model else str(args.prompt_model)
        print(f"click-to-mask ({what}): first click on a frame {1000 * t_new:.1f} ms; further clicks median "
              f"{1000 * statistics.median(times):.1f} ms (mask decoder only)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
