"""CUB-200-2011 keypoint transfer, as DIFT and as Hedlin et al. evaluated it: two layouts, two PCK protocols.

Two dataset layouts are read (``root`` decides, see :func:`cub_layout`):

* ``subsets`` -- DIFT's: Neural Congealing's 14 subsets (the output of their
  ``prepare_data.py --cub_acsm``), drawn from ACSM's cleaned CUB validation
  set, each image cropped around its bird box (grown by 5 % of its size on
  each side, then squared) and resized to 256x256, its 15 part keypoints
  moved with it.  Every pair of a subset is scored in both directions::

      cub_subsets/cub_subset_0/images/img_000.png ...   (sorted by name: image i of the subset)
      cub_subsets/cub_subset_0/pck/keypoints.pt          torch tensor (N, 15, 3): x, y, visible

* ``release`` -- Hedlin et al.'s: the CUB_200_2011 release itself
  (``images.txt``, ``train_test_split.txt``, ``image_class_labels.txt``,
  ``parts/part_locs.txt``, ``bounding_boxes.txt``, ``images/``).  As their
  loader: the test images of classes 1..``classes`` (3 in their code), every
  unordered pair of a class once (images.txt order, the earlier image the
  source), at the photos' own size.

A point counts only where it is visible in both images.  The protocols
(docs/static-pairs.md):

* ``dift``: correct within ``alpha * max(H, W)`` of the TARGET image, in
  its own pixels; per point per group (subset / class), then the mean over
  the groups (the figure DIFT published, on the subsets layout).
* ``hedlin``: images and points rescaled to 512x512 (``x * 512 / W``,
  ``y * 512 / H``); correct within ``alpha * max(w, h) * 512 / W`` of the
  TARGET's bird box (its width and height both scaled by the target's
  ``512 / W``, as their code does); PCK per image, the mean over pairs (the
  figure Hedlin et al. published, on the release layout).  The subsets
  layout keeps no box: its crop IS the box grown by 10 % and squared, so the
  box's larger side is taken as the crop side / 1.1 (:data:`SUBSET_BOX_FRACTION`).

    from vidprop.eval.cub import run_cub
    summary = run_cub(PairMatcher.from_pretrained(config="semantic"), "cub_subsets/", "runs/cub")
    summary = run_cub(None, "CUB_200_2011/", "runs/cub-att", attention=AttentionMatcher.from_pretrained())
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

from vidprop.engine import EngineOptions
from vidprop.errors import ConfigError, InputError
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
    "CubSubset",
    "CUB_PROTOCOLS",
    "SUBSET_BOX_FRACTION",
    "PUBLISHED_CLASSES",
    "cub_layout",
    "read_cub",
    "read_cub_release",
    "cub_pairs",
    "group_pairs",
    "hedlin_cub_threshold",
    "cub_correct",
    "run_cub",
]

log = logging.getLogger(__name__)

#: The bird box's larger side over the crop's side in Neural Congealing's subsets: ACSM's crop grows the box
#: by 5 % of its width / height on each side, then squares it, so the larger side is 1 / 1.1 of the crop's.
SUBSET_BOX_FRACTION = 1 / 1.1
#: Classes of Hedlin et al.'s CUB evaluation: their loader's default ``num_classes`` (classes 1..3).
PUBLISHED_CLASSES = 3

_DIFT_DESC = "distance <= alpha * max(H, W) of the TARGET image, in its own pixels"
_HEDLIN_DESC = ("images and points rescaled to 512x512; distance <= alpha * max(w, h) of the TARGET's bird box "
                "times 512 / W (the target's width scale for both sides)")

#: The protocols per layout ("subsets" / "release"), with the published numbers each compares to.
CUB_PROTOCOLS: dict[str, dict[str, PckProtocol]] = {
    "subsets": {
        "dift": PckProtocol(
            "dift", "target", None, _DIFT_DESC + " (the 256x256 bird crop)",
            "DIFT (Tang et al. 2023): its CUB-200-2011 PCK@0.1 (Neural Congealing's 14 subsets, the mean over "
            "subsets of per-point PCK)"),
        "hedlin": PckProtocol(
            "hedlin", "target", HEDLIN_SPACE,
            _HEDLIN_DESC + "; the box's larger side taken as the crop's side / 1.1 (the crop is the box grown 5 % a "
            "side and squared)",
            "no published number: Hedlin et al.'s CUB-200 61.6 / 77.5 are on the CUB_200_2011 release's test "
            "pairs (give the release folder as the root)"),
    },
    "release": {
        "dift": PckProtocol(
            "dift", "target", None, _DIFT_DESC,
            "no published number: DIFT's CUB figure is on Neural Congealing's 14 subsets (give their folder as "
            "the root)"),
        "hedlin": PckProtocol(
            "hedlin", "target", HEDLIN_SPACE, _HEDLIN_DESC,
            "Hedlin et al. 2023 (optimised-prompt attention), CUB-200 per image: 61.6 @0.05, 77.5 @0.1 (test "
            "images of classes 1-3)"),
    },
}

#: How each protocol aggregates its numbers into the published figure.
_HEADLINE = {"dift": "mean over groups of per-point PCK", "hedlin": "per image (the mean over pairs)"}


@dataclass(frozen=True)
class CubSubset:
    """A group of images whose pairs are scored: a subset (``cub_subset_<k>``) or a class of the release."""

    name: str  # cub_subset_<k>, or the class folder (001.Black_footed_Albatross)
    images: tuple[Path, ...]
    keypoints: np.ndarray  # (N, K, 3): x, y, visible
    boxes: np.ndarray | None = None  # (N, 4): x, y, w, h of each bird box (release layout only)
    both_directions: bool = True  # subsets: (i, j) and (j, i); release: each unordered pair once, i < j


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
                         "(Neural Congealing's prepare_data.py --cub_acsm) or be the CUB_200_2011 release")
    found = {}
    for d in root.iterdir():
        if d.is_dir() and d.name.startswith("cub_subset_") and d.name[len("cub_subset_"):].isdigit():
            found[int(d.name[len("cub_subset_"):])] = d
    if not found:
        raise InputError(f"{root}: no cub_subset_<k>/ folders (each with images/ and pck/keypoints.pt), and not "
                         "the CUB_200_2011 release (no images.txt)")
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


def cub_layout(root: str | Path) -> tuple[str, Path]:
    """("release", the CUB_200_2011 folder) when ``root`` is the release (or holds it), else ("subsets", root)."""
    root = Path(root)
    for folder in (root, root / "CUB_200_2011"):
        if (folder / "images.txt").is_file():
            return "release", folder
    return "subsets", root


def _table(path: Path, columns: int, kinds: Sequence[type]) -> list[list[Any]]:
    """Whitespace-separated rows of ``columns`` values (the release's text files), converted by ``kinds``."""
    if not path.is_file():
        raise InputError(f"{path}: not found; the CUB_200_2011 release folder must hold images.txt, "
                         "train_test_split.txt, image_class_labels.txt, bounding_boxes.txt and parts/part_locs.txt")
    rows = []
    with open(path) as f:
        for line_no, line in enumerate(f, start=1):
            parts = line.split()
            if not parts:
                continue
            if len(parts) != columns:
                raise InputError(f"{path}, line {line_no}: expected {columns} values, got {len(parts)}")
            try:
                rows.append([kind(v) for kind, v in zip(kinds, parts)])
            except ValueError as exc:
                raise InputError(f"{path}, line {line_no}: not a number ({exc})") from None
    return rows


def read_cub_release(root: str | Path, *, classes: int = PUBLISHED_CLASSES, split: str = "test") -> list[CubSubset]:
    """The classes 1..``classes`` of the CUB_200_2011 release, as Hedlin et al.'s loader reads them.

    Each class is one group: its ``split`` images ("test": those with
    ``is_training_image`` 0) in images.txt order, their 15 part keypoints
    from ``parts/part_locs.txt`` (x, y, visible; in the photo's pixels) and
    their boxes from ``bounding_boxes.txt`` (x, y, w, h).
    """
    _, folder = cub_layout(root)
    if not (folder / "images.txt").is_file():
        raise InputError(f"{Path(root) / 'images.txt'}: not found; --root must be the CUB_200_2011 release folder")
    if split not in ("test", "train"):
        raise ConfigError(f"unknown CUB split {split!r}; use test or train")
    if classes < 1:
        raise ConfigError(f"classes must be >= 1, got {classes}")
    names = {i: n for i, n in _table(folder / "images.txt", 2, (int, str))}
    training = {i: t for i, t in _table(folder / "train_test_split.txt", 2, (int, int))}
    labels = {i: c for i, c in _table(folder / "image_class_labels.txt", 2, (int, int))}
    boxes = {r[0]: r[1:] for r in _table(folder / "bounding_boxes.txt", 5, (int, float, float, float, float))}
    parts: dict[int, list[list[float]]] = {}
    for img, part, x, y, vis in _table(folder / "parts" / "part_locs.txt", 5, (int, int, float, float, float)):
        parts.setdefault(img, []).append([part, x, y, vis])
    known = max(labels.values(), default=0)
    if classes > known:
        raise ConfigError(f"{folder / 'image_class_labels.txt'}: {classes} classes asked, the release has {known}")
    groups = []
    for c in range(1, classes + 1):
        ids = [i for i in names if labels.get(i) == c and training.get(i, -1) == (0 if split == "test" else 1)]
        for i in ids:
            for table, what in ((boxes, "bounding_boxes.txt"), (parts, "parts/part_locs.txt")):
                if i not in table:
                    raise InputError(f"{folder / what}: no entry for image {i} ({names[i]})")
        if len(ids) < 2:
            raise InputError(f"{folder}: class {c} has {len(ids)} {split} image(s); a class needs at least 2")
        kps = np.zeros((len(ids), max(len(parts[i]) for i in ids), 3))
        for k, i in enumerate(ids):
            for part, x, y, vis in parts[i]:
                kps[k, int(part) - 1] = (x, y, vis)
        images = tuple(folder / "images" / names[i] for i in ids)
        missing = [p for p in images if not p.is_file()]
        if missing:
            raise InputError(f"{missing[0]}: image not found ({len(missing)} of class {c} missing)")
        groups.append(CubSubset(Path(names[ids[0]]).parent.name or f"class_{c:03d}", images, kps,
                                np.asarray([boxes[i] for i in ids], dtype=np.float64), both_directions=False))
    return groups


def cub_pairs(n: int) -> list[tuple[int, int]]:
    """Every ordered pair of distinct images: each unordered pair in both directions, (i, j) then (j, i)."""
    return [p for i, j in itertools.combinations(range(n), 2) for p in ((i, j), (j, i))]


def group_pairs(group: CubSubset) -> list[tuple[int, int]]:
    """The (source, target) pairs of a group: both directions for a subset, once (i < j) for a release class."""
    n = len(group.images)
    return cub_pairs(n) if group.both_directions else list(itertools.combinations(range(n), 2))


def hedlin_cub_threshold(box_wh: Sequence[float], trg_size: tuple[float, float], space: int = HEDLIN_SPACE) -> float:
    """Hedlin et al.'s CUB threshold (before alpha): ``max(w, h)`` of the target's box times ``space / W``
    of the target's size ``trg_size`` = (W, H) -- the width scale for both sides, as their code does."""
    return max(float(box_wh[0]), float(box_wh[1])) * space / float(trg_size[0])


def cub_correct(protocol: PckProtocol | str, pred: np.ndarray, gt: np.ndarray, trg_size: tuple[float, float],
                trg_box: Sequence[float] | None = None, *, layout: str = "subsets",
                alphas: Sequence[float] = ALPHAS) -> dict[float, np.ndarray]:
    """PCK of one CUB pair under ``protocol`` (a name of :data:`CUB_PROTOCOLS` [``layout``]).

    ``pred``, ``gt``: (N, 2) target points in the target's pixels; ``trg_size``:
    its (W, H); ``trg_box``: its bird box (x, y, w, h), which the hedlin
    protocol needs on the release layout (on the subsets layout the crop
    stands for it: its sides times :data:`SUBSET_BOX_FRACTION`).
    """
    proto = CUB_PROTOCOLS[layout][protocol] if isinstance(protocol, str) else protocol
    w, h = (float(v) for v in trg_size)
    if proto.name == "hedlin":
        if layout == "subsets":
            box_wh = (w * SUBSET_BOX_FRACTION, h * SUBSET_BOX_FRACTION)
        elif trg_box is None:
            raise ValueError("the hedlin CUB protocol needs the target's bounding box")
        else:
            box_wh = (float(trg_box[2]), float(trg_box[3]))
        thr = hedlin_cub_threshold(box_wh, trg_size, proto.space or HEDLIN_SPACE)
    else:
        thr = max(w, h)
    return pck_correct(rescale_points(pred, trg_size, proto.space), rescale_points(gt, trg_size, proto.space),
                       alphas=alphas, threshold=thr)


def _read_groups(root: str | Path, subsets: Sequence[int] | None, classes: int) -> tuple[str, list[CubSubset]]:
    """The layout of ``root`` and its groups: the subsets picked, or the release's classes 1..``classes``."""
    layout, folder = cub_layout(root)
    if layout == "release":
        if subsets is not None:
            raise ConfigError(f"{root} is the CUB_200_2011 release: pick classes (--classes N), not subsets")
        return layout, read_cub_release(folder, classes=classes)
    return layout, read_cub(root, subsets=subsets)


def _visible(s: CubSubset, i: int, j: int) -> np.ndarray:
    """The keypoints visible in both images ``i`` and ``j`` of a group."""
    return (s.keypoints[i, :, 2] > 0) & (s.keypoints[j, :, 2] > 0)


def _score_group(s: CubSubset, result: GroupResult, names: Sequence[str], layout: str) -> list[list[Any]]:
    """A group's csv rows: group, source, target, points, then each protocol's correct counts per alpha."""
    part = []
    for (i, j), pred, (h, w) in zip(group_pairs(s), result.predictions, result.target_hw):
        vis = _visible(s, i, j)
        row = [s.name, s.images[i].name, s.images[j].name, int(vis.sum())]
        for name in names:
            correct = cub_correct(name, pred, s.keypoints[j, vis, :2], (w, h),
                                  None if s.boxes is None else s.boxes[j], layout=layout)
            row += [int(correct[a].sum()) for a in ALPHAS]
        part.append(row)
    return part


def _score_protocols(rows: Sequence[Sequence[Any]], names: Sequence[str], table: dict[str, PckProtocol],
                     groups_word: str) -> dict[str, dict[str, Any]]:
    """Each protocol's scores (:func:`~vidprop.eval.pck.summarise_protocols`), with the mean over groups of
    their per-point PCK and the figure its paper published (the headline)."""
    scored = summarise_protocols(rows, names, table, 0, 3, 4)
    for name, block in scored.items():
        per_group = block["per_category"]
        block["mean_over_groups"] = {f"{a:g}": float(np.mean([v["per_point"][f"{a:g}"] for v in per_group.values()]))
                                     for a in ALPHAS}
        block["headline"] = _HEADLINE[name].replace("groups", groups_word)
        block["headline_values"] = block["mean_over_groups"] if name == "dift" else block["overall"]["per_image"]
    return scored


def run_cub(
    matcher: Any,
    root: str | Path,
    out: str | Path,
    *,
    subsets: Sequence[int] | None = None,
    classes: int = PUBLISHED_CLASSES,
    category_prompt: str | None = "bird",
    attention: Any = None,
    protocols: str | Sequence[str] | None = None,
    progress: bool = False,
    overwrite: bool = False,
    engine: EngineOptions | None = None,
) -> dict[str, Any]:
    """Transfer every visible keypoint between the pairs of each group and score PCK (resumable per group).

    ``root``: Neural Congealing's subsets folder (``subsets`` picks some) or
    the CUB_200_2011 release (``classes``: classes 1..N, 3 as Hedlin et al.);
    see :func:`cub_layout`.  ``matcher``: a PairMatcher (DIFT features, each
    image encoded once per group), or the TaskConfig to load one from or a
    picklable callable that builds one (in each engine worker);
    ``attention``: Hedlin et al.'s AttentionMatcher instead (on Ray, a
    picklable callable that builds one in each worker).  ``engine``: where groups run (default: in this process;
    ``EngineOptions(kind="ray")``: over Ray workers, the same scores).  ``category_prompt``: the category put in the
    preset's prompt template ("a photo of a {category}"); None for the
    template's empty case.  ``protocols``: names of :data:`CUB_PROTOCOLS`, or
    "both" (default: the method's own, "dift" for DIFT, "hedlin" for attention).
    """
    method = "attention" if attention is not None else "dift"
    names = resolve_protocols(method, protocols)
    elsewhere = check_engine(engine, matcher, attention)
    if elsewhere:
        root = Path(root).resolve()  # the workers read the images
    layout, data = _read_groups(root, subsets, classes)
    table = CUB_PROTOCOLS[layout]
    main = table[names[0]]
    group_word, groups_word = ("subset", "subsets") if layout == "subsets" else ("class", "classes")
    out = Path(out)
    n_pairs = sum(len(group_pairs(s)) for s in data)
    extra: dict[str, Any] = {"layout": layout, "subsets" if layout == "subsets" else "classes": [s.name for s in data]}
    header = [group_word, "source", "target", "points"] + protocol_header(names)

    def unit(g: int) -> GroupUnit:
        s = data[g]
        return GroupUnit(s.name, category_prompt, tuple(
            PairJob(s.images[i], s.images[j], s.keypoints[i, _visible(s, i, j), :2]) for i, j in group_pairs(s)))

    def score(g: int, result: GroupResult) -> list[list[Any]]:
        return _score_group(data[g], result, names, layout)

    def record(info: dict[str, Any]) -> dict[str, Any]:
        return run_record("CUB-200-2011", root, recorded_model(info, attention), **extra, pairs=n_pairs,
                          category_prompt=category_prompt if attention is None else None, protocols=names,
                          threshold=main.description, visibility="points visible in both images", alphas=list(ALPHAS))

    t0 = time.perf_counter()
    bar = progress_bar(total=n_pairs, desc="CUB", unit="pair", enabled=progress, leave=True)
    try:
        run = run_groups(out, [(s.name, len(group_pairs(s))) for s in data], unit, score, header=header,
                         record=record, matcher=matcher, attention=attention, engine=engine, elsewhere=elsewhere,
                         overwrite=overwrite, bar=bar)
    finally:
        bar.close()
    info, encoded, matched = run.info, run.encoded, run.matched
    rows = [row for part in run.parts for row in part]
    scored = _score_protocols(rows, names, table, groups_word)
    first = scored[names[0]]
    summary: dict[str, Any] = {
        "benchmark": "CUB-200-2011 (Neural Congealing's 14 subsets)" if layout == "subsets"
        else f"CUB-200-2011 (the release, test images of classes 1-{classes})",
        "layout": layout,
        "method": method,
        "protocol": names[0],
        "headline": first["headline"],
        "headline_values": first["headline_values"],
        f"mean_over_{groups_word}": first["mean_over_groups"],
        "threshold": main.description,
        "compare_to": main.compare_to,
        "overall": first["overall"],
        "per_category": first["per_category"],
        "protocols": scored,
        "units": "percent",
        "dtype": info["dtype"],
        "images_encoded_this_run": encoded,
        "points_matched_this_run": matched,
        "seconds": round(time.perf_counter() - t0, 2),
    }
    if layout == "release":
        summary["classes"] = classes
    summary.update(method_settings(info, attention))
    log.info("CUB: %d %s, %d pairs, %s @0.1 (%s protocol) %.2f", len(data), groups_word, len(rows), first["headline"],
             names[0], first["headline_values"].get("0.1", math.nan))
    write_results(out, header, rows, summary)
    return summary
