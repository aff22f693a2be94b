"""`vidprop match` / `vidprop edit` end to end on the tiny random SD, and bad inputs (one line, non-zero exit)."""

from __future__ import annotations

import json

import cv2
import numpy as np
import pytest
from PIL import Image

from vidprop.cli import main

FAST = ["--size", "64", "--ensemble", "1", "--no-progress"]
ATTN = ["--size", "64", "--steps", "2", "--rounds", "2", "--crops", "4", "--no-progress"]


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    d = tmp_path_factory.mktemp("pair")
    rng = np.random.default_rng(3)
    img = (cv2.resize(rng.random((12, 16, 3)), (96, 64), interpolation=cv2.INTER_CUBIC).clip(0, 1) * 255)
    img = img.astype(np.uint8)
    Image.fromarray(img).save(d / "src.png")
    Image.fromarray(np.roll(img, (2, 3), axis=(0, 1))).save(d / "tgt.png")
    layer = np.zeros((64, 96, 4), np.uint8)
    layer[10:40, 20:60] = (255, 0, 0, 255)
    Image.fromarray(layer).save(d / "layer.png")
    Image.fromarray(np.full((8, 12, 3), 200, np.uint8)).save(d / "rgb_sticker.jpg")
    Image.fromarray(np.zeros((16, 16, 3), np.uint8)).save(d / "small.png")
    (d / "broken.jpg").write_text("not an image")
    return d


def _err(capsys, args):
    rc = main(["-q", *args])
    lines = capsys.readouterr().err.strip().splitlines()
    return rc, lines


def test_match_semantic_end_to_end(files, tiny_sd_path, tmp_path, capsys):
    out = tmp_path / "m.png"
    rc = main(["-q", "match", str(files / "src.png"), str(files / "tgt.png"), "--points", "10,20", "40,30",
               "--category", "cat", "--heatmap", "--out", str(out), "--model", str(tiny_sd_path), *FAST])
    assert rc == 0
    stdout = capsys.readouterr().out
    assert "1: (10, 20) -> (" in stdout and "2: (40, 30) -> (" in stdout
    assert Image.open(out).size == (96 + 10 + 96, 64)
    data = json.loads(out.with_suffix(".json").read_text())
    assert data["mode"] == "semantic" and data["prompt"] == "a photo of a cat"
    assert [m["source"] for m in data["matches"]] == [[10, 20], [40, 30]]
    for m in data["matches"]:
        assert 0 <= m["target"][0] < 96 and 0 <= m["target"][1] < 64 and -1 <= m["score"] <= 1
    for i in (1, 2):
        assert Image.open(tmp_path / f"m_heatmap{i}.png").size == (96, 64)


def test_match_geometric_end_to_end(files, tiny_sd_path, tmp_path, capsys):
    out = tmp_path / "g.png"
    rc = main(["-q", "match", str(files / "src.png"), str(files / "src.png"), "--mode", "geometric",
               "--out", str(out), "--model", str(tiny_sd_path), *FAST])
    assert rc == 0
    data = json.loads(out.with_suffix(".json").read_text())
    assert data["mode"] == "geometric" and data["num_inliers"] >= 4 and data["num_source_keypoints"] > 10
    np.testing.assert_allclose(data["homography"], np.eye(3), atol=0.05)  # the same image: identity
    assert "mutual matches" in capsys.readouterr().out and out.exists()


def test_match_attention_end_to_end(files, tiny_sd_path, tmp_path, capsys):
    out = tmp_path / "att.png"
    rc = main(["-q", "match", str(files / "src.png"), str(files / "tgt.png"), "--method", "attention",
               "--points", "30,20", "--heatmap", "--out", str(out), "--model", str(tiny_sd_path), *ATTN])
    assert rc == 0
    data = json.loads(out.with_suffix(".json").read_text())
    assert data["mode"] == "attention" and len(data["matches"]) == 1 and len(data["final_loss"]) == 1
    assert data["heads"] == "second_half"  # the authors' heads h//2..; --heads all averages every head
    assert (tmp_path / "att_heatmap1.png").exists() and "attention" in capsys.readouterr().out


def test_edit_end_to_end(files, tiny_sd_path, tmp_path, capsys):
    out = tmp_path / "edited.png"
    rc = main(["-q", "edit", str(files / "src.png"), str(files / "tgt.png"), "--sticker", str(files / "layer.png"),
               "--out", str(out), "--model", str(tiny_sd_path), *FAST])
    assert rc == 0
    assert Image.open(out).size == (96, 64)
    data = json.loads(out.with_suffix(".json").read_text())
    assert np.asarray(data["homography"]).shape == (3, 3) and data["num_matches"] == 1000  # of 1200 pixels
    assert data["composite"] == "straight" and data["seed"] == 0
    assert "RANSAC inliers" in capsys.readouterr().out
    # a small opaque sticker placed with --at
    out2 = tmp_path / "edited2.jpg"
    assert main(["-q", "edit", str(files / "src.png"), str(files / "tgt.png"), "--sticker",
                 str(files / "rgb_sticker.jpg"), "--opaque", "--at", "30,20", "--out", str(out2),
                 "--model", str(tiny_sd_path), *FAST]) == 0
    assert Image.open(out2).size == (96, 64)


@pytest.mark.parametrize(
    "args, message",
    [
        (["match", "{d}/broken.jpg", "{d}/tgt.png", "--points", "1,1"], "broken.jpg: not a readable image"),
        (["match", "{d}/missing.png", "{d}/tgt.png", "--points", "1,1"], "missing.png: no such image file"),
        (["match", "{d}/src.png", "{d}/tgt.png", "--points", "96,10"], "point 1 (96,10) is outside {d}/src.png (96x64"),
        (["match", "{d}/src.png", "{d}/tgt.png", "--points", "1;2"], "point '1;2' is not of the form X,Y"),
        (["match", "{d}/small.png", "{d}/tgt.png", "--points", "1,1"], "small.png: the image is 16x16; at least 32x32"),
        (["match", "{d}/src.png", "{d}/tgt.png"], "semantic matching needs source points"),
        (["match", "{d}/src.png", "{d}/tgt.png", "--points", "1,1", "--out", "{d}/m.gif"], "unsupported output image"),
        (["edit", "{d}/src.png", "{d}/tgt.png", "--sticker", "{d}/rgb_sticker.jpg"],
         "rgb_sticker.jpg: the sticker has no alpha channel (mode RGB)"),
        (["edit", "{d}/src.png", "{d}/tgt.png", "--sticker", "{d}/rgb_sticker.jpg", "--opaque"],
         "rgb_sticker.jpg is 12x8 but the source is 96x64"),
        (["match", "{d}/src.png", "{d}/tgt.png", "--mode", "geometric", "--points", "1,1", "5,5",
          "--target-points", "3,3", "9,9"], "too few matches for a homography between {d}/src.png and {d}/tgt.png"),
    ],
)
def test_bad_inputs_exit_non_zero_with_one_line(files, tiny_sd_path, capsys, args, message):
    args = [a.replace("{d}", str(files)) for a in args] + ["--model", str(tiny_sd_path), *FAST]
    rc, lines = _err(capsys, args)
    assert rc != 0
    assert len(lines) == 1 and lines[0].startswith("vidprop: error: "), lines
    assert message.replace("{d}", str(files)) in lines[0]


def test_existing_outputs_are_not_replaced_without_overwrite(files, tmp_path, capsys):
    """match and edit refuse an existing drawing, JSON or heatmap before the model loads (none is given here)."""
    model = ["--model", "/nonexistent/model", "--no-progress"]
    out = tmp_path / "m.png"
    out.write_bytes(b"mine")
    rc, err = _err(capsys, ["match", str(files / "src.png"), str(files / "tgt.png"), "--points", "3,3",
                            "--out", str(out), *model])
    assert rc == 2 and len(err) == 1 and f"{out} already exists; pass --overwrite" in err[0]
    out.unlink()
    (tmp_path / "m_heatmap2.png").write_bytes(b"mine")
    rc, err = _err(capsys, ["match", str(files / "src.png"), str(files / "tgt.png"), "--points", "3,3", "4,4",
                            "--heatmap", "--out", str(out), *model])
    assert rc == 2 and "m_heatmap2.png already exists" in err[0]
    (tmp_path / "e.json").write_text("{}")
    rc, err = _err(capsys, ["edit", str(files / "src.png"), str(files / "tgt.png"), "--sticker",
                            str(files / "layer.png"), "--out", str(tmp_path / "e.png"), *model])
    assert rc == 2 and "e.json already exists" in err[0]
    assert (tmp_path / "e.json").read_text() == "{}" and (tmp_path / "m_heatmap2.png").read_bytes() == b"mine"
    # with --overwrite the checks pass and the (missing) model is what fails
    rc, err = _err(capsys, ["edit", str(files / "src.png"), str(files / "tgt.png"), "--sticker",
                            str(files / "layer.png"), "--out", str(tmp_path / "e.png"), "--overwrite", *model])
    assert rc == 2 and "already exists" not in err[-1] and "/nonexistent/model" in err[-1]


@pytest.mark.parametrize("command", ["match", "edit"])
def test_a_huge_size_is_refused_before_the_model_loads(files, tmp_path, capsys, command):
    extra = ["--points", "1,1"] if command == "match" else ["--sticker", str(files / "layer.png")]
    rc, lines = _err(capsys, [command, str(files / "src.png"), str(files / "tgt.png"), *extra, "--out",
                              str(tmp_path / "o.png"), "--model", "/nope", "--device", "cpu", "--size", "99968"])
    assert rc == 2 and len(lines) == 1, lines
    assert lines[0].startswith(f"vidprop: error: --size 99968x99968: the model input would be 99968x99968 (from "
                               f"{files / 'src.png'}, 96x64), which needs at least ")
    assert not (tmp_path / "o.png").exists()
