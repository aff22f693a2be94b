"""An annotation session on disk: autosaved in ``OUT/NAME`` (segment's layout) and resumed from there.

``OUT/NAME/`` holds exactly what ``vidprop segment`` writes (the masks of the
last propagation, ``annotations.json``, ``source.json``; ``coco.json`` and
``youtube-vos/`` after an export), so ``vidprop view``, ``export`` and ``eval``
read it.  The session itself lives beside them in ``OUT/NAME/.annotate/``:
``session.json`` (video, mode, direction, per-frame confidence) and
``annotations/<frame index>.png`` (each annotation, an indexed PNG).  Every
change is written at once (files under a temporary name, then renamed), so a
crash or a closed tab loses nothing; ``vidprop annotate`` on the same OUT
resumes.
"""

from __future__ import annotations

import json
import logging
import threading
from pathlib import Path
from typing import Any, Iterator, Sequence

import numpy as np

from vidprop.annotate.annotator import Annotator
from vidprop.annotate.confidence import FrameConfidence, likely_wrong
from vidprop.errors import InputError
from vidprop.io.atomic import atomic_file
from vidprop.io.masks import read_mask, write_indexed_png

__all__ = ["AnnotateSession", "STATE_DIR"]

log = logging.getLogger(__name__)

STATE_DIR = ".annotate"
_VERSION = 1


class AnnotateSession:
    """An :class:`Annotator` whose every change is saved in ``out_dir`` (= OUT/NAME), thread-safe for a server."""

    def __init__(self, annotator: Annotator, out: str | Path) -> None:
        self.annotator = annotator
        self.out_dir = Path(out) / annotator.name
        self.state_dir = self.out_dir / STATE_DIR
        self.lock = threading.Lock()
        self.resumed = False
        self._check_out()

    # ----------------------------------------------------------- disk
    def _check_out(self) -> None:
        self.check_out(self.out_dir)

    @staticmethod
    def check_out(out: Path) -> None:
        """InputError unless ``out`` (OUT/NAME) is free or holds a session of vidprop annotate."""
        out = Path(out)
        if out.exists() and not out.is_dir():
            raise InputError(f"{out}: exists and is not a folder")
        if out.is_dir() and not (out / STATE_DIR / "session.json").is_file() and any(out.iterdir()):
            raise InputError(f"{out}: holds results that vidprop annotate did not make; choose another --out "
                             "(nothing there is changed)")
        from vidprop.tasks.base import check_output_folder

        check_output_folder(out)

    def load(self) -> bool:
        """Resume a saved session (annotations, results, confidence); False when there is none."""
        path = self.state_dir / "session.json"
        if not path.is_file():
            return False
        try:
            state = json.loads(path.read_text())
        except (OSError, json.JSONDecodeError) as exc:
            raise InputError(f"{path}: cannot resume this session ({exc})") from None
        ann = self.annotator
        if Path(state.get("video", "")).resolve() != ann.video.resolve():
            raise InputError(f"{self.out_dir}: is the session of {state.get('video')}, not of {ann.video}; "
                             "choose another --out")
        ann.mode = state.get("mode", ann.mode)
        ann.direction = state.get("direction", "forward")
        for item in state.get("annotations", []):
            m, _ = read_mask(self.state_dir / "annotations" / f"{int(item['frame'])}.png", allow_empty=True)
            ann.annotations[int(item["frame"])] = m
        for t, c in state.get("confidence", {}).items():
            ann.confidence[int(t)] = FrameConfidence(float(c["score"]), {int(k): v for k, v in c["objects"].items()},
                                                     bool(c.get("annotated")))
        for t in state.get("propagated", []):
            p = self.out_dir / f"{ann.frame_name(int(t))}.png"
            if p.is_file():
                ann.results[int(t)] = read_mask(p, allow_empty=True)[0]
        self.resumed = True
        log.info("resumed the session in %s: %d annotated frame(s), %d propagated", self.out_dir,
                 len(ann.annotations), len(ann.results))
        return True

    def save_state(self) -> None:
        """Write the annotations and ``session.json`` (each file atomically)."""
        ann = self.annotator
        folder = self.state_dir / "annotations"
        folder.mkdir(parents=True, exist_ok=True)
        for t, m in ann.annotations.items():
            with atomic_file(folder / f"{t}.png") as tmp:
                write_indexed_png(tmp, m)
        for p in folder.glob("*.png"):
            if p.stem.isdigit() and int(p.stem) not in ann.annotations:
                p.unlink()
        state = {
            "version": _VERSION,
            "video": str(ann.video.resolve()),
            "name": ann.name,
            "mode": ann.mode,
            "direction": ann.direction,
            "annotations": [{"frame": t, "name": ann.frame_name(t), "ids": [int(i) for i in np.unique(m) if i]}
                            for t, m in sorted(ann.annotations.items())],
            "propagated": sorted(ann.results),
            "confidence": {str(t): {"score": c.score, "objects": {str(k): v for k, v in c.objects.items()},
                                    "annotated": c.annotated} for t, c in sorted(ann.confidence.items())},
        }
        with atomic_file(self.state_dir / "session.json") as tmp:
            Path(tmp).write_text(json.dumps(state, indent=1) + "\n")

    def save_results(self, formats: Sequence[str] | str = ("png",)) -> list[str]:
        """Write OUT/NAME in segment's layout (the session state inside it is kept); the files written."""
        self.annotator.save(self.out_dir.parent, formats=formats, overwrite=True)
        self.save_state()
        return sorted(p.relative_to(self.out_dir).as_posix() for p in self.out_dir.rglob("*")
                      if p.is_file() and STATE_DIR not in p.relative_to(self.out_dir).parts)

    # ----------------------------------------------------------- what the page sees
    def describe(self) -> dict[str, Any]:
        ann = self.annotator
        w, h = ann.size
        n = ann.num_frames
        scores = ann.scores()
        return {
            "name": ann.name, "width": w, "height": h, "frames": n,
            "frame_names": [ann.frame_name(t) for t in range(n)],
            "objects": ann.objects, "annotated": sorted(ann.annotations), "propagated": sorted(ann.results),
            "confidence": {str(t): s for t, s in scores.items()},
            "likely_wrong": likely_wrong(scores),
            "can_prompt": ann.prompter is not None, "mode": ann.mode,
            "can_undo": ann.can_undo, "can_redo": ann.can_redo, "out": str(self.out_dir),
            "resumed": self.resumed,
        }

    def display_mask(self, t: int) -> np.ndarray:
        """Frame ``t`` as the page shows it: the last result with the frame's annotation over it."""
        ann = self.annotator
        w, h = ann.size
        base = ann.results.get(t, np.zeros((h, w), np.uint8)).copy()
        a = ann.annotations.get(t)
        if a is not None:
            ids = [i for i in np.unique(a) if i]
            base[np.isin(base, ids)] = 0
            base = np.where(a > 0, a, base).astype(np.uint8)
        return base

    # ----------------------------------------------------------- changes (each saved)
    def change(self, action: str, **kw: Any) -> None:
        """Apply one annotation change (``mask``, ``points``, ``remove``, ``undo``, ``redo``) and save it."""
        ann = self.annotator
        if not self.lock.acquire(blocking=False):
            raise InputError("a propagation is running; wait for it to finish")
        try:
            if action == "mask":
                ann.add_mask(kw["frame"], kw["mask"], kw["obj_id"])
            elif action == "points":
                ann.add_points(kw["frame"], kw.get("points"), kw.get("labels"), kw["obj_id"], box=kw.get("box"))
            elif action == "remove":
                ann.remove_object(kw["obj_id"])
            elif action == "undo":
                ann.undo()
            elif action == "redo":
                ann.redo()
            else:
                raise InputError(f"unknown action {action!r}")
            self.save_state()
        finally:
            self.lock.release()

    def propagate(self, start: int, direction: str) -> Iterator[dict[str, Any]]:
        """Propagate from ``start``; yield one event per frame, then the saved results (``done``)."""
        if not self.lock.acquire(blocking=False):
            raise InputError("a propagation is already running")
        try:
            ann = self.annotator
            if not ann.annotations:
                raise InputError("nothing to propagate: add an object first (clicks, a box or the brush)")
            if not ann.features_ready:
                yield {"event": "extracting"}
            ann.features()  # the first time: extracted into the cache (before any frame is reported)
            n = ann.num_frames
            total = {"forward": n - start, "backward": start + 1}.get(direction, n)
            done = 0
            for t, _, conf in ann.propagate(start, direction=direction):  # type: ignore[arg-type]
                done += 1
                yield {"event": "frame", "frame": t, "score": conf.score, "done": done, "total": total}
            self.save_results()
            yield {"event": "done", "frames": done, "likely_wrong": likely_wrong(ann.scores())}
        finally:
            self.lock.release()
