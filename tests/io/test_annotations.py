"""Annotation sources: frame references, --masks folders, and every check made before a model loads."""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from vidprop.errors import InputError
from vidprop.io.annotations import MaskSource, annotation_record, load_annotations, parse_mask_arg
from vidprop.io.driver import FrameRange, VideoDriver
from vidprop.io.masks import write_indexed_png
from vidprop.io.synthetic import SyntheticScene, write_frame_folder, write_video


@pytest.fixture(scope="module")
def videos(tmp_path_factory):
    d = tmp_path_factory.mktemp("ann")
    scene = SyntheticScene(width=64, height=32, num_frames=6, num_objects=2, seed=1)
    folder = write_frame_folder(scene, d / "frames")
    return write_video(scene, d / "clip.mp4"), folder, scene


def _mask(value=1, shape=(32, 64), box=(4, 12, 8, 20)):
    m = np.zeros(shape, np.uint8)
    y0, y1, x0, x1 = box
    m[y0:y1, x0:x1] = value
    return m


def _png(path, mask):
    write_indexed_png(path, mask)
    return Path(path)


def test_parse_mask_arg(tmp_path):
    assert parse_mask_arg("first.png") == MaskSource(None, Path("first.png"), "--mask first.png")
    s = parse_mask_arg("35:new.png")
    assert (s.frame, s.mask) == ("35", Path("new.png"))
    odd = tmp_path / "a:b.png"
    odd.write_bytes(b"")
    assert parse_mask_arg(str(odd)).frame is None  # an existing file is a path, even with a colon
    with pytest.raises(InputError, match="FRAME:PATH"):
        parse_mask_arg(":x.png")


def test_frames_by_index_or_stem(videos, tmp_path):
    _, folder, _ = videos
    drv = VideoDriver(folder)
    a, b, c = (_png(tmp_path / f"{n}.png", _mask(v)) for n, v in (("a", 1), ("b", 2), ("c", 5)))
    anns = load_annotations(drv, [MaskSource(None, a), MaskSource("00003", b), MaskSource(5, c)])
    assert list(anns) == [0, 3, 5] and anns[3].name == "00003" and anns[5].ids == (5,)
    assert anns[0].source == str(a)
    drv2 = VideoDriver(folder, frames=FrameRange(2))
    assert list(load_annotations(drv2, [MaskSource(None, a)])) == [2]  # the run's first frame


def test_masks_folder_layout(videos, tmp_path, caplog):
    clip, folder, _ = videos
    d = tmp_path / "Annotations"
    d.mkdir()
    _png(d / "00000.png", _mask(1))
    _png(d / "00004.png", _mask(2))
    _png(d / "notes.png", _mask(3))
    with caplog.at_level(logging.WARNING):
        anns = load_annotations(VideoDriver(folder), [], masks_dir=d)
    assert list(anns) == [0, 4] and "notes.png" in caplog.text
    anns = load_annotations(VideoDriver(clip), [], masks_dir=d)  # a video file: names are indices
    assert list(anns) == [0, 4]
    with pytest.raises(InputError, match="annotated twice"):
        load_annotations(VideoDriver(folder), [MaskSource("4", _png(tmp_path / "x.png", _mask(1)))], masks_dir=d)
    empty = tmp_path / "none"
    empty.mkdir()
    _png(empty / "cat.png", _mask(1))
    with pytest.raises(InputError, match="none: no PNG here names a frame"):
        load_annotations(VideoDriver(folder), [], masks_dir=empty)


def test_checks_name_the_file(videos, tmp_path):
    clip, folder, _ = videos
    drv = VideoDriver(folder)
    ok = _png(tmp_path / "ok.png", _mask(1))
    with pytest.raises(InputError, match=r"late.png: annotates frame 9 but .* has 6 frames"):
        load_annotations(drv, [MaskSource(None, ok), MaskSource(9, _png(tmp_path / "late.png", _mask(1)))])
    with pytest.raises(InputError, match="outside this run's frames 0:3"):
        load_annotations(VideoDriver(folder, frames=FrameRange(0, 3)), [MaskSource(4, ok)])
    big = _png(tmp_path / "big.png", _mask(1, shape=(64, 128), box=(8, 24, 16, 40)))
    with pytest.raises(InputError, match=r"big.png: mask size 128x64 differs .* --resize-mask"):
        load_annotations(drv, [MaskSource(2, big)])
    anns = load_annotations(drv, [MaskSource(2, big)], resize_mask=True)
    assert anns[2].mask.shape == (32, 64) and anns[2].ids == (1,)
    blank = tmp_path / "blank.png"
    Image.fromarray(np.zeros((32, 64), np.uint8)).save(blank)
    with pytest.raises(InputError, match="blank.png: the mask is empty"):
        load_annotations(drv, [MaskSource(None, ok), MaskSource(3, blank)])
    anns = load_annotations(drv, [MaskSource(None, ok), MaskSource(3, blank)], mode="frame")  # everything left
    assert anns[3].ids == ()
    with pytest.raises(InputError, match="no annotation holds an object"):
        load_annotations(drv, [MaskSource(None, blank)], mode="frame")
    with pytest.raises(InputError, match="'x7' is not a frame index or a frame file's name"):
        load_annotations(drv, [MaskSource("x7", ok)])


def test_colour_masks_share_one_colour_table(videos, tmp_path):
    _, folder, _ = videos
    drv = VideoDriver(folder)

    def rgb(path, colours):
        img = np.zeros((32, 64, 3), np.uint8)
        for k, c in enumerate(colours):
            img[2 + 6 * k : 6 + 6 * k, 4:20] = c
        Image.fromarray(img).save(path)
        return Path(path)

    orange, teal, pink = (250, 130, 10), (10, 200, 190), (240, 100, 200)
    a = rgb(tmp_path / "a.png", [orange, teal])  # alone: ids 1 (orange), 2 (teal) in colour order
    b = rgb(tmp_path / "b.png", [pink])  # alone it would be id 1
    anns = load_annotations(drv, [MaskSource(0, a), MaskSource(3, b)])
    order = sorted([orange, teal, pink])
    assert anns[0].ids == tuple(sorted(1 + order.index(c) for c in (orange, teal)))
    assert anns[3].ids == (1 + order.index(pink),)
    assert anns[0].mask[3, 5] == 1 + order.index(orange)
    many = [tmp_path / f"m{k}.png" for k in range(2)]
    for k, p in enumerate(many):  # 2 x 200 distinct colours: more than 255 objects in one run
        img = np.zeros((32, 64, 3), np.uint8)
        vals = np.arange(200) + 1 + 200 * k
        img.reshape(-1, 3)[:200] = np.stack([vals % 256, vals // 256 + 1, np.full(200, 7)], 1)
        Image.fromarray(img).save(p)
    with pytest.raises(InputError, match="m1.png: the colour masks of this run hold 400 colours"):
        load_annotations(drv, [MaskSource(0, many[0]), MaskSource(1, many[1])])


def test_annotation_record(videos, tmp_path):
    _, folder, _ = videos
    anns = load_annotations(VideoDriver(folder), [MaskSource(None, _png(tmp_path / "a.png", _mask(2))),
                                                  MaskSource(4, _png(tmp_path / "b.png", _mask(7)))])
    doc = annotation_record(anns, mode="objects", direction="both", frames=[0, 1, 2, 3, 4, 5])
    assert doc == {"mode": "objects", "direction": "both", "frames": [0, 6], "annotations": [
        {"frame": 0, "name": "00000", "ids": [2], "source": str(tmp_path / "a.png")},
        {"frame": 4, "name": "00004", "ids": [7], "source": str(tmp_path / "b.png")}]}
