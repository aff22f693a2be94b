"""SPair-71k (semantic, PCK) and HPatches (geometric, homography accuracy) evaluation.

The protocols are those of the published evaluations (docs/static-pairs.md):
PCK under DIFT's protocol (target box, original image size) and under Hedlin
et al.'s (images and points rescaled to 512x512, source box), HPatches as
DIFT's evaluation (SuperPoint keypoint files or SIFT, the 108 sequences left
by the standard download).  Each dataset reader sits next to its metric; the
runners compute every image's features once (a per-image cache, cleared when
the category / sequence changes, so memory stays bounded) and write their
results atomically:

    OUT/pairs.csv      one row per pair
    OUT/summary.json   the scores (percent), overall and per category / sequence kind

    from vidprop.eval.pairs import run_spair, run_hpatches
    summary = run_spair(PairMatcher.from_pretrained(config="semantic"), "SPair-71k/", "runs/spair")
"""

from __future__ import annotations

import dataclasses
import functools
import json
import logging
import math
import time
import warnings
from collections import OrderedDict, defaultdict
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterable, Sequence

import numpy as np

from vidprop.engine import EngineOptions, open_engine
from vidprop.eval.pair_models import (
    attention_info,
    dtype_name,
    is_loaded_attention,
    is_loaded_matcher,
    load_attention_matcher,
    load_matcher,
    recorded_model,
    wants_gpu,
)
from vidprop.eval.runs import load_part, save_part, start_run, write_results
from vidprop.eval.runs import run_record as runs_record
from vidprop.errors import ConfigError, InputError
from vidprop.progress import progress_bar

__all__ = [
    "check_engine",
    "counts_to_records",
    "ALPHAS",
    "THRESHOLDS",
    "PckProtocol",
    "PCK_PROTOCOLS",
    "HIGH_RES_SEQUENCES",
    "SpairPair",
    "HpatchesSequence",
    "read_spair",
    "rescale_points",
    "box_threshold",
    "pck_correct",
    "protocol_correct",
    "default_protocol",
    "resolve_protocols",
    "check_protocol_boxes",
    "summarise_pck",
    "read_hpatches",
    "read_keypoint_file",
    "hpatches_keypoints",
    "read_homography",
    "hpatches_differences",
    "spair_differences",
    "corner_error",
    "homography_accuracy",
    "run_spair",
    "run_hpatches",
    "SpairWorker",
    "HpatchesWorker",
]

log = logging.getLogger(__name__)

#: PCK thresholds (fractions of the larger side of the protocol's bounding box).
ALPHAS = (0.05, 0.1, 0.15)
#: Homography accuracy thresholds (mean corner error, pixels).
THRESHOLDS = (1, 3, 5)
#: HPatches sequences with images larger than 1600x1200, which the standard download script
#: (D2-Net's, used by DIFT's evaluation) deletes: the published numbers are over the other 108.
HIGH_RES_SEQUENCES = ("i_contruction", "i_crownnight", "i_dc", "i_pencils", "i_whitebuilding",
                      "v_artisans", "v_astronautis", "v_talent")


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
    src_bbox: tuple[float, float, float, float] | None = None  # x1, y1, x2, y2 (Hedlin et al.'s threshold)


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
            src_bbox = tuple(float(v) for v in d["src_bndbox"]) if d.get("src_bndbox") is not None else None
            if src_bbox is not None and len(src_bbox) != 4:
                raise ValueError("src_bndbox must have 4 numbers")
            if len(src_kps) != len(trg_kps):
                raise ValueError(f"{len(src_kps)} src_kps but {len(trg_kps)} trg_kps")
            pairs.append(SpairPair(f.stem, cat, _image_path(root, cat, d["src_imname"]),
                                   _image_path(root, cat, d["trg_imname"]), src_kps, trg_kps, bbox,
                                   src_bbox))
        except (KeyError, ValueError, TypeError) as exc:
            raise InputError(f"{f}: not a valid SPair-71k pair annotation ({type(exc).__name__}: {exc})") from None
        if limit is not None and len(pairs) >= limit:
            break
    if not pairs:
        raise InputError(f"{folder}: no pairs" + (f" of categories {sorted(wanted)}" if wanted else ""))
    return pairs


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


def check_protocol_boxes(pairs: Sequence["SpairPair"], protocols: Sequence[str], folder: str | Path) -> None:
    """Raise :class:`InputError` naming the first annotation (in ``folder``) that lacks a box a protocol needs."""
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
        from vidprop.eval.sddino_pck import sd_dino_correct

        return sd_dino_correct(pred, gt, box, size, alphas, size=proto.space or 840)
    thr = box_threshold(box, size, proto.space)
    return pck_correct(rescale_points(pred, trg_size, proto.space), rescale_points(gt, trg_size, proto.space),
                       alphas=alphas, threshold=thr)


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
    pair's fraction correct) and "per point" (all correct / all points); overall also
    "category_mean" (the mean over categories of their per-point PCK, sd-dino's figure).

    ``records``: (category, {alpha: correct bool array}) per pair.
    """
    records = list(records)
    by_cat: dict[str, list] = defaultdict(list)
    for cat, c in records:
        by_cat[cat].append((cat, c))
    from vidprop.eval.sddino_pck import category_mean

    per_category = {cat: _pck_block(r, alphas) for cat, r in sorted(by_cat.items())}
    overall = _pck_block(records, alphas)
    overall["category_mean"] = category_mean(per_category)  # mean over categories of their per-point PCK
    return {"overall": overall, "per_category": per_category}


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


def spair_differences(method: str, config: Any, *, split: str = "test", limit: int | None = None,
                      categories: Sequence[str] | None = None, use_category_prompt: bool = True,
                      dtype: str | None = None) -> list[str]:
    """How a run differs from the published SPair-71k run of ``method`` (empty: it is that run).

    ``config``: the DIFT TaskConfig, or for "attention" the AttentionSettings
    (the paper's unless changed; batch size and seed do not count)."""
    out = []
    if split != "test":
        out.append(f"split {split} instead of test")
    if limit is not None:
        out.append(f"only the first {limit} pair(s)")
    if categories:
        out.append(f"only the categories {', '.join(categories)}")
    if method == "attention":
        from vidprop.features.attention import AttentionSettings

        if config is not None:
            paper = dataclasses.replace(AttentionSettings(), batch_size=config.batch_size, seed=config.seed)
            changed = [f.name for f in dataclasses.fields(paper) if getattr(paper, f.name) != getattr(config, f.name)]
            if changed:
                out.append(f"attention settings changed from the paper's: {', '.join(changed)}")
    else:
        if not getattr(config, "published", False):
            out.append(f"settings changed from a published preset ({getattr(config, 'name', '?')})")
        if not use_category_prompt:
            out.append("no category prompt")
    if dtype is not None and dtype != "float32":
        out.append(f"computed in {dtype} instead of the authors' float32")
    return out


class SpairWorker:
    """Matches and scores SPair-71k pairs one category at a time; built once per engine worker.

    ``matcher``: a loaded :class:`~vidprop.tasks.match.PairMatcher`, or the
    TaskConfig a worker loads one from; ``attention``: an AttentionMatcher to
    score Hedlin et al.'s method instead (in-process only).  Each image is
    encoded once per category.
    """

    def __init__(self, matcher: Any, *, protocols: Sequence[str], use_category_prompt: bool = True,
                 attention: Any = None, on_pair: Callable[[], None] | None = None) -> None:
        if attention is None:
            matcher = load_matcher(matcher)
        else:
            attention = load_attention_matcher(attention)
        self.matcher, self.attention = matcher, attention
        self.protocols = list(protocols)
        self.use_category_prompt = use_category_prompt
        self.on_pair = on_pair

    def info(self) -> dict[str, Any]:
        if self.attention is not None:
            return attention_info(self.attention)
        return {"config": self.matcher.config, "dtype": dtype_name(self.matcher),
                "revision": getattr(getattr(self.matcher, "extractor", None), "model_revision", None)}

    def _encode(self, key: str) -> tuple[Any, tuple[int, int]]:
        from vidprop.io.images import read_image
        from vidprop.tasks.match import image_index, prompt_for

        cat, path = key.split("\0")
        img = read_image(path, exif_transpose=False)
        text = prompt_for(self.matcher.config.extractor.prompt, cat if self.use_category_prompt else None)
        return self.matcher.features(img, index=image_index(f"{cat}/{Path(path).name}"), prompt=text), img.shape[:2]

    def __call__(self, pairs: Sequence[SpairPair]) -> tuple[list[list[Any]], int]:
        """(csv row per pair, images encoded) of one category's pairs."""
        from vidprop.io.images import read_image
        from vidprop.tasks.match import prompt_for, semantic_argmax

        cache = _FeatureCache(self._encode)
        images: dict[str, np.ndarray] = {}
        rows: list[list[Any]] = []
        for p in pairs:
            if self.attention is None and getattr(self.matcher, "joint", False):  # a pair backbone: both images together
                src, trg = read_image(p.src_path, exif_transpose=False), read_image(p.trg_path, exif_transpose=False)
                text = prompt_for(self.matcher.config.extractor.prompt, p.category if self.use_category_prompt else None)
                fs, ft = self.matcher.pair_features(src, trg, prompt=text)
                src_hw, trg_hw = src.shape[:2], trg.shape[:2]
                pred, _, _ = semantic_argmax(fs, ft, src_hw, trg_hw, _clip_points(p.src_kps, src_hw))
            elif self.attention is None:
                fs, src_hw = cache.get(f"{p.category}\0{p.src_path}", p.category)
                ft, trg_hw = cache.get(f"{p.category}\0{p.trg_path}", p.category)
                src_kps = _clip_points(p.src_kps, src_hw)
                pred, _, _ = semantic_argmax(fs, ft, src_hw, trg_hw, src_kps)
            else:
                for path in (p.src_path, p.trg_path):
                    if str(path) not in images:
                        images[str(path)] = read_image(path, exif_transpose=False)
                src, trg = images[str(p.src_path)], images[str(p.trg_path)]
                src_hw, trg_hw = src.shape[:2], trg.shape[:2]
                pred = self.attention.match(src, trg, _clip_points(p.src_kps, src_hw)).target_points
            n = len(p.src_kps)
            row = [p.name, p.category, n]
            for name in self.protocols:
                correct = protocol_correct(name, pred, p.trg_kps, src_box=p.src_bbox, trg_box=p.trg_bbox,
                                           src_size=(src_hw[1], src_hw[0]), trg_size=(trg_hw[1], trg_hw[0]))
                row += [int(correct[a].sum()) for a in ALPHAS] + [
                    f"{100.0 * correct[a].mean():.2f}" if n else "" for a in ALPHAS]
            rows.append(row)
            if self.on_pair is not None:
                self.on_pair()
        return rows, cache.computed


def check_engine(engine: EngineOptions | None, matcher: Any, attention: Any) -> bool:
    """Whether groups run on another engine than this process; refuses a loaded model there (it cannot travel
    to Ray workers: give a TaskConfig or a picklable callable that builds the matcher in each worker)."""
    elsewhere = engine is not None and engine.kind != "sequential"
    if elsewhere and (is_loaded_attention(attention) if attention is not None else is_loaded_matcher(matcher)):
        raise ConfigError("on Ray workers, give the matcher's TaskConfig or a callable that builds it (each "
                          "worker calls it once), not a loaded model")
    return elsewhere


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
    protocols: str | Sequence[str] | None = None,
    progress: bool = False,
    overwrite: bool = False,
    engine: EngineOptions | None = None,
    sample: int | None = None,
) -> dict[str, Any]:
    """Match every source keypoint of every pair and score PCK.

    ``matcher``: a :class:`~vidprop.tasks.match.PairMatcher` (DIFT, the
    "semantic" preset), or the TaskConfig to load one from or a picklable
    callable that builds one (in each engine worker); each image is encoded once per category (pairs are processed
    grouped by category).  ``attention``: an
    :class:`~vidprop.features.attention.AttentionMatcher` (or, on Ray, a
    picklable callable that builds one in each worker) to score Hedlin et
    al.'s method instead (no feature cache: it optimises per point).
    ``engine``: where categories run (default: in this process, one after
    the other; ``EngineOptions(kind="ray")``: spread over Ray workers, each
    loading the model once; the scores are the same).

    ``protocols``: names of :data:`PCK_PROTOCOLS` to score, or "both"
    (default: the method's own, "dift" for DIFT and "hedlin" for the attention
    method; see :func:`resolve_protocols`).  The
    first is the summary's main ``overall`` / ``per_category``; every protocol
    is under ``protocols`` with its description and the published numbers it
    compares to.  ``sample``: score N pairs per category drawn as sd-dino's
    script draws them (seed 42, with replacement; :func:`~vidprop.eval.sddino_pck.sample_pairs`).
    """

    method = "attention" if attention is not None else "dift"
    names = resolve_protocols(method, protocols)
    elsewhere = check_engine(engine, matcher, attention)
    if elsewhere:
        root = Path(root).resolve()  # the workers read the images
    out = Path(out)
    pairs = read_spair(root, split, limit=limit, categories=categories)
    if sample is not None:
        from vidprop.eval.sddino_pck import sample_pairs

        if sample < 1:
            raise ConfigError(f"--sample must be >= 1, got {sample}")
        pairs = sample_pairs(pairs, sample)
    check_protocol_boxes(pairs, names, Path(root) / "PairAnnotation" / split)
    order = sorted(range(len(pairs)), key=lambda i: (pairs[i].category, i))  # group by category
    units: dict[str, list[int]] = {}
    for i in order:
        units.setdefault(pairs[i].category, []).append(i)
    rows: list[list[Any]] = [None] * len(pairs)  # type: ignore[list-item]
    header = ["pair", "category", "points"]
    for name in names:
        header += [f"{name}:correct@{a:g}" for a in ALPHAS] + [f"{name}:pck@{a:g}" for a in ALPHAS]
    encoded = 0
    t0 = time.perf_counter()
    bar = progress_bar(total=len(pairs), desc="SPair-71k", unit="pair", enabled=progress, leave=True)
    factory = functools.partial(SpairWorker, matcher, protocols=names, use_category_prompt=use_category_prompt,
                                attention=attention, on_pair=None if elsewhere else (lambda: bar.update(1)))
    try:
        with open_engine(factory, engine, max_rows=len(units), wants_gpu=wants_gpu(matcher)) as eng:
            info = eng.info
            start_run(out, runs_record("SPair-71k", root, recorded_model(info, attention), split=split,
                                       pairs=len(pairs), limit=limit, categories=list(categories or []),
                                       category_prompt=use_category_prompt if attention is None else None,
                                       protocols=names, alphas=list(ALPHAS), sample=sample), overwrite=overwrite)
            todo = []
            for cat, members in units.items():
                done = load_part(out, cat)
                if done is not None and len(done) == len(members):
                    for i, row in zip(members, done):
                        rows[i] = row
                    bar.update(len(members))
                else:
                    todo.append(cat)
            for outcome in eng.map([[pairs[i] for i in units[cat]] for cat in todo]):
                if outcome.error is not None:
                    raise outcome.error
                cat = todo[outcome.index]
                unit_rows, n_enc = outcome.value
                encoded += n_enc
                for i, row in zip(units[cat], unit_rows):
                    rows[i] = row
                save_part(out, cat, header, unit_rows)
                if elsewhere:
                    bar.update(len(unit_rows))
                if progress:
                    done_rows = [r for r in rows if r is not None]
                    bar.set_postfix_str(f"PCK@0.1 ({names[0]}) "
                                        f"{_pck_block(_spair_records(done_rows, 0), (0.1,))['per_image']['0.1']:.1f}")
    finally:
        bar.close()
    records = {name: _spair_records(rows, k) for k, name in enumerate(names)}
    scored = {}
    for name in names:
        proto = PCK_PROTOCOLS[name]
        scored[name] = {"description": proto.description, "compare_to": proto.compare_to,
                        **summarise_pck(records[name])}
    main = scored[names[0]]
    dtype = info["dtype"]
    config = info["config"]
    differences = spair_differences(
        method, info.get("settings") if attention is not None else config, split=split,
        limit=limit, categories=categories, use_category_prompt=use_category_prompt, dtype=dtype)
    if sample is not None:
        differences.append(f"{sample} pairs per category drawn as sd-dino's script draws them (seed 42)")
    summary: dict[str, Any] = {
        "benchmark": "SPair-71k",
        "split": split,
        "method": method,
        "published": not differences,
        "differences_from_published": differences,
        "protocol": names[0],
        "threshold": main["description"],
        "compare_to": main["compare_to"],
        "overall": main["overall"],
        "per_category": main["per_category"],
        "protocols": scored,
        "units": "percent",
        "dtype": dtype,
        "images_encoded_this_run": encoded,
        "seconds": round(time.perf_counter() - t0, 2),
    }
    if attention is None:
        summary["config"] = config.to_dict()
    else:
        summary["attention"] = dataclasses.asdict(info["settings"]) if dataclasses.is_dataclass(
            info.get("settings")) else None
    write_results(out, header, rows, summary)
    return summary


def counts_to_records(rows: Sequence[Sequence[Any]], group_col: int, n_col: int, first_count: int,
                      alphas: Sequence[float] = ALPHAS) -> list[tuple[str, dict[float, np.ndarray]]]:
    """Rows holding per-alpha counts of correct points -> (group, {alpha: bool array}) for summarise_pck."""
    out = []
    for r in rows:
        n = int(r[n_col])
        out.append((str(r[group_col]), {float(a): np.arange(n) < int(r[first_count + i]) for i, a in enumerate(alphas)}))
    return out


def _spair_records(rows: Sequence[Sequence[Any]], k: int) -> list[tuple[str, dict[float, np.ndarray]]]:
    """Protocol ``k``'s records from SPair rows (fresh or read back from a part): per protocol a row holds its
    counts of correct points, then its PCK, per alpha."""
    return counts_to_records(rows, 1, 2, 3 + 2 * k * len(ALPHAS))


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


def read_hpatches(root: str | Path, *, limit: int | None = None,
                  include_high_res: bool = False) -> list[HpatchesSequence]:
    """Sequences ``root/<seq>/{1..6}.ppm`` with ``H_1_2 .. H_1_6`` (sorted by name), first ``limit`` only.

    Only illumination (``i_``) and viewpoint (``v_``) sequences are read
    (others are skipped with a warning).  The 8 high-resolution sequences of
    :data:`HIGH_RES_SEQUENCES`, which the standard download removes, are
    skipped with a warning naming them unless ``include_high_res`` (then the
    results do not compare to the published ones, and a warning says so).
    """
    root = Path(root)
    if not root.is_dir():
        raise InputError(f"{root}: no such folder; --root must be hpatches-sequences-release/")
    folders = sorted(p for p in root.iterdir() if p.is_dir() and (p / "H_1_2").exists())
    other = [d.name for d in folders if _kind(d.name) == "other"]
    if other:
        log.warning("%s: skipping %d folder(s) that are neither i_ nor v_ sequences: %s", root, len(other),
                    ", ".join(other))
    high = [d.name for d in folders if d.name in HIGH_RES_SEQUENCES]
    if high and not include_high_res:
        log.warning("%s: skipping the %d high-resolution sequence(s) the standard HPatches download removes "
                    "(as the published evaluations do): %s", root, len(high), ", ".join(high))
    elif high:
        log.warning("%s: including the high-resolution sequence(s) %s; the published numbers exclude them",
                    root, ", ".join(high))
    seqs = []
    for d in folders:
        if _kind(d.name) == "other" or (d.name in HIGH_RES_SEQUENCES and not include_high_res):
            continue
        images = tuple(_find_image(d, i) for i in range(1, 7))
        hs = tuple(read_homography(d / f"H_1_{i}") for i in range(2, 7))
        seqs.append(HpatchesSequence(d.name, _kind(d.name), images, hs))
        if limit is not None and len(seqs) >= limit:
            break
    if not seqs:
        raise InputError(f"{root}: no HPatches sequences (i_* / v_* folders with 1.ppm ... 6.ppm and "
                         "H_1_2 ... H_1_6)")
    return seqs


def read_keypoint_file(path: str | Path) -> np.ndarray:
    """Keypoints of one image from a text file of ``x y`` rows (pixels), as DIFT's HPatches evaluation
    reads its SuperPoint ``.kp`` files: float32 values, duplicate rows removed (``np.unique`` over rows,
    which also sorts them by x then y -- the order the matching then sees).  Returns (N, 2) float64."""
    path = Path(path)
    if not path.is_file():
        raise InputError(f"{path}: keypoint file not found")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # an empty file: handled below
            kps = np.loadtxt(path, dtype=np.float32, ndmin=2)
    except (OSError, ValueError) as exc:
        raise InputError(f"{path}: not a keypoint file of 'x y' rows ({exc})") from None
    if kps.size == 0:
        raise InputError(f"{path}: no keypoints in this file")
    if kps.shape[1] != 2 or not np.all(np.isfinite(kps)):
        raise InputError(f"{path}: a keypoint file must hold rows of 2 finite numbers 'x y', got {kps.shape[1]} "
                         "column(s)")
    return np.unique(kps, axis=0).astype(np.float64)


def hpatches_keypoints(folder: str | Path, sequence: str, index: int) -> np.ndarray:
    """The keypoints of image ``index`` (1..6) of ``sequence`` from ``folder/<sequence>-<index>.kp`` (the
    layout of the SuperPoint keypoints DIFT's evaluation was run with), duplicates removed."""
    return read_keypoint_file(Path(folder) / f"{sequence}-{index}.kp")


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
    """Percent of pairs with mean corner error <= e, for all / illumination / viewpoint pairs
    ("all" = the illumination and viewpoint pairs; any other kind is left out)."""
    errors = np.asarray(errors, dtype=np.float64)
    kinds = np.asarray(kinds)
    out: dict[str, Any] = {}
    for group, mask in (("all", (kinds == "illumination") | (kinds == "viewpoint")),
                        ("illumination", kinds == "illumination"),
                        ("viewpoint", kinds == "viewpoint")):
        e = errors[mask]
        out[group] = {"pairs": int(mask.sum()),
                      **{f"{t:g}px": (100.0 * float(np.mean(e <= t)) if len(e) else math.nan) for t in thresholds}}
    return out


def hpatches_differences(config: Any, keypoints: str | Path | None, include_high_res: bool, method: str,
                         threshold: float, limit: int | None = None, dtype: str | None = None,
                         distance: str = "cosine") -> list[str]:
    """How a run differs from DIFT's published HPatches run (empty: it is that run); ``dtype``: the
    precision the features were computed in, when known.  The published matching (distance,
    estimator, threshold) is the preset's ``matching`` section (DIFT_sd: cosine + LMEDS, DIFT_adm:
    L2 + RANSAC, both at 3 px)."""
    out = []
    if limit is not None:
        out.append(f"only the first {limit} sequence(s)")
    if not getattr(config, "published", False):
        out.append(f"settings changed from a published preset ({getattr(config, 'name', '?')})")
    if keypoints is None:
        out.append("SIFT keypoints instead of the SuperPoint keypoint files")
    if include_high_res:
        out.append("the 8 high-resolution sequences included")
    m = getattr(config, "matching", None)
    want = (m.distance, m.homography, float(m.threshold)) if m is not None else ("cosine", "lmeds", 3.0)
    if (distance, method, float(threshold)) != want:
        out.append(f"{distance} matches and {method} at {threshold:g} px instead of the preset's "
                   f"{want[0]} and {want[1]} at {want[2]:g} px")
    if dtype is not None and dtype != "float32":
        out.append(f"features computed in {dtype} instead of the authors' float32")
    return out


class HpatchesWorker:
    """Scores HPatches sequences (image 1 against images 2..6); built once per engine worker.

    ``matcher``: a loaded :class:`~vidprop.tasks.match.PairMatcher`, or the
    TaskConfig a worker loads one from.
    """

    def __init__(self, matcher: Any, *, keypoints: str | Path | None = None, max_keypoints: int = 1000,
                 method: str | None = None, threshold: float | None = None, on_pair: Callable[[], None] | None = None,
                 distance: str | None = None) -> None:
        matcher = load_matcher(matcher)
        self.matcher = matcher
        self.keypoints = keypoints
        self.max_keypoints = max_keypoints
        m = matcher.config.matching  # None: the preset's published matching
        self.method = m.homography if method is None else method
        self.threshold = m.threshold if threshold is None else threshold
        self.distance = m.distance if distance is None else distance
        self.on_pair = on_pair
        self.text = matcher.prompt(None, None)

    def info(self) -> dict[str, Any]:
        return {"config": self.matcher.config, "dtype": dtype_name(self.matcher),
                "revision": getattr(getattr(self.matcher, "extractor", None), "model_revision", None)}

    def _encode(self, key: str) -> tuple[Any, np.ndarray, tuple[int, int]]:
        from vidprop.io.images import read_image
        from vidprop.tasks.match import detect_sift, image_index

        img = read_image(key, exif_transpose=False)
        seq, name = Path(key).parent.name, Path(key).name
        if self.keypoints is not None:
            kps = hpatches_keypoints(self.keypoints, seq, int(Path(key).stem))
        else:
            kps = detect_sift(img, self.max_keypoints)
        return self.matcher.features(img, index=image_index(f"{seq}/{name}"), prompt=self.text), kps, img.shape[:2]

    def __call__(self, seq: HpatchesSequence) -> tuple[list[list[Any]], int]:
        """(csv row per pair, images encoded) of one sequence; a row's last cell is the corner error."""
        from vidprop.tasks.match import geometric_match_features

        cache = _FeatureCache(self._encode)
        rows = []
        f1, k1, hw1 = cache.get(str(seq.images[0]), seq.name)
        for i in range(2, 7):
            fi, ki, hwi = cache.get(str(seq.images[i - 1]), seq.name)
            res = geometric_match_features(f1, fi, hw1, hwi, k1, ki, method=self.method, threshold=self.threshold,
                                           require_homography=False, convention="dift", distance=self.distance)
            err = corner_error(res.homography, seq.homographies[i - 2], hw1[1], hw1[0])
            n_in = int(res.inliers.sum()) if res.inliers is not None else 0
            rows.append([seq.name, seq.kind, i, len(k1), len(ki), len(res.source_points), n_in,
                         repr(float(err))])  # exact (the accuracy of a resumed run reads it back); "inf": no homography
            if self.on_pair is not None:
                self.on_pair()
        return rows, cache.computed


def run_hpatches(
    matcher: Any,
    root: str | Path,
    out: str | Path,
    *,
    limit: int | None = None,
    keypoints: str | Path | None = None,
    max_keypoints: int = 1000,
    include_high_res: bool = False,
    method: str | None = None,
    threshold: float | None = None,
    progress: bool = False,
    overwrite: bool = False,
    engine: EngineOptions | None = None,
    distance: str | None = None,
) -> dict[str, Any]:
    """Image 1 against images 2..6 of every sequence: keypoints, DIFT descriptors (the "geometric"
    preset) sampled as DIFT's evaluation samples them, mutual nearest neighbours, homography, corner error.

    ``matcher``: a :class:`~vidprop.tasks.match.PairMatcher`, or the TaskConfig
    to load one from or a picklable callable that builds one (in each engine
    worker).  ``keypoints``: a folder of
    ``<sequence>-<i>.kp`` files (the published runs
    used 1,000 SuperPoint keypoints per image), duplicates removed; without it,
    up to ``max_keypoints`` OpenCV SIFT keypoints.  Image 1's features and
    keypoints are computed once per sequence.  A pair where no homography can
    be fitted counts as wrong (error inf).  ``distance`` (cosine/l2), ``method``
    (lmeds/ransac), ``threshold``: None takes the config's ``matching`` section
    (hpatches-adm: DIFT's L2 + RANSAC command).  ``engine``: where sequences run
    (default: in this process; ``EngineOptions(kind="ray")``: spread over Ray
    workers, each loading the model once; the scores are the same).
    """

    elsewhere = check_engine(engine, matcher, None)
    if elsewhere:
        root = Path(root).resolve()
        keypoints = Path(keypoints).resolve() if keypoints is not None else None
    out = Path(out)
    seqs = read_hpatches(root, limit=limit, include_high_res=include_high_res)
    if keypoints is not None:
        kp_dir = Path(keypoints)
        if not kp_dir.is_dir():
            raise InputError(f"{kp_dir}: no such folder; --keypoints must hold <sequence>-<i>.kp files")
        for seq in seqs:  # fail before computing anything
            for i in range(1, 7):
                if not (kp_dir / f"{seq.name}-{i}.kp").is_file():
                    raise InputError(f"{kp_dir / f'{seq.name}-{i}.kp'}: keypoint file not found (--keypoints "
                                     "must hold <sequence>-<i>.kp for every image)")
    header = ["sequence", "kind", "image", "keypoints_1", "keypoints_i", "matches", "inliers", "corner_error"]
    encoded = 0
    t0 = time.perf_counter()
    bar = progress_bar(total=5 * len(seqs), desc="HPatches", unit="pair", enabled=progress, leave=True)
    factory = functools.partial(HpatchesWorker, matcher, keypoints=keypoints, max_keypoints=max_keypoints,
                                method=method, threshold=threshold, distance=distance,
                                on_pair=None if elsewhere else (lambda: bar.update(1)))
    parts: list[Any] = [None] * len(seqs)  # each sequence's rows
    try:
        with open_engine(factory, engine, max_rows=len(seqs), wants_gpu=wants_gpu(matcher)) as eng:
            info = eng.info
            m = info["config"].matching
            method = m.homography if method is None else method
            threshold = float(m.threshold if threshold is None else threshold)
            distance = m.distance if distance is None else distance
            start_run(out, runs_record(
                "HPatches", root, recorded_model(info), sequences=len(seqs), limit=limit,
                keypoints=str(Path(keypoints).resolve()) if keypoints is not None else None,
                max_keypoints=None if keypoints is not None else max_keypoints, include_high_res=include_high_res,
                homography={"method": method, "threshold": float(threshold)}, distance=distance), overwrite=overwrite)
            todo = []
            for k, seq in enumerate(seqs):
                done = load_part(out, seq.name)
                if done is not None and len(done) == 5:
                    parts[k] = done
                    bar.update(5)
                else:
                    todo.append(k)
            for outcome in eng.map([seqs[k] for k in todo]):
                if outcome.error is not None:
                    raise outcome.error
                k = todo[outcome.index]
                seq_rows, n_enc = outcome.value
                parts[k] = seq_rows
                encoded += n_enc
                save_part(out, seqs[k].name, header, seq_rows)
                if elsewhere:
                    bar.update(5)
    finally:
        bar.close()
    rows = [row for part in parts for row in part]
    errors = [float(r[7]) for r in rows]  # exact, also when read back from a part; inf: no homography fitted
    kinds = [str(r[1]) for r in rows]
    config, dtype = info["config"], info["dtype"]
    summary = homography_accuracy(errors, kinds)
    differences = hpatches_differences(config, keypoints, include_high_res, method, threshold, limit, dtype, distance)
    summary = {
        "benchmark": "HPatches",
        "published": not differences,
        "differences_from_published": differences,
        "metric": "percent of pairs whose mean corner error <= threshold",
        "accuracy": summary,
        "homography": {"method": method, "threshold": threshold},
        "distance": distance,
        "keypoints": {"source": "files", "folder": str(keypoints)} if keypoints is not None
        else {"source": "sift", "max_keypoints": max_keypoints},
        "high_res_sequences": "included" if include_high_res else "excluded",
        "dtype": dtype,
        "sequences": len(seqs),
        "images_encoded_this_run": encoded,
        "seconds": round(time.perf_counter() - t0, 2),
        "config": config.to_dict(),
    }
    write_results(out, header, rows, summary)
    return summary
