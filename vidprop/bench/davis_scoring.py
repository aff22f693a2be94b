"""Benchmark: DAVIS J&F scoring, vidprop (1 and 2 workers) vs a plain toolkit-style implementation.

    python -m vidprop.bench.davis_scoring                      # 30 sequences x 70 frames at 480x854
    python -m vidprop.bench.davis_scoring --sequences 5 --frames 20 --no-reference

A synthetic DAVIS-layout folder (a few moving ellipses per sequence, a void
region, predictions = perturbed ground truth) is written to a temporary
folder; it is scored by :func:`vidprop.eval.davis.score_davis` with 1 and 2
worker processes and by :func:`reference_score`, a single-threaded, frame by
frame, full-image NumPy implementation of the same formulas (the official
toolkit's way).  The three must agree exactly; the times are printed.
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
import time
import warnings
from pathlib import Path
from typing import Sequence

import cv2
import numpy as np
from PIL import Image

from vidprop.io.davis_layout import davis_annotations_dir, davis_frames_dir

__all__ = ["main", "make_synthetic_davis", "reference_score"]


def _palette() -> list[int]:
    from vidprop.io.masks import davis_palette

    return davis_palette().reshape(-1).tolist()


def _save_p(path: Path, arr: np.ndarray, palette: list[int]) -> None:
    im = Image.frombytes("P", (arr.shape[1], arr.shape[0]), np.ascontiguousarray(arr).tobytes())
    im.putpalette(palette)
    im.save(path, format="PNG", compress_level=1)


def make_synthetic_davis(
    root: str | Path,
    results: str | Path,
    *,
    num_sequences: int = 30,
    num_frames: int = 70,
    height: int = 480,
    width: int = 854,
    seed: int = 0,
    set: str = "val",
) -> list[str]:
    """Write a DAVIS-2017 layout under ``root`` and perturbed predictions under ``results``.

    Each sequence has 1-3 moving ellipses (ids 1..K, later ones occlude
    earlier ones; some leave the frame or vanish for a while), a void (255)
    rectangle in some frames, and predictions = the ground truth shifted by a
    few pixels, with blotches, dropped objects and a missing last object in
    some sequences.  JPEG frames are hard links of one flat grey image at the
    masks' size (scoring never decodes them; eval davis accepts the layout).  Returns the sequence names.
    """
    root, results = Path(root), Path(results)
    rng = np.random.default_rng(seed)
    pal = _palette()
    (root / "ImageSets" / "2017").mkdir(parents=True, exist_ok=True)
    names = [f"seq{i:02d}" for i in range(num_sequences)]
    (root / "ImageSets" / "2017" / f"{set}.txt").write_text("\n".join(names) + "\n")
    jpg = root / "_frame.jpg"  # at the masks' size: `vidprop eval davis` can propagate on this layout too
    Image.new("RGB", (width, height), (90, 90, 90)).save(jpg, quality=80)
    for name in names:
        img_dir = davis_frames_dir(root, name)
        ann_dir = davis_annotations_dir(root, name)
        res_dir = results / name
        for d in (img_dir, ann_dir, res_dir):
            d.mkdir(parents=True, exist_ok=True)
        k = int(rng.integers(1, 4))
        centre = rng.uniform([0.2 * width, 0.2 * height], [0.8 * width, 0.8 * height], size=(k, 2))
        vel = rng.uniform(-4, 4, size=(k, 2))
        axes = rng.uniform([20, 15], [0.18 * width, 0.2 * height], size=(k, 2))
        vanish = [(int(rng.integers(0, num_frames)), int(rng.integers(0, 6))) for _ in range(k)]
        drop_last = k > 1 and rng.random() < 0.2
        for t in range(num_frames):
            gt = np.zeros((height, width), np.uint8)
            for j in range(k):
                start, length = vanish[j]
                if t > 0 and start <= t < start + length:
                    continue
                c = centre[j] + vel[j] * t
                cv2.ellipse(gt, (int(c[0]), int(c[1])), (int(axes[j, 0]), int(axes[j, 1])),
                            float(15 * j + 0.5 * t), 0, 360, j + 1, -1)
            if t == 0 and not gt.any():
                gt[height // 2 - 10: height // 2 + 10, width // 2 - 10: width // 2 + 10] = 1
            pred = gt.copy()
            dy, dx = rng.integers(-3, 4, size=2)
            pred = np.roll(pred, (int(dy), int(dx)), axis=(0, 1))
            for _ in range(int(rng.integers(0, 3))):
                y, x = rng.integers(0, height - 40), rng.integers(0, width - 40)
                pred[y: y + int(rng.integers(5, 40)), x: x + int(rng.integers(5, 40))] = int(rng.integers(0, k + 1))
            if rng.random() < 0.05:
                pred[pred == int(rng.integers(1, k + 1))] = 0
            if drop_last:
                pred[pred == k] = 0
            if t % 7 == 3:
                y, x = rng.integers(0, height - 30), rng.integers(0, width - 30)
                gt[y: y + 25, x: x + 25] = 255
            stem = f"{t:05d}"
            os.link(jpg, img_dir / f"{stem}.jpg")
            _save_p(ann_dir / f"{stem}.png", gt, pal)
            _save_p(res_dir / f"{stem}.png", pred, pal)
    return names


# ------------------------------------------------------------------------------------ plain reference
def _ref_bmap(seg: np.ndarray) -> np.ndarray:
    seg = seg.astype(bool)
    e = np.zeros_like(seg)
    s = np.zeros_like(seg)
    se = np.zeros_like(seg)
    e[:, :-1] = seg[:, 1:]
    s[:-1, :] = seg[1:, :]
    se[:-1, :-1] = seg[1:, 1:]
    b = seg ^ e | seg ^ s | seg ^ se
    b[-1, :] = seg[-1, :] ^ e[-1, :]
    b[:, -1] = seg[:, -1] ^ s[:, -1]
    b[-1, -1] = 0
    return b


def _ref_f(fg: np.ndarray, gt: np.ndarray, bound_th: float = 0.008) -> float:
    bound_pix = bound_th if bound_th >= 1 else np.ceil(bound_th * np.linalg.norm(fg.shape))
    grid = np.arange(-bound_pix, bound_pix + 1)
    xx, yy = np.meshgrid(grid, grid)
    se = ((xx**2 + yy**2) <= bound_pix**2).astype(np.uint8)
    fb = _ref_bmap(fg)
    gb = _ref_bmap(gt)
    f_dil = cv2.dilate(fb.astype(np.uint8), se)
    g_dil = cv2.dilate(gb.astype(np.uint8), se)
    n_fg, n_gt = np.sum(fb), np.sum(gb)
    if n_fg == 0 and n_gt > 0:
        p, r = 1, 0
    elif n_fg > 0 and n_gt == 0:
        p, r = 0, 1
    elif n_fg == 0 and n_gt == 0:
        p, r = 1, 1
    else:
        p = np.sum(fb * g_dil) / float(n_fg)
        r = np.sum(gb * f_dil) / float(n_gt)
    return 0 if p + r == 0 else 2 * p * r / (p + r)


def _ref_stats(v: np.ndarray) -> tuple[float, float, float]:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", category=RuntimeWarning)
        m = np.nanmean(v)
        o = np.nanmean(v > 0.5)
        ids = (np.round(np.linspace(1, len(v), 5) + 1e-10) - 1).astype(int)
        bins = [v[ids[i]: ids[i + 1] + 1] for i in range(4)]
        d = np.nanmean(bins[0]) - np.nanmean(bins[3])
    return m, o, d


def reference_score(root: str | Path, results: str | Path, set: str = "val") -> dict[str, float]:
    """The global row computed the toolkit's way: whole frames, one object and frame at a time."""
    root, results = Path(root), Path(results)
    names = [x.strip() for x in (root / "ImageSets" / "2017" / f"{set}.txt").read_text().splitlines() if x.strip()]
    J: dict[str, list[float]] = {"M": [], "R": [], "D": []}
    F: dict[str, list[float]] = {"M": [], "R": [], "D": []}
    for name in names:
        anns = sorted(davis_annotations_dir(root, name).glob("*.png"))
        gts = np.stack([np.array(Image.open(p)) for p in anns]).astype(np.float64)
        gts[gts == 255] = 0
        k = int(gts[0].max())
        gts = gts[1:-1]
        res = np.stack([np.array(Image.open(results / name / f"{p.stem}.png")) for p in anns[1:-1]]).astype(np.float64)
        if res.max() > k:
            raise ValueError(f"{name}: id above {k}")
        for obj in range(1, k + 1):
            g = gts == obj
            r = res == obj
            inter = np.sum(g & r, axis=(1, 2))
            union = np.sum(g | r, axis=(1, 2))
            with np.errstate(invalid="ignore", divide="ignore"):
                j = inter / union
            j[union == 0] = 1
            f = np.array([_ref_f(r[t], g[t]) for t in range(len(g))], dtype=np.float64)
            for store, v in ((J, j), (F, f)):
                m, o, d = _ref_stats(v)
                store["M"].append(m)
                store["R"].append(o)
                store["D"].append(d)
    return {
        "J&F-Mean": float((np.mean(J["M"]) + np.mean(F["M"])) / 2.0),
        "J-Mean": float(np.mean(J["M"])),
        "J-Recall": float(np.mean(J["R"])),
        "J-Decay": float(np.mean(J["D"])),
        "F-Mean": float(np.mean(F["M"])),
        "F-Recall": float(np.mean(F["R"])),
        "F-Decay": float(np.mean(F["D"])),
    }


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="vidprop bench davis-scoring",
        description="Time DAVIS J&F scoring (1 and 2 workers) against a plain single-threaded implementation "
        "on a synthetic DAVIS-layout set; check that all agree.",
    )
    parser.add_argument("--sequences", type=int, default=30, help="synthetic sequences (default 30)")
    parser.add_argument("--frames", type=int, default=70, help="frames per sequence (default 70)")
    parser.add_argument("--size", default="854x480", help="frame size WxH (default 854x480)")
    parser.add_argument("--workers", default="1,2", help="worker counts to time (default 1,2)")
    parser.add_argument("--no-reference", action="store_true", help="skip the (slow) plain implementation")
    parser.add_argument("--keep", metavar="DIR", help="write the synthetic set here and keep it")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)

    from vidprop.eval.davis import GLOBAL_COLUMNS, score_davis

    w, h = (int(v) for v in args.size.lower().split("x"))
    workers = [int(v) for v in args.workers.split(",") if v.strip()]
    base = Path(args.keep) if args.keep else Path(tempfile.mkdtemp(prefix="vidprop-davis-bench-"))
    try:
        root, results = base / "DAVIS", base / "results"
        t0 = time.perf_counter()
        make_synthetic_davis(root, results, num_sequences=args.sequences, num_frames=args.frames,
                             height=h, width=w, seed=args.seed)
        print(f"synthetic set: {args.sequences} sequences x {args.frames} frames at {w}x{h} "
              f"(written in {time.perf_counter() - t0:.1f} s); {os.cpu_count()} CPUs")
        rows = {}
        for n in workers:
            t0 = time.perf_counter()
            scores = score_davis(root, results, "val", workers=n, progress=False)
            dt = time.perf_counter() - t0
            rows[f"vidprop, {n} worker{'s' if n > 1 else ''}"] = (dt, scores.global_row)
        if not args.no_reference:
            t0 = time.perf_counter()
            ref = reference_score(root, results, "val")
            rows["plain NumPy reference, 1 thread"] = (time.perf_counter() - t0, ref)
        base_row = next(iter(rows.values()))[1]
        print(f"{'implementation':<34} {'time (s)':>9}  {'J&F':>8} {'J':>8} {'F':>8}")
        for label, (dt, row) in rows.items():
            print(f"{label:<34} {dt:9.2f}  {row['J&F-Mean']:8.5f} {row['J-Mean']:8.5f} {row['F-Mean']:8.5f}")
        same = all(row[c] == base_row[c] for _, row in rows.values() for c in GLOBAL_COLUMNS)
        print("agreement: " + ("all global values identical (bit for bit)" if same else "MISMATCH"))
        return 0 if same else 1
    finally:
        if not args.keep:
            shutil.rmtree(base, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
