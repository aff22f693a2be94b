"""The bundled presets (``vidprop/presets/*.yaml``) and any preset file: listing, loading, backbone variants."""

from __future__ import annotations

from pathlib import Path

import yaml

from vidprop.config.task import TaskConfig
from vidprop.errors import ConfigError

__all__ = ["PRESET_DIR", "preset_names", "backbone_preset", "load_preset"]

#: Folder of the bundled presets (``vidprop/presets/`` in the source tree).
PRESET_DIR = Path(__file__).resolve().parent.parent / "presets"


def preset_names() -> list[str]:
    """Names of the bundled presets."""
    return sorted(p.stem for p in PRESET_DIR.glob("*.yaml"))


#: The dataset name of each task preset, the prefix of its backbone variants ("semantic" -> "spair-dino").
_TASK_DATASETS = {"davis": "davis", "davis-fast": "davis", "semantic": "spair", "geometric": "hpatches", "jhmdb": "jhmdb"}


def backbone_preset(preset: str, backbone: str | None) -> str:
    """The bundled preset of ``preset``'s task for ``backbone`` (davis + adm -> davis-adm), else ``preset``.

    Only bundled task presets ("davis", "davis-fast", "semantic", "geometric",
    "jhmdb") have backbone variants; any other name or path is returned unchanged.
    """
    if not backbone or backbone == "sd" or preset not in _TASK_DATASETS:
        return preset
    name = f"{_TASK_DATASETS[preset]}-{backbone.replace('+', '-')}"
    return name if (PRESET_DIR / f"{name}.yaml").exists() else preset


def load_preset(name_or_path: str | Path) -> TaskConfig:
    """Load a bundled preset by name (``davis``) or any YAML file by path."""
    path = Path(name_or_path)
    if not path.suffix and not path.exists():
        path = PRESET_DIR / f"{name_or_path}.yaml"
        if not path.exists():
            raise ConfigError(f"no preset named {str(name_or_path)!r}; bundled presets: {', '.join(preset_names())}")
    if not path.is_file():
        raise ConfigError(f"{path}: preset file not found")
    try:
        data = yaml.safe_load(path.read_text())
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path}: not valid YAML: {exc}") from exc
    return TaskConfig.from_dict(data or {}, name=path.stem, source=str(path))
