"""Settings as frozen dataclasses, and task presets loaded from YAML.

A preset (``vidprop/presets/<name>.yaml``) has up to four sections, ``frames``,
``extractor``, ``propagation`` and ``matching``, whose keys are the fields of the
dataclasses in :mod:`vidprop.config.sections`.  Unknown keys are an error (a typo
must not be ignored).

    >>> cfg = load_preset("davis")
    >>> cfg.propagation.topk
    15
    >>> cfg = cfg.override(propagation={"topk": 10})

The modules: :mod:`~vidprop.config.sections` (the section dataclasses, the backbones),
:mod:`~vidprop.config.task` (:class:`TaskConfig`: building, overriding, per-sequence
settings), :mod:`~vidprop.config.fit` (frame sizes fitted to a backbone),
:mod:`~vidprop.config.presets` (the bundled presets) and :mod:`~vidprop.config.compare`
(the settings that decide results).
"""

from __future__ import annotations

from vidprop.config.compare import comparable_config
from vidprop.config.fit import BACKBONE_MULTIPLES, fit_backbone_frames, fit_frames
from vidprop.config.presets import PRESET_DIR, backbone_preset, load_preset, preset_names
from vidprop.config.sections import (
    BACKBONE_DEFAULT_MODELS,
    BACKBONES,
    DEFAULT_MODEL,
    ExtractorConfig,
    FrameConfig,
    MatchingConfig,
    PropagationConfig,
)
from vidprop.config.task import RUNTIME_FIELDS, SEQUENCE_SECTIONS, TaskConfig, with_defaults

__all__ = [
    "DEFAULT_MODEL",
    "BACKBONES",
    "BACKBONE_DEFAULT_MODELS",
    "fit_frames",
    "fit_backbone_frames",
    "BACKBONE_MULTIPLES",
    "backbone_preset",
    "FrameConfig",
    "ExtractorConfig",
    "PropagationConfig",
    "MatchingConfig",
    "TaskConfig",
    "load_preset",
    "preset_names",
    "PRESET_DIR",
    "RUNTIME_FIELDS",
    "SEQUENCE_SECTIONS",
    "with_defaults",
    "comparable_config",
]
