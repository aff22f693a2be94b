"""The whole settings of a task (:class:`TaskConfig`: every section plus per-sequence changes), built from
plain data with unknown keys refused, overridden field by field, and read back from older records."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field, fields, replace
from typing import Any, Mapping

from vidprop.config.sections import ExtractorConfig, FrameConfig, MatchingConfig, PropagationConfig
from vidprop.errors import ConfigError

__all__ = ["TaskConfig", "SEQUENCE_SECTIONS", "RUNTIME_FIELDS", "with_defaults"]

_SECTIONS = {"frames": FrameConfig, "extractor": ExtractorConfig, "propagation": PropagationConfig,
             "matching": MatchingConfig}
#: Sections a per-sequence entry may change (the extractor is loaded once per run).
SEQUENCE_SECTIONS = ("frames", "propagation")
#: Extractor fields that change how a run executes, not what it computes.
RUNTIME_FIELDS = ("device", "batch_size", "channels_last", "compile")


@dataclass(frozen=True)
class TaskConfig:
    """Everything a task needs: frame resizing, extraction and propagation.

    ``published``: the settings reproduce a published run exactly (changing
    any field other than :data:`RUNTIME_FIELDS` clears it).  ``sequences``:
    per-sequence changes of the ``frames`` and ``propagation`` sections,
    ``{name: {section: {field: value}}}``, applied by :meth:`for_sequence`
    (DIFT's DAVIS script, for instance, uses a shorter context for the
    480x1152 ``shooting`` sequence).
    """

    frames: FrameConfig = field(default_factory=FrameConfig)
    extractor: ExtractorConfig = field(default_factory=ExtractorConfig)
    propagation: PropagationConfig = field(default_factory=PropagationConfig)
    matching: MatchingConfig = field(default_factory=MatchingConfig)
    name: str = "custom"
    description: str = ""
    published: bool = False
    sequences: Mapping[str, Mapping[str, Mapping[str, Any]]] = field(default_factory=dict)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any], *, name: str = "custom", source: str = "<dict>") -> "TaskConfig":
        if not isinstance(data, Mapping):
            raise ConfigError(f"{source}: a preset must be a mapping of sections, got {type(data).__name__}")
        unknown = set(data) - set(_SECTIONS) - {"name", "description", "published", "sequences"}
        if unknown:
            raise ConfigError(
                f"{source}: unknown section(s) {sorted(unknown)}; expected {sorted(_SECTIONS)}, "
                "name, description, published, sequences"
            )
        parts = {}
        for key, klass in _SECTIONS.items():
            parts[key] = _build(klass, data.get(key) or {}, f"{source}: {key}")
        cfg = cls(
            name=str(data.get("name", name)),
            description=str(data.get("description") or ""),
            published=bool(data.get("published", False)),
            sequences=_check_sequences(data.get("sequences") or {}, source),
            **parts,
        )
        for seq in cfg.sequences:  # every per-sequence entry must give valid settings
            cfg.for_sequence(seq)
        return cfg

    def to_dict(self) -> dict[str, Any]:
        """Plain data (tuples as lists, as YAML and JSON give them back)."""
        return _plain(dataclasses.asdict(self))

    def override(self, **sections: Mapping[str, Any] | None) -> "TaskConfig":
        """A copy with some fields replaced, e.g. ``override(propagation={"topk": 5})``.

        ``None`` values inside a section are ignored (handy for CLI flags left
        unset).  A replaced field is replaced for every sequence too (it is
        dropped from the per-sequence entries), and a change of any field
        other than :data:`RUNTIME_FIELDS` makes the config no longer
        ``published``.
        """
        new: dict[str, Any] = {}
        sequences = {k: {s: dict(v) for s, v in e.items()} for k, e in self.sequences.items()}
        published = self.published
        for key, values in sections.items():
            if key not in _SECTIONS:
                raise ConfigError(f"unknown config section {key!r}; expected {sorted(_SECTIONS)}")
            if not values:
                continue
            values = {k: v for k, v in values.items() if v is not None}
            current = getattr(self, key)
            old = dataclasses.asdict(current)
            merged = {**old, **values}
            new[key] = _build(type(current), merged, key)
            changed = {k for k in values if k not in old or old[k] != merged[k]}
            if changed - (set(RUNTIME_FIELDS) if key == "extractor" else set()):
                published = False
            for entry in sequences.values():
                if key in entry:
                    entry[key] = {k: v for k, v in entry[key].items() if k not in values}
        sequences = {k: {s: v for s, v in e.items() if v} for k, e in sequences.items()}
        return replace(self, **new, published=published, sequences={k: e for k, e in sequences.items() if e})

    def for_sequence(self, name: str) -> "TaskConfig":
        """The effective settings for sequence ``name`` (itself when the config has no entry for it).

        The result has no per-sequence entries and keeps ``published``.
        """
        entry = self.sequences.get(name)
        if not entry:
            return self
        new = {}
        for section, values in entry.items():
            current = getattr(self, section)
            new[section] = _build(type(current), {**dataclasses.asdict(current), **values},
                                  f"sequences: {name}: {section}")
        return replace(self, **new, sequences={})

    def sequence_changes(self, name: str) -> dict[str, dict[str, Any]]:
        """The per-sequence entry of ``name`` (``{}`` when none): which fields it changes."""
        return {s: dict(v) for s, v in (self.sequences.get(name) or {}).items()}


def _plain(value: Any) -> Any:
    if isinstance(value, Mapping):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    return value


def _check_sequences(data: Any, source: str) -> dict[str, dict[str, dict[str, Any]]]:
    if not isinstance(data, Mapping):
        raise ConfigError(f"{source}: sequences must map sequence names to sections, got {type(data).__name__}")
    out: dict[str, dict[str, dict[str, Any]]] = {}
    for name, entry in data.items():
        if not isinstance(entry, Mapping):
            raise ConfigError(f"{source}: sequences: {name}: expected a mapping of sections")
        bad = set(entry) - set(SEQUENCE_SECTIONS)
        if bad:
            raise ConfigError(
                f"{source}: sequences: {name}: only {', '.join(SEQUENCE_SECTIONS)} may change per sequence, "
                f"got {sorted(bad)}"
            )
        out[str(name)] = {}
        for section, values in entry.items():
            if not isinstance(values, Mapping):
                raise ConfigError(f"{source}: sequences: {name}: {section}: expected a mapping")
            known = {f.name for f in fields(_SECTIONS[section])}
            unknown = set(values) - known
            if unknown:
                raise ConfigError(f"{source}: sequences: {name}: {section}: unknown key(s) {sorted(unknown)}")
            out[str(name)][section] = dict(values)
    return out




def _build(klass: type, values: Mapping[str, Any], where: str) -> Any:
    if not isinstance(values, Mapping):
        raise ConfigError(f"{where}: expected a mapping, got {type(values).__name__}")
    names = {f.name for f in fields(klass)}
    unknown = set(values) - names
    if unknown:
        raise ConfigError(f"{where}: unknown key(s) {sorted(unknown)}; known: {sorted(names)}")
    try:
        return klass(**values)
    except TypeError as exc:  # pragma: no cover - defensive
        raise ConfigError(f"{where}: {exc}") from exc


def with_defaults(data: Mapping[str, Any]) -> dict[str, Any]:
    """A copy of a ``TaskConfig.to_dict()`` record whose sections also hold the fields it lacks, at their defaults.

    A results folder written before a field existed records no value for it;
    comparing its settings with today's must not see that as a change.
    """
    out = dict(data)
    for key, klass in _SECTIONS.items():
        section = out.get(key)
        if isinstance(section, Mapping):
            out[key] = {**dataclasses.asdict(klass()), **section}
    return out
