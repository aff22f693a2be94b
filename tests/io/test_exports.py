"""COCO and YouTube-VOS exports round-trip to the very masks they were made from."""

from __future__ import annotations

import json

import numpy as np
import pytest
from PIL import Image

from vidprop.errors import InputError, OutputExistsError
from vidprop.io.formats import ExportContext
from vidprop.io.exports import CocoWriter, export_results, parse_formats, read_coco_masks
from vidprop.io.masks import davis_palette, read_mask, write_indexed_png


def _masks(n=4, h=30, w=40, seed=0):
    rng = np.random.default_rng(seed)
    out = []
    for t in range(n):
        m = np.zeros((h, w), np.uint8)
        m[2 + t : 12 + t, 3:15] = 2
        m[15:28, 20 + t : 35] = 9
        m[rng.random((h, w)) < 0.02] = 200  # scattered pixels: many RLE runs
        if t == 1:
            m[m == 9] = 0  # an object absent from a frame
        out.append(m)
    out.append(np.zeros((h, w), np.uint8))  # an empty frame
    return out


def test_parse_formats():
    assert parse_formats("png,coco") == ("png", "coco")
    assert parse_formats("coco, youtube-vos,coco") == ("coco", "youtube-vos")
    assert parse_formats(["ytvos"]) == ("youtube-vos",)
    with pytest.raises(InputError, match="unknown format 'jpeg'"):
        parse_formats("png,jpeg")


def test_coco_document_loads_in_pycocotools_and_round_trips(tmp_path):
    from pycocotools import mask as mask_util

    masks = _masks()
    coco = CocoWriter(ExportContext(root=tmp_path, video="clip", width=40, height=30))
    for t, m in enumerate(masks):
        coco.add(10 + t, f"{10 + t:05d}", m)
    assert coco.finish() == tmp_path / "coco.json"
    back = read_coco_masks(tmp_path / "coco.json")
    assert [n for n, _ in back] == [f"{10 + t:05d}" for t in range(5)]
    for (_, b), m in zip(back, masks):
        np.testing.assert_array_equal(b, m)
    doc = json.loads((tmp_path / "coco.json").read_text())
    assert [c["id"] for c in doc["categories"]] == [2, 9, 200]
    assert [c["name"] for c in doc["categories"]] == ["object 2", "object 9", "object 200"]
    assert [im["file_name"] for im in doc["images"]] == [f"{10 + t:05d}.jpg" for t in range(5)]  # with its extension
    assert [im["frame_index"] for im in doc["images"]] == [10, 11, 12, 13, 14]
    ann = next(a for a in doc["annotations"] if a["image_id"] == 1 and a["track_id"] == 2)
    assert ann["area"] == float((masks[0] == 2).sum())
    ys, xs = np.nonzero(masks[0] == 2)
    assert ann["bbox"] == [xs.min(), ys.min(), xs.max() - xs.min() + 1, ys.max() - ys.min() + 1]
    assert not any(a["image_id"] == 2 and a["track_id"] == 9 for a in doc["annotations"])  # absent: no entry
    decoded = mask_util.decode({"size": ann["segmentation"]["size"], "counts": ann["segmentation"]["counts"]})
    np.testing.assert_array_equal(decoded, masks[0] == 2)


def test_export_results_folder(tmp_path):
    folder = tmp_path / "clip"
    folder.mkdir()
    masks = _masks()
    for t, m in enumerate(masks):
        write_indexed_png(folder / f"{t:05d}.png", m)
    done = export_results(folder, ["coco", "youtube-vos"])
    assert done == {"coco": folder / "coco.json", "youtube-vos": folder / "youtube-vos" / "Annotations" / "clip"}
    for (_, b), m in zip(read_coco_masks(done["coco"]), masks):
        np.testing.assert_array_equal(b, m)
    pngs = sorted(done["youtube-vos"].glob("*.png"))
    assert [p.name for p in pngs] == [f"{t:05d}.png" for t in range(5)]
    for p, m in zip(pngs, masks):
        im = Image.open(p)
        assert im.mode == "P" and im.getpalette()[:30] == davis_palette()[:10].reshape(-1).tolist()
        np.testing.assert_array_equal(read_mask(p, allow_empty=True)[0], m)
    with pytest.raises(OutputExistsError, match="--overwrite"):
        export_results(folder, ["coco"])
    export_results(folder, ["coco"], overwrite=True)
    with pytest.raises(InputError, match="no PNG masks"):
        export_results(tmp_path / "clip" / "youtube-vos", ["coco"])
