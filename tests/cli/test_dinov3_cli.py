"""`--backbone dinov3` end to end on a tiny random DINOv3: segment (any short side), the gated line, eval davis."""

from __future__ import annotations

import numpy as np
import pytest
import yaml

from tests.eval.test_davis_cli import write_scene_davis
from vidprop.cli import main
from vidprop.io.masks import read_mask, write_indexed_png
from vidprop.io.synthetic import SyntheticScene, write_video


@pytest.fixture(scope="module")
def clip(tmp_path_factory):
    d = tmp_path_factory.mktemp("clip3")
    scene = SyntheticScene(width=90, height=58, num_frames=3, num_objects=2, seed=4)
    write_video(scene, d / "clip.mp4")
    write_indexed_png(d / "first.png", scene.frame(0)[1])
    return d, scene


def test_segment_with_dinov3_any_short_side(tiny_backbones, clip, tmp_path, capsys):
    folder, scene = clip
    model = tiny_backbones["dinov3"]["model"]
    rc = main(["segment", str(folder / "clip.mp4"), "--mask", str(folder / "first.png"), "--backbone", "dinov3",
               "--model", model, "--short-side", "37", "--out", str(tmp_path), "--no-overlay", "--no-progress"])
    err = capsys.readouterr().err
    assert rc == 0, err
    masks = [read_mask(p)[0] for p in sorted((tmp_path / "clip").glob("*.png"))]
    assert len(masks) == 3 and all(m.shape == (58, 90) for m in masks)
    np.testing.assert_array_equal(masks[0], scene.frame(0)[1])
    assert set(np.unique(masks[2])) <= {0, 1, 2}
    # 37 rounded up to 48 (ceil, as the notebook), the long side 90 * 48 / 58 = 74.5 up to 80
    assert "short_side 37 -> 48 (rounded: ceil)" in err
    assert "model input 80x48 (frames: short_side, rounding ceil to multiples of 16, bicubic resize)" in err


class GatedRepoError(OSError):
    """Stand-in for huggingface_hub.errors.GatedRepoError."""


def test_gated_model_is_one_line_exit_2_before_any_frame_is_read(clip, tmp_path, capsys, monkeypatch):
    from transformers import DINOv3ViTModel

    from vidprop.io.driver import VideoDriver

    def refuse(*_a, **_k):
        raise OSError("You are trying to access a gated repo.") from GatedRepoError("401 Client Error")

    def no_frames(*_a, **_k):
        raise AssertionError("a frame was read")

    monkeypatch.setattr(DINOv3ViTModel, "from_pretrained", refuse)
    monkeypatch.setattr(VideoDriver, "records", no_frames)
    folder, _ = clip
    rc = main(["-q", "segment", str(folder / "clip.mp4"), "--mask", str(folder / "first.png"), "--backbone", "dinov3",
               "--out", str(tmp_path), "--no-progress"])
    err = capsys.readouterr().err.strip().splitlines()
    assert rc == 2 and len(err) == 1, err
    assert "facebook/dinov3-vitl16-pretrain-lvd1689m" in err[0] and "accept the DINOv3 licence" in err[0]
    assert "hf auth login" in err[0] and "local folder" in err[0]
    assert not (tmp_path / "clip").exists()


def test_eval_davis_with_dinov3_prints_and_records_the_published_number(tiny_backbones, tmp_path, capsys):
    root = write_scene_davis(tmp_path / "DAVIS", ["alpha"], frames=3, objects=[1], seed=3)
    # a local folder named like the released ViT-L/16: its size is recognised from the name
    import shutil

    model = tmp_path / "dinov3-vitl16-pretrain-lvd1689m"
    shutil.copytree(tiny_backbones["dinov3"]["model"], model)
    out = tmp_path / "run"
    rc = main(["-q", "eval", "davis", "--root", str(root), "--out", str(out), "--backbone", "dinov3", "--model",
               str(model), "--short-side", "64", "--no-progress", "--no-summary", "--workers", "1"])
    printed = capsys.readouterr().out
    assert rc == 0
    assert "DINOv3 ViT-L/16" in printed and "davis-dinov3 is the authors' notebook" in printed
    assert "no published DAVIS-2017 val J&F at short side 64 (published at short side 960: 79.9)" in printed
    record = yaml.safe_load((out / "config.yaml").read_text())
    assert record["preset"] == "davis-dinov3"
    ref = record["published_reference"]
    assert (ref["model_size"], ref["short_side"], ref["jf"]) == ("L", 64, None)
    assert record["config"]["propagation"]["window"] == "circle"
    # at the published size the number itself is recorded (nothing run: the record alone)
    from vidprop.config import load_preset
    from vidprop.eval.davis.runner import published_reference

    cfg = load_preset("davis-dinov3")
    assert published_reference(cfg)["jf"] == 79.9
    assert published_reference(cfg.override(extractor={"model": "facebook/dinov3-vit7b16-pretrain-lvd1689m"},
                                             frames={"short_side": 1440}))["jf"] == 83.3
