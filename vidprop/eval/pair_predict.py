"""Where source keypoints land in a target image, for the pair benchmarks that run one group at a time.

One :class:`PairPredictor` serves the pairs of one group (a PF-WILLOW subset,
a CUB subset or class) with either method:

* DIFT features (a :class:`~vidprop.tasks.match.PairMatcher`): each image is
  encoded once within the group (a joint backbone encodes each pair together);
  source points are rounded to pixels and clipped to the image, as DIFT's
  evaluation reads them; the match is the cosine argmax over the target.
* Hedlin et al.'s optimised-prompt attention (an
  :class:`~vidprop.features.attention.AttentionMatcher`): nothing is cached
  (it optimises per point); source points are passed as they are (floats),
  as the authors' evaluation passes them.

    predict = PairPredictor(matcher, prompt="a photo of a bird", group="cub_subset_0")
    pred = predict(src_path, src_image, trg_path, trg_image, points)   # (N, 2) x, y in target pixels

A :class:`GroupWorker` runs whole groups (:class:`GroupUnit`) on an engine
(:mod:`vidprop.engine`): in this process, or on Ray workers that each load the
matcher once; the driver scores what comes back, so the scores do not depend
on where the groups ran.  :func:`run_groups` is that whole resumable run
(record, finished groups read back, the others predicted, scored and saved);
a benchmark whose workers score their groups themselves (SPair-71k,
HPatches) gives its own ``worker`` returning :class:`GroupRows`.  Also here:
:func:`check_engine` (where groups run; a loaded model stays in this process),
:class:`FeatureCache` (per-image features of one group) and
:func:`method_settings` (what ran, for a summary).
"""

from __future__ import annotations

import dataclasses
import functools
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np

from vidprop.engine import EngineOptions, open_engine
from vidprop.errors import ConfigError
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
from vidprop.eval.runs import load_part, save_part, start_run

__all__ = ["PairPredictor", "round_and_clip", "PairJob", "GroupUnit", "GroupResult", "GroupRows", "GroupWorker",
           "recorded_model", "GroupRun", "run_groups", "check_engine", "FeatureCache", "method_settings"]


def check_engine(engine: EngineOptions | None, matcher: Any, attention: Any) -> bool:
    """Whether groups run on another engine than this process; refuses a loaded model there (it cannot travel
    to Ray workers: give a TaskConfig or a picklable callable that builds the matcher in each worker)."""
    elsewhere = engine is not None and engine.kind != "sequential"
    if elsewhere and (is_loaded_attention(attention) if attention is not None else is_loaded_matcher(matcher)):
        raise ConfigError("on Ray workers, give the matcher's TaskConfig or a callable that builds it (each "
                          "worker calls it once), not a loaded model")
    return elsewhere


class FeatureCache:
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


def method_settings(info: dict[str, Any], attention: Any) -> dict[str, Any]:
    """What ran, for the summary (from what the workers report): the DIFT TaskConfig, or the attention
    settings and model."""
    if attention is None:
        return {"config": info["config"].to_dict()}
    settings = info.get("settings")
    return {"attention": dataclasses.asdict(settings) if dataclasses.is_dataclass(settings) else None,
            "model": None if info.get("model_id") is None else str(info["model_id"])}


def round_and_clip(points: np.ndarray, hw: tuple[int, int]) -> np.ndarray:
    """(N, 2) points (x, y) rounded to pixels and clipped to an image of ``hw`` = (H, W)."""
    p = np.asarray(points, dtype=np.float64).reshape(-1, 2).round()
    p[:, 0] = p[:, 0].clip(0, hw[1] - 1)
    p[:, 1] = p[:, 1].clip(0, hw[0] - 1)
    return p


class PairPredictor:
    """Target points of source keypoints for the pairs of one group.

    Args:
        matcher: a PairMatcher (DIFT features); ignored when ``attention`` is given.
        attention: an AttentionMatcher to use Hedlin et al.'s method instead.
        prompt: the text prompt of the DIFT features.
        group: the group's name; an image's noise index is ``image_index("<group>/<file name>")``.
    """

    def __init__(self, matcher: Any = None, *, attention: Any = None, prompt: str = "", group: str = "") -> None:
        if matcher is None and attention is None:
            raise ValueError("PairPredictor needs a matcher or an attention matcher")
        self.matcher, self.attention = matcher, attention
        self.prompt, self.group = prompt, group
        self.cache: dict[str, Any] = {}
        self.encoded = 0  # images encoded (DIFT)
        self.points = 0  # points matched

    @property
    def method(self) -> str:
        return "attention" if self.attention is not None else "dift"

    def _features(self, path: Path, image: np.ndarray) -> Any:
        from vidprop.tasks.match import image_index

        key = str(path)
        if key not in self.cache:
            self.cache[key] = self.matcher.features(image, index=image_index(f"{self.group}/{Path(path).name}"),
                                                    prompt=self.prompt)
            self.encoded += 1
        return self.cache[key]

    def __call__(self, src_path: Path, src: np.ndarray, trg_path: Path, trg: np.ndarray,
                 points: np.ndarray) -> np.ndarray:
        """(N, 2) source points (x, y, source pixels) -> (N, 2) matches (x, y, target pixels)."""
        pts = np.asarray(points, dtype=np.float64).reshape(-1, 2)
        if len(pts) == 0:
            return pts.copy()
        self.points += len(pts)
        if self.attention is not None:
            return np.asarray(self.attention.match(src, trg, pts).target_points, dtype=np.float64).reshape(-1, 2)
        from vidprop.tasks.match import semantic_argmax

        if getattr(self.matcher, "joint", False):
            fs, ft = self.matcher.pair_features(src, trg, prompt=self.prompt)
            self.encoded += 2
        else:
            fs, ft = self._features(src_path, src), self._features(trg_path, trg)
        pred, _, _ = semantic_argmax(fs, ft, src.shape[:2], trg.shape[:2], round_and_clip(pts, src.shape[:2]))
        return pred


@dataclass(frozen=True)
class PairJob:
    """One pair of a group: the source keypoints to find in the target."""

    src: Path
    trg: Path
    points: np.ndarray  # (N, 2) x, y in source pixels


@dataclass(frozen=True)
class GroupUnit:
    """The pairs of one group, run by one worker with one feature cache.

    ``category``: the word put in the preset's prompt template ("a photo of a
    {category}"); None for the template's empty case.
    """

    group: str
    category: str | None
    jobs: tuple[PairJob, ...]


@dataclass(frozen=True)
class GroupResult:
    """Per job: the predicted target points (N, 2) and the target's (H, W); the group's counts."""

    predictions: list[np.ndarray]
    target_hw: list[tuple[int, int]]
    encoded: int
    matched: int


@dataclass(frozen=True)
class GroupRows:
    """What a worker that scores its own groups gives back: the group's csv rows and its counts."""

    rows: list[list[Any]]
    encoded: int
    matched: int = 0


class GroupWorker:
    """Predicts the pairs of one group at a time; built once per engine worker.

    ``matcher``: a loaded :class:`~vidprop.tasks.match.PairMatcher`, or the
    TaskConfig a worker loads one from, or a picklable callable that builds
    one; ``attention``: Hedlin et al.'s AttentionMatcher instead (or a
    picklable callable that builds one).  ``on_pair``: called after each pair
    (progress, in process).
    """

    def __init__(self, matcher: Any = None, *, attention: Any = None,
                 on_pair: Callable[[], None] | None = None) -> None:
        self.matcher = load_matcher(matcher) if attention is None else None
        self.attention = load_attention_matcher(attention) if attention is not None else None
        self.on_pair = on_pair

    def info(self) -> dict[str, Any]:
        if self.attention is not None:
            return attention_info(self.attention)
        ext = getattr(self.matcher, "extractor", None)
        return {"config": self.matcher.config, "dtype": dtype_name(self.matcher),
                "revision": getattr(ext, "model_revision", None)}

    def __call__(self, unit: GroupUnit) -> GroupResult:
        from vidprop.io.images import read_image
        from vidprop.tasks.match import prompt_for

        text = "" if self.attention is not None else prompt_for(self.matcher.config.extractor.prompt, unit.category)
        predict = PairPredictor(self.matcher, attention=self.attention, prompt=text, group=unit.group)
        images: dict[str, np.ndarray] = {}  # the group's images, read once

        def image(path: Path) -> np.ndarray:
            if str(path) not in images:
                images[str(path)] = read_image(path, exif_transpose=False)
            return images[str(path)]

        preds, sizes = [], []
        for job in unit.jobs:
            src, trg = image(job.src), image(job.trg)
            preds.append(predict(job.src, src, job.trg, trg, job.points))
            sizes.append((int(trg.shape[0]), int(trg.shape[1])))
            if self.on_pair is not None:
                self.on_pair()
        return GroupResult(preds, sizes, predict.encoded, predict.points)


@dataclass
class GroupRun:
    """What :func:`run_groups` gives back: each group's rows (in the order of the groups), what the workers
    reported (:meth:`GroupWorker.info`), and the images encoded and points matched in this run."""

    parts: list[list[list[Any]]]
    info: dict[str, Any]
    encoded: int
    matched: int


def run_groups(
    out: Path,
    groups: Sequence[tuple[str, int]],
    unit: Callable[[int], Any],
    score: Callable[[int, Any], list[list[Any]]],
    *,
    header: Sequence[str],
    record: Callable[[dict[str, Any]], dict[str, Any]],
    matcher: Any,
    attention: Any,
    engine: Any,
    elsewhere: bool,
    overwrite: bool,
    bar: Any,
    worker: Callable[[], Any] | None = None,
) -> GroupRun:
    """The resumable run of a group-wise pair benchmark (:mod:`vidprop.eval.runs`) on an engine.

    ``groups``: (name, pairs) per group.  The engine's workers are built
    (the model loads), ``record(info)`` starts or resumes the run in ``out``;
    a group whose part is complete is read back, every other one is built by
    ``unit(g)``, predicted by a :class:`GroupWorker` (in this process, or on
    Ray workers when ``elsewhere``), scored by ``score(g, result)`` into its
    rows and saved as its part.  ``bar``: the run's progress bar (pairs).
    ``worker``: the engine's worker factory instead of a :class:`GroupWorker`
    (its results, e.g. :class:`GroupRows`, go to ``score`` as they are; they
    carry ``encoded`` and ``matched``).
    """
    factory = worker or functools.partial(GroupWorker, matcher, attention=attention,
                                          on_pair=None if elsewhere else (lambda: bar.update(1)))
    parts: list[list[list[Any]]] = [[] for _ in groups]
    encoded = matched = 0
    with open_engine(factory, engine, max_rows=len(groups), wants_gpu=wants_gpu(matcher)) as eng:
        info = eng.info
        start_run(out, record(info), overwrite=overwrite)
        todo = []
        for g, (name, n) in enumerate(groups):
            done = load_part(out, name)
            if done is not None and len(done) == n:
                parts[g] = done
                bar.update(n)
            else:
                todo.append(g)
        for outcome in eng.map([unit(g) for g in todo]):
            if outcome.error is not None:
                raise outcome.error
            g, result = todo[outcome.index], outcome.value
            parts[g] = score(g, result)
            if elsewhere:
                bar.update(len(parts[g]))
            encoded += result.encoded
            matched += result.matched
            save_part(out, groups[g][0], header, parts[g])
    return GroupRun(parts, info, encoded, matched)
