"""JHMDB pose tracking: dataset reading, the run over a split, and PCK (docs/jhmdb.md).

Layout under ``root``::

    Rename_Images/<class>/<video>/00001.png ...
    joint_positions/<class>/<video>/joint_positions.mat      # pos_img (2, 15, T), 1-based

The split is a text file of ``<class>/<video>`` lines (the standard split-1
test list has 268 videos); blank lines and ``#`` comments are ignored.

    result = evaluate_jhmdb("JHMDB/", "split1_test.txt", "runs/jhmdb", config=load_preset("jhmdb"))
    print(result.format_table())

The 15 joints of frame 0 are propagated through each clip (protocol B, the
``jhmdb`` preset); the predicted grid coordinates of every frame are written
to ``out/predictions/<class>/<video>.npz`` atomically, so a re-run skips
the videos already done and scores everything at the end.  PCK, as in the
CRW/UVC/TimeCycle scripts: predictions -> pixels (x * W / grid_w,
y * H / grid_h); a joint counts in frame k >= 1 only when its predicted x >= 0;
reference size = 0.6 * the diagonal of the tight box around the ground-truth
joints counted in that frame (the script's box: min from 1e6, max from -1); PCK@a = mean over joints of 100 * (fraction of
that joint's normalised distances <= a).
"""

from __future__ import annotations

import csv
import functools
import logging
import math
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from vidprop.config import TaskConfig
from vidprop.engine import EngineOptions, open_engine
from vidprop.errors import ConfigError, InputError
from vidprop.eval.records import check_run_settings, run_record, write_run_record
from vidprop.eval.video_worker import split_task_argument
from vidprop.io.atomic import atomic_file, check_writable_target
from vidprop.io.keypoints import read_jhmdb_mat
from vidprop.io.driver import FrameRange, VideoDriver
from vidprop.io.video import list_frames
from vidprop.tasks.track import Tracker
from vidprop.progress import progress_bar

__all__ = [
    "JHMDB_JOINTS",
    "ALPHAS",
    "JhmdbVideo",
    "PckResult",
    "read_split",
    "find_videos",
    "pck_distances",
    "pck_scores",
    "evaluate_jhmdb",
]

log = logging.getLogger(__name__)

#: The 15 JHMDB joints, in ``pos_img`` order.
JHMDB_JOINTS = (
    "neck", "belly", "face", "right_shoulder", "left_shoulder", "right_hip", "left_hip",
    "right_elbow", "left_elbow", "right_knee", "left_knee", "right_wrist", "left_wrist",
    "right_ankle", "left_ankle",
)  # fmt: skip
#: PCK thresholds reported.
ALPHAS = (0.1, 0.2, 0.3, 0.4, 0.5)

@dataclass(frozen=True)
class JhmdbVideo:
    """One clip of the split: its frames and its ground truth."""

    key: str  # "<class>/<video>"
    frames: tuple[Path, ...]
    mat: Path

    def ground_truth(self) -> np.ndarray:
        """(T, 15, 2) 0-based pixel (x, y).

        A clip may have more frames than ground-truth columns (some JHMDB
        folders do): the first T frames are scored, with a warning, as the
        reference script does.  Fewer frames than columns is an InputError.
        """
        gt = read_jhmdb_mat(self.mat)
        n = len(self.frames)
        if gt.shape[0] > n:
            raise InputError(f"{self.mat}: 'pos_img' has {gt.shape[0]} frames but the video has {n}")
        if gt.shape[0] < n:
            log.warning("%s: %d frames but %d ground-truth columns in %s; scoring the first %d frames",
                        self.key, n, gt.shape[0], self.mat.name, gt.shape[0])
        return gt


def read_split(path: str | Path) -> list[str]:
    """``<class>/<video>`` entries of a split file, in order."""
    path = Path(path)
    if not path.is_file():
        raise InputError(f"{path}: no such split file")
    keys: list[str] = []
    seen: dict[str, int] = {}
    for n, raw in enumerate(path.read_text().splitlines(), start=1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        key = line.strip("/")
        parts = key.split("/")
        if len(parts) != 2 or not all(parts) or any(c.isspace() for c in key):
            raise InputError(f"{path}: line {n}: expected '<class>/<video>', got {line!r}")
        if key in seen:
            raise InputError(f"{path}: line {n}: {key} is listed twice (first on line {seen[key]})")
        seen[key] = n
        keys.append(key)
    if not keys:
        raise InputError(f"{path}: the split lists no videos")
    return keys


def find_videos(root: str | Path, keys: Sequence[str], split: str | Path = "the split") -> list[JhmdbVideo]:
    """Locate the frames and ground truth of every entry; one InputError naming what is missing."""
    root = Path(root)
    if not (root / "Rename_Images").is_dir() or not (root / "joint_positions").is_dir():
        raise InputError(f"{root}: not a JHMDB folder (expected Rename_Images/ and joint_positions/ in it)")
    videos, missing = [], []
    for key in keys:
        fdir = root / "Rename_Images" / key
        mat = root / "joint_positions" / key / "joint_positions.mat"
        if not fdir.is_dir():
            missing.append(str(fdir))
            continue
        if not mat.is_file():
            missing.append(str(mat))
            continue
        frames = tuple(p for p in list_frames(fdir) if p.suffix.lower() == ".png")
        if not frames:
            raise InputError(f"{fdir}: no .png frames in this folder")
        videos.append(JhmdbVideo(key, frames, mat))
    if missing:
        more = f" (and {len(missing) - 1} more)" if len(missing) > 1 else ""
        raise InputError(f"{split} lists a video that is not under {root}: {missing[0]} does not exist{more}")
    return videos


# ---------------------------------------------------------------- PCK
def pck_distances(
    pred_grid: np.ndarray, gt: np.ndarray, size: tuple[int, int], grid: tuple[int, int]
) -> list[np.ndarray]:
    """Normalised distances of one video, one array per joint.

    pred_grid: (T, J, 2) predicted grid (x, y), x < 0 = not visible; gt: (T, J, 2)
    ground-truth pixels; size = (W, H) of the frames; grid = (grid_h, grid_w).
    """
    W, H = size
    gh, gw = grid
    T, J = gt.shape[:2]
    if pred_grid.shape != gt.shape:
        raise ValueError(f"predictions {pred_grid.shape} and ground truth {gt.shape} differ")
    visible = pred_grid[..., 0] >= 0  # (T, J): visibility from the PREDICTION
    pred = np.stack([pred_grid[..., 0] * W / gw, pred_grid[..., 1] * H / gh], axis=-1)
    out: list[list[float]] = [[] for _ in range(J)]
    for k in range(1, T):  # frame 0 is the given one
        v = visible[k]
        if not v.any():
            continue
        # the reference script's box: min starts at 1e6 and max at -1 (a max below -1 stays -1)
        lo = np.minimum(gt[k, v].min(axis=0), 1e6)
        hi = np.maximum(gt[k, v].max(axis=0), -1.0)
        ref = 0.6 * math.hypot(*(hi - lo))
        d = np.hypot(*(pred[k] - gt[k]).T)
        with np.errstate(divide="ignore", invalid="ignore"):
            dn = d / ref  # ref 0: inf / nan, never <= alpha (a miss), as the reference script
        for j in np.flatnonzero(v):
            out[j].append(float(dn[j]))
    return [np.asarray(o, dtype=np.float64) for o in out]


def pck_scores(dists: Sequence[np.ndarray], alphas: Sequence[float] = ALPHAS) -> tuple[np.ndarray, np.ndarray]:
    """Per-joint PCK (J, A) in percent (NaN for a joint never counted) and the mean over joints (A,).

    The mean is over the joints that were counted at least once (with the
    whole split every joint is).
    """
    per = np.full((len(dists), len(alphas)), np.nan)
    for j, d in enumerate(dists):
        if len(d):
            per[j] = [100.0 * np.count_nonzero(d <= a) / len(d) for a in alphas]
    counted = ~np.isnan(per[:, 0])
    mean = per[counted].mean(axis=0) if counted.any() else np.full(len(alphas), np.nan)
    return per, mean


@dataclass(frozen=True)
class PckResult:
    """PCK over a set of videos."""

    joints: tuple[str, ...]
    alphas: tuple[float, ...]
    per_joint: np.ndarray  # (J, A) percent
    mean: np.ndarray  # (A,)
    counts: np.ndarray  # (J,) distances recorded per joint
    num_videos: int
    num_resumed: int = 0

    def pck(self, alpha: float) -> float:
        return float(self.mean[self.alphas.index(alpha)])

    def format_table(self) -> str:
        head = f"{'joint':<16}{'n':>7}" + "".join(f"{'PCK@' + format(a, 'g'):>9}" for a in self.alphas)
        lines = [head]
        for j, name in enumerate(self.joints):
            lines.append(f"{name:<16}{int(self.counts[j]):>7}" + "".join(f"{v:>9.2f}" for v in self.per_joint[j]))
        lines.append(f"{'mean':<16}{int(self.counts.sum()):>7}" + "".join(f"{v:>9.2f}" for v in self.mean))
        return "\n".join(lines)

    def write_csv(self, path: str | Path) -> None:
        with atomic_file(path) as tmp, open(tmp, "w", newline="") as f:
            w = csv.writer(f)
            w.writerow(["joint", "count", *(f"pck@{a:g}" for a in self.alphas)])
            for j, name in enumerate(self.joints):
                w.writerow([name, int(self.counts[j]), *(f"{v:.4f}" for v in self.per_joint[j])])
            w.writerow(["mean", int(self.counts.sum()), *(f"{v:.4f}" for v in self.mean)])


# ---------------------------------------------------------------- runner
def _prediction_path(out: Path, key: str) -> Path:
    return out / "predictions" / f"{key}.npz"


def _load_prediction(path: Path, num_frames: int) -> dict[str, Any] | None:
    """A complete prediction file's arrays, or None if absent, unreadable or short."""
    if not path.is_file():
        return None
    try:
        with np.load(path) as z:
            data = {k: z[k] for k in ("coords", "grid", "size")}
    except Exception:  # noqa: BLE001 - anything unreadable is redone
        log.warning("%s: unreadable, recomputing it", path)
        return None
    if data["coords"].shape[0] != num_frames:
        log.warning("%s: has %d frames, not %d; recomputing it", path, data["coords"].shape[0], num_frames)
        return None
    return data


def predict_video(tracker: Tracker, video: JhmdbVideo, gt: np.ndarray, path: Path, progress: bool = False) -> dict[str, Any]:
    """Propagate frame 0's ground truth through the clip's first ``len(gt)`` frames; write (T, J, 2) grid
    coordinates to ``path`` (propagation is causal: later frames cannot change these)."""
    folder = video.frames[0].parent
    T = len(gt)
    driver = VideoDriver(folder, backend="folder", frames=FrameRange(0, T))
    if driver.info.num_frames != len(video.frames):  # a non-PNG image in the folder
        raise InputError(f"{folder}: holds images other than .png frames")
    w, h = driver.size
    target = tracker.config.frames.target_size(w, h)
    coords, grid = [], None
    names = [str(j) for j in range(gt.shape[1])]
    for _, fr in tracker.track_records(driver.records(target, as_float=tracker.config.frames.resize_as_float), names, gt[0].astype(np.float64).copy(), "draw",
                                       progress, T):
        coords.append(fr.grid_xy)
        grid = fr.grid
    data = {
        "coords": np.stack(coords),
        "grid": np.asarray(grid, dtype=np.int64),
        "size": np.asarray([w, h], dtype=np.int64),
    }
    if data["coords"].shape[0] != T:
        raise InputError(f"{folder}: decoded {data['coords'].shape[0]} frames, expected {T}")
    with atomic_file(path, suffix=".npz") as tmp:
        np.savez(tmp, **data)
    return data


class VideoWorker:
    """Predicts JHMDB videos; built once per engine worker (the model loads once)."""

    def __init__(self, config: TaskConfig, *, tracker: Tracker | None = None, build: Any = None) -> None:
        if tracker is None:
            tracker = build() if build is not None else Tracker.from_pretrained(config=config)
        self.tracker = tracker

    def info(self) -> dict[str, Any]:
        ext = self.tracker.extractor
        return {"config": self.tracker.config, "revision": getattr(ext, "model_revision", None),
                "device": str(getattr(ext, "device", "")), "dtype": str(getattr(ext, "dtype", "")).replace("torch.", "")}

    def __call__(self, job: tuple[JhmdbVideo, np.ndarray, Path]) -> tuple[dict[str, Any], float]:
        video, gt, path = job
        t0 = time.perf_counter()
        data = predict_video(self.tracker, video, gt, path)
        return data, time.perf_counter() - t0


def evaluate_jhmdb(
    root: str | Path,
    split: str | Path,
    out: str | Path,
    *,
    config: TaskConfig,
    tracker: Tracker | None = None,
    videos: Sequence[str] | None = None,
    overwrite: bool = False,
    progress: bool = False,
    engine: EngineOptions | None = None,
) -> PckResult:
    """Run (or resume) every video of ``split`` and score PCK; writes ``out/pck.csv`` and ``out/config.yaml``.

    ``videos``: only these ``<class>/<video>`` entries of the split.  Videos
    whose predictions are complete are skipped (unless ``overwrite``); the
    model is loaded only if some video is left to run.  ``tracker`` defaults
    to ``Tracker.from_pretrained(config=config)``; a picklable callable
    returning a Tracker is called once in each engine worker.  ``engine``: where the
    videos run (default: one after the other in this process; with
    ``EngineOptions(kind="ray")`` spread over Ray workers that each load the
    model once); the predictions are the same either way.
    """
    root, split, out = Path(root), Path(split), Path(out)
    engine = engine or EngineOptions()
    if engine.kind != "sequential":  # workers may run elsewhere: absolute paths
        root, out = root.resolve(), out.resolve()
    items, gts = _read_videos(root, split, videos)
    loaded, build = split_task_argument(tracker, "tracker")
    if loaded is not None:
        config = loaded.config
    if not overwrite and build is None:  # the settings are known before any model loads
        check_run_settings(out / "config.yaml", config, "video", overwrite)
    preds: list[dict[str, Any] | None] = [
        None if overwrite else _load_prediction(_prediction_path(out, v.key), len(g)) for v, g in zip(items, gts)
    ]
    todo = [i for i, p in enumerate(preds) if p is None]
    resumed = len(items) - len(todo)
    if resumed:
        log.info("%d of %d videos already have predictions in %s; skipping them", resumed, len(items), out)
    if todo:
        if loaded is not None and engine.kind != "sequential":
            raise ConfigError("a Tracker object stays in this process: give config= or a callable that builds "
                              "the tracker (tracker=) to run on Ray workers")
        check_writable_target(out, True, folder=True)  # before loading the model
        factory = functools.partial(VideoWorker, config, tracker=loaded, build=build)
        run = _JhmdbRun(root, split, out, engine, overwrite, build is not None)
        _predict(run, factory, config, items, gts, preds, todo, progress)
    return _score(items, gts, preds, resumed, out)


@dataclass(frozen=True)
class _JhmdbRun:
    """Where a JHMDB run reads and writes, on which engine; ``built``: the tracker is built in the workers."""

    root: Path
    split: Path
    out: Path
    engine: EngineOptions
    overwrite: bool
    built: bool


def _read_videos(root: Path, split: Path, videos: Sequence[str] | None) -> tuple[list[JhmdbVideo], list[np.ndarray]]:
    """The split's videos (only ``videos`` when given) and their ground truth, every .mat checked."""
    keys = read_split(split)
    if videos:
        unknown = [v for v in videos if v not in keys]
        if unknown:
            raise InputError(f"--videos: {unknown[0]} is not listed in {split}")
        keys = [k for k in keys if k in set(videos)]
    items = find_videos(root, keys, split)
    gts = [v.ground_truth() for v in items]  # checks every .mat before any model work
    for v, g in zip(items, gts):
        if g.shape[1] != len(JHMDB_JOINTS):
            raise InputError(f"{v.mat}: 'pos_img' has {g.shape[1]} joints, JHMDB has {len(JHMDB_JOINTS)}")
    return items, gts


def _predict(run: _JhmdbRun, factory: Any, config: TaskConfig, items: Sequence[JhmdbVideo],
             gts: Sequence[np.ndarray], preds: list[dict[str, Any] | None], todo: Sequence[int],
             progress: bool) -> None:
    """Predict the videos ``todo`` on the engine into ``preds``, once the run's record is written."""
    out = run.out
    jobs = [(items[i], gts[i], _prediction_path(out, items[i].key)) for i in todo]
    wants_gpu = not str(config.extractor.device).startswith("cpu")
    bar = progress_bar(total=len(todo), unit="video", desc="jhmdb", enabled=progress, leave=True)
    try:
        with open_engine(factory, run.engine, max_rows=len(todo), wants_gpu=wants_gpu) as eng:
            if not run.overwrite and run.built:  # a built tracker's settings, before any video runs
                check_run_settings(out / "config.yaml", eng.info["config"], "video", run.overwrite)
            info = eng.info
            write_run_record(out / "config.yaml", run_record(
                "JHMDB pose tracking", run.root, info["config"], revision=info.get("revision"),
                split=str(Path(run.split).resolve()), device=info["device"], dtype=info["dtype"]))
            for n, outcome in enumerate(eng.map(jobs), start=1):
                if outcome.error is not None:
                    raise outcome.error
                i = todo[outcome.index]
                preds[i], dt = outcome.value
                bar.update(1)
                log.info("[%d/%d] %s: %d frames, %.2f frames/s", n, len(todo), items[i].key, len(gts[i]),
                         len(gts[i]) / dt if dt > 0 else 0.0)
    finally:
        bar.close()


def _score(items: Sequence[JhmdbVideo], gts: Sequence[np.ndarray], preds: Sequence[dict[str, Any] | None],
           resumed: int, out: Path) -> PckResult:
    """PCK of every video's predictions, written to ``out/pck.csv``."""
    dists: list[list[np.ndarray]] = [[] for _ in JHMDB_JOINTS]
    for p, g in zip(preds, gts):
        assert p is not None
        for j, d in enumerate(pck_distances(p["coords"], g, tuple(p["size"]), tuple(p["grid"]))):
            dists[j].append(d)
    flat = [np.concatenate(d) if d else np.zeros(0) for d in dists]
    per, mean = pck_scores(flat, ALPHAS)
    never = [JHMDB_JOINTS[j] for j in range(len(flat)) if not len(flat[j])]
    if never:
        log.warning("no frame counted for joint(s) %s: left out of the mean", ", ".join(never))
    result = PckResult(
        joints=JHMDB_JOINTS,
        alphas=ALPHAS,
        per_joint=per,
        mean=mean,
        counts=np.asarray([len(d) for d in flat]),
        num_videos=len(items),
        num_resumed=resumed,
    )
    out.mkdir(parents=True, exist_ok=True)
    result.write_csv(out / "pck.csv")
    return result
