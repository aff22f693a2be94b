"""``read_frame``: one frame of a video file (seeking reader) or of a frame folder, as RGB."""

from __future__ import annotations

import numpy as np

from vidprop.annotate.clicks import read_frame
from vidprop.io.images import read_image
from vidprop.io.synthetic import SyntheticScene, write_frame_folder, write_video
from vidprop.io.video import open_video


def test_read_frame_of_a_video_file_and_of_a_folder(tmp_path):
    scene = SyntheticScene(width=64, height=48, num_frames=6, seed=3)
    video = write_video(scene, tmp_path / "clip.mp4")
    ref = list(open_video(video, backend="pyav"))  # every frame, decoded in order
    for i in (4, 1, 5):
        assert np.array_equal(read_frame(video, i), ref[i]), i
    folder = write_frame_folder(scene, tmp_path / "frames")
    assert np.array_equal(read_frame(folder, 2, "00002"), read_image(folder / "00002.png", exif_transpose=False))
