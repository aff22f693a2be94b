"""PCK: the protocols of the published pair benchmarks and their maths, shared by SPair-71k, PF-WILLOW and CUB.

A :class:`PckProtocol` says whose box sets the threshold and in which
coordinate space points are compared (docs/static-pairs.md); :data:`PCK_PROTOCOLS`
holds SPair-71k's (DIFT's, Hedlin et al.'s, sd-dino's).  :func:`protocol_correct`
scores one pair under a protocol; :func:`summarise_pck` turns per-pair
results into the summary's blocks (per image, per point, per category, the
mean over categories); rows of per-alpha counts (a run's parts read back)
become results again with :func:`counts_to_records`.

    correct = protocol_correct("dift", pred, gt, src_box=None, trg_box=box, src_size=(W, H), trg_size=(W, H))
    summary = summarise_pck([("cat", correct)])
"""

from __future__ import annotations

import math
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable, Sequence

import numpy as np

from vidprop.errors import ConfigError, InputError
from vidprop.eval.sddino_pck import category_mean, sd_dino_correct

__all__ = [
    "ALPHAS",
    "HEDLIN_SPACE",
    "PckProtocol",
    "PCK_PROTOCOLS",
    "default_protocol",
    "resolve_protocols",
    "check_protocol_boxes",
    "rescale_points",
    "box_threshold",
    "pck_correct",
    "protocol_correct",
    "pck_block",
    "summarise_pck",
    "counts_to_records",
    "protocol_header",
    "summarise_protocols",
]

#: PCK thresholds (fractions of the larger side of the protocol's bounding box).
ALPHAS = (0.05, 0.1, 0.15)
#: Hedlin et al.'s evaluation space: every image (with its points) rescaled to this side, aspect ratio not kept.
HEDLIN_SPACE = 512


@dataclass(frozen=True)
class PckProtocol:
    """How a PCK number is scored: whose box sets the threshold, and in which coordinate space.

    ``box``: "source" or "target" (the pair's image whose bounding box is used);
    ``space``: ``None`` for each image's original pixels, or N when every image
    (with its points and boxes) is rescaled to N x N, aspect ratio not kept.
    """

    name: str
    box: str
    space: int | None
    description: str
    compare_to: str


#: The two SPair-71k protocols of the published numbers.
PCK_PROTOCOLS: dict[str, PckProtocol] = {
    "dift": PckProtocol(
        "dift", "target", None,
        "distance <= alpha * max(h, w) of the TARGET box, in the images' original pixels",
        "DIFT (Tang et al. 2023), SPair-71k test PCK@0.1 per image: DIFT_sd 52.9, DINO 33.9, OpenCLIP 38.4",
    ),
    "hedlin": PckProtocol(
        "hedlin", "source", 512,
        "images and points rescaled to 512x512; distance <= alpha * max(h, w) of the SOURCE box in that space",
        "Hedlin et al. 2023 (optimised-prompt attention), SPair-71k test per image: 28.9 @0.05, 45.4 @0.1",
    ),
    "sd-dino": PckProtocol(
        "sd-dino", "target", 840,
        "Zhang et al.'s (sd-dino): target letterboxed to 840x840, the prediction snapped to the centre of its "
        "14-pixel patch, distance < alpha * max(h, w) of the TARGET box in that space (strict), points pooled "
        "per category, then the mean over categories (category_mean)",
        "Zhang et al. 2023 (SD + DINOv2, zero-shot), SPair-71k test PCK@0.1: 59.9 (category_mean; their script "
        "scores 20 random pairs per category: --sample 20)",
    ),
}


def default_protocol(method: str) -> str:
    """The protocol a method's published numbers used: Hedlin et al.'s for "attention", DIFT's otherwise."""
    return "hedlin" if method == "attention" else "dift"


def resolve_protocols(method: str, choice: str | Sequence[str] | None = None) -> list[str]:
    """Protocol names to score: the method's own (``None``), every protocol with the method's own first
    (``"both"``), or the ones named."""
    own = default_protocol(method)
    if choice is None:
        return [own]
    if choice == "both":
        return [own] + [n for n in ("dift", "hedlin") if n != own]
    names = [choice] if isinstance(choice, str) else list(choice)
    unknown = [n for n in names if n not in PCK_PROTOCOLS]
    if unknown or not names:
        raise ConfigError(f"unknown PCK protocol(s) {unknown}; known: {', '.join(PCK_PROTOCOLS)} (or both)")
    return list(dict.fromkeys(names))


def check_protocol_boxes(pairs: Sequence[Any], protocols: Sequence[str], folder: str | Path) -> None:
    """Raise :class:`InputError` naming the first annotation (in ``folder``) that lacks a box a protocol needs
    (``pairs``: SPair-71k pairs, with ``name`` and ``src_bbox``)."""
    if not any(PCK_PROTOCOLS[n].box == "source" for n in protocols):
        return
    missing = [p for p in pairs if p.src_bbox is None]
    if missing:
        users = "/".join(n for n in protocols if PCK_PROTOCOLS[n].box == "source")
        raise InputError(f"{Path(folder) / (missing[0].name + '.json')}: no src_bndbox, which the {users} PCK "
                         f"protocol needs ({len(missing)} pair(s) lack it)")


def rescale_points(points: np.ndarray, image_size: tuple[float, float], space: int | None) -> np.ndarray:
    """(N, 2) pixel points (x, y) of a ``image_size`` = (W, H) image, in a ``space`` x ``space`` rescaling
    of it (``x * space / W``, ``y * space / H``); unchanged when ``space`` is None."""
    pts = np.asarray(points, dtype=np.float64).reshape(-1, 2)
    if space is None:
        return pts.copy()
    w, h = (float(v) for v in image_size)
    return pts * np.array([space / w, space / h])


def box_threshold(box: Sequence[float], image_size: tuple[float, float] | None = None,
                  space: int | None = None) -> float:
    """max(width, height) of the box ``(x1, y1, x2, y2)`` of a ``image_size`` = (W, H) image, measured
    after rescaling that image to ``space`` x ``space`` (in its own pixels when ``space`` is None)."""
    x1, y1, x2, y2 = (float(v) for v in box)
    sx = sy = 1.0
    if space is not None:
        if image_size is None:
            raise ValueError("box_threshold: image_size is needed to rescale a box to a space")
        sx, sy = space / float(image_size[0]), space / float(image_size[1])
    return max((x2 - x1) * sx, (y2 - y1) * sy)


def pck_correct(pred: np.ndarray, gt: np.ndarray, bbox: Sequence[float] | None = None,
                alphas: Sequence[float] = ALPHAS, *, threshold: float | None = None) -> dict[float, np.ndarray]:
    """Per point: distance(pred, gt) <= alpha * threshold.

    The threshold is ``threshold`` when given, else max(box height, box width)
    of ``bbox`` (DIFT's protocol passes the TARGET box; see
    :func:`protocol_correct` for the protocols).
    """
    pred = np.asarray(pred, dtype=np.float64).reshape(-1, 2)
    gt = np.asarray(gt, dtype=np.float64).reshape(-1, 2)
    if threshold is None:
        if bbox is None:
            raise ValueError("pck_correct: give a bbox or a threshold")
        threshold = box_threshold(bbox)
    dist = np.linalg.norm(pred - gt, axis=1)
    return {float(a): dist <= a * float(threshold) for a in alphas}


def protocol_correct(protocol: PckProtocol | str, pred: np.ndarray, gt: np.ndarray, *,
                     src_box: Sequence[float] | None, trg_box: Sequence[float] | None,
                     src_size: tuple[float, float], trg_size: tuple[float, float],
                     alphas: Sequence[float] = ALPHAS) -> dict[float, np.ndarray]:
    """PCK of one pair under ``protocol`` (a :class:`PckProtocol` or a name of :data:`PCK_PROTOCOLS`).

    ``pred`` and ``gt``: (N, 2) target points in the target's original pixels;
    boxes ``(x1, y1, x2, y2)`` in their own image's original pixels; sizes (W, H).
    Points are moved to the protocol's space with the target's size, the box
    with its own image's size.
    """
    proto = PCK_PROTOCOLS[protocol] if isinstance(protocol, str) else protocol
    box, size = (src_box, src_size) if proto.box == "source" else (trg_box, trg_size)
    if box is None:
        raise ValueError(f"the {proto.name} PCK protocol needs the {proto.box} bounding box")
    if proto.name == "sd-dino":
        return sd_dino_correct(pred, gt, box, size, alphas, size=proto.space or 840)
    thr = box_threshold(box, size, proto.space)
    return pck_correct(rescale_points(pred, trg_size, proto.space), rescale_points(gt, trg_size, proto.space),
                       alphas=alphas, threshold=thr)


def pck_block(records: list[tuple[str, dict[float, np.ndarray]]], alphas: Sequence[float]) -> dict[str, Any]:
    """The PCK block of some pairs' results: pairs, points, PCK per image and per point (percent) per alpha."""
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
    pair's fraction correct) and "per point" (all correct / all points); overall also
    "category_mean" (the mean over categories of their per-point PCK, sd-dino's figure).

    ``records``: (category, {alpha: correct bool array}) per pair.
    """
    records = list(records)
    by_cat: dict[str, list] = defaultdict(list)
    for cat, c in records:
        by_cat[cat].append((cat, c))
    per_category = {cat: pck_block(r, alphas) for cat, r in sorted(by_cat.items())}
    overall = pck_block(records, alphas)
    overall["category_mean"] = category_mean(per_category)  # mean over categories of their per-point PCK
    return {"overall": overall, "per_category": per_category}


def counts_to_records(rows: Sequence[Sequence[Any]], group_col: int, n_col: int, first_count: int,
                      alphas: Sequence[float] = ALPHAS) -> list[tuple[str, dict[float, np.ndarray]]]:
    """Rows holding per-alpha counts of correct points -> (group, {alpha: bool array}) for summarise_pck."""
    out = []
    for r in rows:
        n = int(r[n_col])
        out.append((str(r[group_col]), {float(a): np.arange(n) < int(r[first_count + i]) for i, a in enumerate(alphas)}))
    return out


def protocol_header(names: Sequence[str], alphas: Sequence[float] = ALPHAS, kind: str = "correct") -> list[str]:
    """Column names ``<protocol>:<kind>@<alpha>`` for each protocol, then each alpha."""
    return [f"{n}:{kind}@{a:g}" for n in names for a in alphas]


def summarise_protocols(rows: Sequence[Sequence[Any]], names: Sequence[str], protocols: dict[str, PckProtocol],
                        group_col: int, n_col: int, first_count: int,
                        alphas: Sequence[float] = ALPHAS) -> dict[str, dict[str, Any]]:
    """Per protocol (rows hold each protocol's per-alpha counts one after the other, from ``first_count``):
    its description, the published numbers it compares to, and :func:`summarise_pck` of its counts."""
    out = {}
    for k, name in enumerate(names):
        proto = protocols[name]
        out[name] = {"description": proto.description, "compare_to": proto.compare_to,
                     **summarise_pck(counts_to_records(rows, group_col, n_col, first_count + k * len(alphas), alphas),
                                     alphas)}
    return out
