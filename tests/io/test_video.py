from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from vidprop.errors import InputError
from vidprop.io.synthetic import SyntheticScene, write_frame_folder, write_video
from vidprop.io.video import open_video
from vidprop.io.writers import VideoWriter


@pytest.fixture(scope="module")
def scene():
    return SyntheticScene(width=96, height=64, num_frames=7, num_objects=2, seed=3)


@pytest.fixture(scope="module")
def clip(scene, tmp_path_factory):
    return write_video(scene, tmp_path_factory.mktemp("v") / "clip.mp4", lossless=True)


@pytest.mark.parametrize("backend", ["decord", "pyav", "opencv"])
def test_every_backend_yields_the_same_frames(clip, scene, backend):
    pytest.importorskip("decord") if backend == "decord" else None
    reader = open_video(clip, backend=backend)
    frames = list(reader)
    assert reader.info.backend == backend
    assert (reader.info.width, reader.info.height) == (96, 64)
    assert reader.info.fps == pytest.approx(10)
    assert len(frames) == 7
    ref = list(open_video(clip, backend="pyav"))
    for a, b in zip(frames, ref):
        assert a.shape == (64, 96, 3) and a.dtype == np.uint8
        assert np.abs(a.astype(int) - b.astype(int)).mean() < 1.0  # same decoder output up to colour conversion
    for a, (orig, _) in zip(frames, scene.frames()):
        assert np.abs(a.astype(int) - orig.astype(int)).mean() < 8  # codec tolerance (yuv420p chroma)


def test_folder_backend_sorted_and_exact(scene, tmp_path):
    folder = write_frame_folder(scene, tmp_path / "frames")
    (folder / "notes.txt").write_text("ignored")
    reader = open_video(folder)
    assert reader.info.backend == "folder" and reader.info.num_frames == 7
    assert reader.info.frame_names == tuple(f"{i:05d}" for i in range(7))
    for a, (orig, _) in zip(reader, scene.frames()):
        np.testing.assert_array_equal(a, orig)


def test_transform_runs_on_the_reader(clip):
    reader = open_video(clip, backend="pyav", transform=lambda f: f[::2, ::2])
    assert [f.shape for f in reader][0] == (32, 48, 3)


def test_early_stop_does_not_hang(clip):
    reader = open_video(clip, backend="pyav", prefetch=1)
    for i, _ in enumerate(reader):
        if i == 1:
            break
    assert len(list(reader)) == 7  # can be iterated again


def test_bad_inputs(tmp_path):
    with pytest.raises(InputError, match="no such video file or frame folder"):
        open_video(tmp_path / "missing.mp4")
    (tmp_path / "empty").mkdir()
    with pytest.raises(InputError, match="empty: no frames in this folder"):
        open_video(tmp_path / "empty")
    (tmp_path / "garbage.mp4").write_bytes(b"\x00" * 1000)
    with pytest.raises(InputError, match="garbage.mp4"):
        open_video(tmp_path / "garbage.mp4", backend="pyav")
    with pytest.raises(InputError, match="garbage.mp4"):
        open_video(tmp_path / "garbage.mp4")  # decord fails, PyAV fallback fails: still a clear error
    import av

    c = av.open(str(tmp_path / "noframes.mp4"), "w")  # a valid container with no frame
    s = c.add_stream("libx264", rate=10)
    s.width, s.height, s.pix_fmt = 32, 32, "yuv420p"
    c.start_encoding()
    c.close()
    for backend in ("pyav", "auto"):
        with pytest.raises(InputError, match="noframes.mp4: (has no video stream|the video has no frames)"):
            open_video(tmp_path / "noframes.mp4", backend=backend)
    mixed = tmp_path / "mixed"
    mixed.mkdir()
    Image.fromarray(np.zeros((8, 8, 3), np.uint8)).save(mixed / "0.png")
    Image.fromarray(np.zeros((8, 9, 3), np.uint8)).save(mixed / "1.png")
    with pytest.raises(InputError, match="1.png: frame size 9x8 differs"):
        list(open_video(mixed))
    (mixed / "2.png").write_text("not an image")
    (mixed / "1.png").unlink()
    with pytest.raises(InputError, match="2.png: cannot read this frame image"):
        list(open_video(mixed))


def test_overlay_video_is_browser_playable(tmp_path):
    import av

    vw = VideoWriter(tmp_path / "odd.mp4", 12.5, 33, 21)  # odd sizes are padded to even
    for i in range(3):
        vw.write(np.full((21, 33, 3), i * 40, np.uint8))
    vw.close()
    with av.open(str(tmp_path / "odd.mp4")) as c:
        s = c.streams.video[0]
        assert s.codec_context.name == "h264"
        assert s.codec_context.pix_fmt == "yuv420p"
        assert len(list(c.decode(s))) == 3


def test_video_names_for_output_folders(tmp_path):
    scene = SyntheticScene(width=32, height=32, num_frames=2)
    assert open_video(write_video(scene, tmp_path / "walk.mp4")).info.name == "walk"
    assert open_video(write_frame_folder(scene, tmp_path / "bmx-trees")).info.name == "bmx-trees"
    # a generic frame-folder name gives way to its parent's: judo/frames -> "judo"
    assert open_video(write_frame_folder(scene, tmp_path / "judo" / "frames")).info.name == "judo"
    assert open_video(write_frame_folder(scene, tmp_path / "cat" / "JPEGImages")).info.name == "cat"


@pytest.mark.parametrize("backend", ["pyav", "folder"])
def test_select_reads_a_frame_range(clip, scene, tmp_path, backend):
    src = clip if backend == "pyav" else write_frame_folder(scene, tmp_path / "frames")
    reader = open_video(src, backend=backend)
    every = list(reader)
    reader.select(2, 5)
    part = list(reader)
    assert len(part) == 3
    for a, b in zip(part, every[2:5]):
        np.testing.assert_array_equal(a, b)
    reader.select(5)
    assert len(list(reader)) == 2
    with pytest.raises(ValueError):
        reader.select(4, 4)


# --------------------------------------------------------------------------- broken files: one line, no noise
def _faststart_copy(src, dst):
    """Remux ``src`` with its index (moov) first, as streaming encoders write it."""
    import av

    with av.open(str(src)) as inp, av.open(str(dst), "w", options={"movflags": "faststart"}) as out:
        s = out.add_stream_from_template(inp.streams.video[0])
        for pkt in inp.demux(inp.streams.video[0]):
            if pkt.dts is not None:
                pkt.stream = s
                out.mux(pkt)
    assert dst.read_bytes()[36:40] == b"moov"
    return dst


@pytest.fixture(scope="module")
def broken(tmp_path_factory):
    d = tmp_path_factory.mktemp("broken")
    scene = SyntheticScene(width=96, height=64, num_frames=20, num_objects=1, seed=1)
    whole = write_video(scene, d / "whole.mp4").read_bytes()
    assert whole[4:8] == b"ftyp" and b"moov" not in whole[:64]  # index at the end
    fast = _faststart_copy(d / "whole.mp4", d / "fast.mp4").read_bytes()
    (d / "empty.mp4").write_bytes(b"")
    (d / "text.mp4").write_text("this is not a video\n" * 50)
    (d / "cut_index_last.mp4").write_bytes(whole[: len(whole) // 2])  # no index at all
    (d / "cut_index_first.mp4").write_bytes(fast[: len(fast) // 2])  # the first frames still decode
    (d / "cut.mkv").write_bytes(b"\x1a\x45\xdf\xa3" + b"\x00" * 60)
    return d


@pytest.mark.parametrize("name, message", [
    ("empty.mp4", "empty.mp4: the file is empty (0 bytes)"),
    ("text.mp4", "text.mp4: not a video file PyAV or decord can read (Invalid data found when processing input)"),
    ("cut_index_last.mp4", "cut_index_last.mp4: truncated: its 'mdat' box needs "),
    ("cut_index_first.mp4", "cut_index_first.mp4: truncated: its 'mdat' box needs "),
    ("cut.mkv", "cut.mkv: a damaged or truncated Matroska/WebM file that PyAV cannot open ("),
])
@pytest.mark.parametrize("backend", ["auto", "pyav"])
def test_broken_video_files_are_one_quiet_line(broken, name, message, backend, capfd):
    with pytest.raises(InputError) as exc:
        open_video(broken / name, backend=backend)
    assert message in str(exc.value) and "\n" not in str(exc.value)
    out, err = capfd.readouterr()
    assert (out, err) == ("", "")  # nothing from libav or decord on the C-level stderr


def test_broken_video_through_the_cli_is_one_line_exit_2(broken, tmp_path, capfd):
    from vidprop.cli import main
    from vidprop.io.masks import write_indexed_png

    m = np.zeros((64, 96), np.uint8)
    m[10:20, 10:20] = 1
    write_indexed_png(tmp_path / "m.png", m)
    for name, message in [("empty.mp4", "the file is empty (0 bytes)"), ("text.mp4", "not a video file"),
                          ("cut_index_first.mp4", "truncated: ")]:
        rc = main(["segment", str(broken / name), "--mask", str(tmp_path / "m.png"), "--out", str(tmp_path / "o"),
                   "--model", str(tmp_path / "unused-model"), "--no-progress"])
        lines = [x for x in capfd.readouterr().err.splitlines() if not x.startswith("INFO: ")]
        assert rc == 2
        assert len(lines) == 1 and lines[0].startswith(f"vidprop: error: {broken / name}: {message}"), lines


def test_decord_that_cannot_open_a_readable_file_falls_back_quietly(broken, tmp_path, capfd, monkeypatch):
    import vidprop.io.video as video

    monkeypatch.setattr(video, "_decord_available", lambda: True)
    monkeypatch.setattr(video, "_decord_opens", lambda path: False)
    reader = open_video(broken / "whole.mp4")
    assert reader.info.backend == "pyav" and len(list(reader)) == 20
    assert capfd.readouterr().err == ""


def test_native_stderr_goes_to_the_debug_log(caplog, capfd):
    import os

    from vidprop.io.video import native_stderr_to_debug

    with caplog.at_level("DEBUG", logger="vidprop.io.video"):
        with native_stderr_to_debug("clip.mp4"):
            os.write(2, b"[mov @ 0x1] moov atom not found\nERROR opening\n")
    assert capfd.readouterr().err == ""
    assert "clip.mp4: decoder messages: [mov @ 0x1] moov atom not found | ERROR opening" in caplog.text
