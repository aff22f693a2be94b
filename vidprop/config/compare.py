"""Which settings decide results: two runs whose :func:`comparable_config` agree compute the same thing
(the run-time fields (device, batch size, channels-last, compile) and the preset's name and description
may differ)."""

from __future__ import annotations

from typing import Any

from vidprop.config.task import RUNTIME_FIELDS, TaskConfig, with_defaults

__all__ = ["comparable_config"]


def comparable_config(cfg: TaskConfig | dict[str, Any]) -> dict[str, Any]:
    """The settings that decide results, from a TaskConfig or a recorded ``config`` dict (older records too)."""
    d = cfg.to_dict() if isinstance(cfg, TaskConfig) else cfg
    d = {k: (dict(v) if isinstance(v, dict) else v) for k, v in with_defaults(d).items()}
    for key in RUNTIME_FIELDS:
        d.get("extractor", {}).pop(key, None)
    for key in ("name", "description", "published"):
        d.pop(key, None)
    d.get("propagation", {}).pop("chunk_size", None)  # a removed setting that never changed results
    d.setdefault("sequences", {})
    return d
