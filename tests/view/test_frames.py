"""Single frames on demand, JPEG-encoded for the browser: a video's frames (cached), image folders."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.io.gop import write_gop_video
from vidprop.io.synthetic import SyntheticScene, write_frame_folder
from vidprop.io.video import _iter_pyav
from vidprop.view.frames import FolderFrames, VideoFrames, encode_jpeg


@pytest.fixture(scope="module")
def gop_video(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_gop_video(tmp_path_factory.mktemp("frames"))


def test_jpeg_cache_is_bounded_and_returns_the_frame(gop_video):
    ref = list(_iter_pyav(gop_video))
    vf = VideoFrames(gop_video, cache=3)
    for i in range(8):
        data, media = vf.get(i)
        assert media == "image/jpeg" and data == encode_jpeg(ref[i], vf.quality)  # frame i, encoded
    assert list(vf._cache) == [5, 6, 7]
    vf.close()
    assert vf.get(6)[0] == encode_jpeg(ref[6], vf.quality)  # reopened after close


def test_folder_frames_by_name_then_by_position(tmp_path):
    scene = SyntheticScene(width=48, height=32, num_frames=3, seed=2)
    folder = write_frame_folder(scene, tmp_path / "f")
    ff = FolderFrames.open(folder)
    data, media = ff.get(0, "00002")  # the name wins over the position
    assert media == "image/png" and data == (folder / "00002.png").read_bytes()
    assert ff.get(1, "renamed")[0] == (folder / "00001.png").read_bytes()
    with pytest.raises(IndexError):
        ff.get(5, "nope")
    # a format browsers do not show is re-encoded
    from PIL import Image

    Image.fromarray(scene.frame(0)[0]).save(tmp_path / "f2.tif")
    (tmp_path / "t").mkdir()
    (tmp_path / "f2.tif").rename(tmp_path / "t" / "00000.tif")
    data, media = FolderFrames.open(tmp_path / "t").get(0, "00000")
    assert media == "image/jpeg" and data[:2] == b"\xff\xd8"
