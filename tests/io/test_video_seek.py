"""Single frames of a video by index: seeking in a video with several keyframes and B-frames."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from tests.io.gop import N, write_gop_video
from vidprop.errors import InputError
from vidprop.io.video import _iter_pyav
from vidprop.io.video_seek import SeekableVideo


@pytest.fixture(scope="module")
def gop_video(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_gop_video(tmp_path_factory.mktemp("frames"))


def test_random_access_equals_sequential_decoding(gop_video):
    ref = list(_iter_pyav(gop_video))  # the reference: every frame, decoded in order
    video = SeekableVideo(gop_video, forward=2)
    assert len(video) == N
    for i in [17, 3, 29, 0, 11, 12, 13, 28, 5, 4, 22, 22, 21]:
        assert np.array_equal(video.frame(i), ref[i]), i
    assert video.seeks >= 6  # jumps seek (17, 3, 29, 11, 28, 5, 22, 21) ...
    with pytest.raises(IndexError, match="frame 30 is not in"):
        video.frame(N)


def test_playback_decodes_forward_without_seeking(gop_video):
    ref = list(_iter_pyav(gop_video))
    video = SeekableVideo(gop_video)
    for i in range(N):
        assert np.array_equal(video.frame(i), ref[i])
    assert video.seeks == 0 and video.is_open
    video.close()
    assert not video.is_open


def test_unreadable_video_is_an_input_error(tmp_path):
    bad = tmp_path / "bad.mp4"
    bad.write_bytes(b"not a video")
    with pytest.raises(InputError, match="bad.mp4: cannot open this video"):
        len(SeekableVideo(bad))
