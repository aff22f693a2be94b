"""Keypoint files: reading (JSON, CSV), errors that name the line or field, track writing, JHMDB .mat."""

from __future__ import annotations

import csv
import json
import math

import numpy as np
import pytest
from scipy.io import savemat

from vidprop.errors import InputError
from vidprop.io.keypoints import (
    KeypointSet,
    draw_keypoints,
    joint_colours,
    read_jhmdb_mat,
    read_keypoints,
    write_tracks_csv,
    write_tracks_json,
)


def _write(tmp_path, text, name="kp.json"):
    p = tmp_path / name
    p.write_text(text)
    return p


def test_named_keypoints_with_skeleton(tmp_path):
    p = _write(tmp_path, json.dumps({"keypoints": {"head": [10.5, 4], "neck": [11, 20], "hand": None},
                                     "skeleton": [["head", "neck"], ["neck", 2]]}))
    kp = read_keypoints(p)
    assert kp.names == ("head", "neck", "hand")
    np.testing.assert_array_equal(kp.xy[:2], [[10.5, 4.0], [11.0, 20.0]])
    assert np.isnan(kp.xy[2]).all()  # null = absent joint
    assert kp.skeleton == ((0, 1), (1, 2))
    assert kp.skeleton_names == [["head", "neck"], ["neck", "hand"]]


def test_list_forms_name_joints_by_index(tmp_path):
    kp = read_keypoints(_write(tmp_path, "[[1, 2], [3.5, 4]]"))
    assert kp.names == ("0", "1") and kp.skeleton == ()
    np.testing.assert_array_equal(kp.xy, [[1, 2], [3.5, 4]])
    kp2 = read_keypoints(_write(tmp_path, '{"keypoints": [[1, 2], [3, 4], [5, 6]], "skeleton": [[0, 2]]}', "b.json"))
    assert kp2.names == ("0", "1", "2") and kp2.skeleton == ((0, 2),)


@pytest.mark.parametrize(
    "text, needle",
    [
        ('{\n  "keypoints": {\n    "head": [1, 2],,\n  }\n}', "line 3, column 20"),
        ('{"keypoints": {"head": [1, 2], "neck": [1]}}', 'keypoints["neck"]: expected [x, y]'),
        ('{"keypoints": {"head": [1, "a"]}}', 'keypoints["head"]'),
        ('{"keypoints": [[1, 2], [true, 3]]}', "keypoints[1]"),
        ('{"keypoints": {"head": [1, 2]}, "skeleton": [["head", "head"], ["head", "tail"]]}', 'skeleton[1]: "tail"'),
        ('{"keypoints": {"head": [1, 2]}, "skeleton": [["head"]]}', "skeleton[0]: expected a pair"),
        ('{"keypoints": {"head": [1, 2]}, "skelton": []}', "unknown field(s) ['skelton']"),
        ('{"points": []}', "unknown field"),
        ('{"keypoints": {}}', "'keypoints' is empty"),
        ('"head"', "expected an object"),
    ],
)
def test_malformed_files_name_the_line_or_field(tmp_path, text, needle):
    p = _write(tmp_path, text)
    with pytest.raises(InputError) as err:
        read_keypoints(p)
    assert str(p) in str(err.value)
    assert needle in str(err.value)


def test_missing_file(tmp_path):
    with pytest.raises(InputError, match="no such keypoint file"):
        read_keypoints(tmp_path / "nope.json")


def test_csv_uses_frame_0_rows_and_reports_lines(tmp_path):
    p = _write(tmp_path, "frame,joint,x,y,visible\n0,a,1.5,2,1\n0,b,,,0\n1,a,9,9,1\n0,c,3,4,1\n", "kp.csv")
    kp = read_keypoints(p)
    assert kp.names == ("a", "b", "c")
    np.testing.assert_array_equal(kp.xy[[0, 2]], [[1.5, 2], [3, 4]])
    assert np.isnan(kp.xy[1]).all()
    bad = _write(tmp_path, "joint,x,y\na,1,2\nb,1,oops\n", "bad.csv")
    with pytest.raises(InputError, match=r"bad.csv: line 3: x and y must be numbers"):
        read_keypoints(bad)
    nohead = _write(tmp_path, "name,x,y\na,1,2\n", "nohead.csv")
    with pytest.raises(InputError, match=r"line 1: .*missing \['joint'\]"):
        read_keypoints(nohead)


def test_track_files_round_trip(tmp_path):
    names = ["head", "hand"]
    xy = np.array([[[1.0, 2.0], [3.25, 4.5]], [[5.0, 6.0], [np.nan, np.nan]]])
    vis = np.array([[True, True], [True, False]])
    write_tracks_json(tmp_path / "k.json", names, xy, vis, skeleton=[["head", "hand"]], frame_names=["f0", "f1"],
                      meta={"width": 64})
    doc = json.loads((tmp_path / "k.json").read_text())
    assert doc["width"] == 64 and doc["joints"] == names and doc["skeleton"] == [["head", "hand"]]
    assert doc["frames"][1] == {"frame": 1, "name": "f1", "keypoints": {"head": [5.0, 6.0], "hand": None}}
    assert doc["frames"][0]["keypoints"]["hand"] == [3.25, 4.5]
    write_tracks_csv(tmp_path / "k.csv", names, xy, vis)
    rows = list(csv.reader(open(tmp_path / "k.csv")))
    assert rows == [
        ["frame", "joint", "x", "y", "visible"],
        ["0", "head", "1.000", "2.000", "1"],
        ["0", "hand", "3.250", "4.500", "1"],
        ["1", "head", "5.000", "6.000", "1"],
        ["1", "hand", "", "", "0"],
    ]
    # the CSV of a run starts another run: frame 0's rows
    again = read_keypoints(tmp_path / "k.csv")
    assert again.names == ("head", "hand")
    np.testing.assert_array_equal(again.xy, [[1, 2], [3.25, 4.5]])


def test_jhmdb_mat_is_zero_based_and_checked(tmp_path):
    pos = np.zeros((2, 15, 3))
    pos[0, :, :] = np.arange(15)[:, None] + 10 * np.arange(3)[None] + 1  # x, 1-based
    pos[1, :, :] = 100 + np.arange(15)[:, None] + 1
    savemat(tmp_path / "jp.mat", {"pos_img": pos, "scale": 1.0})
    out = read_jhmdb_mat(tmp_path / "jp.mat", num_frames=3)
    assert out.shape == (3, 15, 2)
    assert out[2, 4].tolist() == [4 + 20, 104]  # (x, y) of joint 4 in frame 2, minus 1
    with pytest.raises(InputError, match=r"jp.mat: 'pos_img' has 3 frames but the video has 4"):
        read_jhmdb_mat(tmp_path / "jp.mat", num_frames=4)
    savemat(tmp_path / "nopos.mat", {"pos_world": pos})
    with pytest.raises(InputError, match=r"nopos.mat: has no 'pos_img' array \(found: pos_world\)"):
        read_jhmdb_mat(tmp_path / "nopos.mat")
    savemat(tmp_path / "shape.mat", {"pos_img": np.zeros((3, 15, 2))})
    with pytest.raises(InputError, match=r"shape.mat: 'pos_img' must be a numeric \(2, joints, frames\)"):
        read_jhmdb_mat(tmp_path / "shape.mat")
    (tmp_path / "junk.mat").write_bytes(b"not a mat file")
    with pytest.raises(InputError, match="junk.mat: cannot read"):
        read_jhmdb_mat(tmp_path / "junk.mat")


def test_keypoint_set_checks_skeleton_indices():
    with pytest.raises(ValueError, match="outside 0..1"):
        KeypointSet(("a", "b"), np.zeros((2, 2)), ((0, 2),))


def test_draw_keypoints_marks_visible_points_only():
    frame = np.zeros((40, 60, 3), np.uint8)
    xy = np.array([[10.0, 12.0], [40.0, 30.0], [math.nan, math.nan]])
    cols = joint_colours(3)
    out = draw_keypoints(frame, xy, np.array([True, False, False]), skeleton=[(0, 1)], colours=cols, radius=3)
    assert out[12, 10].tolist() == cols[0].tolist()  # centre of joint 0 in its colour
    assert not out[30, 40].any()  # joint 1 is not visible: not drawn, and no limb to it
    assert not out[20:26, 20:30].any()
    assert not frame.any()  # the input frame is untouched
    assert len({tuple(c) for c in joint_colours(15)}) == 15
