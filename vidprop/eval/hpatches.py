"""HPatches (geometric matching, homography accuracy): the dataset reader, its worker and the run.

As DIFT's evaluation (docs/static-pairs.md): SuperPoint keypoint files or
SIFT, the 108 sequences left by the standard download.  Sequences run on
:func:`~vidprop.eval.pair_predict.run_groups` (resumable per sequence; image
1's features are computed once per sequence) and the results are written
atomically:

    OUT/pairs.csv      one row per pair (image 1 against images 2..6)
    OUT/summary.json   the scores (percent), overall and per sequence kind

    from vidprop.eval.hpatches import run_hpatches
    summary = run_hpatches(PairMatcher.from_pretrained(config="geometric"), "hpatches-sequences-release/", "runs/hp")
"""

from __future__ import annotations

import functools
import logging
import math
import time
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np

from vidprop.engine import EngineOptions
from vidprop.errors import InputError
from vidprop.eval.pair_models import dtype_name, load_matcher, recorded_model
from vidprop.eval.pair_predict import FeatureCache, GroupRows, check_engine, run_groups
from vidprop.eval.records import run_record
from vidprop.eval.runs import write_results
from vidprop.progress import progress_bar

__all__ = [
    "THRESHOLDS",
    "HIGH_RES_SEQUENCES",
    "HpatchesSequence",
    "read_hpatches",
    "read_keypoint_file",
    "hpatches_keypoints",
    "read_homography",
    "corner_error",
    "homography_accuracy",
    "hpatches_differences",
    "HpatchesWorker",
    "run_hpatches",
]

log = logging.getLogger(__name__)

#: Homography accuracy thresholds (mean corner error, pixels).
THRESHOLDS = (1, 3, 5)
#: HPatches sequences with images larger than 1600x1200, which the standard download script
#: (D2-Net's, used by DIFT's evaluation) deletes: the published numbers are over the other 108.
HIGH_RES_SEQUENCES = ("i_contruction", "i_crownnight", "i_dc", "i_pencils", "i_whitebuilding",
                      "v_artisans", "v_astronautis", "v_talent")


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

    def __call__(self, seq: HpatchesSequence) -> GroupRows:
        """The csv row per pair of one sequence (a row's last cell is the corner error), and the images encoded."""
        from vidprop.tasks.match import geometric_match_features

        cache = FeatureCache(self._encode)
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
        return GroupRows(rows, cache.computed)


#: pairs.csv's columns.
HEADER = ("sequence", "kind", "image", "keypoints_1", "keypoints_i", "matches", "inliers", "corner_error")


def _check_keypoint_files(keypoints: str | Path, seqs: Sequence[HpatchesSequence]) -> None:
    """Every image's ``<sequence>-<i>.kp`` is in ``keypoints``: fail before computing anything."""
    kp_dir = Path(keypoints)
    if not kp_dir.is_dir():
        raise InputError(f"{kp_dir}: no such folder; --keypoints must hold <sequence>-<i>.kp files")
    for seq in seqs:
        for i in range(1, 7):
            if not (kp_dir / f"{seq.name}-{i}.kp").is_file():
                raise InputError(f"{kp_dir / f'{seq.name}-{i}.kp'}: keypoint file not found (--keypoints "
                                 "must hold <sequence>-<i>.kp for every image)")


@dataclass(frozen=True)
class Matching:
    """How a run matches (the config's ``matching`` section unless given): distance, estimator, threshold."""

    method: str
    threshold: float
    distance: str

    @classmethod
    def resolve(cls, config: Any, method: str | None, threshold: float | None, distance: str | None) -> "Matching":
        m = config.matching
        return cls(m.homography if method is None else method, float(m.threshold if threshold is None else threshold),
                   m.distance if distance is None else distance)


def _summary(rows: Sequence[Sequence[Any]], info: dict[str, Any], matching: Matching, differences: list[str],
             keypoints: str | Path | None, max_keypoints: int, include_high_res: bool) -> dict[str, Any]:
    """summary.json of a run (its sequences, encoded count and time follow)."""
    errors = [float(r[7]) for r in rows]  # exact, also when read back from a part; inf: no homography fitted
    kinds = [str(r[1]) for r in rows]
    return {
        "benchmark": "HPatches",
        "published": not differences,
        "differences_from_published": differences,
        "metric": "percent of pairs whose mean corner error <= threshold",
        "accuracy": homography_accuracy(errors, kinds),
        "homography": {"method": matching.method, "threshold": matching.threshold},
        "distance": matching.distance,
        "keypoints": {"source": "files", "folder": str(keypoints)} if keypoints is not None
        else {"source": "sift", "max_keypoints": max_keypoints},
        "high_res_sequences": "included" if include_high_res else "excluded",
        "dtype": info["dtype"],
    }


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
    seqs = read_hpatches(root, limit=limit, include_high_res=include_high_res)
    if keypoints is not None:
        _check_keypoint_files(keypoints, seqs)
    t0 = time.perf_counter()
    bar = progress_bar(total=5 * len(seqs), desc="HPatches", unit="pair", enabled=progress, leave=True)

    def record(info: dict[str, Any]) -> dict[str, Any]:
        m = Matching.resolve(info["config"], method, threshold, distance)
        return run_record(
            "HPatches", root, recorded_model(info), sequences=len(seqs), limit=limit,
            keypoints=str(Path(keypoints).resolve()) if keypoints is not None else None,
            max_keypoints=None if keypoints is not None else max_keypoints, include_high_res=include_high_res,
            homography={"method": m.method, "threshold": m.threshold}, distance=m.distance)

    worker = functools.partial(HpatchesWorker, matcher, keypoints=keypoints, max_keypoints=max_keypoints,
                               method=method, threshold=threshold, distance=distance,
                               on_pair=None if elsewhere else (lambda: bar.update(1)))
    try:
        run = run_groups(Path(out), [(s.name, 5) for s in seqs], lambda g: seqs[g], lambda g, r: r.rows,
                         header=HEADER, record=record, matcher=matcher, attention=None, engine=engine,
                         elsewhere=elsewhere, overwrite=overwrite, bar=bar, worker=worker)
    finally:
        bar.close()
    rows = [row for part in run.parts for row in part]
    info = run.info
    m = Matching.resolve(info["config"], method, threshold, distance)
    differences = hpatches_differences(info["config"], keypoints, include_high_res, m.method, m.threshold, limit,
                                       info["dtype"], m.distance)
    summary = _summary(rows, info, m, differences, keypoints, max_keypoints, include_high_res)
    summary.update({"sequences": len(seqs), "images_encoded_this_run": run.encoded,
                    "seconds": round(time.perf_counter() - t0, 2), "config": info["config"].to_dict()})
    write_results(out, list(HEADER), rows, summary)
    return summary
