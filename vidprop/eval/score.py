"""``vidprop score``: J&F of one result folder against a folder of ground-truth masks.

J (region) and F (boundary) per object and per frame with the package's
exact DAVIS metric code (:mod:`vidprop.eval.davis.metrics`: ``db_eval_iou``,
``db_eval_boundary`` with the toolkit's boundary tolerance, ``db_statistics``
for Mean / Recall / Decay).  What is scored:

* frames: every ground-truth ``<frame>.png`` (a result ``<frame>.png`` of the
  same name must exist), except the frames the run was given as annotations
  (its ``annotations.json``; a run without one was a first-frame run: its
  first frame) -- their output is the annotation itself.  ``all_frames``
  scores them too;
* objects: every id the scored ground truth holds (255, DAVIS' void, is not an
  object and counts as background, as in the semi-supervised protocol);
  an object absent from a frame of both scores J = F = 1 there, as in DAVIS.

The summary is the mean over objects of (J-Mean + F-Mean) / 2, as DAVIS'
J&F-Mean.  Frames are read one at a time (memory does not grow with length).
"""

from __future__ import annotations

import csv
import json
import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from vidprop.errors import InputError
from vidprop.eval.davis.dataset import VOID_LABEL, read_ids
from vidprop.eval.davis.metrics import BOUND_TH, db_eval_boundary, db_eval_iou
from vidprop.eval.davis.scoring import ObjectMeans, ObjectScore, object_score
from vidprop.io.atomic import atomic_file

__all__ = ["ResultScore", "score_result", "write_score_csvs"]

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ResultScore(ObjectMeans):
    """Per-frame J and F ((K, n) for the K objects ``ids`` and n ``frames``) and per-object statistics."""

    ids: tuple[int, ...]
    frames: tuple[str, ...]
    j: np.ndarray
    f: np.ndarray
    objects: tuple[ObjectScore, ...]  # sequence: the result folder's name
    skipped: tuple[str, ...]  # annotated frames left out

    def summary(self) -> str:
        left = f", annotated frame(s) {', '.join(self.skipped)} not scored" if self.skipped else ""
        return (f"J&F {self.jf_mean:.4f} (J {self.j_mean:.4f}, F {self.f_mean:.4f}) over {len(self.ids)} "
                f"object(s) and {len(self.frames)} frame(s){left}")


def _annotated_names(result: Path, names: list[str]) -> set[str]:
    path = result / "annotations.json"
    if path.is_file():
        try:
            doc = json.loads(path.read_text())
            return {str(a["name"]) for a in doc.get("annotations", [])}
        except (OSError, ValueError, KeyError, TypeError) as exc:
            raise InputError(f"{path}: unreadable annotation record ({exc})") from exc
    return {names[0]} if names else set()


def score_result(result: str | Path, gt: str | Path, *, all_frames: bool = False,
                 bound_th: float = BOUND_TH) -> ResultScore:
    """Score the ``<frame>.png`` masks of ``result`` against the ``<frame>.png`` of ``gt``."""
    result, gt = Path(result), Path(gt)
    for folder, what in ((result, "result"), (gt, "ground-truth")):
        if not folder.is_dir():
            raise InputError(f"{folder}: no such {what} folder")
    gt_files = sorted(p for p in gt.glob("*.png") if not p.name.startswith("."))
    if not gt_files:
        raise InputError(f"{gt}: no ground-truth <frame>.png here")
    res_names = {p.stem for p in result.glob("*.png")}
    if not res_names:
        raise InputError(f"{result}: no result <frame>.png here")
    common = [p for p in gt_files if p.stem in res_names]
    if not common:
        raise InputError(f"{result}: no result frame has the name of a ground-truth frame of {gt} "
                         f"(e.g. {gt_files[0].name})")
    skipped = set() if all_frames else _annotated_names(result, sorted(res_names))
    missing = [p.name for p in gt_files if p.stem not in res_names and p.stem not in skipped]
    if missing:
        raise InputError(f"{result}: result frame {missing[0]} is missing ({len(missing)} ground-truth frame(s) "
                         "have no result)")
    scored = [p for p in common if p.stem not in skipped]
    if not scored:
        raise InputError(f"{gt}: every ground-truth frame was an annotation of the run; nothing to score "
                         "(--all-frames scores them)")
    frames_gt = []
    ids: set[int] = set()
    size = None
    for p in scored:  # first pass: sizes and ids
        a = read_ids(p, "ground-truth mask")
        size = size or a.shape
        if a.shape != size:
            raise InputError(f"{p}: {a.shape[1]}x{a.shape[0]}, the first ground-truth mask is {size[1]}x{size[0]}")
        ids |= {int(v) for v in np.unique(a) if v != 0 and v != VOID_LABEL}
    order = sorted(ids)
    j = np.zeros((len(order), len(scored)))
    f = np.zeros((len(order), len(scored)))
    for t, p in enumerate(scored):
        a = read_ids(p, "ground-truth mask")
        r = read_ids(result / p.name, "result mask")
        if r.shape != a.shape:
            raise InputError(f"{result / p.name}: {r.shape[1]}x{r.shape[0]} but its ground truth is "
                             f"{a.shape[1]}x{a.shape[0]}")
        for k, oid in enumerate(order):
            g, q = (a == oid)[None], (r == oid)[None]
            j[k, t] = db_eval_iou(g, q)[0]
            f[k, t] = db_eval_boundary(g, q, bound_th=bound_th)[0]
        frames_gt.append(p.stem)
    objects = tuple(object_score(result.name, oid, j[k], f[k]) for k, oid in enumerate(order))
    left = tuple(s for s in sorted(skipped) if s in {p.stem for p in gt_files})
    return ResultScore(tuple(order), tuple(frames_gt), j, f, objects, left)


def write_score_csvs(score: ResultScore, prefix: str | Path) -> tuple[Path, Path]:
    """``PREFIX-objects.csv`` (one row per object) and ``PREFIX-frames.csv`` (one row per frame and object)."""
    prefix = Path(prefix)
    objects = prefix.with_name(prefix.name + "-objects.csv")
    frames = prefix.with_name(prefix.name + "-frames.csv")
    with atomic_file(objects) as tmp, open(tmp, "w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["object", "J&F-Mean", "J-Mean", "J-Recall", "J-Decay", "F-Mean", "F-Recall", "F-Decay"])
        for o in score.objects:
            w.writerow([o.object_id, *(f"{v:.6f}" for v in (o.jf_mean, o.j_mean, o.j_recall, o.j_decay, o.f_mean,
                                                             o.f_recall, o.f_decay))])
        w.writerow(["mean", *(f"{v:.6f}" for v in (score.jf_mean, score.j_mean))])
    with atomic_file(frames) as tmp, open(tmp, "w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["frame", "object", "J", "F"])
        for t, name in enumerate(score.frames):
            for k, oid in enumerate(score.ids):
                w.writerow([name, oid, f"{score.j[k, t]:.6f}", f"{score.f[k, t]:.6f}"])
    return objects, frames
