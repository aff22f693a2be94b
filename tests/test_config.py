from __future__ import annotations

import dataclasses

import pytest

from vidprop.config import FrameConfig, PropagationConfig, TaskConfig, load_preset, preset_names
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
    with pytest.raises(ConfigError, match="multiple of 32"):
        FrameConfig(short_side=100).target_size(200, 100)


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
    assert (f.propagation, f.frames) == (d.propagation, d.frames)
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
    from vidprop.eval.davis.runner import _comparable as davis_comparable
    from vidprop.eval.jhmdb import _comparable as jhmdb_comparable

    assert "chunk_size" not in {f.name for f in dataclasses.fields(PropagationConfig)}
    with pytest.raises(ConfigError, match="unknown key"):
        load_preset("davis").override(propagation={"chunk_size": 512})
    for preset, comparable in (("davis", davis_comparable), ("jhmdb", jhmdb_comparable)):
        now = load_preset(preset).to_dict()
        old = {**now, "propagation": {**now["propagation"], "chunk_size": 1024}}  # written before its removal
        assert comparable(old) == comparable(now)
        changed = {**now, "propagation": {**now["propagation"], "topk": 3}}
        assert comparable(changed) != comparable(now)


def test_quick_preset_is_davis_fast_with_one_sample_and_a_smaller_side():
    q, fast = load_preset("quick"), load_preset("davis-fast")
    assert not q.published and "not a published protocol" in q.description
    assert (q.extractor.ensemble, q.frames.short_side) == (1, 256)
    assert q.propagation == fast.propagation
    assert q.override(extractor={"ensemble": 8}, frames={"short_side": 480}).to_dict() == {
        **fast.to_dict(), "name": "quick", "description": q.description}
    assert q.frames.target_size(854, 480) == (448, 256)
