"""The labelling loop as a Python API: annotate any frame, propagate, correct, propagate again, save.

    from vidprop.annotate import Annotator
    from vidprop.tasks.segment import Segmenter

    ann = Annotator("clip.mp4", Segmenter.from_pretrained(config="davis-fast"), cache="~/.cache/vidprop/features")
    ann.add_mask(0, first_mask_of_the_car, obj_id=1)              # (H, W) bool
    for t, mask, conf in ann.propagate(0):                          # streams (frame, (H, W) ids, FrameConfidence)
        ...
    ann.add_mask(40, fixed_car, obj_id=1)                           # a correction at frame 40
    for t, mask, conf in ann.propagate(40):                         # from cached features: nothing extracted
        ...
    ann.save("results/", formats="png,coco")                        # exactly segment's layout

Every propagation goes through the segment run loop
(:meth:`~vidprop.tasks.segment.Segmenter.segment_records`) with the whole
set of annotations, reading features from the feature cache, so the masks
are those of a fresh ``vidprop segment`` run with the same annotations, pixel
for pixel (the protocol of ``docs/annotations.md``).  ``propagate`` yields the
frames of the asked range as they finish; frames outside it are kept from the
previous result only when the annotations did not change them.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterator, Literal, Sequence

import numpy as np

from vidprop.annotate.confidence import FrameConfidence, frame_confidence
from vidprop.errors import InputError
from vidprop.tasks.feature_cache import CachedFeatures, FeatureCache, as_cache, default_cache_dir
from vidprop.io.annotations import ANNOTATION_MODES, AnnotationMode
from vidprop.io.driver import VideoDriver
from vidprop.tasks.budget import check_model_input

__all__ = ["Annotator", "PropagateDirection", "Prompter"]

log = logging.getLogger(__name__)

PropagateDirection = Literal["forward", "backward", "both"]
#: ``prompter(image, points, labels, box) -> (H, W) bool``: a click/box-to-mask model (see vidprop.annotate.prompts).
Prompter = Callable[[np.ndarray, Any, Any, Any], np.ndarray]


@dataclass(frozen=True)
class _State:
    """One step of the annotation history (undo/redo)."""

    annotations: tuple[tuple[int, bytes], ...]


class Annotator:
    """Interactive annotation of one video (see the module docstring).

    Args:
        video: a video file or frame folder.
        segmenter: a loaded :class:`~vidprop.tasks.segment.Segmenter` (its settings are the run's).
        cache: the feature cache (folder or FeatureCache; default: the user's cache folder).
        mode: the annotation mode ("objects": exact for the ids an annotation holds).
        prompter: the click/box-to-mask model used by :meth:`add_points` (loaded by the caller).
        checkpoints: copies of the forward pass's state kept at evenly spaced frames (at most this many; each
            the size of the propagator's context), so a forward propagation from frame t resumes at the last
            one before t whose annotations are unchanged instead of starting over (0: always start over).
    """

    def __init__(self, video: str | Path, segmenter: Any, *, cache: FeatureCache | str | Path | None = None,
                 mode: AnnotationMode = "objects", backend: str = "auto", prompter: Prompter | None = None,
                 name: str | None = None, checkpoints: int = 4) -> None:
        if mode not in ANNOTATION_MODES:
            raise InputError(f"annotation mode must be one of {', '.join(ANNOTATION_MODES)}, got {mode!r}")
        self.video = Path(video)
        self.driver = VideoDriver(video, backend=backend)
        self.name = name or self.driver.info.name
        if segmenter.config.sequence_changes(self.name):  # a preset's per-sequence settings, as segment applies them
            segmenter = type(segmenter)(segmenter.extractor, segmenter.config.for_sequence(self.name))
        self.segmenter = segmenter
        self.cache = as_cache(cache) or FeatureCache(default_cache_dir())
        self.mode: AnnotationMode = mode
        self.backend = backend
        self.prompter = prompter
        self.annotations: dict[int, np.ndarray] = {}
        self.results: dict[int, np.ndarray] = {}
        self.confidence: dict[int, FrameConfidence] = {}
        #: The direction of the last propagation ("forward" or "both": the run's).
        self.direction: Literal["forward", "both"] = "forward"
        self._features: CachedFeatures | None = None
        self._frames: Any = None
        self._undo: list[_State] = []
        self._redo: list[_State] = []
        self.max_checkpoints = max(0, int(checkpoints))
        self._checkpoints: dict[int, tuple[str, Any]] = {}  # frame -> (annotations signature, session copy)

    # ----------------------------------------------------------- the video
    @property
    def size(self) -> tuple[int, int]:
        """(W, H) of the frames."""
        return self.driver.size

    @property
    def num_frames(self) -> int:
        """Frames of the video (exact once the features are cached; a container's count before)."""
        if self._features is not None:
            return len(self._features)
        n = self.driver.num_frames
        if n is None:
            return len(self.features())
        return n

    @property
    def features_ready(self) -> bool:
        """Whether the features are open (propagation then extracts nothing)."""
        return self._features is not None

    @property
    def can_undo(self) -> bool:
        return bool(self._undo)

    @property
    def can_redo(self) -> bool:
        return bool(self._redo)

    def frame_name(self, index: int) -> str:
        return self.driver.frame_name(index)

    def features(self, progress: bool = False) -> CachedFeatures:
        """The video's features from the cache (extracted into it the first time)."""
        if self._features is None:
            self._features = self.cache.features(self.video, self.segmenter, name=self.name, backend=self.backend,
                                                 progress=progress)
        return self._features

    def frame(self, index: int) -> np.ndarray:
        """Frame ``index`` as (H, W, 3) uint8 RGB (decoded on demand)."""
        self._check_frame(index)
        if self._frames is None:
            from vidprop.io.video_seek import SeekableVideo
            from vidprop.view.frames import FolderFrames

            self._frames = FolderFrames.open(self.video) if self.video.is_dir() else SeekableVideo(self.video)
        src = self._frames
        if hasattr(src, "file_for"):
            from vidprop.io.images import read_image

            return read_image(src.file_for(index, self.frame_name(index)), exif_transpose=False)
        return src.frame(index)

    # ----------------------------------------------------------- annotations
    @property
    def objects(self) -> list[int]:
        """Object ids annotated so far, ascending."""
        return sorted({int(i) for a in self.annotations.values() for i in np.unique(a) if i})

    def add_mask(self, frame: int, mask: np.ndarray, obj_id: int | None = None) -> None:
        """Annotate ``frame``: ``mask`` is (H, W) bool for object ``obj_id``, or an (H, W) index mask (``obj_id`` None).

        An object's new mask replaces its old one on that frame (an empty mask
        removes the object from the frame's annotation); other objects
        annotated on the frame stay.  Frames of an annotation may be corrected
        any number of times; :meth:`undo` steps back.
        """
        self._check_frame(frame)
        m = np.asarray(mask)
        w, h = self.size
        if m.shape != (h, w):
            raise InputError(f"the mask of frame {frame} is {m.shape[1] if m.ndim == 2 else '?'}x"
                             f"{m.shape[0] if m.ndim else '?'} but the frames are {w}x{h}")
        cur = self.annotations.get(frame)
        if obj_id is None:
            if m.dtype == bool or (m.size and (m.min() < 0 or m.max() > 255)):
                raise InputError("an index mask holds ids 0..255 (give obj_id for a boolean mask)")
            new = m.astype(np.uint8)
            if self.mode == "objects" and cur is not None:
                new = np.where(np.isin(cur, np.unique(new[new > 0])) | (new > 0), new, cur).astype(np.uint8)
        else:
            self._check_id(obj_id)
            new = np.zeros((h, w), np.uint8) if cur is None else cur.copy()
            new[new == obj_id] = 0
            new[m.astype(bool)] = obj_id
        self._push()
        if new.any() or self.mode == "frame":
            self.annotations[frame] = new
        else:
            self.annotations.pop(frame, None)

    def add_points(self, frame: int, points: Sequence[Sequence[float]] | None, labels: Sequence[int] | None = None,
                   obj_id: int = 1, *, box: Sequence[float] | None = None) -> np.ndarray:
        """Clicks (x, y) (``labels`` 1 = on the object, 0 = not) and/or a box (x0, y0, x1, y1) -> the object's mask.

        The mask comes from the prompter (SAM 2) and enters the annotations
        like :meth:`add_mask`; it is returned.
        """
        from vidprop.annotate.prompts import check_prompt

        self._check_frame(frame)
        self._check_id(obj_id)
        pts, labs, bx = check_prompt(points, labels, box, self.size, where=f"frame {frame}")
        if self.prompter is None:
            raise InputError("no click-to-mask model: build the Annotator with prompter=ClickToMask.load(...)")
        mask = np.asarray(self.prompter(self.frame(frame), pts, labs, bx), dtype=bool)
        if not mask.any():
            raise InputError(f"frame {frame}: the clicks gave an empty mask; click on the object")
        self.add_mask(frame, mask, obj_id)
        return mask

    def remove_object(self, obj_id: int) -> None:
        """Remove object ``obj_id`` from every annotation and result (propagate again to update the others)."""
        if obj_id not in self.objects:
            raise InputError(f"no object {obj_id} (objects: {', '.join(map(str, self.objects)) or 'none'})")
        self._push()
        for t in list(self.annotations):
            a = self.annotations[t]
            a[a == obj_id] = 0
            if not a.any() and self.mode == "objects":
                del self.annotations[t]
        for m in self.results.values():
            m[m == obj_id] = 0

    def undo(self) -> bool:
        """Step the annotations back (False when there is nothing to undo)."""
        if not self._undo:
            return False
        self._redo.append(self._snapshot())
        self._restore(self._undo.pop())
        return True

    def redo(self) -> bool:
        if not self._redo:
            return False
        self._undo.append(self._snapshot())
        self._restore(self._redo.pop())
        return True

    # ----------------------------------------------------------- propagation
    def propagate(self, start: int = 0, end: int | None = None,
                  direction: PropagateDirection = "forward",
                  progress: bool = False) -> Iterator[tuple[int, np.ndarray, FrameConfidence]]:
        """Propagate the annotations; yield (frame index, (H, W) uint8 mask, confidence) for the asked frames.

        ``forward``: frames ``start..end`` (default: to the last); ``backward``:
        frames ``end..start`` (default from 0); ``both``: every frame.  With
        ``backward`` or ``both`` the run fills the frames before the first
        annotation by propagating backwards (segment's ``--direction both``).
        """
        if direction not in ("forward", "backward", "both"):
            raise InputError(f"direction must be forward, backward or both, got {direction!r}")
        if not self.annotations:
            raise InputError("nothing to propagate: annotate an object first")
        self._check_frame(start)
        if end is not None:
            self._check_frame(end)
        run_dir: Literal["forward", "both"] = "forward" if direction == "forward" else "both"
        if direction == "forward":
            lo, hi = start, end
        elif direction == "backward":
            lo, hi = (end or 0), start
        else:
            lo, hi = 0, None
        cached = self.features(progress=progress)
        seg = self.segmenter
        frames_cfg = seg.config.frames
        target = check_model_input(seg.config, *self.size, source=str(self.video))
        previous: dict[int, np.ndarray] = {}
        conf: dict[int, FrameConfidence] = {}
        first = min(self.annotations)
        every = self._checkpoint_every()
        resume = self._resume_point(start) if direction == "forward" else None
        if resume is not None:
            previous[id(resume[1])] = self.results.get(resume[0])
            log.info("resuming the forward pass after frame %d (a checkpoint)", resume[0])

        def observe(index: int, session: Any, out: np.ndarray) -> None:
            key = id(session)
            prev = previous.get(key)
            if prev is None and index + 1 in self.annotations:  # the backward pass starts next to an annotation
                prev = self.annotations[index + 1]
            annotated = index in self.annotations
            conf[index] = frame_confidence(None if annotated else session.last_soft, list(session.ids), out, prev,
                                           annotated=annotated)
            previous[key] = out
            if every and index >= first and (index + 1) % every == 0:  # the forward pass's state after frame index
                self._checkpoints[index] = (self._signature(index), self._copy_session(session))

        self.direction = run_dir
        records = self.driver.records(target, frames_cfg.interpolation, as_float=frames_cfg.resize_as_float)
        try:
            for rec, mask in seg.segment_records(records, self.annotations, mode=self.mode, direction=run_dir,
                                                   cached=cached, observe=observe, total=len(cached),
                                                   progress=progress, resume=resume):
                t = rec.index
                self.results[t] = mask
                if t in conf:
                    self.confidence[t] = conf[t]
                else:
                    self.confidence.pop(t, None)  # background before the first annotation
                if t >= lo and (hi is None or t <= hi):
                    yield t, mask, self.confidence.get(t, FrameConfidence(1.0))
                if hi is not None and t >= hi and direction != "both":
                    break  # later frames do not change earlier ones
        finally:
            getattr(records, "close", lambda: None)()

    def masks(self) -> list[np.ndarray]:
        """Every frame's current mask ((H, W) uint8; background where nothing was propagated yet)."""
        w, h = self.size
        return [self.results.get(t, np.zeros((h, w), np.uint8)) for t in range(self.num_frames)]

    def scores(self) -> dict[int, float]:
        """Frame index -> confidence score of the current results."""
        return {t: c.score for t, c in sorted(self.confidence.items())}

    def save(self, out: str | Path, *, formats: Sequence[str] | str = ("png",), overwrite: bool = True) -> Path:
        """Write ``out/<name>/`` in exactly segment's layout (PNG / COCO / YouTube-VOS, annotations.json)."""
        from vidprop.annotate.output import write_results

        return write_results(self, Path(out) / self.name, formats=formats, overwrite=overwrite)

    # ----------------------------------------------------------- checkpoints
    def _checkpoint_every(self) -> int:
        if not self.max_checkpoints or self._features is None:
            return 0
        return max(1, -(-len(self._features) // self.max_checkpoints))

    def _signature(self, upto: int) -> str:
        """What the forward pass up to frame ``upto`` depends on: the mode and the annotations of frames <= upto."""
        import hashlib

        h = hashlib.sha1(self.mode.encode())
        for t, a in sorted(self.annotations.items()):
            if t <= upto:
                h.update(str(t).encode())
                h.update(np.ascontiguousarray(a).tobytes())
        return h.hexdigest()

    def _copy_session(self, session: Any) -> Any:
        import copy

        keep = {id(session.segmenter): session.segmenter, id(session.profile): session.profile}
        return copy.deepcopy(session, memo=keep)

    def _resume_point(self, start: int) -> tuple[int, Any] | None:
        """The last valid checkpoint before ``start`` (a copy of it), or None."""
        first = min(self.annotations)
        for c in sorted(self._checkpoints, reverse=True):
            sig, session = self._checkpoints[c]
            if first <= c < start and c in self.results and sig == self._signature(c):
                return c, self._copy_session(session)
        return None

    # ----------------------------------------------------------- helpers
    def _check_frame(self, frame: int) -> None:
        if not isinstance(frame, (int, np.integer)) or isinstance(frame, bool):
            raise InputError(f"a frame is an index, got {frame!r}")
        n = self.driver.video_length if self._features is None else len(self._features)
        if frame < 0 or (n is not None and frame >= n):
            raise InputError(f"no frame {frame}" + (f" (frames 0..{n - 1})" if n else ""))

    @staticmethod
    def _check_id(obj_id: int) -> None:
        if not isinstance(obj_id, (int, np.integer)) or isinstance(obj_id, bool) or not 1 <= int(obj_id) <= 255:
            raise InputError(f"an object id is an integer in 1..255, got {obj_id!r}")

    def _snapshot(self) -> _State:
        return _State(tuple((t, _pack(a)) for t, a in sorted(self.annotations.items())))

    def _restore(self, state: _State) -> None:
        w, h = self.size
        self.annotations = {t: _unpack(b, (h, w)) for t, b in state.annotations}

    def _push(self) -> None:
        self._undo.append(self._snapshot())
        self._redo.clear()
        del self._undo[:-100]  # at most 100 steps back


def _pack(a: np.ndarray) -> bytes:
    import zlib

    return zlib.compress(np.ascontiguousarray(a, dtype=np.uint8).tobytes(), 1)


def _unpack(b: bytes, shape: tuple[int, int]) -> np.ndarray:
    import zlib

    return np.frombuffer(zlib.decompress(b), np.uint8).reshape(shape).copy()
