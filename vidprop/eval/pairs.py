"""SPair-71k (semantic, PCK) and HPatches (geometric, homography accuracy) evaluation.

specs/static-pairs.md sections 1 and 2.  Each dataset reader sits next to its
metric; the runners compute every image's features once (a per-image cache,
cleared when the category / sequence changes, so memory stays bounded) and
write their results atomically:

    OUT/pairs.csv      one row per pair
    OUT/summary.json   the scores (percent), overall and per category / sequence kind

    from vidprop.eval.pairs import run_spair, run_hpatches
    summary = run_spair(PairMatcher.from_pretrained(config="semantic"), "SPair-71k/", "runs/spair")
"""

from __future__ import annotations

import csv
import json
import logging
import math
import time
from collections import OrderedDict, defaultdict
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterable, Sequence

import numpy as np

from vidprop.errors import InputError, OutputExistsError
from vidprop.io.atomic import atomic_file
from vidprop.progress import progress_bar

__all__ = [
    "ALPHAS",
    "THRESHOLDS",
    "SpairPair",
    "HpatchesSequence",
    "read_spair",
    "pck_correct",
    "summarise_pck",
    "read_hpatches",
    "read_homography",
    "corner_error",
    "homography_accuracy",
    "run_spair",
    "run_hpatches",
]

log = logging.getLogger(__name__)

#: PCK thresholds (fractions of the larger side of the TARGET bounding box).
ALPHAS = (0.05, 0.1, 0.15)
#: Homography accuracy thresholds (mean corner error, pixels).
THRESHOLDS = (1, 3, 5)


# =========================================================================== SPair-71k
@dataclass(frozen=True)
class SpairPair:
    name: str
    category: str
    src_path: Path
    trg_path: Path
    src_kps: np.ndarray  # (N, 2) x, y
    trg_kps: np.ndarray  # (N, 2)
    trg_bbox: tuple[float, float, float, float]  # x1, y1, x2, y2


def _image_path(root: Path, category: str, name: str) -> Path:
    name = str(name)
    if not Path(name).suffix:
        name += ".jpg"
    return root / "JPEGImages" / category / name


def read_spair(root: str | Path, split: str = "test", *, limit: int | None = None,
               categories: Sequence[str] | None = None) -> list[SpairPair]:
    """Pairs of ``root/PairAnnotation/<split>/*.json`` (sorted by file name), first ``limit`` only."""
    root = Path(root)
    folder = root / "PairAnnotation" / split
    if not folder.is_dir():
        raise InputError(f"{folder}: no such folder; --root must be the SPair-71k folder "
                         "(with PairAnnotation/ and JPEGImages/)")
    files = sorted(folder.glob("*.json"))
    if not files:
        raise InputError(f"{folder}: no pair annotations (*.json) in this folder")
    wanted = set(categories) if categories else None
    pairs = []
    for f in files:
        try:
            d = json.loads(f.read_text())
            cat = str(d["category"])
            if wanted is not None and cat not in wanted:
                continue
            src_kps = np.asarray(d["src_kps"], dtype=np.float64).reshape(-1, 2)
            trg_kps = np.asarray(d["trg_kps"], dtype=np.float64).reshape(-1, 2)
            bbox = tuple(float(v) for v in d["trg_bndbox"])
            if len(bbox) != 4:
                raise ValueError("trg_bndbox must have 4 numbers")
            if len(src_kps) != len(trg_kps):
                raise ValueError(f"{len(src_kps)} src_kps but {len(trg_kps)} trg_kps")
            pairs.append(SpairPair(f.stem, cat, _image_path(root, cat, d["src_imname"]),
                                   _image_path(root, cat, d["trg_imname"]), src_kps, trg_kps, bbox))
        except (KeyError, ValueError, TypeError) as exc:
            raise InputError(f"{f}: not a valid SPair-71k pair annotation ({type(exc).__name__}: {exc})") from None
        if limit is not None and len(pairs) >= limit:
            break
    if not pairs:
        raise InputError(f"{folder}: no pairs" + (f" of categories {sorted(wanted)}" if wanted else ""))
    return pairs


def pck_correct(pred: np.ndarray, gt: np.ndarray, bbox: Sequence[float],
                alphas: Sequence[float] = ALPHAS) -> dict[float, np.ndarray]:
    """Per point: distance(pred, gt) <= alpha * max(box height, box width) (the TARGET box)."""
    pred = np.asarray(pred, dtype=np.float64).reshape(-1, 2)
    gt = np.asarray(gt, dtype=np.float64).reshape(-1, 2)
    x1, y1, x2, y2 = (float(v) for v in bbox)
    size = max(x2 - x1, y2 - y1)
    dist = np.linalg.norm(pred - gt, axis=1)
    return {float(a): dist <= a * size for a in alphas}


def _pck_block(records: list[tuple[str, dict[float, np.ndarray]]], alphas: Sequence[float]) -> dict[str, Any]:
    per_image, per_point = {}, {}
    n_points = sum(len(next(iter(c.values()))) for _, c in records) if records else 0
    scored = [c for _, c in records if len(next(iter(c.values())))]
    for a in alphas:
        key = f"{a:g}"
        per_image[key] = 100.0 * float(np.mean([c[a].mean() for c in scored])) if scored else math.nan
        per_point[key] = 100.0 * float(sum(c[a].sum() for c in scored) / n_points) if n_points else math.nan
    return {"pairs": len(records), "points": int(n_points), "per_image": per_image, "per_point": per_point}


def summarise_pck(records: Iterable[tuple[str, dict[float, np.ndarray]]],
                  alphas: Sequence[float] = ALPHAS) -> dict[str, Any]:
    """PCK in percent, overall and per category, both "per image" (mean over pairs of each
    pair's fraction correct) and "per point" (all correct / all points).

    ``records``: (category, {alpha: correct bool array}) per pair.
    """
    records = list(records)
    by_cat: dict[str, list] = defaultdict(list)
    for cat, c in records:
        by_cat[cat].append((cat, c))
    return {
        "overall": _pck_block(records, alphas),
        "per_category": {cat: _pck_block(r, alphas) for cat, r in sorted(by_cat.items())},
    }


class _FeatureCache:
    """Per-image feature cache; ``scope`` changes (a new category / sequence) empty it."""

    def __init__(self, compute: Callable[[str], Any]) -> None:
        self.compute = compute
        self.items: OrderedDict[str, Any] = OrderedDict()
        self.scope: Any = None
        self.computed = 0

    def get(self, key: str, scope: Any) -> Any:
        if scope != self.scope:
            self.items.clear()
            self.scope = scope
        if key not in self.items:
            self.items[key] = self.compute(key)
            self.computed += 1
        return self.items[key]


def _check_out(out: Path, overwrite: bool) -> None:
    if (out / "summary.json").exists() and not overwrite:
        raise OutputExistsError(f"{out / 'summary.json'} already exists; pass --overwrite to replace it")


def _write_csv(path: Path, header: list[str], rows: list[list[Any]]) -> None:
    with atomic_file(path) as tmp:
        with open(tmp, "w", newline="") as f:
            w = csv.writer(f)
            w.writerow(header)
            w.writerows(rows)


def _write_json(path: Path, data: Any) -> None:
    with atomic_file(path) as tmp:
        tmp.write_text(json.dumps(data, indent=2, allow_nan=True) + "\n")


def run_spair(
    matcher: Any,
    root: str | Path,
    out: str | Path,
    *,
    split: str = "test",
    limit: int | None = None,
    categories: Sequence[str] | None = None,
    use_category_prompt: bool = True,
    attention: Any = None,
    progress: bool = False,
    overwrite: bool = False,
) -> dict[str, Any]:
    """Match every source keypoint of every pair and score PCK.

    ``matcher``: a :class:`~vidprop.tasks.match.PairMatcher` (DIFT, the
    "semantic" preset); each image is encoded once per category (pairs are
    processed grouped by category).  ``attention``: an
    :class:`~vidprop.features.attention.AttentionMatcher` to score Hedlin et
    al.'s method instead (no feature cache: it optimises per point).
    """
    from vidprop.io.images import read_image
    from vidprop.tasks.match import image_index, prompt_for, semantic_argmax

    out = Path(out)
    _check_out(out, overwrite)
    pairs = read_spair(root, split, limit=limit, categories=categories)
    order = sorted(range(len(pairs)), key=lambda i: (pairs[i].category, i))  # group by category

    def encode(key: str) -> tuple[Any, tuple[int, int]]:
        cat, path = key.split("\0")
        img = read_image(path, exif_transpose=False)
        text = prompt_for(matcher.config.extractor.prompt, cat if use_category_prompt else None)
        return matcher.features(img, index=image_index(f"{cat}/{Path(path).name}"), prompt=text), img.shape[:2]

    cache = _FeatureCache(encode)
    images: dict[str, np.ndarray] = {}
    records: list[tuple[str, dict[float, np.ndarray]]] = [None] * len(pairs)  # type: ignore[list-item]
    rows: list[list[Any]] = [None] * len(pairs)  # type: ignore[list-item]
    t0 = time.perf_counter()
    bar = progress_bar(total=len(pairs), desc="SPair-71k", unit="pair", enabled=progress, leave=True)
    try:
        for i in order:
            p = pairs[i]
            if attention is None and getattr(matcher, "joint", False):  # a pair backbone: both images together
                src, trg = read_image(p.src_path, exif_transpose=False), read_image(p.trg_path, exif_transpose=False)
                text = prompt_for(matcher.config.extractor.prompt, p.category if use_category_prompt else None)
                fs, ft = matcher.pair_features(src, trg, prompt=text)
                src_hw, trg_hw = src.shape[:2], trg.shape[:2]
                pred, _, _ = semantic_argmax(fs, ft, src_hw, trg_hw, _clip_points(p.src_kps, src_hw))
            elif attention is None:
                fs, src_hw = cache.get(f"{p.category}\0{p.src_path}", p.category)
                ft, trg_hw = cache.get(f"{p.category}\0{p.trg_path}", p.category)
                src_kps = _clip_points(p.src_kps, src_hw)
                pred, _, _ = semantic_argmax(fs, ft, src_hw, trg_hw, src_kps)
            else:
                if p.category != cache.scope:
                    images.clear()
                    cache.scope = p.category
                for path in (p.src_path, p.trg_path):
                    if str(path) not in images:
                        images[str(path)] = read_image(path, exif_transpose=False)
                src, trg = images[str(p.src_path)], images[str(p.trg_path)]
                pred = attention.match(src, trg, _clip_points(p.src_kps, src.shape[:2])).target_points
            correct = pck_correct(pred, p.trg_kps, p.trg_bbox)
            records[i] = (p.category, correct)
            n = len(p.src_kps)
            rows[i] = [p.name, p.category, n] + [int(correct[a].sum()) for a in ALPHAS] + [
                f"{100.0 * correct[a].mean():.2f}" if n else "" for a in ALPHAS
            ]
            bar.update(1)
            if progress:
                done = [r for r in records if r is not None]
                bar.set_postfix_str(f"PCK@0.1 {_pck_block(done, (0.1,))['per_image']['0.1']:.1f}")
    finally:
        bar.close()
    summary = summarise_pck(records)
    summary.update({
        "benchmark": "SPair-71k",
        "split": split,
        "method": "attention" if attention is not None else "dift",
        "threshold": "alpha * max(h, w) of the target bounding box",
        "units": "percent",
        "images_encoded": cache.computed,
        "seconds": round(time.perf_counter() - t0, 2),
    })
    if attention is None:
        summary["config"] = matcher.config.to_dict()
    out.mkdir(parents=True, exist_ok=True)
    header = ["pair", "category", "points"] + [f"correct@{a:g}" for a in ALPHAS] + [f"pck@{a:g}" for a in ALPHAS]
    _write_csv(out / "pairs.csv", header, rows)
    _write_json(out / "summary.json", summary)
    return summary


def _clip_points(points: np.ndarray, hw: tuple[int, int]) -> np.ndarray:
    h, w = hw
    p = np.asarray(points, dtype=np.float64).reshape(-1, 2).round()
    p[:, 0] = p[:, 0].clip(0, w - 1)
    p[:, 1] = p[:, 1].clip(0, h - 1)
    return p


# =========================================================================== HPatches
@dataclass(frozen=True)
class HpatchesSequence:
    name: str
    kind: str  # "illumination" (i_), "viewpoint" (v_) or "other"
    images: tuple[Path, ...]  # 1.ppm .. 6.ppm
    homographies: tuple[np.ndarray, ...]  # H_1_2 .. H_1_6


def _kind(name: str) -> str:
    return "illumination" if name.startswith("i_") else "viewpoint" if name.startswith("v_") else "other"


def read_homography(path: str | Path) -> np.ndarray:
    """A 3x3 homography from a text file (whitespace separated)."""
    path = Path(path)
    try:
        H = np.loadtxt(path, dtype=np.float64)
    except (OSError, ValueError) as exc:
        raise InputError(f"{path}: not a readable 3x3 homography ({exc})") from None
    if H.shape != (3, 3) or not np.all(np.isfinite(H)):
        raise InputError(f"{path}: a homography file must hold 3x3 numbers, got shape {H.shape}")
    return H


def _find_image(folder: Path, i: int) -> Path:
    for ext in (".ppm", ".png", ".jpg", ".pgm"):
        p = folder / f"{i}{ext}"
        if p.exists():
            return p
    raise InputError(f"{folder}: image {i}.ppm is missing")


def read_hpatches(root: str | Path, *, limit: int | None = None) -> list[HpatchesSequence]:
    """Sequences ``root/<seq>/{1..6}.ppm`` with ``H_1_2 .. H_1_6`` (sorted by name), first ``limit`` only."""
    root = Path(root)
    if not root.is_dir():
        raise InputError(f"{root}: no such folder; --root must be hpatches-sequences-release/")
    seqs = []
    for d in sorted(p for p in root.iterdir() if p.is_dir() and (p / "H_1_2").exists()):
        images = tuple(_find_image(d, i) for i in range(1, 7))
        hs = tuple(read_homography(d / f"H_1_{i}") for i in range(2, 7))
        seqs.append(HpatchesSequence(d.name, _kind(d.name), images, hs))
        if limit is not None and len(seqs) >= limit:
            break
    if not seqs:
        raise InputError(f"{root}: no HPatches sequences (folders with 1.ppm ... 6.ppm and H_1_2 ... H_1_6)")
    return seqs


def corner_error(H_est: np.ndarray | None, H_true: np.ndarray, width: int, height: int) -> float:
    """Mean distance between the 4 corners of image 1 warped by the estimated and the true homography.

    Corners (0, 0), (0, h-1), (w-1, 0), (w-1, h-1); ``inf`` when there is no estimate.
    """
    if H_est is None:
        return math.inf
    corners = np.array([[0, 0, 1], [0, height - 1, 1], [width - 1, 0, 1], [width - 1, height - 1, 1]], np.float64)

    def warp(H: np.ndarray) -> np.ndarray:
        p = corners @ np.asarray(H, dtype=np.float64).T
        return p[:, :2] / p[:, 2:3]

    with np.errstate(divide="ignore", invalid="ignore"):
        err = float(np.mean(np.linalg.norm(warp(H_est) - warp(H_true), axis=1)))
    return err if np.isfinite(err) else math.inf


def homography_accuracy(errors: Sequence[float], kinds: Sequence[str],
                        thresholds: Sequence[float] = THRESHOLDS) -> dict[str, Any]:
    """Percent of pairs with mean corner error <= e, for all / illumination / viewpoint pairs."""
    errors = np.asarray(errors, dtype=np.float64)
    kinds = np.asarray(kinds)
    out: dict[str, Any] = {}
    for group, mask in (("all", np.ones(len(errors), bool)), ("illumination", kinds == "illumination"),
                        ("viewpoint", kinds == "viewpoint")):
        e = errors[mask]
        out[group] = {"pairs": int(mask.sum()),
                      **{f"{t:g}px": (100.0 * float(np.mean(e <= t)) if len(e) else math.nan) for t in thresholds}}
    return out


def run_hpatches(
    matcher: Any,
    root: str | Path,
    out: str | Path,
    *,
    limit: int | None = None,
    max_keypoints: int = 1000,
    method: str = "lmeds",
    threshold: float = 3.0,
    progress: bool = False,
    overwrite: bool = False,
) -> dict[str, Any]:
    """Image 1 against images 2..6 of every sequence: SIFT keypoints, DIFT descriptors (the
    "geometric" preset), mutual nearest neighbours, homography, corner error.

    Image 1's features and keypoints are computed once per sequence.  A pair
    where no homography can be fitted counts as wrong (error inf).
    """
    from vidprop.io.images import read_image
    from vidprop.tasks.match import detect_sift, geometric_match_features, image_index

    out = Path(out)
    _check_out(out, overwrite)
    seqs = read_hpatches(root, limit=limit)
    text = matcher.prompt(None, None)

    def encode(key: str) -> tuple[Any, np.ndarray, tuple[int, int]]:
        img = read_image(key, exif_transpose=False)
        name = f"{Path(key).parent.name}/{Path(key).name}"
        return matcher.features(img, index=image_index(name), prompt=text), detect_sift(img, max_keypoints), img.shape[:2]

    cache = _FeatureCache(encode)
    rows, errors, kinds = [], [], []
    t0 = time.perf_counter()
    bar = progress_bar(total=5 * len(seqs), desc="HPatches", unit="pair", enabled=progress, leave=True)
    try:
        for seq in seqs:
            f1, k1, hw1 = cache.get(str(seq.images[0]), seq.name)
            for i in range(2, 7):
                fi, ki, hwi = cache.get(str(seq.images[i - 1]), seq.name)
                res = geometric_match_features(f1, fi, hw1, hwi, k1, ki, method=method, threshold=threshold,
                                               require_homography=False)
                err = corner_error(res.homography, seq.homographies[i - 2], hw1[1], hw1[0])
                errors.append(err)
                kinds.append(seq.kind)
                n_in = int(res.inliers.sum()) if res.inliers is not None else 0
                rows.append([seq.name, seq.kind, i, len(k1), len(ki), len(res.source_points), n_in,
                             f"{err:.4f}" if math.isfinite(err) else "inf"])
                bar.update(1)
    finally:
        bar.close()
    summary = homography_accuracy(errors, kinds)
    summary = {
        "benchmark": "HPatches",
        "metric": "percent of pairs whose mean corner error <= threshold",
        "accuracy": summary,
        "homography": {"method": method, "threshold": threshold},
        "max_keypoints": max_keypoints,
        "sequences": len(seqs),
        "images_encoded": cache.computed,
        "seconds": round(time.perf_counter() - t0, 2),
        "config": matcher.config.to_dict(),
    }
    out.mkdir(parents=True, exist_ok=True)
    _write_csv(out / "pairs.csv", ["sequence", "kind", "image", "keypoints_1", "keypoints_i", "matches",
                                   "inliers", "corner_error"], rows)
    _write_json(out / "summary.json", summary)
    return summary
