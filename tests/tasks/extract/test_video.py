"""extract_video on the tiny random SD: chunks equal vidprop's video path, the index, resume, errors."""

from __future__ import annotations

import cv2
import numpy as np
import pytest
import torch
from PIL import Image

from vidprop.errors import ConfigError, InputError, OutputExistsError
from vidprop.io.feature_store import load_features, open_video_features
from vidprop.tasks.extract import (
    SaveOptions,
    extract_video,
)


def _reference_video(ext, folder):
    """vidprop's video path: each frame resized with OpenCV bilinear (short side 64: 128x72 -> 96x64), noise seeded by frame index."""
    out = []
    for i, f in enumerate(sorted(folder.iterdir())):
        small = cv2.resize(np.array(Image.open(f).convert("RGB")), (96, 64), interpolation=cv2.INTER_LINEAR)
        out.append(ext.extract(torch.from_numpy(small).permute(2, 0, 1)[None].contiguous(), indices=[i])[0])
    return torch.stack(out)  # (T, C, h, w)


def test_video_chunks_and_index(video_saver, frame_folder, tmp_path):
    res = extract_video(frame_folder, tmp_path / "out", saver=video_saver, options=SaveOptions(chunk=4))
    folder = tmp_path / "out" / "walk"  # a generic frame-folder name takes its parent's
    assert res.output == folder and res.frames_extracted == res.frames_total == 11
    assert [p.name for p in res.written] == ["chunk_00000.safetensors", "chunk_00001.safetensors", "chunk_00002.safetensors"]
    ref = _reference_video(video_saver.extractor, frame_folder)  # (11, 16, 8, 12)
    video = open_video_features(folder)
    assert len(video) == 11 and video.names == [f"f{i:03d}" for i in range(11)]
    assert torch.equal(torch.stack(list(video)), ref)  # exactly, frame by frame
    x, index = load_features(folder)
    assert torch.equal(x, ref)
    assert [(c["start"], c["count"]) for c in index["chunks"]] == [(0, 4), (4, 4), (8, 3)]
    assert index["frames"][9] == {"index": 9, "name": "f009", "file": "chunk_00002.safetensors", "offset": 1}
    assert index["feature_shape"] == [16, 8, 12] and index["frame_size"] == [128, 72] and index["model_size"] == [96, 64]
    s = index["settings"]
    assert (s["t"], s["up_ft_index"], s["ensemble"], s["stride"], s["chunk"], s["resize"]) == (51, 2, 1, 8, 4, "opencv_linear")
    chunk, meta = load_features(folder / "chunk_00002.safetensors")
    assert chunk.shape == (3, 16, 8, 12) and meta["frame_names"] == ["f008", "f009", "f010"] and meta["start"] == 8


def test_video_resume_and_one_file_per_frame(video_saver, frame_folder, tmp_path, caplog):
    out = tmp_path / "out"
    opts = SaveOptions(chunk=1, format="npz", save_dtype="float16")
    res = extract_video(frame_folder, out, saver=video_saver, options=opts, name="clip")
    folder = out / "clip"
    assert sorted(p.name for p in res.written) == [f"f{i:03d}.npz" for i in range(11)]
    again = extract_video(frame_folder, out, saver=video_saver, options=opts, name="clip")
    assert again.written == [] and len(again.skipped) == 11
    (folder / "index.json").unlink()  # an interrupted run: no index yet ...
    (folder / "f004.npz").unlink()  # ... a frame missing ...
    data = (folder / "f007.npz").read_bytes()
    (folder / "f007.npz").write_bytes(data[: len(data) // 2])  # ... and one cut short
    res = extract_video(frame_folder, out, saver=video_saver, options=opts, name="clip")
    assert sorted(p.name for p in res.written) == ["f004.npz", "f007.npz"] and res.frames_extracted == 2
    assert "redoing an incomplete feature file" in caplog.text
    x, _ = load_features(folder)
    assert torch.equal(x, _reference_video(video_saver.extractor, frame_folder).half())
    with pytest.raises(OutputExistsError, match="chunk: 1 -> 4"):
        extract_video(frame_folder, out, saver=video_saver, options=SaveOptions(chunk=4, format="npz", save_dtype="float16"), name="clip")
    res = extract_video(frame_folder, out, saver=video_saver, options=SaveOptions(chunk=4, format="npz", save_dtype="float16", overwrite=True),
                        name="clip")
    assert sorted(p.name for p in folder.iterdir()) == ["chunk_00000.npz", "chunk_00001.npz", "chunk_00002.npz", "index.json"]


def test_video_file_and_errors(video_saver, tmp_path):
    from vidprop.io.synthetic import SyntheticScene, write_video

    video = write_video(SyntheticScene(width=96, height=64, num_frames=5, num_objects=1, seed=0), tmp_path / "v.mp4")
    res = extract_video(video, tmp_path / "out", saver=video_saver, options=SaveOptions(chunk=2))
    assert res.frames_total == 5 and len(open_video_features(tmp_path / "out" / "v")) == 5
    assert [c["count"] for c in load_features(tmp_path / "out" / "v")[1]["chunks"]] == [2, 2, 1]
    with pytest.raises(ConfigError, match="safetensors or npz"):
        extract_video(video, tmp_path / "out", saver=video_saver, options=SaveOptions(format="pt"))
    with pytest.raises(OutputExistsError, match="format: 'safetensors' -> 'npz'"):
        extract_video(video, tmp_path / "out", saver=video_saver, options=SaveOptions(chunk=2, format="npz"))
    (tmp_path / "junk.mp4").write_bytes(b"junk")
    with pytest.raises(InputError, match="junk.mp4"):
        extract_video(tmp_path / "junk.mp4", tmp_path / "out", saver=video_saver)
