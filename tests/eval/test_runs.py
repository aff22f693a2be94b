"""A pair benchmark's resumable run record: a record without results binds nothing."""

from __future__ import annotations

import pytest
import yaml

from vidprop.errors import ConfigError
from vidprop.eval.runs import save_part, start_run


def test_a_record_alone_is_replaced_and_one_with_results_is_checked(tmp_path):
    out = tmp_path / "run"
    first = {"benchmark": "SPair-71k", "config": {"frames": {"size": 100000}}}
    start_run(out, first, overwrite=False)  # then the run failed before any category finished
    assert [p.name for p in out.iterdir()] == ["config.yaml"]
    corrected = {"benchmark": "SPair-71k", "config": {"frames": {"size": 768}}}
    start_run(out, corrected, overwrite=False)
    assert yaml.safe_load((out / "config.yaml").read_text()) == corrected
    save_part(out, "cat", ["a"], [[1]])
    with pytest.raises(ConfigError, match="holds results made with other settings"):
        start_run(out, first, overwrite=False)
    start_run(out, corrected, overwrite=False)  # the same settings resume
