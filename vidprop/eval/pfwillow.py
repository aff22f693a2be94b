"""PF-WILLOW semantic correspondence: 900 test pairs of 4 object classes (10 subsets), PCK@0.1 per image.

Dataset layout (the PF-WILLOW release of Ham et al. with the pair list used
by CNNGeometric, HPF, DHPF and CATs, whose code DIFT's evaluation started from)::

    PF-WILLOW/test_pairs.csv      imageA, imageB, then 10 x and 10 y of A's keypoints, then B's
    PF-WILLOW/car(G)/car_001.png  ...  (the csv names images as PF-dataset/car(G)/car_001.png)

Scoring as in that code: a predicted point is correct when it lies within
``alpha * max(w, h)`` of the ground truth, (w, h) the size of the bounding
box of the TARGET's keypoints (PF-WILLOW has no object boxes); PCK per image
(the mean over pairs of each pair's fraction correct) is the published
figure, per point is reported too.  Points are compared at the images'
original resolution.

    from vidprop.eval.pfwillow import run_pfwillow
    summary = run_pfwillow(PairMatcher.from_pretrained(config="semantic"), "PF-WILLOW/", "runs/pfwillow")
"""

from __future__ import annotations

import csv
import logging
import math
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from vidprop.errors import InputError
from vidprop.eval.pairs import ALPHAS, pck_correct, summarise_pck
from vidprop.eval.runs import load_part, run_record, save_part, start_run, write_results
from vidprop.progress import progress_bar

__all__ = ["WillowPair", "read_pfwillow", "keypoint_box", "category_prompt_name", "run_pfwillow", "counts_to_records"]

log = logging.getLogger(__name__)

#: Object class of each PF-WILLOW subset folder, as words for a prompt.
_CLASS_WORDS = {"car": "car", "duck": "duck", "motorbike": "motorbike", "winebottle": "wine bottle"}


@dataclass(frozen=True)
class WillowPair:
    name: str
    category: str  # the subset folder, e.g. "car(G)"
    src_path: Path
    trg_path: Path
    src_kps: np.ndarray  # (10, 2) x, y
    trg_kps: np.ndarray  # (10, 2)


def category_prompt_name(category: str) -> str:
    """"winebottle(wC)" -> "wine bottle": the object class of a subset folder, for the prompt."""
    base = category.split("(")[0].strip()
    return _CLASS_WORDS.get(base, base)


def keypoint_box(kps: np.ndarray) -> tuple[float, float, float, float]:
    """(x1, y1, x2, y2): the bounding box of the keypoints."""
    k = np.asarray(kps, dtype=np.float64).reshape(-1, 2)
    return float(k[:, 0].min()), float(k[:, 1].min()), float(k[:, 0].max()), float(k[:, 1].max())


def _resolve(root: Path, name: str) -> Path:
    rel = Path(name)
    candidates = [root / Path(*rel.parts[1:]) if len(rel.parts) > 1 else root / rel, root / rel, root.parent / rel]
    for c in candidates:
        if c.is_file():
            return c
    return candidates[0]


def _numeric(values: Sequence[str]) -> bool:
    try:
        [float(v) for v in values]
    except ValueError:
        return False
    return bool(values)


def read_pfwillow(root: str | Path, *, limit: int | None = None, categories: Sequence[str] | None = None) -> list[WillowPair]:
    """Pairs of ``root/test_pairs.csv`` in file order (first ``limit`` only), images checked to exist."""
    root = Path(root)
    path = root / "test_pairs.csv"
    if not path.is_file():
        raise InputError(f"{path}: not found; --root must be the PF-WILLOW folder holding test_pairs.csv and "
                         "the image folders (car(G)/, duck(S)/, ...)")
    wanted = set(categories) if categories else None
    pairs: list[WillowPair] = []
    with open(path, newline="") as f:
        rows = list(csv.reader(f))
    if not rows:
        raise InputError(f"{path}: empty")
    start = 1 if not _numeric(rows[0][2:]) else 0  # a header row (imageA, imageB, XA1, ...) or none
    for line, row in enumerate(rows[start:], start=start + 1):
        if not row:
            continue
        if len(row) != 42:
            raise InputError(f"{path}, line {line}: expected 42 columns (imageA, imageB, 20 numbers for A, 20 for B), "
                             f"got {len(row)}")
        try:
            nums = np.asarray([float(v) for v in row[2:]], dtype=np.float64)
        except ValueError as exc:
            raise InputError(f"{path}, line {line}: not a number ({exc})") from None
        src = nums[:20].reshape(2, 10).T  # the 10 x values, then the 10 y values
        trg = nums[20:].reshape(2, 10).T
        category = Path(row[0]).parent.name
        if wanted is not None and category not in wanted:
            continue
        a, b = _resolve(root, row[0]), _resolve(root, row[1])
        for p in (a, b):
            if not p.is_file():
                raise InputError(f"{path}, line {line}: image {p} not found")
        pairs.append(WillowPair(f"{line - start:04d}", category, a, b, src, trg))  # the pair's number in the file
        if limit is not None and len(pairs) >= limit:
            break
    if not pairs:
        raise InputError(f"{path}: no pairs" + (f" of categories {sorted(wanted)}" if wanted else ""))
    return pairs


def counts_to_records(rows: Sequence[Sequence[Any]], group_col: int, n_col: int, first_count: int,
                      alphas: Sequence[float] = ALPHAS) -> list[tuple[str, dict[float, np.ndarray]]]:
    """Rows holding per-alpha counts of correct points -> (group, {alpha: bool array}) for summarise_pck."""
    out = []
    for r in rows:
        n = int(r[n_col])
        out.append((str(r[group_col]), {float(a): np.arange(n) < int(r[first_count + i]) for i, a in enumerate(alphas)}))
    return out


def _clip(points: np.ndarray, hw: tuple[int, int]) -> np.ndarray:
    p = np.asarray(points, dtype=np.float64).reshape(-1, 2).round()
    p[:, 0] = p[:, 0].clip(0, hw[1] - 1)
    p[:, 1] = p[:, 1].clip(0, hw[0] - 1)
    return p


def run_pfwillow(
    matcher: Any,
    root: str | Path,
    out: str | Path,
    *,
    limit: int | None = None,
    categories: Sequence[str] | None = None,
    use_category_prompt: bool = True,
    progress: bool = False,
    overwrite: bool = False,
) -> dict[str, Any]:
    """Match every source keypoint of every pair and score PCK (resumable per subset; see :mod:`vidprop.eval.runs`).

    ``matcher``: a :class:`~vidprop.tasks.match.PairMatcher`; each image is
    encoded once per subset (a joint backbone encodes each pair together).
    """
    from vidprop.io.images import read_image
    from vidprop.tasks.match import image_index, prompt_for, semantic_argmax

    pairs = read_pfwillow(root, limit=limit, categories=categories)
    out = Path(out)
    start_run(out, run_record("PF-WILLOW", root, matcher, pairs=len(pairs), limit=limit, categories=list(categories or []),
                              category_prompt=use_category_prompt,
                              threshold="alpha * max(w, h) of the target keypoints' bounding box", alphas=list(ALPHAS)),
              overwrite=overwrite)
    header = ["pair", "category", "points"] + [f"correct@{a:g}" for a in ALPHAS]
    groups: dict[str, list[WillowPair]] = {}
    for p in pairs:
        groups.setdefault(p.category, []).append(p)
    rows: list[list[Any]] = []
    encoded = 0
    t0 = time.perf_counter()
    bar = progress_bar(total=len(pairs), desc="PF-WILLOW", unit="pair", enabled=progress, leave=True)
    try:
        for cat, members in groups.items():
            done = load_part(out, cat)
            if done is not None and len(done) == len(members):
                rows.extend(done)
                bar.update(len(members))
                continue
            text = prompt_for(matcher.config.extractor.prompt, category_prompt_name(cat) if use_category_prompt else None)
            cache: dict[str, tuple[Any, np.ndarray]] = {}

            def image(path: Path) -> np.ndarray:
                return read_image(path, exif_transpose=False)

            part = []
            for p in members:
                src, trg = image(p.src_path), image(p.trg_path)
                if matcher.joint:
                    fs, ft = matcher.pair_features(src, trg, prompt=text)
                    encoded += 2
                else:
                    for path, img in ((p.src_path, src), (p.trg_path, trg)):
                        if str(path) not in cache:
                            cache[str(path)] = matcher.features(img, index=image_index(f"{cat}/{path.name}"), prompt=text)
                            encoded += 1
                    fs, ft = cache[str(p.src_path)], cache[str(p.trg_path)]
                pred, _, _ = semantic_argmax(fs, ft, src.shape[:2], trg.shape[:2], _clip(p.src_kps, src.shape[:2]))
                correct = pck_correct(pred, p.trg_kps, keypoint_box(p.trg_kps))
                part.append([p.name, cat, len(p.src_kps)] + [int(correct[a].sum()) for a in ALPHAS])
                bar.update(1)
            save_part(out, cat, header, part)
            rows.extend(part)
    finally:
        bar.close()
    order = {p.name: i for i, p in enumerate(pairs)}
    rows.sort(key=lambda r: order[r[0]])
    summary = summarise_pck(counts_to_records(rows, 1, 2, 3))
    summary.update({
        "benchmark": "PF-WILLOW",
        "headline": "per_image PCK@0.1",
        "threshold": "alpha * max(w, h) of the target keypoints' bounding box",
        "units": "percent",
        "images_encoded_this_run": encoded,
        "seconds": round(time.perf_counter() - t0, 2),
        "config": matcher.config.to_dict(),
    })
    pck = summary["overall"]["per_image"].get("0.1", math.nan)
    log.info("PF-WILLOW: %d pairs, PCK@0.1 per image %.2f", len(rows), pck)
    write_results(out, header + [f"pck@{a:g}" for a in ALPHAS],
                  [list(r) + [f"{100.0 * int(r[3 + i]) / int(r[2]):.2f}" for i in range(len(ALPHAS))] for r in rows], summary)
    return summary
