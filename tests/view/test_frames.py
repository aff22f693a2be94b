"""Single frames on demand: seeking in a video with several keyframes and B-frames, image folders."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from vidprop.errors import InputError
from vidprop.io.synthetic import SyntheticScene, write_frame_folder
from vidprop.io.video import _iter_pyav
from vidprop.view.frames import FolderFrames, VideoFrames, encode_jpeg

N = 30


@pytest.fixture(scope="module")
def gop_video(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """30 frames, a keyframe every 5, 2 B-frames: decode order differs from presentation order."""
    import av

    path = tmp_path_factory.mktemp("frames") / "gop.mp4"
    scene = SyntheticScene(width=96, height=64, num_frames=N, seed=1)
    c = av.open(str(path), "w")
    s = c.add_stream("libx264", rate=10)
    s.width, s.height, s.pix_fmt = 96, 64, "yuv420p"
    s.options = {"g": "5", "keyint_min": "5", "bf": "2", "sc_threshold": "0", "crf": "18"}
    for img, _ in scene.frames():
        for p in s.encode(av.VideoFrame.from_ndarray(img, format="rgb24")):
            c.mux(p)
    for p in s.encode():
        c.mux(p)
    c.close()
    with av.open(str(path)) as c:
        packets = [(p.pts, p.dts, p.is_keyframe) for p in c.demux(c.streams.video[0]) if p.size]
    assert sum(k for *_, k in packets) == 6 and any(pts != dts for pts, dts, _ in packets)  # what this fixture is for
    return path


def test_random_access_equals_sequential_decoding(gop_video):
    ref = list(_iter_pyav(gop_video))  # the reference: every frame, decoded in order
    vf = VideoFrames(gop_video, cache=2, forward=2)
    assert len(vf) == N
    for i in [17, 3, 29, 0, 11, 12, 13, 28, 5, 4, 22, 22, 21]:
        assert np.array_equal(vf.frame(i), ref[i]), i
    assert vf.seeks >= 6  # jumps seek (17, 3, 29, 11, 28, 5, 22, 21) ...
    with pytest.raises(IndexError, match="frame 30 is not in"):
        vf.frame(N)


def test_playback_decodes_forward_without_seeking(gop_video):
    ref = list(_iter_pyav(gop_video))
    vf = VideoFrames(gop_video)
    for i in range(N):
        assert np.array_equal(vf.frame(i), ref[i])
    assert vf.seeks == 0
    vf.close()


def test_jpeg_cache_is_bounded_and_returns_the_frame(gop_video):
    ref = list(_iter_pyav(gop_video))
    vf = VideoFrames(gop_video, cache=3)
    for i in range(8):
        data, media = vf.get(i)
        assert media == "image/jpeg" and data == encode_jpeg(ref[i], vf.quality)  # frame i, encoded
    assert list(vf._cache) == [5, 6, 7]
    vf.close()
    assert vf.get(6)[0] == encode_jpeg(ref[6], vf.quality)  # reopened after close


def test_unreadable_video_is_an_input_error(tmp_path):
    bad = tmp_path / "bad.mp4"
    bad.write_bytes(b"not a video")
    with pytest.raises(InputError, match="bad.mp4: cannot open this video"):
        len(VideoFrames(bad))


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
