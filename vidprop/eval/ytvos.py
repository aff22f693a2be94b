"""YouTube-VOS (2018 / 2019) semi-supervised: propagate every video from its given annotations, write a submission.

Layout under ``root`` (as the challenge distributes it)::

    valid/JPEGImages/<video>/<frame>.jpg        the frames the benchmark scores (every 5th frame of the 30 fps video)
    valid/Annotations/<video>/<frame>.png       each object's mask on the frame where it first appears
    valid/meta.json                             {"videos": {"<video>": {"objects": {"<id>": {"category": ...,
                                                 "frames": ["00000", "00005", ...]}}}}}
    valid_all_frames/JPEGImages/<video>/...     optional: every frame (also found as all_frames/valid_all_frames/)

Objects do not all start on the first frame: a video's annotation PNGs are
its annotations at those frames, applied in ``objects`` mode (the ids a PNG
holds are exact on its frame, the other objects keep being propagated).
When the all-frames folder exists the propagation runs over every frame
(smaller motion between frames) and only the scored frames are written.
The scored frames of a video are the union of its objects' ``frames`` in
``meta.json`` (all of ``valid/JPEGImages/<video>/`` without a meta entry).

Output::

    OUT/Annotations/<video>/<frame>.png          indexed PNGs (DAVIS palette), the scored frames
    OUT/config.yaml                              effective settings, model, version, split, date
    OUT/submission.zip                           Annotations/<video>/<frame>.png, ready to upload

Resumable: a video whose folder holds every scored frame is skipped;
resuming with other settings is an error.  Sources of the layout: the
YouTube-VOS site (youtube-vos.org/dataset/vos), the challenge servers on
CodaLab, and the evaluation code of Cutie and XMem (see the README).
"""

from __future__ import annotations

import json
import logging
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

from vidprop.engine import EngineOptions
from vidprop.errors import ConfigError, InputError
from vidprop.eval.video_worker import SegmenterWorker, UnwrittenUnits, segment_run, segmenting_engine
from vidprop.eval.records import run_record
from vidprop.io.atomic import atomic_file
from vidprop.io.video import IMAGE_EXTENSIONS
from vidprop.progress import progress_bar

__all__ = ["SPLITS", "YtvosVideo", "YtvosRun", "read_meta", "find_videos", "video_is_complete", "run_ytvos",
           "write_submission_zip", "VideoWorker"]

log = logging.getLogger(__name__)

#: Splits with given first-appearance annotations (the test split's ground truth is private too).
SPLITS = ("valid", "test")


@dataclass(frozen=True)
class YtvosVideo:
    """One video of a split: where its frames and annotations are, which frames are scored."""

    name: str
    frames_dir: Path
    annotations_dir: Path
    scored: tuple[str, ...]
    all_frames: bool


@dataclass(frozen=True)
class YtvosRun:
    """What a run wrote."""

    out: Path
    videos: tuple[str, ...]
    propagated: tuple[str, ...]
    skipped: tuple[str, ...]
    zip: Path | None


def read_meta(root: str | Path, split: str = "valid") -> dict[str, Any]:
    """``root/<split>/meta.json``'s ``videos`` mapping ({} when the file is absent)."""
    path = Path(root) / split / "meta.json"
    if not path.is_file():
        return {}
    try:
        doc = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise InputError(f"{path}: not readable JSON ({exc})") from exc
    videos = doc.get("videos") if isinstance(doc, dict) else None
    if not isinstance(videos, dict):
        raise InputError(f"{path}: expected {{\"videos\": {{video: {{\"objects\": ...}}}}}}")
    return videos


def _stems(folder: Path) -> list[str]:
    return sorted(p.stem for p in folder.iterdir() if p.suffix.lower() in IMAGE_EXTENSIONS and p.is_file())


def _all_frames_root(root: Path, split: str) -> Path | None:
    for cand in (root / f"{split}_all_frames" / "JPEGImages", root / "all_frames" / f"{split}_all_frames" / "JPEGImages"):
        if cand.is_dir():
            return cand
    return None


def find_videos(root: str | Path, split: str = "valid", *, videos: Sequence[str] | None = None,
                all_frames: bool = True) -> list[YtvosVideo]:
    """The videos of ``split`` (all, or ``videos``) with their frames, annotations and scored frames."""
    if split not in SPLITS:
        raise ConfigError(f"unknown YouTube-VOS split {split!r}; expected one of {', '.join(SPLITS)}")
    root = Path(root)
    images = root / split / "JPEGImages"
    anns = root / split / "Annotations"
    if not images.is_dir() or not anns.is_dir():
        raise InputError(f"{root}: not a YouTube-VOS folder (expected {split}/JPEGImages/ and {split}/Annotations/)")
    meta = read_meta(root, split)
    every = _all_frames_root(root, split) if all_frames else None
    if all_frames and every is None:
        log.info("no %s_all_frames/JPEGImages under %s: propagating over the scored frames only", split, root)
    names = sorted(p.name for p in anns.iterdir() if p.is_dir())
    if videos:
        unknown = [v for v in videos if v not in names]
        if unknown:
            raise InputError(f"{anns}: no video named {unknown[0]}")
        names = [n for n in names if n in set(videos)]
    if not names:
        raise InputError(f"{anns}: no video folders")
    out = []
    for name in names:
        sdir = images / name
        if not sdir.is_dir():
            raise InputError(f"{sdir}: frames of video {name} not found")
        available = _stems(sdir)
        entry = meta.get(name)
        if entry:
            scored = sorted({str(f) for obj in (entry.get("objects") or {}).values() for f in obj.get("frames", [])})
            missing = [f for f in scored if f not in set(available)]
            if missing:
                raise InputError(f"{root / split / 'meta.json'}: video {name} lists frame {missing[0]}, "
                                 f"which is not in {sdir}")
        else:
            scored = available
        fdir = every / name if every is not None and (every / name).is_dir() else sdir
        out.append(YtvosVideo(name, fdir, anns / name, tuple(scored), fdir != sdir))
    return out


def video_is_complete(out: str | Path, video: YtvosVideo) -> bool:
    """Whether ``out/Annotations/<video>/`` holds every scored frame."""
    folder = Path(out) / "Annotations" / video.name
    if not folder.is_dir():
        return False
    have = {p.stem for p in folder.glob("*.png")}
    return all(s in have for s in video.scored)


def write_submission_zip(out: str | Path, videos: Sequence[str], path: str | Path | None = None) -> Path:
    """Zip ``out/Annotations/<video>/*.png`` as ``Annotations/<video>/<frame>.png`` (the upload layout)."""
    out = Path(out)
    path = Path(path) if path is not None else out / "submission.zip"
    with atomic_file(path, overwrite=True) as tmp, zipfile.ZipFile(tmp, "w", zipfile.ZIP_DEFLATED) as z:
        for v in videos:
            for png in sorted((out / "Annotations" / v).glob("*.png")):
                z.write(png, f"Annotations/{v}/{png.name}")
    return path


def _prepare(out: Path, v: YtvosVideo, overwrite: bool) -> Any:
    from vidprop.tasks.segment import prepare_segment

    target = out / "Annotations" / v.name
    return prepare_segment(v.frames_dir, None, out / "Annotations", masks=v.annotations_dir,
                           name=v.name, overwrite=overwrite or target.exists())


class VideoWorker(SegmenterWorker):
    """Propagates YouTube-VOS videos into one results folder."""

    def __call__(self, v: YtvosVideo) -> tuple[int, str]:
        job = _prepare(self.out, v, self.overwrite)
        if job.out_dir.exists() and not self.overwrite:
            log.warning("%s is incomplete; recomputing it", job.out_dir)
        res = job.run(self.segmenter, overlay=False, formats=("png",), progress=False, keep=v.scored)
        return res.num_frames, res.profile


def run_ytvos(
    root: str | Path,
    out: str | Path,
    split: str = "valid",
    *,
    videos: Sequence[str] | None = None,
    config: Any = "davis-fast",
    model: str | None = None,
    device: str | None = None,
    dtype: str | None = None,
    all_frames: bool = True,
    overwrite: bool = False,
    progress: bool = True,
    segmenter: Any = None,
    make_zip: bool = True,
    engine: EngineOptions | None = None,
) -> YtvosRun:
    """Propagate every video of ``split`` from its annotations into ``out/Annotations/``; zip the submission.

    Resumable (complete videos are skipped unless ``overwrite``); the model
    is loaded only when a video is left to run; ``out/config.yaml`` records
    the effective settings before any work, and a resumed run must use the
    same ones.  ``engine``: where videos are propagated (default: one after
    the other in this process; ``EngineOptions(kind="ray")``: spread over Ray
    workers that each load the model once; the masks are the same).
    ``segmenter``: a loaded Segmenter (in this process only) or a picklable
    callable returning one, called once in each worker.
    """
    run = segment_run(config, model, device, dtype, segmenter, engine, root, out)  # as eval davis
    root, out = run.root, run.out
    items = find_videos(root, split, videos=videos, all_frames=all_frames)
    todo = [v for v in items if overwrite or not video_is_complete(out, v)]
    skipped = tuple(v.name for v in items if v not in todo)
    log.info("YouTube-VOS %s: %d video(s), %d to propagate into %s", split, len(items), len(todo), out)

    def record(cfg: Any, revision: str | None) -> dict[str, Any]:
        return run_record("YouTube-VOS semi-supervised", root, cfg, revision=revision, split=split,
                          videos=[v.name for v in items], all_frames=any(v.all_frames for v in items),
                          annotation_mode="objects")

    if todo:
        for v in todo:  # every video's frames and annotations are checked before the model loads (not kept)
            _prepare(out, v, overwrite)
        with segmenting_engine(run, VideoWorker, len(todo), "video", record, overwrite=overwrite, device=device,
                               dtype=dtype) as eng:
            bar = progress_bar(total=len(todo), desc="YouTube-VOS propagate", unit="video", enabled=progress,
                               leave=True)
            unwritten = UnwrittenUnits("video", len(todo))  # a full disk: the others go on, then one error
            try:
                for outcome in eng.map(todo):
                    v = todo[outcome.index]
                    if outcome.error is not None:
                        if unwritten.take(v.name, outcome.error):
                            bar.update(1)
                            continue
                        raise outcome.error
                    n, profile = outcome.value
                    log.info("%s: %d frames propagated, %d scored frames written (%s)", v.name, n, len(v.scored),
                             profile)
                    bar.update(1)
                    bar.set_postfix_str(v.name)
            finally:
                bar.close()
            unwritten.raise_if_any()
    zip_path = None
    if make_zip:
        zip_path = write_submission_zip(out, [v.name for v in items])
        if videos:
            log.warning("%s holds only the %d video(s) asked for; the server scores the whole split",
                        zip_path, len(items))
    return YtvosRun(out=out, videos=tuple(v.name for v in items), propagated=tuple(v.name for v in todo),
                    skipped=skipped, zip=zip_path)
