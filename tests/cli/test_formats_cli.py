"""`segment --format/--labels`, `--masks` from a CVAT or MOTS export, `export` of a folder of results, on the
tiny random SD: what a labelling team does with the results."""

from __future__ import annotations

import json
import xml.etree.ElementTree as ET

import numpy as np
import pytest
from PIL import Image

from vidprop.cli import main
from vidprop.io.formats import ExportContext, make_writers
from vidprop.io.formats.labels import LabelMap
from vidprop.io.masks import read_mask
from vidprop.io.synthetic import SyntheticScene, write_frame_folder

QUICK = ["--short-side", "64", "--ensemble", "1", "--no-progress", "--no-overlay"]
COLOURS = {2: (250, 50, 83), 5: (51, 221, 255)}  # not DAVIS palette colours


@pytest.fixture(scope="module")
def scene(tmp_path_factory):
    d = tmp_path_factory.mktemp("formats")
    sc = SyntheticScene(width=96, height=64, num_frames=5, num_objects=2, seed=3, object_ids=(2, 5))
    write_frame_folder(sc, d / "frames", ext=".jpg")
    masks = [sc.frame(t)[1] for t in range(5)]
    rgb = np.zeros((*masks[0].shape, 3), np.uint8)
    for oid, c in COLOURS.items():
        rgb[masks[0] == oid] = c
    Image.fromarray(rgb).save(d / "colour.png")
    return d, masks


def test_colour_mask_keeps_its_colours_and_labels_name_every_export(scene, tiny_sd_path, tmp_path, capsys):
    d, masks = scene
    (tmp_path / "labelmap.txt").write_text("background:0,0,0::\ncar:250,50,83::\nperson:51,221,255::\n")
    out = tmp_path / "out"
    rc = main(["segment", str(d / "frames"), "--mask", str(d / "colour.png"), "--labels", str(tmp_path / "labelmap.txt"),
               "--format", "png,coco,cvat-video,mots,youtube-vis", "--out", str(out), "--name", "vid",
               "--model", str(tiny_sd_path), *QUICK])
    assert rc == 0
    res = out / "vid"
    first = Image.open(res / "00000.png")
    # the labelmap's colours decide the ids (car = 1, person = 2) and the palette keeps them
    np.testing.assert_array_equal(np.asarray(first), np.where(masks[0] == 2, 1, np.where(masks[0] == 5, 2, 0)))
    assert first.getpalette()[3:9] == [250, 50, 83, 51, 221, 255]
    coco = json.loads((res / "coco.json").read_text())
    assert [(c["id"], c["name"], c["color"]) for c in coco["categories"]] == [
        (1, "car", [250, 50, 83]), (2, "person", [51, 221, 255])]
    assert coco["images"][0]["file_name"] == "00000.jpg"
    root = ET.parse(res / "cvat-video.xml").getroot()
    assert [(t.get("id"), t.get("label")) for t in root.findall("track")] == [("0", "car"), ("1", "person")]
    assert [lab.findtext("color") for lab in root.iter("label")] == ["#fa3253", "#33ddff"]
    assert (res / "mots" / "labels.txt").read_text().splitlines()[:3] == ["background", "car", "person"]
    ytvis = json.loads((res / "youtube-vis.json").read_text())
    assert [c["name"] for c in ytvis["categories"]] == ["car", "person"]
    assert json.loads((res / "labels.json").read_text())["1"] == {"name": "car", "color": [250, 50, 83]}


def test_without_labels_a_colour_mask_keeps_its_colours(scene, tiny_sd_path, tmp_path):
    d, masks = scene
    out = tmp_path / "out"
    assert main(["segment", str(d / "frames"), "--mask", str(d / "colour.png"), "--max-frames", "2",
                 "--out", str(out), "--name", "x", "--model", str(tiny_sd_path), *QUICK]) == 0
    im = Image.open(out / "x" / "00000.png")
    ids = np.asarray(im)
    for oid, c in COLOURS.items():  # whatever id each colour got, its palette entry is that colour
        (v,) = np.unique(ids[masks[0] == oid])
        assert tuple(im.getpalette()[3 * v : 3 * v + 3]) == c


def _cvat_file(path, masks, labels, video="vid"):
    path.mkdir(parents=True, exist_ok=True)
    (w,) = make_writers(["cvat-video"], ExportContext(root=path, video=video, width=96, height=64, labels=labels))
    for t, m in enumerate(masks):
        w.add(t, f"{t:05d}", m)
    return w.finish()


def test_cvat_export_read_by_masks_then_written_again_is_identical(scene, tiny_sd_path, tmp_path):
    d, masks = scene
    src = _cvat_file(tmp_path / "cvat", masks, LabelMap({2: "car", 5: "dog"}, {5: (9, 8, 7)}))
    out = tmp_path / "out"
    # every frame is a keyframe: in frame mode each output is its annotation, so the file must come back as it was
    assert main(["segment", str(d / "frames"), "--masks", str(src), "--annotation-mode", "frame",
                 "--format", "png,cvat-video", "--out", str(out), "--name", "vid",
                 "--model", str(tiny_sd_path), *QUICK]) == 0
    assert (out / "vid" / "cvat-video.xml").read_text() == src.read_text()
    for t, m in enumerate(masks):
        np.testing.assert_array_equal(read_mask(out / "vid" / f"{t:05d}.png", allow_empty=True)[0], m)


def test_corrections_from_cvat_and_mots_are_annotations(scene, tiny_sd_path, tmp_path):
    d, masks = scene
    # CVAT: a task whose frames 0 and 3 were corrected (keyframes); MOTS: the same frames
    src = _cvat_file(tmp_path / "cvat", [masks[0], masks[3]], LabelMap())
    text = src.read_text().replace('<mask frame="1"', '<mask frame="3"')  # the second keyframe is frame 3
    src.write_text(text)
    out = tmp_path / "out"
    assert main(["segment", str(d / "frames"), "--masks", str(src), "--out", str(out), "--name", "a",
                 "--model", str(tiny_sd_path), *QUICK]) == 0
    doc = json.loads((out / "a" / "annotations.json").read_text())
    assert [(a["frame"], a["ids"]) for a in doc["annotations"]] == [(0, [2, 5]), (3, [2, 5])]
    np.testing.assert_array_equal(read_mask(out / "a" / "00003.png")[0], masks[3])
    (w,) = make_writers(["mots"], ExportContext(root=tmp_path / "m", video="frames", width=96, height=64))
    (tmp_path / "m").mkdir(exist_ok=True)
    for t in (0, 3):
        w.add(t, f"{t:05d}", masks[t])
    mots = w.finish()
    assert main(["segment", str(d / "frames"), "--masks", str(mots), "--out", str(out), "--name", "b",
                 "--model", str(tiny_sd_path), *QUICK]) == 0
    for t in range(5):
        np.testing.assert_array_equal(read_mask(out / "b" / f"{t:05d}.png")[0], read_mask(out / "a" / f"{t:05d}.png")[0])


def test_export_a_folder_of_results(scene, tiny_sd_path, tmp_path, capsys):
    d, masks = scene
    out = tmp_path / "out"
    for name in ("one", "two"):
        assert main(["segment", str(d / "frames"), "--mask", str(d / "colour.png"), "--max-frames", "3",
                     "--out", str(out), "--name", name, "--model", str(tiny_sd_path), *QUICK]) == 0
    (tmp_path / "names.json").write_text('{"1": "car"}')
    assert main(["export", str(out), "--format", "cvat-video,youtube-vis,mots", "--labels",
                 str(tmp_path / "names.json")]) == 0
    for name in ("one", "two"):
        res = out / name
        root = ET.parse(res / "cvat-video.xml").getroot()
        assert root.find("track").get("label") == "car" and root.findtext("meta/task/size") == "3"
        assert (res / "youtube-vis.json").is_file() and (res / "mots" / "instances_txt" / f"{name}.txt").is_file()
        # the run's colours (labels.json) reach the export too
        colour = next(lab.findtext("color") for lab in root.iter("label") if lab.findtext("name") == "car")
        assert colour in ("#fa3253", "#33ddff")
    assert main(["export", str(out), "--format", "cvat-video"]) == 2  # exists: --overwrite
    assert "--overwrite" in capsys.readouterr().err
    assert main(["export", str(out), "--format", "cvat-video", "--overwrite"]) == 0
