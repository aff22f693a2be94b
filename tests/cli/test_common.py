"""Shared CLI pieces: a single-value option given twice is refused; flags override the preset."""

from __future__ import annotations

import pytest

from vidprop.cli import build_parser, main
from vidprop.cli.common import config_from_args


def test_repeated_single_value_option_is_refused(capsys):
    with pytest.raises(SystemExit) as exc:
        build_parser().parse_args(["segment", "v.mp4", "--mask", "a.png", "--out", "a", "--out", "b"])
    assert exc.value.code == 2
    err = capsys.readouterr().err
    assert "--out was given twice ('a' and 'b'); give it once" in err


def test_mask_is_repeatable_one_annotation_each():
    args = build_parser().parse_args(["segment", "v.mp4", "--mask", "a.png", "--mask", "35:b.png"])
    assert args.mask == ["a.png", "35:b.png"]


def test_repeated_option_in_an_eval_subcommand(capsys):
    with pytest.raises(SystemExit):
        build_parser().parse_args(["eval", "davis", "--root", "A", "--root", "B"])
    assert "--root was given twice" in capsys.readouterr().err


def test_flags_once_each_parse_and_leave_no_bookkeeping():
    args = build_parser().parse_args(["segment", "v.mp4", "--mask", "a.png", "--topk", "5", "--no-progress"])
    assert args.mask == ["a.png"] and args.topk == 5 and args.no_progress
    assert not any(k.startswith("_vidprop") for k in vars(args))


def test_config_from_args_applies_given_flags_only():
    args = build_parser().parse_args(["segment", "v.mp4", "--mask", "m.png", "--topk", "7", "--ensemble", "2",
                                      "--short-side", "256"])
    from vidprop.cli.segment import segment_config_from_args

    cfg = segment_config_from_args(args)
    assert cfg.propagation.topk == 7 and cfg.extractor.ensemble == 2
    assert cfg.frames.short_side == 256
    base = config_from_args(build_parser().parse_args(["segment", "v.mp4", "--mask", "m.png"]), "davis")
    assert base.propagation.temperature == cfg.propagation.temperature  # untouched fields keep the preset's


def test_track_and_match_share_the_model_flags():
    t = build_parser().parse_args(["track", "v.mp4", "--keypoints", "k.json", "--seed", "3", "--crop", "256"])
    m = build_parser().parse_args(["match", "a.png", "b.png", "--points", "1,2", "--seed", "3", "--size", "256"])
    assert t.seed == m.seed == 3


def test_help_runs():
    with pytest.raises(SystemExit) as exc:
        main(["segment", "--help"])
    assert exc.value.code == 0


def test_default_presets():
    p = build_parser()
    assert p.parse_args(["segment", "v.mp4", "--mask", "m.png"]).config == "davis-fast"  # no per-sequence quirks
    assert p.parse_args(["eval", "davis", "--root", "D"]).config == "davis"  # the published run
    assert p.parse_args(["track", "v.mp4", "--keypoints", "k.json"]).config == "jhmdb"


@pytest.mark.parametrize("argv, verbose, quiet", [
    (["segment", "v.mp4", "--mask", "a.png"], 0, False),
    (["-q", "segment", "v.mp4", "--mask", "a.png"], 0, True),
    (["segment", "v.mp4", "--mask", "a.png", "-q"], 0, True),  # after the command, as users type it
    (["-vv", "segment", "v.mp4", "--mask", "a.png"], 2, False),
    (["segment", "v.mp4", "-vv", "--mask", "a.png"], 2, False),
    (["eval", "davis", "--root", "D", "--out", "o", "--quiet"], 0, True),
    (["-q", "eval", "spair", "--root", "S", "--out", "o"], 0, True),  # given before, not reset by the command
])
def test_log_flags_before_or_after_the_command(argv, verbose, quiet):
    args = build_parser().parse_args(argv)
    assert (args.verbose, args.quiet) == (verbose, quiet)


def test_engine_flags_reach_the_engine_options():
    from vidprop.cli.common import engine_from_args
    from vidprop.engine import EngineOptions
    from vidprop.errors import ConfigError

    args = build_parser().parse_args(["batch", "v.jsonl", "--out", "o", "--engine", "ray", "--workers", "3",
                                      "--retries", "0", "--placement-timeout", "5"])
    assert engine_from_args(args) == EngineOptions(kind="ray", workers=3, retries=0, placement_timeout=5.0)
    args = build_parser().parse_args(["eval", "jhmdb", "--root", "r", "--split", "s", "--out", "o", "--engine", "ray"])
    assert engine_from_args(args).placement_timeout == 60.0
    with pytest.raises(ConfigError, match="placement timeout must be > 0 seconds, got 0"):
        engine_from_args(build_parser().parse_args(["batch", "v.jsonl", "--out", "o", "--engine", "ray",
                                                    "--placement-timeout", "0"]))
