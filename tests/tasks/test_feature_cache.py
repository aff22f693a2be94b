"""The feature cache: a video's features extracted once, read back by later runs with other annotations."""

from __future__ import annotations

import os

import numpy as np
import pytest
from PIL import Image

from vidprop.cli import main
from vidprop.config import load_preset
from vidprop.errors import InputError
from vidprop.tasks.feature_cache import FeatureCache, default_cache_dir
from vidprop.io.masks import write_indexed_png
from vidprop.io.synthetic import SyntheticScene, write_frame_folder, write_video
from vidprop.tasks.segment import Segmenter, segment_video
from vidprop.tasks.track import Tracker, track_video


@pytest.fixture(scope="module")
def clip(tmp_path_factory):
    d = tmp_path_factory.mktemp("cacheclip")
    scene = SyntheticScene(width=96, height=64, num_frames=6, num_objects=2, seed=3, object_ids=(1, 2))
    write_video(scene, d / "clip.mp4")
    write_frame_folder(scene, d / "frames")
    m0, m3 = scene.frame(0)[1], scene.frame(3)[1]
    write_indexed_png(d / "m0.png", m0)
    write_indexed_png(d / "m3.png", np.where(m3 == 2, 2, 0).astype(np.uint8))
    return d


def _segmenter(tiny_sd_path, **extractor):
    cfg = load_preset("davis-fast").override(frames={"short_side": 64}, extractor={"ensemble": 1, **extractor})
    return Segmenter.from_pretrained(str(tiny_sd_path), config=cfg)


class Counting:
    """Counts the frames a segmenter's extractor sees."""

    def __init__(self, seg):
        self.n = 0
        inner = seg.extractor.extract

        def extract(x, **kw):
            self.n += int(x.shape[0])
            return inner(x, **kw)

        seg.extractor.extract = extract


def _pngs(folder):
    return {p.name: np.asarray(Image.open(p)) for p in sorted(folder.glob("*.png"))}


def test_second_run_extracts_nothing_and_equals_a_fresh_run(clip, tiny_sd_path, tmp_path):
    seg = _segmenter(tiny_sd_path)
    count = Counting(seg)
    cache = tmp_path / "cache"
    segment_video(clip / "clip.mp4", clip / "m0.png", tmp_path / "a", segmenter=seg, progress=False, overlay=False,
                  feature_cache=cache)
    assert count.n == 6  # the cache was filled: every frame once
    entries = [p for p in cache.iterdir() if p.is_dir()]
    assert len(entries) == 1 and (entries[0] / "index.json").is_file()
    count.n = 0
    anns = {0: clip / "m0.png", 3: clip / "m3.png"}
    res = segment_video(clip / "clip.mp4", None, tmp_path / "b", segmenter=seg, progress=False, overlay=False,
                        annotations=anns, feature_cache=cache)
    assert count.n == 0  # nothing extracted: other annotations, same features
    fresh = segment_video(clip / "clip.mp4", None, tmp_path / "c", segmenter=seg, progress=False, overlay=False,
                          annotations=anns)
    assert count.n == 6
    got, want = _pngs(res.output_dir), _pngs(fresh.output_dir)
    assert list(got) == [f"{i:05d}.png" for i in range(6)] and list(got) == list(want)
    for k in want:
        np.testing.assert_array_equal(got[k], want[k])
    assert len(np.unique(got["00005.png"])) > 1  # something was propagated


def test_other_settings_are_another_entry(clip, tiny_sd_path, tmp_path):
    cache = tmp_path / "cache"
    for t in (261, 101):
        seg = _segmenter(tiny_sd_path, t=t)
        segment_video(clip / "frames", clip / "m0.png", tmp_path / f"t{t}", segmenter=seg, progress=False,
                      overlay=False, feature_cache=cache)
    entries = sorted(p.name for p in cache.iterdir() if p.is_dir())
    assert len(entries) == 2 and entries[0].rsplit("-", 1)[0] == entries[1].rsplit("-", 1)[0]  # one video, two keys


def test_a_damaged_chunk_is_redone(clip, tiny_sd_path, tmp_path):
    seg = _segmenter(tiny_sd_path)
    cache = tmp_path / "cache"
    first = segment_video(clip / "clip.mp4", clip / "m0.png", tmp_path / "a", segmenter=seg, progress=False,
                          overlay=False, feature_cache=cache)
    (entry,) = [p for p in cache.iterdir() if p.is_dir()]
    chunk = sorted(entry.glob("chunk_*.safetensors"))[0]
    chunk.write_bytes(chunk.read_bytes()[:100])  # truncated
    count = Counting(seg)
    again = segment_video(clip / "clip.mp4", clip / "m0.png", tmp_path / "b", segmenter=seg, progress=False,
                          overlay=False, feature_cache=cache)
    assert count.n == 6  # the one (16-frame) chunk was redone
    for k, v in _pngs(first.output_dir).items():
        np.testing.assert_array_equal(_pngs(again.output_dir)[k], v)


def test_track_reads_the_cache_with_the_same_result(clip, tiny_sd_path, tmp_path):
    cfg = load_preset("jhmdb").override(frames={"short_side": 64}, extractor={"model": str(tiny_sd_path),
                                                                              "ensemble": 1})
    tracker = Tracker.from_pretrained(config=cfg)
    kps = np.array([[20.0, 20.0], [60.0, 40.0]])
    a = track_video(clip / "clip.mp4", kps, tmp_path / "a", tracker=tracker, progress=False, overlay=False,
                    feature_cache=tmp_path / "cache")
    b = track_video(clip / "clip.mp4", kps, tmp_path / "b", tracker=tracker, progress=False, overlay=False,
                    feature_cache=tmp_path / "cache")
    c = track_video(clip / "clip.mp4", kps, tmp_path / "c", tracker=tracker, progress=False, overlay=False)
    assert a.json.read_text().replace("/a/", "/") == b.json.read_text().replace("/b/", "/")
    assert (b.output_dir / "keypoints.csv").read_text() == (c.output_dir / "keypoints.csv").read_text()


def test_a_cache_folder_that_cannot_be_written_is_one_line(clip, tmp_path, capsys):
    afile = tmp_path / "file"
    afile.write_text("x")
    with pytest.raises(InputError, match="exists and is not a folder"):
        FeatureCache(afile).check_writable()
    with pytest.raises(InputError, match=r"--feature-cache .*file/sub: cannot write here"):
        FeatureCache(afile / "sub").check_writable()
    # the CLI says so in one line before any model loads (the model folder does not even exist)
    rc = main(["segment", str(clip / "clip.mp4"), "--mask", str(clip / "m0.png"), "--out", str(tmp_path / "o"),
               "--model", str(tmp_path / "no-model-here"), "--feature-cache", str(afile / "sub"), "--no-progress"])
    err = capsys.readouterr().err.strip().splitlines()
    assert rc == 2 and len(err) == 1 and "--feature-cache" in err[0] and "cannot write here" in err[0]
    assert not (tmp_path / "o").exists()


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes into read-only folders")
def test_a_read_only_cache_folder_is_refused(tmp_path):
    ro = tmp_path / "ro"
    ro.mkdir()
    ro.chmod(0o500)
    try:
        with pytest.raises(InputError, match=r"--feature-cache .*ro: cannot write here"):
            FeatureCache(ro).check_writable()
    finally:
        ro.chmod(0o700)


def test_default_cache_dir_is_the_users_cache(monkeypatch, tmp_path):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    assert default_cache_dir() == tmp_path / "vidprop" / "features"
