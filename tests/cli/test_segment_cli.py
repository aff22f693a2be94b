"""`vidprop segment` end to end on synthetic footage with the tiny random SD."""

from __future__ import annotations

import json

import numpy as np
import pytest
from PIL import Image

from vidprop.cli import main
from vidprop.io.masks import davis_palette, write_indexed_png
from vidprop.io.synthetic import SyntheticScene, write_frame_folder, write_video

FAST = ["--short-side", "64", "--ensemble", "2", "--no-progress"]
QUICK = ["--short-side", "64", "--ensemble", "1", "--no-progress", "--no-overlay"]


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


# ---------------------------------------------------------------- annotations, exports, frame ranges
@pytest.fixture(scope="module")
def annotated(tmp_path_factory):
    d = tmp_path_factory.mktemp("annotated")
    scene = SyntheticScene(width=128, height=64, num_frames=8, num_objects=2, seed=5, object_ids=(2, 5))
    write_video(scene, d / "clip.mp4")
    write_frame_folder(scene, d / "frames", ext=".jpg")
    masks = [scene.frame(t)[1] for t in range(8)]
    only5 = np.where(masks[3] == 5, 5, 0).astype(np.uint8)
    write_indexed_png(d / "only5.png", only5)
    (d / "Annotations").mkdir()
    write_indexed_png(d / "Annotations" / "00006.png", np.where(masks[6] == 2, 2, 0).astype(np.uint8))
    write_indexed_png(d / "first2.png", np.where(masks[2] == 2, 2, 0).astype(np.uint8))
    return d, masks


def test_annotations_at_any_frame_both_directions_and_every_format(annotated, tiny_sd_path, tmp_path, capsys):
    from vidprop.io.exports import read_coco_masks
    from vidprop.io.masks import read_mask

    d, masks = annotated
    out = tmp_path / "out"
    rc = main(["segment", str(d / "frames"), "--mask", f"00002:{d / 'first2.png'}", "--mask", f"3:{d / 'only5.png'}",
               "--masks", str(d / "Annotations"), "--direction", "both", "--format", "png,coco,youtube-vos",
               "--out", str(out), "--name", "vid", "--model", str(tiny_sd_path), *QUICK])
    assert rc == 0
    assert "wrote 8 masks" in capsys.readouterr().out
    res = out / "vid"
    pngs = sorted(res.glob("*.png"))
    assert [p.stem for p in pngs] == [f"{i:05d}" for i in range(8)]
    got = [read_mask(p, allow_empty=True)[0] for p in pngs]
    np.testing.assert_array_equal(got[2] == 2, masks[2] == 2)  # annotations are exact for their ids
    np.testing.assert_array_equal(got[3] == 5, masks[3] == 5)
    np.testing.assert_array_equal(got[6] == 2, masks[6] == 2)
    # each object flows back from its own first annotation: id 2 from frame 2 into frames 0-1, id 5 from frame 3
    assert all((g == 2).any() for g in got[:2])
    assert any((g == 5).any() for g in got[:3])
    for (name, m), p, g in zip(read_coco_masks(res / "coco.json"), pngs, got):
        assert name == p.stem
        np.testing.assert_array_equal(m, g)
    yt = sorted((res / "youtube-vos" / "Annotations" / "vid").glob("*.png"))
    assert [p.name for p in yt] == [p.name for p in pngs]
    for p, g in zip(yt, got):
        np.testing.assert_array_equal(read_mask(p, allow_empty=True)[0], g)
    doc = json.loads((res / "annotations.json").read_text())
    assert (doc["mode"], doc["direction"], doc["frames"]) == ("objects", "both", [0, 8])
    assert [(a["frame"], a["ids"]) for a in doc["annotations"]] == [(2, [2]), (3, [5]), (6, [2])]
    # the same result exported afterwards from the PNGs
    (res / "coco.json").unlink()
    assert main(["export", str(res), "--format", "coco"]) == 0
    for (_, m), g in zip(read_coco_masks(res / "coco.json"), got):
        np.testing.assert_array_equal(m, g)


def test_a_part_of_the_video(annotated, tiny_sd_path, tmp_path):
    d, masks = annotated
    write_indexed_png(tmp_path / "m3.png", masks[3])
    out = tmp_path / "out"
    assert main(["segment", str(d / "clip.mp4"), "--mask", str(tmp_path / "m3.png"), "--frames", "3:7",
                 "--max-frames", "3", "--out", str(out), "--model", str(tiny_sd_path), *QUICK]) == 0
    assert sorted(p.name for p in (out / "clip").glob("*.png")) == ["00003.png", "00004.png", "00005.png"]
    np.testing.assert_array_equal(np.asarray(Image.open(out / "clip" / "00003.png")), masks[3])
    # one mask on the run's first frame: a first-frame run, no annotations.json (README); source.json says where
    assert not (out / "clip" / "annotations.json").exists()
    src = json.loads((out / "clip" / "source.json").read_text())  # `vidprop view` shows video frames 3, 4, 5
    assert (src["first_frame"], src["frames"], src["kind"]) == (3, 3, "video")


def test_bad_annotations_fail_before_the_model_loads(annotated, tmp_path, capsys, monkeypatch):
    from vidprop.tasks.segment import Segmenter

    d, masks = annotated
    monkeypatch.setattr(Segmenter, "from_pretrained", classmethod(lambda *a, **k: pytest.fail("model loaded")))
    m0 = tmp_path / "m0.png"
    write_indexed_png(m0, masks[0])
    blank = tmp_path / "blank.png"
    Image.fromarray(np.zeros((64, 128), np.uint8)).save(blank)
    small = tmp_path / "small.png"
    write_indexed_png(small, masks[0][::2, ::2].copy())
    nomatch = tmp_path / "nomatch"
    nomatch.mkdir()
    write_indexed_png(nomatch / "cat.png", masks[0])
    (tmp_path / "afile").write_text("x")
    out = tmp_path / "out"
    frames = str(d / "frames")
    cases = [
        ([frames, "--mask", str(m0), "--mask", f"12:{m0}"], "annotates frame 12 but"),
        ([frames, "--mask", str(m0), "--mask", f"00000:{m0}"], "annotated twice"),
        ([frames, "--mask", str(m0), "--mask", f"4:{blank}"], "blank.png: the mask is empty"),
        ([frames, "--mask", f"4:{small}"], "small.png: mask size 64x32 differs"),
        ([frames, "--masks", str(nomatch)], "nomatch: no PNG here names a frame"),
        ([frames, "--mask", f"kitten:{m0}"], "'kitten' is not a frame index"),
        ([frames, "--mask", str(m0), "--frames", "5:2"], "--frames 5:2 selects no frame"),
        ([frames, "--mask", f"6:{m0}", "--frames", "0:4"], "outside this run's frames 0:4"),
        ([frames], "no annotation"),
        ([frames, "--mask", str(m0), "--format", "png,gif"], "unknown format 'gif'"),
    ]
    for args, message in cases:
        rc = main(["segment", *args, "--out", str(out), *FAST])
        err = capsys.readouterr().err.strip().splitlines()
        assert rc != 0 and len(err) == 1 and message in err[0], (args, err)
        assert not out.exists()
    rc = main(["segment", frames, "--mask", str(m0), "--out", str(tmp_path / "afile" / "o"), *FAST])
    err = capsys.readouterr().err.strip().splitlines()
    assert rc != 0 and "afile: is a file, not a folder" in err[-1] and len(err) == 1


@pytest.mark.parametrize("backend", ["pyav", "auto"])
def test_an_annotation_past_the_end_of_a_video_file_is_refused_before_the_model_loads(annotated, tmp_path, capsys,
                                                                                       monkeypatch, backend):
    """The container reports 8 frames (decord / PyAV): --mask 20:... is refused before any work."""
    from vidprop.tasks.segment import Segmenter

    d, masks = annotated
    monkeypatch.setattr(Segmenter, "from_pretrained", classmethod(lambda *a, **k: pytest.fail("model loaded")))
    m0 = tmp_path / "m0.png"
    write_indexed_png(m0, masks[0])
    out = tmp_path / "out"
    rc = main(["segment", str(d / "clip.mp4"), "--mask", str(m0), "--mask", f"20:{m0}", "--out", str(out),
               "--backend", backend, *QUICK])
    err = capsys.readouterr().err.strip().splitlines()
    assert rc == 2 and len(err) == 1, err
    assert f"{m0}: annotates frame 20 but {d / 'clip.mp4'} has 8 frames (0..7, as its " \
           "container reports)" in err[0]
    assert not out.exists()


def test_an_annotation_past_the_end_of_a_video_of_unknown_length_is_reported_when_it_ends(annotated, tiny_sd_path,
                                                                                           tmp_path, capsys,
                                                                                           monkeypatch):
    """A container that reports no frame count: the error comes when the video ends, and nothing is written."""
    from vidprop.io import video as video_mod

    monkeypatch.setattr(video_mod, "_probe", lambda path, backend: (None, None))
    d, masks = annotated
    m0 = tmp_path / "m0.png"
    write_indexed_png(m0, masks[0])
    out = tmp_path / "out"
    rc = main(["segment", str(d / "clip.mp4"), "--mask", str(m0), "--mask", f"20:{m0}", "--out", str(out),
               "--model", str(tiny_sd_path), *QUICK])
    err = capsys.readouterr().err.strip().splitlines()
    assert rc == 2 and "annotates frame 20 but the video ended after frame 7 (8 frames)" in err[-1]
    assert not out.exists() or not any(out.iterdir())  # nothing half-written


# ---------------------------------------------------------------- a full disk
def _fail_on_call(real, n):
    """``real`` that raises ENOSPC on its ``n``-th call, as a writer on a disk that fills up."""
    import errno

    calls = {"n": 0}

    def writer(*args, **kwargs):
        calls["n"] += 1
        if calls["n"] == n:
            raise OSError(errno.ENOSPC, "No space left on device")
        return real(*args, **kwargs)

    return writer


@pytest.mark.parametrize("where", ["png", "overlay"])
def test_a_full_disk_is_one_line_naming_the_folder_exit_2_and_nothing_left(footage, tiny_sd_path, tmp_path, capsys,
                                                                           monkeypatch, where):
    from vidprop.io.writers import VideoWriter
    from vidprop.tasks import segment as segmod

    d, _ = footage
    if where == "png":
        monkeypatch.setattr(segmod, "write_indexed_png", _fail_on_call(segmod.write_indexed_png, 3))
    else:
        monkeypatch.setattr(VideoWriter, "write", _fail_on_call(VideoWriter.write, 2))
    out = tmp_path / "out"
    rc = main(["segment", str(d / "clip.mp4"), "--mask", str(d / "mask.png"), "--out", str(out),
               "--model", str(tiny_sd_path), *FAST])
    err = [ln for ln in capsys.readouterr().err.strip().splitlines() if not ln.startswith("INFO: ")]
    assert rc == 2 and len(err) == 1, err
    assert err[0] == (f"vidprop: error: {out / 'clip'}: could not be written: no space left on device (the partial "
                      "folder was removed); free some space or choose another output folder, then run the same "
                      "command again")
    assert list(out.iterdir()) == []  # no partial folder, no final one


# ---------------------------------------------------------------- sizes and flags said as flags
def test_a_huge_short_side_or_zero_is_refused_before_the_model_loads_in_flag_words(footage, tmp_path, capsys,
                                                                                    monkeypatch):
    from vidprop.tasks.segment import Segmenter

    d, _ = footage
    monkeypatch.setattr(Segmenter, "from_pretrained", classmethod(lambda *a, **k: pytest.fail("model loaded")))
    base = ["segment", str(d / "clip.mp4"), "--mask", str(d / "mask.png"), "--out", str(tmp_path / "o"),
            "--device", "cpu", "--no-progress"]
    rc, err = _run_err(capsys, [*base, "--short-side", "100000"])
    assert rc == 2 and err.startswith("vidprop: error: --short-side 100000: the model input would be 177760x100000 "
                                      f"(from {d / 'clip.mp4'}, 128x72), which needs at least ")
    assert err.endswith("; this machine's RAM has " + err.split("this machine's RAM has ")[1]) and "smaller size" in err
    rc, err = _run_err(capsys, [*base, "--short-side", "0"])
    assert rc == 2 and err == "vidprop: error: --short-side must be positive, got 0"
    rc, err = _run_err(capsys, [*base, "--ensemble", "0"])
    assert rc == 2 and err == "vidprop: error: --ensemble must be >= 1, got 0"
    assert not (tmp_path / "o").exists()
    # an existing result: the flag, not the keyword argument
    (tmp_path / "o" / "clip").mkdir(parents=True)
    rc, err = _run_err(capsys, [*base])
    assert rc == 2 and err == f"vidprop: error: {tmp_path / 'o' / 'clip'} already exists; pass --overwrite to replace it"


def test_segment_logs_the_model_input_size(footage, tiny_sd_path, tmp_path, capsys):
    d, _ = footage
    assert main(["segment", str(d / "clip.mp4"), "--mask", str(d / "mask.png"), "--out", str(tmp_path),
                 "--model", str(tiny_sd_path), *QUICK]) == 0
    assert f"INFO: segmenting {d / 'clip.mp4'} (128x72 -> model input 96x64, 6 frames)" in capsys.readouterr().err
