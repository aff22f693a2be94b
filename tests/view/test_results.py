"""Finding results on disk: safe paths, what a folder is, J&F from the score CSVs, where frames come from."""

from __future__ import annotations

import os

import numpy as np
import pytest
import yaml

from tests.eval.test_davis import hand_dataset, make_davis
from tests.view.conftest import CSV_ROWS, T
from vidprop.errors import InputError
from vidprop.eval import davis as D
from vidprop.view.frames import FolderFrames, VideoFrames
from vidprop.view.results import ResultsIndex, read_global_scores, read_sequence_scores, resolve_inside, result_kind


def test_resolve_inside_refuses_everything_but_plain_names_inside(tree):
    root = tree.root
    assert resolve_inside(root, "clip") == (root / "clip").resolve()
    assert resolve_inside(root, "clip", "00000.png") == (root / "clip" / "00000.png").resolve()
    for parts in [("..",), (".",), ("",), ("clip/../..",), ("/etc",), (str(tree.outside),), ("clip", ".."),
                  ("a\x00b",), ("..\\x",), ("evil",), ("linked", "00001.png"), ("missing",)]:
        assert resolve_inside(root, *parts) is None, parts
    # a symlink that stays inside is followed
    os.symlink(root / "clip", root / "clip-again", target_is_directory=True)
    try:
        assert resolve_inside(root, "clip-again") == (root / "clip").resolve()
    finally:
        os.unlink(root / "clip-again")


def test_result_kinds(tree):
    assert result_kind(tree.root / "clip") == "segment"
    assert result_kind(tree.root / "bare") == "segment"  # masks only
    assert result_kind(tree.root / "dance") == "track"
    assert result_kind(tree.root) is None  # CSVs only: a folder of results, not a result
    assert result_kind(tree.src) is None
    assert result_kind(tree.root / "clip" / "00000.png") is None


def test_sequence_scores_hand_computed(tree):
    s = read_sequence_scores(tree.root)
    for seq, objs in CSV_ROWS.items():
        j = np.mean([o[0] for o in objs])
        f = np.mean([o[1] for o in objs])
        assert s[seq]["j"] == pytest.approx(j) and s[seq]["f"] == pytest.approx(f)
        assert s[seq]["jf"] == pytest.approx(np.mean([(a + b) / 2 for a, b in objs]))
        assert (s[seq]["objects"], s[seq]["set"]) == (len(objs), "val")
    assert s["clip"]["jf"] == pytest.approx(0.75) and s["walk"]["jf"] == pytest.approx(0.375)
    assert read_global_scores(tree.root)["val"]["J&F-Mean"] == pytest.approx(0.625)


def test_scores_of_a_real_davis_evaluation_and_its_frames(tmp_path):
    # eval davis's own CSVs: each sequence's J&F is SequenceScore.jf_mean (to the CSV's 3 decimals)
    make_davis(tmp_path / "DAVIS", tmp_path / "res", hand_dataset())
    scores = D.score_davis(tmp_path / "DAVIS", tmp_path / "res", "val", workers=1, progress=False)
    D.write_csvs(scores, tmp_path / "res")
    (tmp_path / "res" / "config.yaml").write_text(yaml.safe_dump(
        {"benchmark": "DAVIS-2017 semi-supervised", "root": str(tmp_path / "DAVIS")}))
    index = ResultsIndex(tmp_path / "res")
    listing = index.listing()
    assert [v["name"] for v in listing["videos"]] == ["blob", "pair"]
    for v, seq in zip(listing["videos"], scores.sequences):
        assert v["jf"] == pytest.approx(seq.jf_mean, abs=1e-3)
        assert (v["j"], v["f"], v["objects"], v["kind"], v["frames"]) == (
            pytest.approx(seq.j_mean, abs=1e-3), pytest.approx(seq.f_mean, abs=1e-3), seq.num_objects, "segment", 5)
    assert listing["global"]["val"]["J&F-Mean"] == pytest.approx(scores.jf_mean, abs=1e-3)
    # no source.json: the frames are found through config.yaml's DAVIS root
    d = index.detail("blob")
    assert d.source.label == "source" and isinstance(d.source.frames, FolderFrames)
    assert d.source.frames.file_for(2, "00002") == tmp_path / "DAVIS" / "JPEGImages" / "480p" / "blob" / "00002.jpg"
    assert d.ids == [1]


def test_listing_of_a_folder_of_results(tree):
    index = ResultsIndex(tree.root)
    listing = index.listing()
    assert not listing["single"] and listing["root"] == "results"
    videos = {v["name"]: v for v in listing["videos"]}
    # evil (a symlink out) and .clip.partial-x (hidden) are not results here
    assert sorted(videos) == ["bare", "clip", "dance", "linked", "nosource", "walk"]
    assert (videos["clip"]["kind"], videos["clip"]["frames"], videos["dance"]["kind"]) == ("segment", T, "track")
    assert videos["dance"]["frames"] == T  # from source.json
    assert videos["linked"]["frames"] == 1  # the symlink leading out is not a frame
    assert videos["clip"]["jf"] == pytest.approx(0.75) and videos["bare"]["jf"] is None
    for name in ["evil", ".clip.partial-x", "..", "/etc", "nope", "clip/..", "results"]:
        assert index.folder_of(name) is None and index.detail(name) is None, name


def test_where_the_frames_come_from(tree):
    index = ResultsIndex(tree.root)
    clip = index.detail("clip")
    assert clip.source.label == "source" and isinstance(clip.source.frames, VideoFrames)
    assert clip.source.frames.path == tree.video.resolve()
    assert (clip.width, clip.height, clip.ids, clip.fps) == (160, 96, [1, 3], 10.0)
    assert [p.stem for p in clip.masks] == [f"{t:05d}" for t in range(T)]
    walk = index.detail("walk")
    assert isinstance(walk.source.frames, FolderFrames) and walk.source.frames.path == (tree.src / "walk" / "frames").resolve()
    nosource = index.detail("nosource")
    assert nosource.source.label == "overlay" and nosource.source.frames.path.name == "overlay.mp4"
    assert "overlay.mp4" in nosource.source.note
    bare = index.detail("bare")
    assert bare.source.label == "none" and bare.source.frames is None
    dance = index.detail("dance")
    assert dance.frames == [f"{t:05d}" for t in range(T)] and dance.data["joints"] == ["a", "b", "c"]
    assert index.detail("dance") is dance  # cached while the folder is unchanged ...
    assert len(index._details) == index.max_open == 4  # ... for the 4 latest results: clip was closed and dropped
    assert "clip" not in index._details and not clip.source.frames.is_open


def test_a_moved_source_falls_back_to_the_overlay(tree, tmp_path):
    import shutil

    res = tmp_path / "res"
    shutil.copytree(tree.root / "clip", res / "clip")
    (res / "clip" / "source.json").write_text('{"video": "%s"}' % (tmp_path / "moved.mp4"))
    d = ResultsIndex(res).detail("clip")
    assert d.source.label == "overlay" and "moved.mp4 not found" in d.source.note


def test_single_result_and_errors(tree, tmp_path):
    index = ResultsIndex(tree.root / "clip")
    assert index.single
    listing = index.listing()
    assert [v["name"] for v in listing["videos"]] == ["clip"]
    assert listing["videos"][0]["jf"] == pytest.approx(0.75)  # the parent's CSVs
    assert index.detail("clip").source.label == "source" and index.detail("walk") is None
    with pytest.raises(InputError, match="no such results folder"):
        ResultsIndex(tmp_path / "missing")
    with pytest.raises(InputError, match="is a file"):
        ResultsIndex(tree.video)
    with pytest.raises(InputError, match="no vidprop results here"):
        ResultsIndex(tree.src / "walk")
    bad = tmp_path / "bad" / "dance"
    bad.mkdir(parents=True)
    (bad / "keypoints.json").write_text("{not json")
    with pytest.raises(InputError, match="keypoints.json: not a readable keypoints file"):
        ResultsIndex(bad.parent).detail("dance")
