"""The video driver: one open, records of a frame range carrying index, name, original and model input."""

from __future__ import annotations

import numpy as np
import pytest

from vidprop.errors import InputError
from vidprop.io.driver import FrameRange, VideoDriver, parse_frame_range, resize_frame
from vidprop.io.synthetic import SyntheticScene, write_frame_folder, write_video


@pytest.fixture(scope="module")
def sources(tmp_path_factory):
    d = tmp_path_factory.mktemp("drv")
    scene = SyntheticScene(width=96, height=64, num_frames=8, num_objects=1, seed=2)
    folder = write_frame_folder(scene, d / "frames")
    for i, p in enumerate(sorted(folder.iterdir())):  # file names that are not indices
        p.rename(folder / f"f{i + 1:03d}.png")
    return write_video(scene, d / "clip.mp4", lossless=True), folder, scene


def test_parse_frame_range():
    assert parse_frame_range("10:50") == FrameRange(10, 50)
    assert parse_frame_range("5:").end is None and parse_frame_range(":7").end == 7
    assert parse_frame_range("5:50", 10).end == 15 and parse_frame_range(None, 3).end == 3
    assert parse_frame_range(None).is_all
    for bad in ("5", "a:b", "9:3", "4:4"):
        with pytest.raises(InputError, match="--frames"):
            parse_frame_range(bad)
    with pytest.raises(InputError, match="--max-frames"):
        parse_frame_range("1:", 0)


def test_records_carry_index_name_original_and_model_input(sources):
    clip, folder, scene = sources
    drv = VideoDriver(clip, backend="pyav", frames=FrameRange(2, 6))
    recs = list(drv.records((64, 32)))
    assert [r.index for r in recs] == [2, 3, 4, 5] and [r.name for r in recs] == ["00002", "00003", "00004", "00005"]
    for r in recs:
        assert r.frame.shape == (64, 96, 3) and r.model_input.shape == (32, 64, 3)
        np.testing.assert_array_equal(r.model_input, resize_frame(r.frame, (64, 32)))
    again = list(drv.records(None))  # a second pass decodes again; no model input asked for
    assert [r.index for r in again] == [2, 3, 4, 5] and all(r.model_input is None for r in again)
    np.testing.assert_array_equal(again[0].frame, recs[0].frame)
    assert drv.contains(5) is True and drv.contains(6) is False and drv.contains(1) is False
    # the container's count (PyAV reads the header) is the length known before reading; not exact (length_known)
    assert drv.reported_length == 8 and not drv.length_known and drv.video_length is None
    whole = VideoDriver(clip, backend="pyav")
    assert whole.contains(7) is True and whole.contains(8) is False


def test_a_video_without_a_reported_frame_count_has_an_unknown_length(sources, monkeypatch):
    from vidprop.io import video as video_mod

    monkeypatch.setattr(video_mod, "_probe", lambda path, backend: (None, None))
    drv = VideoDriver(sources[0], backend="pyav")
    assert drv.reported_length is None and drv.contains(7) is None and drv.contains(100) is None


def test_frame_folder_names_and_lengths(sources):
    _, folder, _ = sources
    drv = VideoDriver(folder, frames=parse_frame_range("1:", 3))
    assert drv.num_frames == 3 and drv.video_length == 8 and drv.length_known
    assert [r.name for r in drv.records(None)] == ["f002", "f003", "f004"]
    assert drv.index_of("f005") == 4 and drv.index_of("6") == 6 and drv.index_of("nope") is None
    assert drv.contains(3) is True and drv.contains(4) is False
    with pytest.raises(InputError, match="has 8 frames"):
        VideoDriver(folder, frames=FrameRange(8))
