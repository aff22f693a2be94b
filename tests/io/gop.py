"""A video whose decode order differs from its presentation order, for the seeking tests."""

from __future__ import annotations

from pathlib import Path

from vidprop.io.synthetic import SyntheticScene

N = 30


def write_gop_video(folder: Path) -> Path:
    """30 frames, a keyframe every 5, 2 B-frames: decode order differs from presentation order."""
    import av

    path = folder / "gop.mp4"
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
