"""SPair-71k (semantic correspondence, PCK): the dataset reader, its worker and the run.

The protocols are those of the published evaluations (docs/static-pairs.md;
:mod:`vidprop.eval.pck`): PCK under DIFT's protocol (target box, original
image size), Hedlin et al.'s (images and points rescaled to 512x512, source
box) and sd-dino's.  Pairs run one category at a time on
:func:`~vidprop.eval.pair_predict.run_groups` (resumable per category; each
image is encoded once per category) and the results are written atomically:

    OUT/pairs.csv      one row per pair
    OUT/summary.json   the scores (percent), overall and per category

    from vidprop.eval.spair import run_spair
    summary = run_spair(PairMatcher.from_pretrained(config="semantic"), "SPair-71k/", "runs/spair")
"""

from __future__ import annotations

import dataclasses
import functools
import json
import logging
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np

from vidprop.engine import EngineOptions
from vidprop.errors import ConfigError, InputError
from vidprop.eval.pair_models import attention_info, dtype_name, load_attention_matcher, load_matcher, recorded_model
from vidprop.eval.pair_predict import FeatureCache, GroupRows, check_engine, round_and_clip, run_groups
from vidprop.eval.pck import (
    ALPHAS,
    PCK_PROTOCOLS,
    check_protocol_boxes,
    counts_to_records,
    pck_block,
    protocol_correct,
    resolve_protocols,
    summarise_pck,
)
from vidprop.eval.records import run_record
from vidprop.eval.runs import write_results
from vidprop.progress import progress_bar

__all__ = ["SpairPair", "read_spair", "spair_differences", "SpairWorker", "spair_header", "run_spair"]

log = logging.getLogger(__name__)


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

    def _row(self, p: SpairPair, pred: np.ndarray, src_hw: tuple[int, int], trg_hw: tuple[int, int]) -> list[Any]:
        """A pair's csv row: name, category, points, then per protocol its correct counts and PCK per alpha."""
        n = len(p.src_kps)
        row = [p.name, p.category, n]
        for name in self.protocols:
            correct = protocol_correct(name, pred, p.trg_kps, src_box=p.src_bbox, trg_box=p.trg_bbox,
                                       src_size=(src_hw[1], src_hw[0]), trg_size=(trg_hw[1], trg_hw[0]))
            row += [int(correct[a].sum()) for a in ALPHAS] + [
                f"{100.0 * correct[a].mean():.2f}" if n else "" for a in ALPHAS]
        return row

    def __call__(self, pairs: Sequence[SpairPair]) -> GroupRows:
        """The csv row per pair of one category's pairs, and the images encoded."""
        from vidprop.io.images import read_image
        from vidprop.tasks.match import prompt_for, semantic_argmax

        cache = FeatureCache(self._encode)
        images: dict[str, np.ndarray] = {}
        rows: list[list[Any]] = []
        for p in pairs:
            if self.attention is None and getattr(self.matcher, "joint", False):  # a pair backbone: both images together
                src, trg = read_image(p.src_path, exif_transpose=False), read_image(p.trg_path, exif_transpose=False)
                text = prompt_for(self.matcher.config.extractor.prompt, p.category if self.use_category_prompt else None)
                fs, ft = self.matcher.pair_features(src, trg, prompt=text)
                src_hw, trg_hw = src.shape[:2], trg.shape[:2]
                pred, _, _ = semantic_argmax(fs, ft, src_hw, trg_hw, round_and_clip(p.src_kps, src_hw))
            elif self.attention is None:
                fs, src_hw = cache.get(f"{p.category}\0{p.src_path}", p.category)
                ft, trg_hw = cache.get(f"{p.category}\0{p.trg_path}", p.category)
                src_kps = round_and_clip(p.src_kps, src_hw)
                pred, _, _ = semantic_argmax(fs, ft, src_hw, trg_hw, src_kps)
            else:
                for path in (p.src_path, p.trg_path):
                    if str(path) not in images:
                        images[str(path)] = read_image(path, exif_transpose=False)
                src, trg = images[str(p.src_path)], images[str(p.trg_path)]
                src_hw, trg_hw = src.shape[:2], trg.shape[:2]
                pred = self.attention.match(src, trg, round_and_clip(p.src_kps, src_hw)).target_points
            rows.append(self._row(p, pred, src_hw, trg_hw))
            if self.on_pair is not None:
                self.on_pair()
        return GroupRows(rows, cache.computed)


def spair_header(names: Sequence[str]) -> list[str]:
    """pairs.csv's columns: pair, category, points, then per protocol its correct counts and PCK per alpha."""
    header = ["pair", "category", "points"]
    for name in names:
        header += [f"{name}:correct@{a:g}" for a in ALPHAS] + [f"{name}:pck@{a:g}" for a in ALPHAS]
    return header


def spair_records(rows: Sequence[Sequence[Any]], k: int) -> list[tuple[str, dict[float, np.ndarray]]]:
    """Protocol ``k``'s records from SPair rows (fresh or read back from a part): per protocol a row holds its
    counts of correct points, then its PCK, per alpha."""
    return counts_to_records(rows, 1, 2, 3 + 2 * k * len(ALPHAS))


def _read_pairs(root: str | Path, split: str, limit: int | None, categories: Sequence[str] | None,
                sample: int | None, names: Sequence[str]) -> list[SpairPair]:
    """The pairs to score (sd-dino's sample of them with ``sample``), each protocol's boxes checked."""
    pairs = read_spair(root, split, limit=limit, categories=categories)
    if sample is not None:
        from vidprop.eval.sddino_pck import sample_pairs

        if sample < 1:
            raise ConfigError(f"--sample must be >= 1, got {sample}")
        pairs = sample_pairs(pairs, sample)
    check_protocol_boxes(pairs, names, Path(root) / "PairAnnotation" / split)
    return pairs


def _category_units(pairs: Sequence[SpairPair]) -> dict[str, list[int]]:
    """Pair indices per category, the categories sorted (each is one group of the run)."""
    order = sorted(range(len(pairs)), key=lambda i: (pairs[i].category, i))  # group by category
    units: dict[str, list[int]] = {}
    for i in order:
        units.setdefault(pairs[i].category, []).append(i)
    return units


def _summary(names: Sequence[str], rows: Sequence[Sequence[Any]], info: dict[str, Any], method: str,
             differences: list[str], split: str) -> dict[str, Any]:
    """summary.json of a run (without its encoded count and time): every protocol's scores, the first one's as
    the main ``overall`` / ``per_category``, what ran."""
    scored = {}
    for k, name in enumerate(names):
        proto = PCK_PROTOCOLS[name]
        scored[name] = {"description": proto.description, "compare_to": proto.compare_to,
                        **summarise_pck(spair_records(rows, k))}
    main = scored[names[0]]
    return {
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
        "dtype": info["dtype"],
    }


def _method_block(info: dict[str, Any], attention: Any) -> dict[str, Any]:
    """The summary's record of what ran: the DIFT TaskConfig, or the attention settings."""
    if attention is None:
        return {"config": info["config"].to_dict()}
    return {"attention": dataclasses.asdict(info["settings"]) if dataclasses.is_dataclass(
        info.get("settings")) else None}


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

    ``protocols``: names of :data:`~vidprop.eval.pck.PCK_PROTOCOLS` to score, or "both"
    (default: the method's own, "dift" for DIFT and "hedlin" for the attention
    method; see :func:`~vidprop.eval.pck.resolve_protocols`).  The
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
    pairs = _read_pairs(root, split, limit, categories, sample, names)
    units = _category_units(pairs)
    cats = list(units)
    rows: list[list[Any]] = [None] * len(pairs)  # type: ignore[list-item]
    header = spair_header(names)
    t0 = time.perf_counter()
    bar = progress_bar(total=len(pairs), desc="SPair-71k", unit="pair", enabled=progress, leave=True)

    def score(g: int, result: GroupRows) -> list[list[Any]]:
        for i, row in zip(units[cats[g]], result.rows):
            rows[i] = row
        if progress:
            done_rows = [r for r in rows if r is not None]
            bar.set_postfix_str(f"PCK@0.1 ({names[0]}) "
                                f"{pck_block(spair_records(done_rows, 0), (0.1,))['per_image']['0.1']:.1f}")
        return result.rows

    def record(info: dict[str, Any]) -> dict[str, Any]:
        return run_record("SPair-71k", root, recorded_model(info, attention), split=split, pairs=len(pairs),
                          limit=limit, categories=list(categories or []),
                          category_prompt=use_category_prompt if attention is None else None,
                          protocols=names, alphas=list(ALPHAS), sample=sample)

    worker = functools.partial(SpairWorker, matcher, protocols=names, use_category_prompt=use_category_prompt,
                               attention=attention, on_pair=None if elsewhere else (lambda: bar.update(1)))
    try:
        run = run_groups(Path(out), [(c, len(units[c])) for c in cats], lambda g: [pairs[i] for i in units[cats[g]]],
                         score, header=header, record=record, matcher=matcher, attention=attention, engine=engine,
                         elsewhere=elsewhere, overwrite=overwrite, bar=bar, worker=worker)
    finally:
        bar.close()
    for g, cat in enumerate(cats):  # the groups read back from their parts
        for i, row in zip(units[cat], run.parts[g]):
            rows[i] = row
    info = run.info
    differences = spair_differences(
        method, info.get("settings") if attention is not None else info["config"], split=split,
        limit=limit, categories=categories, use_category_prompt=use_category_prompt, dtype=info["dtype"])
    if sample is not None:
        differences.append(f"{sample} pairs per category drawn as sd-dino's script draws them (seed 42)")
    summary = _summary(names, rows, info, method, differences, split)
    summary.update({"images_encoded_this_run": run.encoded, "seconds": round(time.perf_counter() - t0, 2)})
    summary.update(_method_block(info, attention))
    write_results(out, header, rows, summary)
    return summary
