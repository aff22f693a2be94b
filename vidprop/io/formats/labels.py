"""Object names and colours: ``--labels FILE`` and the colours of RGB colour masks.

A :class:`LabelMap` maps object ids to a name and an RGB colour.  It comes from

* a JSON or YAML file: ``{"1": "car", "2": "person"}`` or
  ``{"1": {"name": "car", "color": [255, 0, 0]}}`` (``color`` also as ``"#ff0000"``);
* a CVAT / Datumaro ``labelmap.txt``: one ``name:r,g,b:parts:actions`` line per
  label, ``#`` comments; the line's position is the id (the first line,
  usually ``background:0,0,0::``, is id 0 and is not an object);
* the colour table of RGB colour masks (:func:`vidprop.io.annotations.load_annotations`).

Ids without a name are ``object <id>``; ids without a colour take the DAVIS
palette's.  Every export names its objects from the map, and the PNGs'
palette carries its colours (:meth:`LabelMap.palette`).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping

import numpy as np

from vidprop.errors import InputError
from vidprop.io.masks import davis_palette

__all__ = ["LabelMap", "read_labels"]

RGB = tuple[int, int, int]


@dataclass(frozen=True)
class LabelMap:
    """id -> name and id -> colour of a run's objects (ids 1..255)."""

    names: Mapping[int, str] = field(default_factory=dict)
    colours: Mapping[int, RGB] = field(default_factory=dict)

    def name(self, oid: int) -> str:
        return self.names.get(int(oid), f"object {int(oid)}")

    def colour(self, oid: int) -> RGB:
        c = self.colours.get(int(oid))
        return c if c is not None else tuple(int(v) for v in davis_palette()[int(oid)])  # type: ignore[return-value]

    def palette(self) -> np.ndarray | None:
        """(256, 3) uint8: the DAVIS palette with this map's colours; None when it has none (the DAVIS palette)."""
        if not self.colours:
            return None
        pal = davis_palette().copy()
        for i, c in self.colours.items():
            pal[int(i)] = c
        return pal

    def merged(self, other: LabelMap | None) -> LabelMap:
        """This map with ``other``'s names and colours added (``other`` wins where both have one)."""
        if other is None:
            return self
        return LabelMap({**self.names, **other.names}, {**self.colours, **other.colours})

    def colour_ids(self) -> dict[RGB, int]:
        """colour -> id, for reading RGB colour masks drawn with these colours."""
        return {c: i for i, c in self.colours.items()}

    def to_json(self) -> dict[str, Any]:
        ids = sorted(set(self.names) | set(self.colours))
        return {str(i): {"name": self.name(i), "color": list(self.colour(i))} for i in ids}


def _colour(value: Any, where: str) -> RGB:
    if isinstance(value, str):
        text = value.strip().lstrip("#")
        if len(text) == 6:
            try:
                return (int(text[0:2], 16), int(text[2:4], 16), int(text[4:6], 16))
            except ValueError:
                pass
        parts = [p for p in value.replace(" ", "").split(",") if p]
        value = parts
    try:
        rgb = tuple(int(v) for v in value)
    except (TypeError, ValueError):
        rgb = ()
    if len(rgb) != 3 or not all(0 <= v <= 255 for v in rgb):
        raise InputError(f"{where}: a colour must be r,g,b (0..255) or #rrggbb, got {value!r}")
    return rgb  # type: ignore[return-value]


def _object_id(key: Any, where: str) -> int:
    try:
        oid = int(key)
    except (TypeError, ValueError):
        oid = -1
    if not 1 <= oid <= 255:
        raise InputError(f"{where}: object ids are 1..255, got {key!r}")
    return oid


def _from_mapping(doc: Any, path: Path) -> LabelMap:
    if not isinstance(doc, Mapping):
        raise InputError(f"{path}: --labels needs a mapping of object id to name, e.g. {{\"1\": \"car\"}}")
    names: dict[int, str] = {}
    colours: dict[int, RGB] = {}
    for key, value in doc.items():
        oid = _object_id(key, f"{path}: id {key!r}")
        if isinstance(value, Mapping):
            if "name" in value:
                names[oid] = str(value["name"])
            colour = value.get("color", value.get("colour"))
            if colour is not None:
                colours[oid] = _colour(colour, f"{path}: id {key}")
        elif isinstance(value, (str, int, float)):
            names[oid] = str(value)
        else:
            raise InputError(f"{path}: id {key}: expected a name or {{name, color}}, got {value!r}")
    return LabelMap(names, colours)


def _from_labelmap_txt(text: str, path: Path) -> LabelMap:
    names: dict[int, str] = {}
    colours: dict[int, RGB] = {}
    index = 0
    for n, line in enumerate(text.splitlines(), start=1):
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        name, _, rest = line.partition(":")
        colour = rest.split(":")[0]
        if index > 255:
            raise InputError(f"{path}:{n}: more than 255 labels")
        if index > 0:  # line 0 is the background
            names[index] = name
            if colour:
                colours[index] = _colour(colour, f"{path}:{n}")
        elif name.lower() not in ("background", "_background_", "bg"):
            raise InputError(f"{path}:{n}: the first label of a labelmap.txt is the background (id 0), "
                             f"got {name!r}; add a line 'background:0,0,0::' first")
        index += 1
    if not names:
        raise InputError(f"{path}: no label after the background line")
    return LabelMap(names, colours)


def read_labels(path: str | Path) -> LabelMap:
    """Read ``--labels FILE`` (JSON, YAML, or ``labelmap.txt``) -> LabelMap; InputError naming the file."""
    path = Path(path)
    if not path.is_file():
        raise InputError(f"{path}: --labels file not found")
    text = path.read_text()
    suffix = path.suffix.lower()
    if suffix == ".txt":
        return _from_labelmap_txt(text, path)
    try:
        if suffix == ".json":
            doc = json.loads(text)
        else:
            import yaml

            doc = yaml.safe_load(text)
    except Exception as exc:  # noqa: BLE001 - json / yaml errors
        raise InputError(f"{path}: not a readable {'JSON' if suffix == '.json' else 'YAML'} labels file "
                         f"({' '.join(str(exc).split())})") from exc
    return _from_mapping(doc, path)
