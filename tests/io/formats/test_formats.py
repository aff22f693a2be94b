"""Each format written from index masks, read back by a plain reader of the published format, gives the very
masks, ids and names; CVAT-for-video and MOTS read back through vidprop's own readers round-trip too."""

from __future__ import annotations

import json
import xml.etree.ElementTree as ET

import numpy as np
import pytest
from PIL import Image

from vidprop.errors import InputError
from vidprop.io.formats import ExportContext, make_writers
from vidprop.io.formats.cvat import CvatVideoWriter, cvat_rle, cvat_unrle, read_cvat_video
from vidprop.io.formats.labels import LabelMap
from vidprop.io.formats.mots import read_mots

NAMES = LabelMap({2: "car", 9: "person", 200: "dog"}, {9: (10, 200, 30)})


def _masks(n=5, h=30, w=40, seed=0):
    rng = np.random.default_rng(seed)
    out = []
    for t in range(n):
        m = np.zeros((h, w), np.uint8)
        m[2 + t : 12 + t, 3:15] = 2
        m[15:28, 20 + t : 35] = 9
        m[rng.random((h, w)) < 0.02] = 200  # scattered pixels: many runs
        if t in (1, 2):
            m[m == 9] = 0  # an object that leaves and comes back
        out.append(m)
    return out


def _write(tmp_path, fmt, masks, labels=NAMES, start=10):
    ctx = ExportContext(root=tmp_path, video="clip", width=40, height=30, labels=labels)
    (w,) = make_writers([fmt], ctx)
    for t, m in enumerate(masks):
        w.add(start + t, f"{start + t:05d}", m)
    return w.finish()


# ------------------------------------------------------------------ plain readers of the published formats
def _plain_cvat(path):
    """CVAT for video 1.1: per track, <mask> shapes; rle = run lengths over the box, row by row, 0s first."""
    root = ET.parse(path).getroot()
    task = root.find("meta/task")
    w = int(task.find("original_size/width").text)
    h = int(task.find("original_size/height").text)
    n, start = int(task.find("size").text), int(task.find("start_frame").text)
    frames = [np.zeros((h, w), np.uint8) for _ in range(n)]
    names = {}
    for track in root.findall("track"):
        oid = int(track.get("id")) + 1
        names[oid] = track.get("label")
        for shape in track.findall("mask"):
            if shape.get("outside") == "1":
                continue
            left, top, bw = int(shape.get("left")), int(shape.get("top")), int(shape.get("width"))
            pos, value = 0, 0
            for run in (int(v) for v in shape.get("rle").split(",")):
                for p in range(pos, pos + run):
                    if value:
                        frames[int(shape.get("frame"))][top + p // bw, left + p % bw] = oid
                pos += run
                value = 1 - value
    colours = {lab.find("name").text: lab.find("color").text for lab in root.iter("label")}
    return start, frames, names, colours


def _plain_mots_txt(path, h=30, w=40):
    from pycocotools import mask as mask_util

    frames, classes = {}, {}
    for line in path.read_text().splitlines():
        t, obj, cls, hh, ww, rle = line.split()
        m = frames.setdefault(int(t), np.zeros((h, w), np.uint8))
        m[mask_util.decode({"size": [int(hh), int(ww)], "counts": rle.encode()}).astype(bool)] = int(obj) % 1000
        classes[int(obj) % 1000] = (int(cls), int(obj) // 1000)
    return frames, classes


def _plain_ytvis(path):
    from pycocotools import mask as mask_util

    doc = json.loads(path.read_text())
    (video,) = doc["videos"]
    frames = [np.zeros((video["height"], video["width"]), np.uint8) for _ in range(video["length"])]
    for ann in doc["annotations"]:
        for t, seg in enumerate(ann["segmentations"]):
            if seg is not None:
                # as the YouTube-VIS API (ytvos.annToRLE): uncompressed counts go through frPyObjects
                rle = mask_util.frPyObjects(seg, *seg["size"]) if isinstance(seg["counts"], list) \
                    else {"size": seg["size"], "counts": seg["counts"].encode()}
                frames[t][mask_util.decode(rle).astype(bool)] = ann["category_id"]
    return doc, frames


# ------------------------------------------------------------------ tests
def test_cvat_rle_is_runs_over_the_box_row_by_row():
    m = np.zeros((5, 6), bool)
    m[1, 2:4] = True
    m[2, 3] = True
    runs, box = cvat_rle(m)
    assert box == (2, 1, 2, 2)  # left, top, width, height
    assert runs == [0, 2, 1, 1]  # the box starts with an object pixel: a zero-length background run first
    np.testing.assert_array_equal(cvat_unrle(runs, box, (6, 5)), m)


def test_cvat_video_read_by_a_plain_reader(tmp_path):
    masks = _masks()
    path = _write(tmp_path, "cvat-video", masks)
    start, frames, names, colours = _plain_cvat(path)
    assert start == 10
    for t, (a, b) in enumerate(zip(frames, masks)):
        np.testing.assert_array_equal(a, b, err_msg=f"frame {t}")
    assert names == {2: "car", 9: "person", 200: "dog"}
    assert colours["person"] == "#0ac81e"
    root = ET.parse(path).getroot()
    track9 = next(t for t in root.findall("track") if t.get("id") == "8")
    assert [(s.get("frame"), s.get("outside")) for s in track9.findall("mask")] == [
        ("0", "0"), ("1", "1"), ("3", "0"), ("4", "0")]  # leaves at 1, back at 3
    assert root.find("meta/task/mode").text == "interpolation" and root.find("version").text == "1.1"


def test_cvat_video_read_back_then_written_again_is_identical(tmp_path):
    masks = _masks()
    path = _write(tmp_path, "cvat-video", masks)
    doc = read_cvat_video(path)
    assert doc.start == 10 and doc.count == 5 and doc.size == (40, 30)
    assert sorted(doc.masks) == list(range(10, 15))
    for t, m in enumerate(masks):
        np.testing.assert_array_equal(doc.masks[10 + t], m)
    assert dict(doc.labels.names) == {2: "car", 9: "person", 200: "dog"}
    again = tmp_path / "again"
    again.mkdir()
    w = CvatVideoWriter(ExportContext(root=again, video=doc.name, width=40, height=30, labels=doc.labels))
    for idx in range(doc.start, doc.start + doc.count):
        w.add(idx, f"{idx:05d}", doc.masks.get(idx, np.zeros((30, 40), np.uint8)))
    assert w.finish().read_text() == path.read_text()


def test_mots_txt_and_png_read_by_plain_readers(tmp_path):
    masks = _masks()
    root = _write(tmp_path, "mots", masks)
    frames, classes = _plain_mots_txt(root / "instances_txt" / "clip.txt")
    assert sorted(frames) == list(range(10, 15))
    for t, m in enumerate(masks):
        np.testing.assert_array_equal(frames[10 + t], m)
    labels = (root / "labels.txt").read_text().splitlines()
    assert labels == ["background", "car", "person", "dog", "object"]
    assert classes == {2: (1, 1), 9: (2, 2), 200: (3, 3)}  # class in the line = obj_id // 1000
    pngs = sorted((root / "instances" / "clip").glob("*.png"))
    assert [p.name for p in pngs] == [f"{10 + t:06d}.png" for t in range(5)]
    for p, m in zip(pngs, masks):
        arr = np.asarray(Image.open(p))
        assert arr.dtype == np.uint16 or Image.open(p).mode.startswith("I")
        np.testing.assert_array_equal(arr % 1000, m)
        assert set(np.unique(arr[m == 9] // 1000)) <= {2}
    # vidprop reads MOTS back (txt, folder of instances, sequence folder of PNGs): the very masks and names
    for src in (root, root / "instances_txt" / "clip.txt", root / "instances" / "clip"):
        back = read_mots(src, video="clip")
        for t, m in enumerate(masks):
            np.testing.assert_array_equal(back.masks[10 + t], m)
        assert dict(back.labels.names) == {2: "car", 9: "person", 200: "dog"}


def test_mots_uses_kitti_class_ids_for_cars_and_pedestrians(tmp_path):
    masks = _masks()
    root = _write(tmp_path, "mots", masks, labels=LabelMap({2: "pedestrian", 9: "car"}))
    _, classes = _plain_mots_txt(root / "instances_txt" / "clip.txt")
    assert classes == {2: (2, 2), 9: (1, 1), 200: (3, 3)}  # 200 has no name: the class "object"
    assert (root / "labels.txt").read_text().splitlines() == ["background", "car", "pedestrian", "object"]


def test_youtube_vis_read_by_a_plain_reader(tmp_path):
    masks = _masks()
    path = _write(tmp_path, "youtube-vis", masks)
    doc, frames = _plain_ytvis(path)
    for t, (a, b) in enumerate(zip(frames, masks)):
        np.testing.assert_array_equal(a, b, err_msg=f"frame {t}")
    assert {c["id"]: c["name"] for c in doc["categories"]} == {2: "car", 9: "person", 200: "dog"}
    assert doc["videos"][0]["file_names"] == [f"clip/{10 + t:05d}.jpg" for t in range(5)]
    nine = next(a for a in doc["annotations"] if a["category_id"] == 9)
    assert nine["segmentations"][1] is None and nine["areas"][0] == float((masks[0] == 9).sum())


def test_coco_names_and_file_names(tmp_path):
    from vidprop.io.formats.coco import read_coco_masks

    masks = _masks()
    ctx = ExportContext(root=tmp_path, video="clip", width=40, height=30, labels=NAMES,
                        frame_file=lambda name: f"{name}.png")
    (w,) = make_writers(["coco"], ctx)
    for t, m in enumerate(masks):
        w.add(t, f"{t:05d}", m)
    doc = json.loads(w.finish().read_text())
    assert {c["id"]: c["name"] for c in doc["categories"]} == {2: "car", 9: "person", 200: "dog"}
    assert next(c for c in doc["categories"] if c["id"] == 9)["color"] == [10, 200, 30]
    assert doc["images"][0]["file_name"] == "00000.png"
    for (name, b), m in zip(read_coco_masks(tmp_path / "coco.json"), masks):
        np.testing.assert_array_equal(b, m)


def test_bad_cvat_and_mots_files(tmp_path):
    (tmp_path / "x.xml").write_text("<annotations><meta/></annotations>")
    with pytest.raises(InputError, match="original_size"):
        read_cvat_video(tmp_path / "x.xml")
    (tmp_path / "y.xml").write_text("not xml")
    with pytest.raises(InputError, match="not a readable CVAT XML"):
        read_cvat_video(tmp_path / "y.xml")
    (tmp_path / "m.txt").write_text("1 2 3\n")
    with pytest.raises(InputError, match=r"m.txt:1: a MOTS line"):
        read_mots(tmp_path / "m.txt")
