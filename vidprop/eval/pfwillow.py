"""PF-WILLOW semantic correspondence: 900 test pairs of 4 object classes (10 subsets), PCK per image.

Dataset layout (the PF-WILLOW release of Ham et al. with the pair list used
by CNNGeometric, HPF, DHPF and CATs, whose code DIFT's evaluation started
from; Hedlin et al.'s evaluation reads the same file)::

    PF-WILLOW/test_pairs.csv      imageA, imageB, then 10 x and 10 y of A's keypoints, then B's
    PF-WILLOW/car(G)/car_001.png  ...  (the csv names images as PF-dataset/car(G)/car_001.png)

Two PCK protocols (PF-WILLOW has no object boxes: both measure the TARGET's
keypoints; docs/static-pairs.md):

* ``dift`` (DIFT's, from CATs' code): correct within ``alpha * max(w, h)`` of
  the bounding box of the target's keypoints, at the images' original size.
* ``hedlin`` (Hedlin et al.'s code): images and points rescaled to 512x512
  (``x * 512 / W``, ``y * 512 / H`` with each image's own size); the box is
  taken over the target's keypoint slots, where their loader pads the 10 used
  slots of 40 with -1, so its minimum is -1 and the threshold is
  ``max(x_max, y_max) + 1`` of the rescaled target keypoints
  (:func:`hedlin_willow_threshold`).

PCK per image (the mean over pairs of each pair's fraction correct) is the
published figure of both; per point is reported too.

    from vidprop.eval.pfwillow import run_pfwillow
    summary = run_pfwillow(PairMatcher.from_pretrained(config="semantic"), "PF-WILLOW/", "runs/pfwillow")
    summary = run_pfwillow(None, "PF-WILLOW/", "runs/att", attention=AttentionMatcher.from_pretrained())
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

from vidprop.engine import EngineOptions
from vidprop.errors import InputError
from vidprop.eval.pair_predict import (
    GroupResult,
    GroupUnit,
    PairJob,
    check_engine,
    method_settings,
    recorded_model,
    run_groups,
)
from vidprop.eval.pck import (
    ALPHAS,
    HEDLIN_SPACE,
    PckProtocol,
    box_threshold,
    pck_correct,
    protocol_header,
    rescale_points,
    resolve_protocols,
    summarise_protocols,
)
from vidprop.eval.records import run_record
from vidprop.eval.runs import write_results
from vidprop.progress import progress_bar

__all__ = [
    "WillowPair",
    "WILLOW_PROTOCOLS",
    "HEDLIN_SLOTS",
    "read_pfwillow",
    "keypoint_box",
    "hedlin_willow_threshold",
    "willow_correct",
    "category_prompt_name",
    "run_pfwillow",
]

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


#: Keypoint slots per image in Hedlin et al.'s PF-WILLOW loader (their ``max_pts``); unused slots hold -1.
HEDLIN_SLOTS = 40

#: The two PF-WILLOW protocols of the published numbers.
WILLOW_PROTOCOLS: dict[str, PckProtocol] = {
    "dift": PckProtocol(
        "dift", "target", None,
        "distance <= alpha * max(w, h) of the bounding box of the TARGET's keypoints, in the images' original pixels",
        "DIFT (Tang et al. 2023): its PF-WILLOW PCK@0.1 per image (alpha of the keypoint box)",
    ),
    "hedlin": PckProtocol(
        "hedlin", "target", HEDLIN_SPACE,
        "images and points rescaled to 512x512; distance <= alpha * max(x_max, y_max) + 1 of the TARGET's "
        "keypoints in that space (the authors' keypoint box, its minimum taken over -1-padded slots)",
        "Hedlin et al. 2023 (optimised-prompt attention), PF-Willow per image: 53.0 @0.05, 84.3 @0.1",
    ),
}


def hedlin_willow_threshold(trg_kps: np.ndarray, trg_size: tuple[float, float], *, space: int = HEDLIN_SPACE,
                            slots: int = HEDLIN_SLOTS) -> float:
    """Hedlin et al.'s PF-WILLOW threshold (before alpha) of a pair, in the ``space`` x ``space`` rescaling.

    Their loader rescales the target's keypoints with the target's size
    ``trg_size`` = (W, H), pads the unused keypoint slots (``slots`` in all)
    with -1, and takes ``max`` over the axes of (max - min) over ALL slots, so
    the minimum includes the -1 padding: for keypoints inside the image the
    threshold is ``max(x_max, y_max) + 1``, not the keypoint box's extent.
    """
    k = rescale_points(trg_kps, trg_size, space)
    if len(k) < slots:
        k = np.concatenate([k, np.full((slots - len(k), 2), -1.0)])
    return float((k.max(axis=0) - k.min(axis=0)).max())


def willow_correct(protocol: PckProtocol | str, pred: np.ndarray, gt: np.ndarray, trg_size: tuple[float, float],
                   alphas: Sequence[float] = ALPHAS) -> dict[float, np.ndarray]:
    """PCK of one PF-WILLOW pair under ``protocol`` (a name of :data:`WILLOW_PROTOCOLS`).

    ``pred``, ``gt``: (N, 2) target points in the target's original pixels;
    ``trg_size``: the target's (W, H).
    """
    proto = WILLOW_PROTOCOLS[protocol] if isinstance(protocol, str) else protocol
    if proto.name == "hedlin":
        thr = hedlin_willow_threshold(gt, trg_size, space=proto.space or HEDLIN_SPACE)
    else:
        thr = box_threshold(keypoint_box(gt), trg_size, proto.space)
    return pck_correct(rescale_points(pred, trg_size, proto.space), rescale_points(gt, trg_size, proto.space),
                       alphas=alphas, threshold=thr)


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


def _score_group(pairs: Sequence[WillowPair], result: Any, names: Sequence[str]) -> list[list[Any]]:
    """A subset's csv rows (``result``: its :class:`~vidprop.eval.pair_predict.GroupResult`): pair, category,
    points, then each protocol's correct counts per alpha."""
    part = []
    for p, pred, (h, w) in zip(pairs, result.predictions, result.target_hw):
        row = [p.name, p.category, len(p.src_kps)]
        for name in names:
            correct = willow_correct(name, pred, p.trg_kps, (w, h))
            row += [int(correct[a].sum()) for a in ALPHAS]
        part.append(row)
    return part


def _score_protocols(rows: Sequence[Sequence[Any]], names: Sequence[str]) -> dict[str, dict[str, Any]]:
    """Each protocol's scores, its headline PCK per image (both papers publish it on PF-WILLOW)."""
    scored = summarise_protocols(rows, names, WILLOW_PROTOCOLS, 1, 2, 3)
    for block in scored.values():
        block["headline"] = "per image (the mean over pairs)"
        block["headline_values"] = block["overall"]["per_image"]
    return scored


def run_pfwillow(
    matcher: Any,
    root: str | Path,
    out: str | Path,
    *,
    limit: int | None = None,
    categories: Sequence[str] | None = None,
    use_category_prompt: bool = True,
    attention: Any = None,
    protocols: str | Sequence[str] | None = None,
    progress: bool = False,
    overwrite: bool = False,
    engine: EngineOptions | None = None,
) -> dict[str, Any]:
    """Match every source keypoint of every pair and score PCK (resumable per subset; see :mod:`vidprop.eval.runs`).

    ``matcher``: a :class:`~vidprop.tasks.match.PairMatcher`, or the
    TaskConfig to load one from or a picklable callable that builds one (in
    each engine worker); each image is encoded once per subset (a joint
    backbone encodes each pair together).  ``attention``: an
    :class:`~vidprop.features.attention.AttentionMatcher` to score Hedlin et
    al.'s method instead (``matcher`` is then unused; on Ray, a picklable
    callable that builds one in each worker).
    ``engine``: where subsets run (default: in this process, one after the
    other; ``EngineOptions(kind="ray")``: spread over Ray workers, each
    loading the model once; the scores are the same).

    ``protocols``: names of :data:`WILLOW_PROTOCOLS`, or "both" (default: the
    method's own: "dift" for DIFT, "hedlin" for the attention method).  The
    first is the summary's main ``overall`` / ``per_category``; each is under
    ``protocols`` with its description and the published numbers it compares to.
    """
    method = "attention" if attention is not None else "dift"
    names = resolve_protocols(method, protocols)
    elsewhere = check_engine(engine, matcher, attention)
    if elsewhere:
        root = Path(root).resolve()  # the workers read the images
    pairs = read_pfwillow(root, limit=limit, categories=categories)
    out = Path(out)
    main = WILLOW_PROTOCOLS[names[0]]
    header = ["pair", "category", "points"] + protocol_header(names)
    groups: dict[str, list[WillowPair]] = {}
    for p in pairs:
        groups.setdefault(p.category, []).append(p)
    names_of = list(groups)

    def unit(g: int) -> GroupUnit:
        cat = names_of[g]
        return GroupUnit(cat, category_prompt_name(cat) if use_category_prompt else None,
                         tuple(PairJob(p.src_path, p.trg_path, p.src_kps) for p in groups[cat]))

    def score(g: int, result: GroupResult) -> list[list[Any]]:
        return _score_group(groups[names_of[g]], result, names)

    def record(info: dict[str, Any]) -> dict[str, Any]:
        return run_record("PF-WILLOW", root, recorded_model(info, attention), pairs=len(pairs), limit=limit,
                          categories=list(categories or []),
                          category_prompt=use_category_prompt if attention is None else None,
                          protocols=names, threshold=main.description, alphas=list(ALPHAS))

    t0 = time.perf_counter()
    bar = progress_bar(total=len(pairs), desc="PF-WILLOW", unit="pair", enabled=progress, leave=True)
    try:
        run = run_groups(out, [(c, len(m)) for c, m in groups.items()], unit, score, header=header, record=record,
                         matcher=matcher, attention=attention, engine=engine, elsewhere=elsewhere,
                         overwrite=overwrite, bar=bar)
    finally:
        bar.close()
    info, encoded, matched = run.info, run.encoded, run.matched
    rows = [row for part in run.parts for row in part]
    order = {p.name: i for i, p in enumerate(pairs)}
    rows.sort(key=lambda r: order[r[0]])
    scored = _score_protocols(rows, names)
    summary: dict[str, Any] = {
        "benchmark": "PF-WILLOW",
        "method": method,
        "protocol": names[0],
        "headline": "per_image PCK@0.1" if names[0] == "dift" else "per_image PCK@0.05 and @0.1",
        "threshold": main.description,
        "compare_to": main.compare_to,
        "overall": scored[names[0]]["overall"],
        "per_category": scored[names[0]]["per_category"],
        "protocols": scored,
        "units": "percent",
        "dtype": info["dtype"],
        "images_encoded_this_run": encoded,
        "points_matched_this_run": matched,
        "seconds": round(time.perf_counter() - t0, 2),
    }
    summary.update(method_settings(info, attention))
    pck = summary["overall"]["per_image"].get("0.1", math.nan)
    log.info("PF-WILLOW: %d pairs, PCK@0.1 per image (%s protocol) %.2f", len(rows), names[0], pck)
    write_results(out, *_with_pck(rows, names), summary)
    return summary


def _with_pck(rows: Sequence[Sequence[Any]], names: Sequence[str]) -> tuple[list[str], list[list[Any]]]:
    """pairs.csv: per protocol, its correct counts then its PCK (percent) per alpha, as eval spair writes."""
    header = ["pair", "category", "points"]
    for name in names:
        header += protocol_header([name]) + protocol_header([name], kind="pck")
    out = []
    for r in rows:
        n, row = int(r[2]), list(r[:3])
        for k in range(len(names)):
            counts = [int(c) for c in r[3 + k * len(ALPHAS): 3 + (k + 1) * len(ALPHAS)]]
            row += counts + [f"{100.0 * c / n:.2f}" if n else "" for c in counts]
        out.append(row)
    return header, out
