from __future__ import annotations

import logging

import numpy as np
import pytest
from PIL import Image

from vidprop.errors import InputError
from vidprop.io.masks import davis_palette, read_mask, write_indexed_png


def test_davis_palette_first_colours():
    pal = davis_palette()
    assert pal[0].tolist() == [0, 0, 0]
    assert pal[1].tolist() == [128, 0, 0]
    assert pal[2].tolist() == [0, 128, 0]
    assert pal[3].tolist() == [128, 128, 0]
    assert pal[4].tolist() == [0, 0, 128]


def test_indexed_png_roundtrip_keeps_ids(tmp_path):
    m = np.zeros((5, 6), np.uint8)
    m[1:3, 1:3] = 2
    m[3:, 4:] = 9
    write_indexed_png(tmp_path / "m.png", m)
    im = Image.open(tmp_path / "m.png")
    assert im.mode == "P" and im.getpalette()[3:6] == [128, 0, 0]
    arr, info = read_mask(tmp_path / "m.png")
    np.testing.assert_array_equal(arr, m)
    assert info.kind == "indexed" and info.ids == (2, 9)


def test_grey_ids_binary_and_antialiased(tmp_path, caplog):
    ids = np.zeros((4, 4), np.uint8)
    ids[0, 0], ids[3, 3] = 1, 3
    Image.fromarray(ids).save(tmp_path / "ids.png")
    arr, info = read_mask(tmp_path / "ids.png")
    assert info.kind == "ids" and info.ids == (1, 3)

    binary = np.zeros((4, 4), np.uint8)
    binary[1:3, 1:3] = 255
    Image.fromarray(binary).save(tmp_path / "bin.png")
    arr, info = read_mask(tmp_path / "bin.png")
    assert info.kind == "binary" and info.ids == (1,) and arr.sum() == 4

    grad = np.tile(np.arange(0, 250, 5, dtype=np.uint8), (3, 1))  # 50 grey levels
    Image.fromarray(grad).save(tmp_path / "aa.png")
    with caplog.at_level(logging.WARNING):
        arr, info = read_mask(tmp_path / "aa.png")
    assert info.kind == "antialiased" and info.ids == (1,)
    np.testing.assert_array_equal(arr[0], (np.arange(0, 250, 5) >= 128).astype(np.uint8))
    assert "anti-aliased" in caplog.text


def test_rgb_colour_masks(tmp_path, caplog):
    pal = davis_palette()
    rgb = np.zeros((4, 4, 3), np.uint8)
    rgb[0, :2] = pal[1]
    rgb[3, 3] = pal[5]
    Image.fromarray(rgb).save(tmp_path / "davis_rgb.png")
    arr, info = read_mask(tmp_path / "davis_rgb.png")
    assert info.kind == "colour" and info.ids == (1, 5)  # DAVIS colours keep their index

    other = np.zeros((3, 3, 3), np.uint8)
    other[0, 0] = (255, 0, 0)
    other[1, 1] = (0, 255, 0)
    Image.fromarray(other).save(tmp_path / "other.png")
    arr, info = read_mask(tmp_path / "other.png")
    assert info.ids == (1, 2)
    assert arr[1, 1] == 1 and arr[0, 0] == 2  # sorted by colour value: (0,255,0) < (255,0,0)

    many = np.zeros((5, 5, 3), np.uint8)
    for i in range(25):
        many[i // 5, i % 5] = (i * 10 + 5, 3, 7)
    Image.fromarray(many).save(tmp_path / "many.png")
    with caplog.at_level(logging.WARNING):
        read_mask(tmp_path / "many.png")
    assert "colours" in caplog.text


def test_bad_masks(tmp_path):
    with pytest.raises(InputError, match="not found"):
        read_mask(tmp_path / "missing.png")
    (tmp_path / "notimage.png").write_text("hello")
    with pytest.raises(InputError, match="notimage.png: not a readable image"):
        read_mask(tmp_path / "notimage.png")
    Image.fromarray(np.zeros((4, 4), np.uint8)).save(tmp_path / "empty.png")
    with pytest.raises(InputError, match="empty.png: the mask is empty"):
        read_mask(tmp_path / "empty.png")
