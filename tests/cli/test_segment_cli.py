"""`vidprop segment` end to end on synthetic footage with the tiny random SD."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from vidprop.cli import main
from vidprop.io.masks import davis_palette, write_indexed_png
from vidprop.io.synthetic import SyntheticScene, write_frame_folder, write_video

FAST = ["--short-side", "64", "--ensemble", "2", "--no-progress"]


@pytest.fixture(scope="module")
def footage(tmp_path_factory):
    d = tmp_path_factory.mktemp("footage")
    scene = SyntheticScene(width=128, height=72, num_frames=6, num_objects=2, seed=5, object_ids=(2, 5))
    write_video(scene, d / "clip.mp4")
    write_frame_folder(scene, d / "frames", ext=".jpg")
    write_indexed_png(d / "mask.png", scene.frame(0)[1])
    return d, scene


def _check_outputs(folder, n, size, first_mask, names):
    pngs = sorted(folder.glob("*.png"))
    assert [p.stem for p in pngs] == names
    assert len(pngs) == n
    for p in pngs:
        im = Image.open(p)
        assert im.mode == "P" and im.size == size
        assert im.getpalette()[: 3 * 6] == davis_palette()[:6].reshape(-1).tolist()
        assert set(np.unique(np.asarray(im))) <= {0, 2, 5}
    np.testing.assert_array_equal(np.asarray(Image.open(pngs[0])), first_mask)
    assert not list(folder.parent.glob(".*partial*"))  # no temporary folder left


def test_segment_video_file_end_to_end(footage, tiny_sd_path, tmp_path, capsys):
    d, scene = footage
    rc = main(["segment", str(d / "clip.mp4"), "--mask", str(d / "mask.png"), "--out", str(tmp_path),
               "--model", str(tiny_sd_path), *FAST])
    assert rc == 0
    out = tmp_path / "clip"
    _check_outputs(out, 6, (128, 72), scene.frame(0)[1], [f"{i:05d}" for i in range(6)])
    import av

    with av.open(str(out / "overlay.mp4")) as c:
        s = c.streams.video[0]
        assert (s.codec_context.name, s.codec_context.pix_fmt) == ("h264", "yuv420p")
        assert len(list(c.decode(s))) == 6
    assert "wrote 6 masks" in capsys.readouterr().out


def test_segment_frame_folder_is_deterministic(footage, tiny_sd_path, tmp_path):
    d, scene = footage
    for name in ("a", "b"):
        assert main(["segment", str(d / "frames"), "--mask", str(d / "mask.png"), "--out", str(tmp_path),
                     "--name", name, "--model", str(tiny_sd_path), "--no-overlay", "--protocol", "crw",
                     "--topk", "5", "--n-last", "3", *FAST]) == 0
    _check_outputs(tmp_path / "a", 6, (128, 72), scene.frame(0)[1], [f"{i:05d}" for i in range(6)])
    assert not (tmp_path / "a" / "overlay.mp4").exists()
    for p in sorted((tmp_path / "a").glob("*.png")):
        np.testing.assert_array_equal(np.asarray(Image.open(p)), np.asarray(Image.open(tmp_path / "b" / p.name)))


def _run_err(capsys, args):
    rc = main(args)
    err = capsys.readouterr().err.strip().splitlines()
    return rc, err[-1] if err else ""


def test_bad_inputs_give_one_line_and_nonzero_exit(footage, tiny_sd_path, tmp_path, capsys):
    d, _ = footage
    model = ["--model", str(tiny_sd_path), *FAST]
    rc, err = _run_err(capsys, ["segment", str(tmp_path / "missing.mp4"), "--mask", str(d / "mask.png"), *model])
    assert rc != 0 and "missing.mp4: no such video file" in err
    (tmp_path / "empty").mkdir()
    rc, err = _run_err(capsys, ["segment", str(tmp_path / "empty"), "--mask", str(d / "mask.png"), *model])
    assert rc != 0 and "no frames in this folder" in err
    rc, err = _run_err(capsys, ["segment", str(d / "clip.mp4"), "--mask", str(d / "clip.mp4"), *model])
    assert rc != 0 and "clip.mp4: not a readable image" in err
    Image.fromarray(np.zeros((72, 128), np.uint8)).save(tmp_path / "empty.png")
    rc, err = _run_err(capsys, ["segment", str(d / "clip.mp4"), "--mask", str(tmp_path / "empty.png"), *model])
    assert rc != 0 and "mask is empty" in err
    small = np.zeros((36, 64), np.uint8)
    small[10:20, 10:20] = 1
    Image.fromarray(small).save(tmp_path / "small.png")
    out = tmp_path / "out"
    rc, err = _run_err(capsys, ["segment", str(d / "clip.mp4"), "--mask", str(tmp_path / "small.png"),
                                "--out", str(out), *model])
    assert rc != 0 and "64x36" in err and "128x72" in err and "--resize-mask" in err
    assert not out.exists() or not any(out.iterdir())  # nothing half-written
    rc = main(["segment", str(d / "clip.mp4"), "--mask", str(tmp_path / "small.png"), "--out", str(out),
               "--resize-mask", "--no-overlay", *model])
    assert rc == 0 and len(list((out / "clip").glob("*.png"))) == 6
    rc, err = _run_err(capsys, ["segment", str(d / "clip.mp4"), "--mask", str(d / "mask.png"), "--out", str(out), *model])
    assert rc != 0 and "already exists" in err and "--overwrite" in err
    before = (out / "clip" / "00000.png").read_bytes()
    assert main(["segment", str(d / "clip.mp4"), "--mask", str(d / "mask.png"), "--out", str(out),
                 "--overwrite", "--no-overlay", *model]) == 0
    assert (out / "clip" / "00000.png").read_bytes() != before  # replaced by the new first mask
    rc, err = _run_err(capsys, ["segment", str(d / "clip.mp4"), "--mask", str(d / "mask.png"), "--out", str(tmp_path / "o2"),
                                "--model", str(tmp_path / "no-such-model"), *FAST])
    assert rc != 0 and "no-such-model" in err and "--model" in err
    assert not (tmp_path / "o2" / "clip").exists()


def test_failure_midway_leaves_nothing(footage, tiny_sd_path, tmp_path, monkeypatch):
    from vidprop.config import load_preset
    from vidprop.errors import InputError
    from vidprop.features.dift import DiftExtractor
    from vidprop.tasks import segment as segmod

    d, _ = footage
    cfg = load_preset("davis").override(frames={"short_side": 64}, extractor={"ensemble": 1})
    seg = segmod.Segmenter(DiftExtractor.from_pretrained(tiny_sd_path, config=cfg.extractor), cfg)
    calls = {"n": 0}
    real = segmod.write_indexed_png

    def failing(path, mask):
        calls["n"] += 1
        if calls["n"] == 4:
            raise InputError("disk full (simulated)")
        real(path, mask)

    monkeypatch.setattr(segmod, "write_indexed_png", failing)
    with pytest.raises(InputError, match="simulated"):
        segmod.segment_video(d / "clip.mp4", d / "mask.png", tmp_path, segmenter=seg, progress=False)
    assert list(tmp_path.iterdir()) == []
