"""--labels files: JSON / YAML id -> name (or name and colour), CVAT / Datumaro labelmap.txt."""

from __future__ import annotations

import numpy as np
import pytest

from vidprop.errors import InputError
from vidprop.io.formats.labels import LabelMap, read_labels
from vidprop.io.masks import davis_palette


def test_json_yaml_and_labelmap(tmp_path):
    (tmp_path / "l.json").write_text('{"1": "car", "3": {"name": "dog", "color": "#0a0b0c"}}')
    lab = read_labels(tmp_path / "l.json")
    assert dict(lab.names) == {1: "car", 3: "dog"} and dict(lab.colours) == {3: (10, 11, 12)}
    (tmp_path / "l.yaml").write_text("1: car\n2:\n  name: person\n  color: [1, 2, 3]\n")
    lab = read_labels(tmp_path / "l.yaml")
    assert dict(lab.names) == {1: "car", 2: "person"} and dict(lab.colours) == {2: (1, 2, 3)}
    (tmp_path / "labelmap.txt").write_text("# label:color_rgb:parts:actions\nbackground:0,0,0::\n"
                                           "car:250,50,83::\nperson:51,221,255::\n")
    lab = read_labels(tmp_path / "labelmap.txt")
    assert dict(lab.names) == {1: "car", 2: "person"}
    assert dict(lab.colours) == {1: (250, 50, 83), 2: (51, 221, 255)}
    assert lab.colour_ids() == {(250, 50, 83): 1, (51, 221, 255): 2}
    pal = lab.palette()
    assert pal[1].tolist() == [250, 50, 83] and pal[3].tolist() == davis_palette()[3].tolist()
    assert lab.name(7) == "object 7" and LabelMap().palette() is None
    assert LabelMap({1: "a"}).merged(LabelMap({1: "b", 2: "c"})).names == {1: "b", 2: "c"}


@pytest.mark.parametrize("name, text, message", [
    ("a.json", "[1, 2]", "mapping of object id to name"),
    ("b.json", '{"0": "bg"}', "object ids are 1..255"),
    ("c.json", '{"1": {"name": "x", "color": "red"}}', "a colour must be"),
    ("d.json", "{", "not a readable JSON"),
    ("labelmap.txt", "car:1,2,3::\n", "first label of a labelmap.txt is the background"),
    ("e.txt", "background:0,0,0::\n", "no label after the background"),
])
def test_bad_labels_files_name_the_file(tmp_path, name, text, message):
    (tmp_path / name).write_text(text)
    with pytest.raises(InputError, match=message) as err:
        read_labels(tmp_path / name)
    assert str(tmp_path / name) in str(err.value)
    with pytest.raises(InputError, match="not found"):
        read_labels(tmp_path / "missing.json")


def test_to_json_round_trips(tmp_path):
    import json

    lab = LabelMap({1: "car"}, {2: (1, 2, 3)})
    (tmp_path / "labels.json").write_text(json.dumps(lab.to_json()))
    back = read_labels(tmp_path / "labels.json")
    assert back.name(1) == "car" and back.colour(2) == (1, 2, 3)
    assert back.colour(1) == tuple(int(v) for v in davis_palette()[1])
    assert np.array_equal(back.palette()[2], [1, 2, 3])
