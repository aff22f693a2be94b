"""Batch inputs: JSONL and CSV manifests, folders of videos, and every malformed case refused naming its line."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from vidprop.batch.manifest import BatchRow, read_input, read_manifest, scan_folder
from vidprop.errors import InputError


def _jsonl(path: Path, rows: list) -> Path:
    path.write_text("\n".join(r if isinstance(r, str) else json.dumps(r) for r in rows) + "\n")
    return path


def test_jsonl_rows_paths_names_and_settings(tmp_path):
    (tmp_path / "clips").mkdir()
    (tmp_path / "clips" / "frames").mkdir()  # a generic frame folder: named after its parent, as `segment` does
    m = _jsonl(tmp_path / "m.jsonl", [
        {"video": "clips/a.mp4", "mask": "a.png"},
        "",
        "# a comment line",
        {"video": "/data/b.mp4", "mask": "/data/b.png", "name": "b-run2", "topk": 10, "temperature": 0.1,
         "overlay": False, "n_last": 3, "short_side": 64, "ensemble": 2, "config": "davis", "backend": "pyav"},
        {"video": "clips/frames", "mask": "m.png", "overlay": "no", "t": 51.0, "frames": " 5: ", "max_frames": "20"},
    ])
    rows = read_manifest(m)
    base = tmp_path.resolve()
    assert [r.line for r in rows] == [1, 4, 5]
    assert rows[0] == BatchRow(where=f"{m}: line 1", line=1, video=base / "clips/a.mp4", name="a", mask=base / "a.png")
    b = rows[1]
    assert (b.video, b.mask, b.name, b.config) == (Path("/data/b.mp4"), Path("/data/b.png"), "b-run2", "davis")
    assert b.config_changes() == {
        "propagation": {"topk": 10, "temperature": 0.1, "n_last_frames": 3},
        "frames": {"short_side": 64, "mode": "short_side"},
        "extractor": {"ensemble": 2},
    }
    assert (b.option("overlay", True), b.option("backend", "auto"), rows[0].option("overlay", True)) == (False, "pyav", True)
    assert rows[2].name == "clips" and rows[2].settings == {"overlay": False, "t": 51, "frames": "5:", "max_frames": 20}
    assert rows[2].config_changes() == {"extractor": {"t": 51}}  # a part of the video is not a model setting


def test_csv_rows_with_empty_cells_and_track_columns(tmp_path):
    m = tmp_path / "m.csv"
    m.write_text("video,keypoints,crop,keypoint_rule,name\nx.mp4,x.json,256,ideal,\ny.mp4,y.json,,,why\n")
    rows = read_manifest(m, task="track")
    assert [r.name for r in rows] == ["x", "why"]
    assert rows[0].keypoints == tmp_path.resolve() / "x.json" and rows[0].line == 2
    assert rows[0].config_changes() == {"frames": {"size": 256, "mode": "square"}, "propagation": {"keypoint_rule": "ideal"}}
    assert rows[1].settings == {}


def test_masks_column_takes_frame_items_or_a_folder(tmp_path):
    m = _jsonl(tmp_path / "m.jsonl", [
        {"video": "a.mp4", "masks": ["0:a0.png", "12:/x/a12.png"]},
        {"video": "b.mp4", "masks": "ann/b"},
    ])
    rows = read_manifest(m)
    base = tmp_path.resolve()
    assert rows[0].masks == (f"0:{base / 'a0.png'}", "12:/x/a12.png")
    assert rows[1].masks == base / "ann/b"
    c = tmp_path / "m.csv"
    c.write_text('video,masks\na.mp4,"0:a0.png; 00040:a40.png"\n')
    assert read_manifest(c)[0].masks == (f"0:{base / 'a0.png'}", f"00040:{base / 'a40.png'}")


@pytest.mark.parametrize(
    "lines, message",
    [
        ([{"video": "a.mp4", "mask": "a.png"}, {"video": "b.mp4", "mask": "b.png", "topkk": 3}],
         "line 2: unknown column 'topkk'"),
        ([{"video": "a.mp4", "mask": "a.png"}, {"mask": "b.png"}], "line 2: no 'video' given"),
        ([{"video": "a.mp4", "mask": "a.png"}, {"video": "", "mask": "b.png"}], "line 2: no 'video' given"),
        ([{"video": "x/a.mp4", "mask": "a.png"}, {"video": "y/a.mkv", "mask": "b.png"}],
         "line 2: output name 'a' is already used by line 1"),
        ([{"video": "a.mp4", "mask": "a.png", "name": "Clip"}, {"video": "b.mp4", "mask": "b.png", "name": "clip"}],
         "line 2: output name 'clip' is already used by line 1"),
        ([{"video": "a.mp4"}], "line 1: no 'mask' (or 'masks') given"),
        ([{"video": "a.mp4", "mask": "a.png", "masks": "ann/"}], "line 1: give 'mask' or 'masks', not both"),
        ([{"video": "a.mp4", "mask": "a.png", "topk": "ten"}], "line 1: column 'topk'"),
        ([{"video": "a.mp4", "mask": "a.png", "topk": 2.5}], "line 1: column 'topk': expected an integer"),
        ([{"video": "a.mp4", "mask": "a.png", "overlay": "maybe"}], "line 1: column 'overlay': expected true or false"),
        ([{"video": "a.mp4", "mask": "a.png", "protocol": "xmem"}], "line 1: column 'protocol': expected one of dino, crw"),
        ([{"video": "a.mp4", "mask": "a.png", "crop": 256}], "line 1: column 'crop' is for track rows"),
        ([{"video": "a.mp4", "mask": "a.png", "frames": "10"}], "line 1: column 'frames': '10': expected START:END"),
        ([{"video": "a.mp4", "mask": "a.png", "frames": "9:3"}], "line 1: column 'frames': 9:3 selects no frame"),
        ([{"video": "a.mp4", "mask": "a.png", "max_frames": 0}], "line 1: column 'max_frames': expected an integer >= 1"),
        ([{"video": "a.mp4", "keypoints": "a.json"}], "line 1: column 'keypoints' is for track rows"),
        ([{"video": "a.mp4", "mask": "a.png", "name": "../up"}], "line 1: '../up' cannot be an output folder name"),
        ([{"video": "a.mp4", "mask": "a.png", "name": ".hidden"}], "line 1: '.hidden' cannot be an output folder name"),
        (['{"video": "a.mp4", "mask": "a.png"}', '{"video": "b.mp4",'], "line 2: not valid JSON"),
        (['["a.mp4", "a.png"]'], "line 1: expected a JSON object"),
        ([{"video": {"path": "a.mp4"}, "mask": "a.png"}], "line 1: column 'video': expected a string"),
        (["", "# nothing"], "the manifest lists no videos"),
    ],
)
def test_malformed_jsonl_is_refused_naming_the_line(tmp_path, lines, message):
    m = _jsonl(tmp_path / "m.jsonl", lines)
    with pytest.raises(InputError) as e:
        read_manifest(m)
    assert message in str(e.value)
    assert str(m) in str(e.value)


@pytest.mark.parametrize(
    "text, message",
    [
        ("mask,name\na.png,a\n", "line 1: the header has no 'video' column"),
        ("video,mask,colour\na.mp4,a.png,red\n", "line 1: unknown column 'colour'"),
        ("video,mask,mask\na.mp4,a.png,b.png\n", "line 1: column 'mask' appears twice"),
        ("video,mask\na.mp4,a.png\nb.mp4,b.png,extra\n", "line 3: 3 cells but the header has 2 columns"),
        ("video,mask\na.mp4,a.png\n,b.png\n", "line 3: no 'video' given"),
        ("video,mask\na.mp4,a.png\n\n\nsub/a.mp4,b.png\n", "line 5: output name 'a' is already used by line 2"),
    ],
)
def test_malformed_csv_is_refused_naming_the_line(tmp_path, text, message):
    m = tmp_path / "m.csv"
    m.write_text(text)
    with pytest.raises(InputError, match=message.replace("(", r"\(").replace(")", r"\)")):
        read_manifest(m)


def test_manifest_file_errors(tmp_path):
    with pytest.raises(InputError, match="no such manifest file"):
        read_manifest(tmp_path / "none.jsonl")
    (tmp_path / "m.txt").write_text("a.mp4\n")
    with pytest.raises(InputError, match="a manifest is a .jsonl"):
        read_manifest(tmp_path / "m.txt")


def _touch(path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"x")
    return path


def test_folder_input_naming_rule(tmp_path):
    d = tmp_path / "in"
    _touch(d / "a.mp4"), _touch(d / "a.png")                       # clip + clip.png
    _touch(d / "b.MOV"), _touch(d / "b_mask.png")                  # clip + clip_mask.png
    _touch(d / "c" / "00000.jpg"), _touch(d / "c.png")             # a frame folder + its mask
    _touch(d / "e.avi"), _touch(d / "e_masks" / "00000.png")       # several annotations: a folder
    _touch(d / "notes.txt"), (d / "empty").mkdir(), _touch(d / ".hidden.mp4")
    rows = scan_folder(d)
    r = d.resolve()
    assert [(x.name, x.video, x.mask, x.masks) for x in rows] == [
        ("a", r / "a.mp4", r / "a.png", None),
        ("b", r / "b.MOV", r / "b_mask.png", None),
        ("c", r / "c", r / "c.png", None),
        ("e", r / "e.avi", None, r / "e_masks"),
    ]
    assert read_input(d) == rows
    t = tmp_path / "kp"
    _touch(t / "a.mp4"), _touch(t / "a.json"), _touch(t / "b.mp4"), _touch(t / "b_keypoints.csv")
    assert [(x.name, x.keypoints.name) for x in scan_folder(t, task="track")] == [("a", "a.json"), ("b", "b_keypoints.csv")]


@pytest.mark.parametrize(
    "files, message",
    [
        (["a.mp4", "a.png", "b.mp4"], "b.mp4: no mask beside it (expected b.png, b_mask.png or a folder b_masks/)"),
        (["a.mp4", "a.png", "a_mask.png"], "a.mp4: several annotations beside it (a.png, a_mask.png)"),
        (["a.mp4", "a.avi", "a.png"], "a.avi and a.mp4 would both be named 'a'"),
        (["notes.txt"], "no videos in this folder"),
    ],
)
def test_folder_input_errors(tmp_path, files, message):
    for f in files:
        _touch(tmp_path / "in" / f)
    with pytest.raises(InputError, match=message.replace("(", r"\(").replace(")", r"\)").replace(".", r"\.")):
        scan_folder(tmp_path / "in")
