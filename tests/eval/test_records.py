"""The one run record: what a video and a pair benchmark write to config.yaml, field by field and in order."""

from __future__ import annotations

from types import SimpleNamespace

from vidprop.config import load_preset
from vidprop.eval.records import run_record
from vidprop.features.attention import AttentionSettings


def test_a_video_run_records_the_fields_then_the_model_and_its_settings(tmp_path):
    cfg = load_preset("davis")
    r = run_record("DAVIS-2017 semi-supervised", tmp_path, cfg, revision="abc", set="val", sequences=["a"])
    assert list(r) == ["vidprop_version", "date", "benchmark", "root", "set", "sequences", "model", "revision",
                       "preset", "published", "protocol_note", "config"]
    assert r["root"] == str(tmp_path.resolve()) and r["revision"] == "abc" and r["config"] == cfg.to_dict()
    assert run_record("x", tmp_path, cfg)["revision"] == cfg.extractor.revision  # none loaded: the configured one


def test_a_pair_run_records_the_matcher_or_the_attention_method(tmp_path):
    cfg = load_preset("semantic")
    matcher = SimpleNamespace(config=cfg, extractor=SimpleNamespace(model_revision="r1"))
    r = run_record("SPair-71k", tmp_path, matcher, split="test", model_note=1)
    assert list(r) == ["benchmark", "root", "vidprop_version", "date", "backbone", "model", "weights", "revision",
                       "preset", "published", "split", "model_note", "config"]
    assert r["revision"] == "r1" and r["config"] == cfg.to_dict()
    att = SimpleNamespace(settings=AttentionSettings(), model_id="m", dtype="torch.float16")
    a = run_record("SPair-71k", tmp_path, att, split="test")
    assert list(a) == ["benchmark", "root", "vidprop_version", "date", "method", "model", "dtype", "split",
                       "attention"]
    assert (a["method"], a["model"], a["dtype"]) == ("attention", "m", "float16")
    assert a["attention"]["steps"] == AttentionSettings().steps
