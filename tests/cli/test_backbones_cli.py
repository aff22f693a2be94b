"""`vidprop segment` and `vidprop match` end to end with every backbone on tiny random weights."""

from __future__ import annotations

import json

import numpy as np
import pytest
import yaml
from PIL import Image

from vidprop.cli import main
from vidprop.config import BACKBONES
from vidprop.io.masks import read_mask, write_indexed_png
from vidprop.io.synthetic import SyntheticScene, write_video

SIDE = {"clip": 56, "dinov2": 56}  # patch 14; the others take 64


def backbone_flags(name: str, settings: dict, tmp_path, frames: dict) -> list[str]:
    """The command-line flags selecting ``name`` with the tiny weights (a YAML preset for the fusion's own fields)."""
    if name == "sd+dinov2":
        path = tmp_path / "tiny-fusion.yaml"
        ext = {k: list(v) if isinstance(v, tuple) else v for k, v in settings.items()}
        path.write_text(yaml.safe_dump({"frames": frames, "extractor": ext}))
        return ["--config", str(path), "--backbone", name]
    flags = ["--backbone", name]
    for key, flag in (("model", "--model"), ("weights", "--weights"), ("up_ft_index", "--up-ft-index"),
                      ("layer", "--layer"), ("ensemble", "--ensemble")):
        if key in settings:
            flags += [flag, str(settings[key])]
    return flags


@pytest.fixture(scope="module")
def clip(tmp_path_factory):
    d = tmp_path_factory.mktemp("clip")
    scene = SyntheticScene(width=96, height=64, num_frames=2, num_objects=2, seed=1)
    write_video(scene, d / "clip.mp4")
    write_indexed_png(d / "mask.png", scene.frame(0)[1])
    rng = np.random.default_rng(0)
    Image.fromarray((rng.random((48, 80, 3)) * 255).astype(np.uint8)).save(d / "src.png")
    Image.fromarray((rng.random((40, 72, 3)) * 255).astype(np.uint8)).save(d / "tgt.png")
    return d, scene


@pytest.mark.parametrize("backbone", BACKBONES)
def test_segment_and_match_with_every_backbone(backbone, tiny_backbones, clip, tmp_path, capsys):
    folder, scene = clip
    side = SIDE.get(backbone, 64)
    flags = backbone_flags(backbone, tiny_backbones[backbone], tmp_path, {"mode": "short_side", "short_side": side,
                                                                           "multiple": 64 if backbone == "sd+dinov2" else 32})
    rc = main(["-q", "segment", str(folder / "clip.mp4"), "--mask", str(folder / "mask.png"), "--out", str(tmp_path),
               "--short-side", str(side), "--no-overlay", "--no-progress", *flags])
    assert rc == 0, capsys.readouterr().err
    masks = [read_mask(p)[0] for p in sorted((tmp_path / "clip").glob("*.png"))]
    assert len(masks) == 2 and all(m.shape == (64, 96) for m in masks)
    np.testing.assert_array_equal(masks[0], scene.frame(0)[1])

    out = tmp_path / "m.png"
    flags = backbone_flags(backbone, tiny_backbones[backbone], tmp_path, {"mode": "fixed", "width": side, "height": side,
                                                                           "multiple": 64 if backbone == "sd+dinov2" else 32})
    rc = main(["-q", "match", str(folder / "src.png"), str(folder / "tgt.png"), "--points", "5,7", "60,30",
               "--category", "cat", "--size", str(side), "--out", str(out), "--no-progress", *flags])
    assert rc == 0, capsys.readouterr().err
    data = json.loads(out.with_suffix(".json").read_text())
    assert data["backbone"] == backbone and len(data["matches"]) == 2
    assert all(0 <= m["target"][0] < 72 and 0 <= m["target"][1] < 40 for m in data["matches"])


def test_backbone_errors_are_one_line(tiny_sd_path, clip, tmp_path, capsys):
    folder, _ = clip
    base = ["-q", "segment", str(folder / "clip.mp4"), "--mask", str(folder / "mask.png"), "--out", str(tmp_path), "--no-progress"]
    for extra, message in (
        (["--backbone", "adm"], "needs its checkpoint: --weights"),
        (["--backbone", "adm", "--weights", str(tmp_path / "none.pt")], "not found; download"),
        (["--backbone", "dino", "--model", str(tmp_path / "no-dino")], "does not exist"),
    ):
        rc = main(base + extra)
        err = capsys.readouterr().err.strip().splitlines()
        assert rc != 0 and len(err) == 1 and message in err[0], (extra, err)
    rc = main(["-q", "match", str(folder / "src.png"), str(folder / "tgt.png"), "--points", "5,7", "--method", "attention",
               "--backbone", "dino", "--out", str(tmp_path / "a.png")])
    err = capsys.readouterr().err.strip().splitlines()
    assert rc != 0 and len(err) == 1 and "--backbone dino" in err[0]


@pytest.mark.parametrize("backbone,short_side,model_side", [("sd", 250, 224), ("dinov2", 128, 126)])
def test_short_side_not_a_multiple_is_floored_logged_once_and_runs(backbone, short_side, model_side, tiny_backbones,
                                                                    clip, tmp_path, capsys):
    folder, scene = clip
    flags = backbone_flags(backbone, tiny_backbones[backbone], tmp_path, {})
    rc = main(["segment", str(folder / "clip.mp4"), "--mask", str(folder / "mask.png"), "--out", str(tmp_path),
               "--short-side", str(short_side), "--no-overlay", "--no-progress", *flags])
    err = capsys.readouterr().err
    assert rc == 0, err
    logged = [line for line in err.splitlines() if "floored" in line]
    assert len(logged) == 1 and f"short_side {short_side} -> {model_side}" in logged[0], err
    masks = [read_mask(p)[0] for p in sorted((tmp_path / "clip").glob("*.png"))]
    assert len(masks) == 2 and all(m.shape == (64, 96) for m in masks)


def test_a_size_that_cannot_be_made_valid_is_refused_before_the_model_loads(clip, tmp_path, capsys, monkeypatch):
    import vidprop.features.registry as registry

    folder, _ = clip
    monkeypatch.setattr(registry, "build_extractor", lambda *a, **k: pytest.fail("the model was loaded"))
    rc = main(["-q", "segment", str(folder / "clip.mp4"), "--mask", str(folder / "mask.png"), "--out", str(tmp_path),
               "--short-side", "10", "--backbone", "dinov2", "--no-progress"])
    err = capsys.readouterr().err.strip().splitlines()
    assert rc == 2 and len(err) == 1 and "--short-side 10 is smaller than 14" in err[0], err
    assert not (tmp_path / "clip").exists()
