"""The Annotator: corrections re-propagated from cached features equal a fresh segment run, pixel for pixel."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from vidprop.annotate import Annotator
from vidprop.annotate.confidence import frame_confidence, likely_wrong
from vidprop.config import load_preset
from vidprop.errors import InputError
from vidprop.io.masks import write_indexed_png
from vidprop.io.synthetic import SyntheticScene, write_frame_folder
from vidprop.io.video import list_frames
from vidprop.io.images import read_image
from vidprop.tasks.segment import Segmenter, segment_video

from tests.tasks.test_segment import ColourStats

N = 8


@pytest.fixture(scope="module")
def scene_dir(tmp_path_factory):
    d = tmp_path_factory.mktemp("annot")
    scene = SyntheticScene(width=96, height=64, num_frames=N, num_objects=2, seed=7, object_ids=(1, 2))
    write_frame_folder(scene, d / "clip")
    return d, scene


@pytest.fixture(scope="module")
def seg():
    """Protocol A on colour statistics (a backbone-free extractor: the propagator never knows what made its features)."""
    cfg = load_preset("davis-fast").override(frames={"short_side": 64}, propagation={"n_last_frames": 3})
    return Segmenter(ColourStats(), cfg)


@pytest.fixture
def counting(seg):
    count = {"n": 0}
    inner = seg.extractor.extract

    def extract(x, **kw):
        count["n"] += int(x.shape[0])
        return inner(x, **kw)

    seg.extractor.extract = extract
    yield count
    seg.extractor.extract = inner


def _frames(folder):
    return [read_image(p, exif_transpose=False) for p in list_frames(folder)]


def _fresh(seg, folder, annotations, direction="forward"):
    return list(seg.run(_frames(folder), annotations=annotations, direction=direction))


def test_a_correction_equals_a_fresh_run_and_extracts_nothing(scene_dir, seg, tmp_path, counting, caplog):
    d, scene = scene_dir
    ann = Annotator(d / "clip", seg, cache=tmp_path / "cache")
    m0 = scene.frame(0)[1]
    ann.add_mask(0, m0 == 1, obj_id=1)
    ann.add_mask(0, m0 == 2, obj_id=2)
    first = list(ann.propagate(0))
    assert [t for t, _, _ in first] == list(range(N))
    assert counting["n"] == N  # the cache was filled
    want = _fresh(seg, d / "clip", {0: m0})
    for t, m, _ in first:
        np.testing.assert_array_equal(m, want[t])
    # a correction of object 2 in the middle, re-propagated from there
    counting["n"] = 0
    fix = scene.frame(4)[1] == 2
    ann.add_mask(4, fix, obj_id=2)
    with caplog.at_level("INFO", logger="vidprop.annotate.annotator"):
        again = list(ann.propagate(4))
    assert [t for t, _, _ in again] == list(range(4, N))
    assert "resuming the forward pass after frame 3" in caplog.text  # a checkpoint: frames 0..3 not redone
    assert counting["n"] == 0  # from cached features only
    anns = {0: m0, 4: np.where(fix, 2, 0).astype(np.uint8)}
    want = _fresh(seg, d / "clip", anns)
    got = ann.masks()
    for t in range(N):
        np.testing.assert_array_equal(got[t], want[t])
    assert (got[4] == 2).sum() == fix.sum()  # the annotation is exact on its frame
    plain = Annotator(d / "clip", seg, cache=tmp_path / "cache", checkpoints=0)  # always from the start
    plain.add_mask(0, m0)
    plain.add_mask(4, fix, obj_id=2)
    for t, m, _ in plain.propagate(4):
        np.testing.assert_array_equal(m, got[t])
    assert counting["n"] == N  # (the fresh run extracted; the cache was read by the second annotator)


def test_an_object_entering_later_with_both_directions(scene_dir, seg, tmp_path):
    d, scene = scene_dir
    ann = Annotator(d / "clip", seg, cache=tmp_path / "cache")
    m3 = scene.frame(3)[1]
    ann.add_mask(3, m3 == 1, obj_id=1)
    list(ann.propagate(3, direction="both"))
    ann.add_mask(5, scene.frame(5)[1] == 2, obj_id=2)  # a second object, first seen at frame 5
    out = {t: m for t, m, _ in ann.propagate(5, direction="both")}
    assert sorted(out) == list(range(N))
    want = _fresh(seg, d / "clip", dict(ann.annotations), direction="both")
    for t in range(N):
        np.testing.assert_array_equal(ann.masks()[t], want[t])
    assert ann.direction == "both"
    back = [t for t, _, _ in ann.propagate(5, end=1, direction="backward")]
    assert back == [1, 2, 3, 4, 5]


def test_confidence_is_one_on_annotations_and_below_elsewhere(scene_dir, seg, tmp_path):
    d, scene = scene_dir
    ann = Annotator(d / "clip", seg, cache=tmp_path / "cache")
    ann.add_mask(0, scene.frame(0)[1])
    confs = {t: c for t, _, c in ann.propagate(0)}
    assert confs[0].annotated and confs[0].score == 1.0
    assert all(0.0 <= c.score <= 1.0 for c in confs.values())
    assert all(set(c.objects) <= {1, 2} for c in confs.values())
    assert ann.scores() == {t: c.score for t, c in confs.items()}


def test_frame_confidence_by_hand():
    # 3 labels (bg, 1, 2) on a 1x2 grid: cell 0 is object 1 with p = (0.1, 0.7, 0.2) -> gap 0.5;
    # cell 1 is object 2 with p = (0.2, 0.2, 0.6) -> gap 0.4.  Soft labels need not be normalised.
    soft = torch.tensor([[[0.2, 0.4]], [[1.4, 0.4]], [[0.4, 1.2]]])
    mask = np.array([[1, 1, 2, 0]], np.uint8)
    prev = np.array([[1, 0, 2, 2]], np.uint8)
    c = frame_confidence(soft, [1, 2], mask, prev)
    assert c.objects[1] == pytest.approx(0.5 * 1 / 2)  # area 2 vs 1
    assert c.objects[2] == pytest.approx(0.4 * 1 / 2)  # area 1 vs 2
    assert c.score == pytest.approx(0.2) and not c.annotated
    gone = frame_confidence(soft, [1, 2], np.array([[1, 1, 0, 0]], np.uint8), prev)
    assert gone.objects[2] == 0.0 and gone.score == 0.0  # a vanished object is the least sure
    assert frame_confidence(None, [1], mask, None, annotated=True).score == 1.0
    assert likely_wrong({0: 1.0, 1: 0.9, 2: 0.2, 3: 0.7}, threshold=0.5, worst=2) == [2, 3]
    assert likely_wrong({0: 1.0, 1: 0.1, 2: 0.3, 3: 0.2}, threshold=0.5, worst=2) == [1, 3]
    many = {t: 0.01 * t for t in range(50)}  # all below 0.5: only the worst tenth is marked
    assert likely_wrong(many) == [0, 1, 2, 3, 4]


def test_remove_undo_redo_and_bad_input(scene_dir, seg, tmp_path):
    d, scene = scene_dir
    ann = Annotator(d / "clip", seg, cache=tmp_path / "cache")
    m0 = scene.frame(0)[1]
    ann.add_mask(0, m0)
    assert ann.objects == [1, 2]
    ann.add_mask(2, m0 == 1, obj_id=1)
    assert sorted(ann.annotations) == [0, 2]
    assert ann.undo() and sorted(ann.annotations) == [0]
    assert ann.redo() and sorted(ann.annotations) == [0, 2]
    ann.remove_object(1)
    assert ann.objects == [2] and sorted(ann.annotations) == [0]  # frame 2 held only object 1
    with pytest.raises(InputError, match=r"no object 7 \(objects: 2\)"):
        ann.remove_object(7)
    assert ann.undo() and ann.objects == [1, 2]
    with pytest.raises(InputError, match="an object id is an integer in 1..255"):
        ann.add_mask(0, m0 == 1, obj_id=300)
    with pytest.raises(InputError, match=r"no frame 99 \(frames 0..7\)"):
        ann.add_mask(99, m0 == 1, obj_id=1)
    with pytest.raises(InputError, match="the mask of frame 0 is 10x10 but the frames are 96x64"):
        ann.add_mask(0, np.zeros((10, 10), bool), obj_id=1)
    with pytest.raises(InputError, match="no click-to-mask model"):
        ann.add_points(0, [(5, 5)], [1], obj_id=1)
    with pytest.raises(InputError, match=r"the click \(200, 5\) is outside the 96x64 frame"):
        ann.add_points(0, [(200, 5)], [1], obj_id=1)
    with pytest.raises(InputError, match="needs x1 > x0"):
        ann.add_points(0, None, None, obj_id=1, box=(50, 5, 10, 30))


def test_save_writes_segments_layout(scene_dir, seg, tmp_path):
    d, scene = scene_dir
    ann = Annotator(d / "clip", seg, cache=tmp_path / "cache")
    m0 = scene.frame(0)[1]
    ann.add_mask(0, m0)
    fix = np.where(scene.frame(5)[1] == 1, 1, 0).astype(np.uint8)
    ann.add_mask(5, fix)
    list(ann.propagate(0))
    out = ann.save(tmp_path / "a", formats="png,coco,youtube-vos")
    write_indexed_png(tmp_path / "m0.png", m0)
    write_indexed_png(tmp_path / "m5.png", fix)
    ref = segment_video(d / "clip", None, tmp_path / "b", segmenter=seg, progress=False, overlay=False,
                        annotations={0: tmp_path / "m0.png", 5: tmp_path / "m5.png"}, formats="png,coco,youtube-vos")
    names = sorted(p.relative_to(out).as_posix() for p in out.rglob("*") if p.is_file())
    ref_names = sorted(p.relative_to(ref.output_dir).as_posix() for p in ref.output_dir.rglob("*") if p.is_file())
    assert names == ref_names
    for p in sorted(ref.output_dir.rglob("*.png")):
        rel = p.relative_to(ref.output_dir)
        np.testing.assert_array_equal(np.asarray(Image.open(out / rel)), np.asarray(Image.open(p)))
    import json

    a, b = (json.loads((f / "annotations.json").read_text()) for f in (out, ref.output_dir))
    assert [x["frame"] for x in a["annotations"]] == [x["frame"] for x in b["annotations"]] == [0, 5]
    assert a["frames"] == b["frames"] and a["mode"] == b["mode"]
