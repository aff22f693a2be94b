from __future__ import annotations

import logging

import numpy as np
import pytest
from PIL import Image, ImageFilter

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


# --------------------------------------------------------------------------- 16-bit and lossy masks
def test_16bit_binary_png_is_one_object_and_other_16bit_masks_are_refused(tmp_path):
    m = np.zeros((6, 8), np.uint16)
    m[2:4, 3:6] = 65535
    Image.fromarray(m).save(tmp_path / "b16.png")
    assert Image.open(tmp_path / "b16.png").mode.startswith("I")
    arr, info = read_mask(tmp_path / "b16.png")
    assert info.kind == "binary" and info.ids == (1,)
    np.testing.assert_array_equal(arr, (m == 65535).astype(np.uint8))

    ids = np.zeros((6, 8), np.uint16)
    ids[0, 0], ids[5, 7] = 3, 7  # small ids in a 16-bit file are still ids
    Image.fromarray(ids).save(tmp_path / "ids16.png")
    assert read_mask(tmp_path / "ids16.png")[1].ids == (3, 7)

    for values in ([0, 1000], [0, 257, 65535], [0, 300]):
        bad = np.zeros((6, 8), np.uint16)
        bad[1, : len(values) - 1] = values[1:]
        Image.fromarray(bad).save(tmp_path / "bad16.png")
        with pytest.raises(InputError, match=r"bad16.png: .*16/32-bit\) mask with values 0\.\.\d+; vidprop reads "
                                             r"\{0, 65535\} as one object .*save it as an 8-bit PNG"):
            read_mask(tmp_path / "bad16.png")


def _jpeg(tmp_path, arr, name, quality=75):
    Image.fromarray(arr).save(tmp_path / name, quality=quality)
    back = np.asarray(Image.open(tmp_path / name).convert("RGB"))
    return tmp_path / name, back


@pytest.mark.parametrize("mode", ["L", "RGB"])
def test_binary_jpeg_mask_is_one_object_with_a_warning(tmp_path, caplog, mode):
    truth = np.zeros((96, 128), np.uint8)
    truth[20:70, 30:90] = 1
    truth[75:90, 100:120] = 1  # a second blob of the same object
    grey = truth * 255
    arr_in = grey if mode == "L" else np.repeat(grey[..., None], 3, axis=2)
    path, back = _jpeg(tmp_path, arr_in, f"bin_{mode}.jpg")
    assert len(np.unique(back.reshape(-1, 3), axis=0)) > 2  # the compression did add values
    with caplog.at_level(logging.WARNING, logger="vidprop.io.masks"):
        arr, info = read_mask(path)
    assert info.kind == "lossy" and info.ids == (1,)
    assert (arr != truth).mean() < 0.002  # at most a few edge pixels differ
    assert f"bin_{mode}.jpg: a JPEG (lossy) mask" in caplog.text and "snapped to the 2 dominant ones" in caplog.text


def test_multicolour_jpeg_mask_keeps_davis_ids(tmp_path, caplog):
    truth = np.zeros((96, 128), np.uint8)
    truth[10:50, 10:60] = 1
    truth[40:85, 50:110] = 2  # touching and overlapping the first: edges between two colours
    truth[60:90, 5:30] = 3
    rgb = davis_palette()[truth]
    path, back = _jpeg(tmp_path, rgb, "multi.jpg")
    plain = np.unique(back.reshape(-1, 3), axis=0)
    assert len(plain) > 10  # read as a colour PNG this would be dozens of objects
    with caplog.at_level(logging.WARNING, logger="vidprop.io.masks"):
        arr, info = read_mask(path)
    assert info.kind == "lossy" and info.ids == (1, 2, 3)
    assert (arr != truth).mean() < 0.01
    for i in (1, 2, 3):  # every object's interior is exact
        inner = (truth == i) & (np.asarray(Image.fromarray(truth == i).filter(ImageFilter.MinFilter(7))) > 0)
        assert (arr[inner] == i).all()
    assert "snapped to the 4 dominant ones" in caplog.text


def test_grey_levels_jpeg_are_ids_by_level(tmp_path):
    truth = np.zeros((64, 96), np.uint8)
    truth[5:30, 5:40], truth[35:60, 50:90] = 1, 2
    grey = np.array([0, 120, 240], np.uint8)[truth]
    path, _ = _jpeg(tmp_path, grey, "levels.jpg", quality=90)
    arr, info = read_mask(path)
    assert info.ids == (1, 2) and (arr != truth).mean() < 0.01


def test_jpeg_mask_without_distinguishable_objects_is_refused(tmp_path):
    ids = np.zeros((64, 64), np.uint8)
    ids[10:40, 10:40] = 2  # ids 0 and 2: the same colour after compression
    path, _ = _jpeg(tmp_path, ids, "tiny_ids.jpg")
    with pytest.raises(InputError, match="tiny_ids.jpg: a JPEG \\(lossy\\) mask in which no object can be told"):
        read_mask(path)
