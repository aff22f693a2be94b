"""`vidprop extract` end to end on the tiny random SD, and bad inputs (one line on stderr, non-zero exit)."""

from __future__ import annotations

import errno
import json

import numpy as np
import pytest
import torch
from PIL import Image

from vidprop.cli import main
from vidprop.features import load_features, open_video_features
from vidprop.io import feature_store as store

FAST = ["--size", "64", "--ensemble", "1", "--no-progress"]


@pytest.fixture()
def data(tmp_path):
    rng = np.random.default_rng(5)
    d = tmp_path / "photos"
    d.mkdir()
    for name in ("cat", "dog"):
        Image.fromarray(rng.integers(0, 255, (48, 80, 3), dtype=np.uint8)).save(d / f"{name}.png")
    frames = tmp_path / "judo" / "frames"
    frames.mkdir(parents=True)
    for i in range(5):
        Image.fromarray(rng.integers(0, 255, (64, 96, 3), dtype=np.uint8)).save(frames / f"{i:05d}.jpg")
    (tmp_path / "broken.png").write_text("not an image")
    Image.fromarray(np.zeros((8, 8, 3), np.uint8)).save(tmp_path / "small.png")
    return tmp_path


def _run(capsys, *args):
    rc = main(["-q", "extract", *map(str, args)])
    cap = capsys.readouterr()
    return rc, cap.out, cap.err.strip().splitlines()


def test_one_image_as_the_dift_script(data, tiny_sd_path, capsys):
    out = data / "cat.pt"
    rc, stdout, _ = _run(capsys, data / "photos" / "cat.png", "--out", out, "--model", tiny_sd_path, *FAST)
    assert rc == 0 and "extracted 1 image(s)" in stdout and "frames/s" in stdout
    x = torch.load(out, weights_only=True)
    assert x.shape == (16, 4, 4) and x.dtype == torch.float32  # (C, h, w): stride 16 at 64x64
    meta = json.loads((data / "cat.json").read_text())
    assert (meta["t"], meta["up_ft_index"], meta["ensemble"], meta["prompt"]) == (261, 1, 1, "")
    assert meta["model_size"] == [64, 64] and meta["input_size"] == [80, 48] and meta["model"] == str(tiny_sd_path)


def test_folder_of_images_resumes(data, tiny_sd_path, capsys):
    args = [data / "photos", "--out", data / "feats", "--model", tiny_sd_path, "--format", "npz",
            "--save-dtype", "float16", "--t", "51", "--up-ft-index", "2", "--prompt", "a photo", *FAST]
    rc, stdout, _ = _run(capsys, *args)
    assert rc == 0 and "extracted 2 image(s)" in stdout
    x, meta = load_features(data / "feats" / "dog.npz")
    assert x.shape == (16, 8, 8) and x.dtype == torch.float16
    assert (meta["t"], meta["up_ft_index"], meta["prompt"], meta["stride"]) == (51, 2, "a photo", 8)
    rc, stdout, _ = _run(capsys, *args)
    assert rc == 0 and "nothing to do: all 2 feature file(s)" in stdout
    rc, _, err = _run(capsys, *args[:-len(FAST)], "--size", "96", *FAST[2:])
    assert rc != 0 and len(err) == 1 and "already exists and was made with other settings" in err[0]
    assert "model_size: [64, 64] -> [96, 96]" in err[0] and "--overwrite" in err[0]
    rc, stdout, _ = _run(capsys, *args[:-len(FAST)], "--size", "96", *FAST[2:], "--overwrite")
    assert rc == 0 and load_features(data / "feats" / "dog.npz")[1]["model_size"] == [96, 96]


def test_frame_folder_as_a_video(data, tiny_sd_path, capsys):
    rc, stdout, _ = _run(capsys, data / "judo" / "frames", "--video", "--out", data / "feats", "--chunk", "2",
                         "--model", tiny_sd_path, "--short-side", "64", "--ensemble", "1", "--no-progress")
    assert rc == 0 and "extracted 5 of 5 frames" in stdout and "frames/s" in stdout
    video = open_video_features(data / "feats" / "judo")
    assert len(video) == 5 and video.frame(4).shape == (16, 8, 12)  # davis: stride 8 at 96x64
    assert sorted(p.name for p in (data / "feats" / "judo").iterdir()) == [
        "chunk_00000.safetensors", "chunk_00001.safetensors", "chunk_00002.safetensors", "index.json"]
    assert video.settings["t"] == 51 and video.settings["up_ft_index"] == 2
    rc, stdout, _ = _run(capsys, data / "judo" / "frames", "--video", "--out", data / "feats", "--chunk", "2",
                         "--model", tiny_sd_path, "--short-side", "64", "--ensemble", "1", "--no-progress")
    assert rc == 0 and "nothing to do" in stdout


@pytest.mark.parametrize("case", ["unreadable", "too_small", "bad_size", "mixed", "name_with_images", "size_and_short_side"])
def test_bad_input_is_one_line(data, tiny_sd_path, capsys, case):
    inputs = {
        "unreadable": [data / "photos" / "cat.png", data / "broken.png"],
        "too_small": [data / "small.png"],
        "bad_size": [data / "photos" / "cat.png", "--size", "64", "64", "64"],
        "mixed": [data / "photos" / "cat.png", data / "clip.mp4"],
        "name_with_images": [data / "photos" / "cat.png", "--name", "x"],
        "size_and_short_side": [data / "photos" / "cat.png", "--short-side", "64"],
    }[case]
    (data / "clip.mp4").write_bytes(b"")
    extra = [] if case in ("bad_size", "size_and_short_side") else ["--size", "64"]
    rc, _, err = _run(capsys, *inputs, "--out", data / "feats", "--model", tiny_sd_path, *extra, "--ensemble", "1",
                      "--no-progress", *(["--size", "64"] if case == "size_and_short_side" else []))
    want = {
        "unreadable": "broken.png: not a readable image",
        "too_small": "small.png: the image is 8x8, too small for features at stride 16",
        "bad_size": "--size takes N or W H",
        "mixed": "got both still images",
        "name_with_images": "--name names one video's folder",
        "size_and_short_side": "either --size or --short-side",
    }[case]
    assert rc != 0 and len(err) == 1 and err[0].startswith("vidprop: error:") and want in err[0]
    assert not any((data / "feats").glob("*.pt"))


def test_disk_full_is_one_line_and_nothing_partial(data, tiny_sd_path, capsys, monkeypatch):
    def full(fh, tensor, meta_json):
        fh.write(b"\0" * 10)
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setitem(store._WRITERS, "pt", full)
    rc, _, err = _run(capsys, data / "photos" / "cat.png", "--out", data / "feats", "--model", tiny_sd_path, *FAST)
    assert rc != 0 and len(err) == 1 and "cat.pt: could not write the features: no space left on device" in err[0]
    assert list((data / "feats").iterdir()) == []


def test_another_backbone_through_the_registry(data, tmp_path, capsys):
    """--backbone dino: a tiny random DINO saved with save_pretrained; the file holds its hidden states."""
    from vidprop.config import ExtractorConfig
    from vidprop.features.vit import VitExtractor, save_random_vit

    model = save_random_vit(tmp_path / "dino", "dino", seed=0)
    out = data / "cat_dino.pt"
    rc, _, err = _run(capsys, data / "photos" / "cat.png", "--out", out, "--backbone", "dino", "--model", model,
                      "--size", "64", "--no-progress")
    assert rc == 0, err
    saved = torch.load(out, weights_only=True)
    meta = json.loads((data / "cat_dino.json").read_text())
    assert meta["backbone"] == "dino" and meta["model"] == str(model)
    ext = VitExtractor.from_pretrained(config=ExtractorConfig(backbone="dino", model=str(model)))
    img = Image.open(data / "photos" / "cat.png").convert("RGB").resize((64, 64), Image.BICUBIC)
    ref = ext.extract(torch.from_numpy(np.array(img)).permute(2, 0, 1)[None].contiguous())[0]
    assert saved.shape == ref.shape == (ext.channels, 8, 8)
    torch.testing.assert_close(saved, ref)


def test_a_pair_backbone_is_refused(data, tiny_sd_path, capsys):
    rc, _, err = _run(capsys, data / "photos" / "cat.png", "--out", data / "x.pt", "--backbone", "sd+dinov2",
                      "--no-progress")
    assert rc == 2 and len(err) == 1 and "computes the features of an image PAIR" in err[0]


def test_a_huge_size_is_refused_before_the_model_loads(data, capsys):
    """--model /nope: the size is checked first (a model that cannot load would be the error otherwise)."""
    for inputs, flags, want in [
        ([data / "photos" / "cat.png"], ["--size", "100000"], "--size 100000x100000: the model input would be "
                                                               "100000x100000 (from the image, 80x48), which needs"),
        ([data / "judo" / "frames", "--video"], ["--short-side", "99968"], "--short-side 99968: the model input "
                                                                          "would be 149952x99968"),
    ]:
        rc, _, err = _run(capsys, *inputs, "--out", data / "feats", "--model", "/nope", "--device", "cpu", *flags)
        assert rc == 2 and len(err) == 1 and want in err[0], err
    assert not (data / "feats").exists()


def test_a_part_of_a_video_keeps_its_frames_indices_and_features(data, tiny_sd_path, capsys):
    """--frames 1:4 --max-frames 2: frames 1 and 2, their names, and the very features the whole run gives them."""
    flags = ["--video", "--model", tiny_sd_path, "--short-side", "64", "--ensemble", "1", "--no-progress",
             "--chunk", "2"]
    frames = data / "judo" / "frames"
    rc, stdout, err = _run(capsys, frames, "--out", data / "part", "--frames", "1:4", "--max-frames", "2", *flags)
    assert rc == 0, err
    part = open_video_features(data / "part" / "judo")
    assert len(part) == 2 and [f["name"] for f in part.index["frames"]] == ["00001", "00002"]
    assert [f["index"] for f in part.index["frames"]] == [1, 2] and part.index["first_frame"] == 1
    rc, _, err = _run(capsys, frames, "--out", data / "whole", *flags)
    assert rc == 0, err
    whole = open_video_features(data / "whole" / "judo")
    assert len(whole) == 5
    torch.testing.assert_close(part.frame(0), whole.frame(1), rtol=0, atol=0)
    torch.testing.assert_close(part.frame(1), whole.frame(2), rtol=0, atol=0)
    rc, _, err = _run(capsys, data / "photos" / "cat.png", "--out", data / "x", "--max-frames", "2", "--size", "64")
    assert rc == 2 and err == ["vidprop: error: --frames / --max-frames select frames of a video; the inputs are "
                               "still images"]
    rc, _, err = _run(capsys, frames, "--out", data / "x", "--frames", "9:", *flags)
    assert rc == 2 and "--frames starts at 9 but the folder has 5 frames" in err[0]
