"""CUB-200-2011 keypoint transfer as DIFT evaluated it: PCK@0.1 per point on the 14 bird subsets.

DIFT's semantic-correspondence evaluation on CUB started from the code of
Neural Congealing (Ofri-Amar et al. 2023), which follows GANgealing's PCK
transfer: 14 subsets of images drawn from ACSM's cleaned CUB validation set,
each image cropped around its (5 % enlarged, squared) bird box and resized to
256x256 (ACSM's preprocessing), its 15 part keypoints moved with it.  Every
pair of images of a subset is scored in both directions; a point counts
only where it is visible in both images, and is correct within
``alpha * max(H, W)`` of the target image (0.1 x 256 px).  A subset's score
is per point (all correct / all visible points); the reported figure is the
mean over the subsets.

Dataset layout: the output of Neural Congealing's ``prepare_data.py
--cub_acsm``::

    cub_subsets/cub_subset_0/images/img_000.png ...   (sorted by name: image i of the subset)
    cub_subsets/cub_subset_0/pck/keypoints.pt          torch tensor (N, 15, 3): x, y, visible
    ...
    cub_subsets/cub_subset_13/...

    from vidprop.eval.cub import run_cub
    summary = run_cub(PairMatcher.from_pretrained(config="semantic"), "cub_subsets/", "runs/cub")
"""

from __future__ import annotations

import itertools
import logging
import math
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from vidprop.errors import InputError
from vidprop.eval.pairs import ALPHAS, pck_correct, summarise_pck
from vidprop.eval.pfwillow import counts_to_records
from vidprop.eval.runs import load_part, run_record, save_part, start_run, write_results
from vidprop.progress import progress_bar

__all__ = ["CubSubset", "read_cub", "cub_pairs", "run_cub"]

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class CubSubset:
    name: str  # cub_subset_<k>
    images: tuple[Path, ...]
    keypoints: np.ndarray  # (N, K, 3): x, y, visible


def _read_keypoints(path: Path) -> np.ndarray:
    import torch

    try:
        kps = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # noqa: BLE001 - pickle/zip errors of many kinds
        raise InputError(f"{path}: not a readable keypoint tensor ({type(exc).__name__}: {exc})") from None
    kps = np.asarray(kps.numpy() if hasattr(kps, "numpy") else kps, dtype=np.float64)
    if kps.ndim != 3 or kps.shape[2] != 3:
        raise InputError(f"{path}: expected keypoints of shape (images, points, 3) = x, y, visible; got {kps.shape}")
    return kps


def read_cub(root: str | Path, *, subsets: Sequence[int] | None = None) -> list[CubSubset]:
    """The subsets ``root/cub_subset_<k>`` (sorted by k), or only those numbered in ``subsets``."""
    root = Path(root)
    if not root.is_dir():
        raise InputError(f"{root}: no such folder; --root must hold cub_subset_0/ ... cub_subset_13/ "
                         "(Neural Congealing's prepare_data.py --cub_acsm)")
    found = {}
    for d in root.iterdir():
        if d.is_dir() and d.name.startswith("cub_subset_") and d.name[len("cub_subset_"):].isdigit():
            found[int(d.name[len("cub_subset_"):])] = d
    if not found:
        raise InputError(f"{root}: no cub_subset_<k>/ folders (each with images/ and pck/keypoints.pt)")
    if subsets is not None:
        missing = sorted(set(subsets) - set(found))
        if missing:
            raise InputError(f"{root}: subset(s) {missing} not found; present: {sorted(found)}")
    out = []
    for k in sorted(found) if subsets is None else sorted(set(subsets)):
        d = found[k]
        images = tuple(sorted(p for p in (d / "images").glob("*") if p.suffix.lower() in (".png", ".jpg", ".jpeg")))
        kp_path = d / "pck" / "keypoints.pt"
        if not kp_path.is_file():
            raise InputError(f"{kp_path}: not found")
        kps = _read_keypoints(kp_path)
        if len(images) != len(kps):
            raise InputError(f"{d}: {len(images)} images in images/ but keypoints for {len(kps)} in {kp_path}")
        if len(images) < 2:
            raise InputError(f"{d}: a subset needs at least 2 images, found {len(images)}")
        out.append(CubSubset(d.name, images, kps))
    return out


def cub_pairs(n: int) -> list[tuple[int, int]]:
    """Every ordered pair of distinct images: each unordered pair in both directions, (i, j) then (j, i)."""
    return [p for i, j in itertools.combinations(range(n), 2) for p in ((i, j), (j, i))]


def run_cub(
    matcher: Any,
    root: str | Path,
    out: str | Path,
    *,
    subsets: Sequence[int] | None = None,
    category_prompt: str | None = "bird",
    progress: bool = False,
    overwrite: bool = False,
) -> dict[str, Any]:
    """Transfer every visible keypoint between every pair of each subset and score PCK (resumable per subset).

    ``category_prompt``: the category put in the preset's prompt template
    ("a photo of a {category}"); None for the template's empty case.
    """
    from vidprop.io.images import read_image
    from vidprop.tasks.match import image_index, prompt_for, semantic_argmax

    data = read_cub(root, subsets=subsets)
    out = Path(out)
    n_pairs = sum(len(cub_pairs(len(s.images))) for s in data)
    start_run(out, run_record("CUB-200-2011", root, matcher, subsets=[s.name for s in data], pairs=n_pairs,
                              category_prompt=category_prompt,
                              threshold="alpha * max(H, W) of the target image (the 256x256 bird crop)",
                              visibility="points visible in both images", alphas=list(ALPHAS)),
              overwrite=overwrite)
    header = ["subset", "source", "target", "points"] + [f"correct@{a:g}" for a in ALPHAS]
    text = prompt_for(matcher.config.extractor.prompt, category_prompt)
    rows: list[list[Any]] = []
    encoded = 0
    t0 = time.perf_counter()
    bar = progress_bar(total=n_pairs, desc="CUB", unit="pair", enabled=progress, leave=True)
    try:
        for s in data:
            pairs = cub_pairs(len(s.images))
            done = load_part(out, s.name)
            if done is not None and len(done) == len(pairs):
                rows.extend(done)
                bar.update(len(pairs))
                continue
            images = [read_image(p, exif_transpose=False) for p in s.images]
            feats: dict[int, Any] = {}
            part = []
            for i, j in pairs:
                vis = (s.keypoints[i, :, 2] > 0) & (s.keypoints[j, :, 2] > 0)
                src_pts, trg_pts = s.keypoints[i, vis, :2], s.keypoints[j, vis, :2]
                if matcher.joint:
                    fs, ft = matcher.pair_features(images[i], images[j], prompt=text)
                    encoded += 2
                else:
                    for k in (i, j):
                        if k not in feats:
                            feats[k] = matcher.features(images[k], index=image_index(f"{s.name}/{s.images[k].name}"), prompt=text)
                            encoded += 1
                    fs, ft = feats[i], feats[j]
                h, w = images[j].shape[:2]
                if len(src_pts):
                    hs, ws = images[i].shape[:2]
                    q = np.stack([src_pts[:, 0].round().clip(0, ws - 1), src_pts[:, 1].round().clip(0, hs - 1)], axis=1)
                    pred, _, _ = semantic_argmax(fs, ft, images[i].shape[:2], (h, w), q)
                    correct = pck_correct(pred, trg_pts, (0.0, 0.0, float(w), float(h)))
                    counts = [int(correct[a].sum()) for a in ALPHAS]
                else:
                    counts = [0] * len(ALPHAS)
                part.append([s.name, s.images[i].name, s.images[j].name, int(vis.sum())] + counts)
                bar.update(1)
            save_part(out, s.name, header, part)
            rows.extend(part)
    finally:
        bar.close()
    summary = summarise_pck(counts_to_records(rows, 0, 3, 4))
    per_subset = summary["per_category"]
    summary.update({
        "benchmark": "CUB-200-2011 (Neural Congealing's 14 subsets)",
        "headline": "mean over subsets of per-point PCK@0.1",
        "mean_over_subsets": {f"{a:g}": float(np.mean([v["per_point"][f"{a:g}"] for v in per_subset.values()]))
                              for a in ALPHAS},
        "threshold": "alpha * max(H, W) of the target image",
        "units": "percent",
        "images_encoded_this_run": encoded,
        "seconds": round(time.perf_counter() - t0, 2),
        "config": matcher.config.to_dict(),
    })
    log.info("CUB: %d subsets, %d pairs, PCK@0.1 per point (mean of subsets) %.2f", len(data), len(rows),
             summary["mean_over_subsets"].get("0.1", math.nan))
    write_results(out, header, rows, summary)
    return summary
