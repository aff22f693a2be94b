"""Image reading: the size from the header agrees with the decoded image (EXIF rotation too); bad files are
one InputError naming the file."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from vidprop.errors import InputError
from vidprop.io.images import read_image, read_image_size


def test_size_from_the_header_matches_the_decoded_image(tmp_path):
    img = np.zeros((30, 50, 3), np.uint8)
    Image.fromarray(img).save(tmp_path / "plain.png")
    exif = Image.Exif()
    exif[0x0112] = 6  # rotated 90 degrees: shown 30 wide, 50 high
    Image.fromarray(img).save(tmp_path / "rotated.jpg", exif=exif)
    for name in ("plain.png", "rotated.jpg"):
        h, w = read_image(tmp_path / name).shape[:2]
        assert read_image_size(tmp_path / name) == (w, h)
    assert read_image_size(tmp_path / "rotated.jpg") == (30, 50)
    assert read_image_size(tmp_path / "rotated.jpg", exif_transpose=False) == (50, 30)


def test_bad_files_name_the_file(tmp_path):
    (tmp_path / "text.png").write_text("not an image")
    (tmp_path / "folder.png").mkdir()
    cases = {"missing.png": "no such image file", "folder.png": "is a folder, not an image file",
             "text.png": "not a readable image"}
    for name, message in cases.items():
        for read in (read_image, read_image_size):
            with pytest.raises(InputError, match=message) as e:
                read(tmp_path / name)
            assert str(tmp_path / name) in str(e.value)
