"""Keypoint heatmaps (JHMDB protocol): drawing and decoding against hand-computed arrays,
and protocol B propagation of heatmaps against the plain dense reference."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from tests.propagation.reference import dense_protocol_b
from vidprop.config import PropagationConfig
from vidprop.propagation.keypoints import draw_gaussian, heatmaps_to_keypoints, keypoints_to_heatmaps
from vidprop.propagation.propagator import Propagator

# Patch values exp(-((i-2)^2 + (j-2)^2) / (2 * 0.5^2)) factor into a(i-2) * a(j-2), a(d) = exp(-2 d^2):
E2 = math.exp(-2.0)  # a(+-1)
E8 = math.exp(-8.0)  # a(-2)
ROW = [E8, E2, 1.0, E2]  # a over patch indices 0..3


def _draw(x, y, grid=(6, 6), rule="crw"):
    ch = np.zeros(grid)
    drawn = draw_gaussian(ch, x, y, rule=rule)
    return ch, drawn


# ---- rule="ideal": the whole 4x4 patch from ul, clipped (an option; CRW's rule is the default)
def test_ideal_rule_negative_coordinate_keeps_both_columns():
    # x = -0.7: ul_x = int(-2.2) = -2 -> patch cols -2..1 -> grid cols 0, 1 = patch cols 2, 3
    # y = 2.0: ul_y = int(0.5) = 0 -> rows 0..3
    ch, drawn = _draw(-0.7, 2.0, rule="ideal")
    exp = np.zeros((6, 6))
    exp[0:4, 0] = ROW
    exp[0:4, 1] = np.asarray(ROW) * E2
    assert drawn
    np.testing.assert_allclose(ch, exp, rtol=0, atol=1e-15)


def test_ideal_rule_small_positive_coordinate_full_patch():
    # x = y = 0.7: ul = int(-0.8) = 0 -> the full patch on rows/cols 0..3
    ch, _ = _draw(0.7, 0.7, rule="ideal")
    exp = np.zeros((6, 6))
    exp[0:4, 0:4] = np.outer(ROW, ROW)
    np.testing.assert_allclose(ch, exp, rtol=0, atol=1e-15)


def test_ideal_rule_point_above_the_grid_draws_its_last_row():
    # y = -1.6: ul_y = int(-3.1) = -3 -> patch rows -3..0 -> grid row 0 = patch row 3 (a(1) = e^-2)
    # x = 2.0: ul_x = int(0.5) = 0 -> cols 0..3. (rule="crw" draws nothing here: br_y = int(0.9) = 0.)
    ch, drawn = _draw(2.0, -1.6, rule="ideal")
    exp = np.zeros((6, 6))
    exp[0, 0:4] = np.asarray(ROW) * E2
    assert drawn
    np.testing.assert_allclose(ch, exp, rtol=0, atol=1e-15)
    assert keypoints_to_heatmaps(np.array([[0.7, 0.7]]), (6, 6), rule="ideal")[1, 3, 3] > 0
    assert keypoints_to_heatmaps(np.array([[0.7, 0.7]]), (6, 6))[1, 3, 3] == 0  # the default is CRW's rule
    with pytest.raises(ValueError):
        draw_gaussian(np.zeros((3, 3)), 1.0, 1.0, rule="floor")


# ---- rule="crw" (the default): CRW's draw_labelmap_np, which also cuts the patch at br = int(x + 2.5)


def crw_draw_reference(grid_h: int, grid_w: int, x: float, y: float) -> np.ndarray:
    """A plain transcription of the drawing rule of CRW's reference code (sigma 0.5), for comparison."""
    img = np.zeros((grid_h, grid_w))
    ul = [int(x - 3 * 0.5), int(y - 3 * 0.5)]
    br = [int(x + 3 * 0.5 + 1), int(y + 3 * 0.5 + 1)]
    if ul[0] >= grid_w or ul[1] >= grid_h or br[0] < 0 or br[1] < 0:
        return img
    size = 6 * 0.5 + 1
    xs = np.arange(0, size, 1, float)
    ys = xs[:, np.newaxis]
    x0 = y0 = size // 2
    g = np.exp(-((xs - x0) ** 2 + (ys - y0) ** 2) / (2 * 0.5**2))
    g_x = max(0, -ul[0]), min(br[0], grid_w) - ul[0]
    g_y = max(0, -ul[1]), min(br[1], grid_h) - ul[1]
    img_x = max(0, ul[0]), min(br[0], grid_w)
    img_y = max(0, ul[1]), min(br[1], grid_h)
    img[img_y[0]:img_y[1], img_x[0]:img_x[1]] = g[g_y[0]:g_y[1], g_x[0]:g_x[1]]
    return img


def test_crw_rule_equals_the_plain_reference_everywhere_near_the_borders():
    coords = np.round(np.arange(-4.0, 9.0, 0.1), 10)
    for x in coords:
        for y in (-1.3, 0.0, 0.6, 2.0, 7.9):
            ch, _ = _draw(float(x), y, grid=(8, 9))
            np.testing.assert_array_equal(ch, crw_draw_reference(8, 9, float(x), y), err_msg=f"x={x} y={y}")


def test_joint_at_minus_two_gets_an_empty_channel():
    # x = -2.0: ul_x = int(-3.5) = -3, br_x = int(0.5) = 0 -> no column; the ideal rule draws column 0
    lab = keypoints_to_heatmaps(np.array([[-2.0, 3.0]]), (6, 6))
    assert not lab[1].any() and (lab[0] == 1).all()
    assert keypoints_to_heatmaps(np.array([[-2.0, 3.0]]), (6, 6), rule="ideal")[1, :, 0].any()


@pytest.mark.parametrize("x", [0.6, 0.9, 1.0, 1.2, 1.49])
def test_joints_between_half_and_one_and_a_half_get_a_three_wide_patch(x):
    # ul_x = int(x - 1.5) = 0 (truncated up from a negative value), br_x = int(x + 2.5) = 3: columns 0..2
    ch, _ = _draw(x, 3.0)
    assert np.flatnonzero(ch.any(axis=0)).tolist() == [0, 1, 2]
    ideal, _ = _draw(x, 3.0, rule="ideal")
    assert np.flatnonzero(ideal.any(axis=0)).tolist() == [0, 1, 2, 3]


@pytest.mark.parametrize("x", [-0.9, -0.6, -0.4, 0.0, 0.3])
def test_joints_left_of_half_get_a_narrower_patch_than_the_ideal_rule(x):
    ch, _ = _draw(x, 3.0)
    ideal, _ = _draw(x, 3.0, rule="ideal")
    crw_cols, ideal_cols = np.flatnonzero(ch.any(axis=0)), np.flatnonzero(ideal.any(axis=0))
    assert 0 < len(crw_cols) == len(ideal_cols) - 1 and crw_cols[0] == ideal_cols[0] == 0


def test_interior_point_gets_full_4x4_patch():
    # x = 5.3 -> ul_x = int(3.8) = 3, br_x = int(7.8) = 7; y = 4.8 -> ul_y = int(3.3) = 3, br_y = 7
    ch, drawn = _draw(5.3, 4.8, grid=(10, 10))
    exp = np.zeros((10, 10))
    exp[3:7, 3:7] = np.outer(ROW, ROW)
    assert drawn
    np.testing.assert_allclose(ch, exp, rtol=0, atol=1e-15)
    assert ch[5, 5] == 1.0  # the peak is at patch index 2 = ul + 2


def test_negative_coordinate_truncates_toward_zero():
    # x = -0.7: ul_x = int(-2.2) = -2 (floor would give -3), br_x = int(1.8) = 1 -> only column 0 = patch col 2
    # y = 2.0:  ul_y = int(0.5) = 0, br_y = int(4.5) = 4 -> rows 0..3 = patch rows 0..3
    ch, drawn = _draw(-0.7, 2.0)
    exp = np.zeros((6, 6))
    exp[0:4, 0] = ROW
    assert drawn
    np.testing.assert_allclose(ch, exp, rtol=0, atol=1e-15)


def test_small_positive_coordinate_truncation_shifts_the_patch():
    # x = y = 0.7: ul = int(-0.8) = 0 (not -1), br = int(3.2) = 3: patch rows/cols 0..2 at grid 0..2,
    # so the peak lands on cell (2, 2) although the point is at 0.7
    ch, _ = _draw(0.7, 0.7)
    exp = np.zeros((6, 6))
    exp[0:3, 0:3] = np.outer(ROW[:3], ROW[:3])
    np.testing.assert_allclose(ch, exp, rtol=0, atol=1e-15)


def test_point_left_of_the_grid_with_integer_corner():
    # x = -1.5: ul_x = int(-3.0) = -3, br_x = int(1.0) = 1 -> column 0 = patch col 3 (a(1) = e^-2)
    # y = 3.0:  ul_y = int(1.5) = 1, br_y = int(5.5) = 5 -> rows 1..4
    ch, _ = _draw(-1.5, 3.0)
    exp = np.zeros((6, 6))
    exp[1:5, 0] = np.asarray(ROW) * E2
    np.testing.assert_allclose(ch, exp, rtol=0, atol=1e-15)


def test_right_and_bottom_border_clip():
    # x = 5.9: ul_x = int(4.4) = 4, br_x = 8 -> columns 4, 5 = patch cols 0, 1
    # y = 5.5: ul_y = int(4.0) = 4, br_y = int(8.0) = 8 -> rows 4, 5 = patch rows 0, 1
    ch, _ = _draw(5.9, 5.5)
    exp = np.zeros((6, 6))
    exp[4:6, 4:6] = np.outer(ROW[:2], ROW[:2])
    np.testing.assert_allclose(ch, exp, rtol=0, atol=1e-15)


@pytest.mark.parametrize(
    "x, y",
    [
        (6.0, 2.0),  # ul_x = int(4.5) = 4 < 6: drawn (checked below) -- control case
        (7.6, 2.0),  # ul_x = int(6.1) = 6 >= grid width 6
        (2.0, 7.5),  # ul_y = int(6.0) = 6 >= grid height
        (-2.6, 2.0),  # ul_x = -4, br_x = int(-0.1) = 0: empty column range
        (-3.6, 2.0),  # br_x = int(-1.1) = -1 < 0
        (2.0, -1.6),  # ul_y = int(-3.1) = -3, br_y = int(0.9) = 0: empty
        (float("nan"), 2.0),  # absent joint
    ],
)
def test_points_outside_the_grid_draw_nothing(x, y):
    ch, drawn = _draw(x, y)
    if x == 6.0:
        assert drawn
        exp = np.zeros((6, 6))
        exp[0:4, 4:6] = np.outer(ROW, ROW[:2])  # rows 0..3 (ul_y = int(0.5) = 0), cols 4, 5
        np.testing.assert_allclose(ch, exp, rtol=0, atol=1e-15)
    else:
        assert not drawn
        assert not ch.any()


def test_heatmaps_have_background_first_and_assign_per_joint():
    pts = np.array([[-0.7, 2.0], [7.6, 2.0], [4.0, 4.0]])
    lab = keypoints_to_heatmaps(pts, (6, 6), rule="crw")
    assert lab.shape == (4, 6, 6) and lab.dtype == torch.float32
    j0 = np.zeros((6, 6))
    j0[0:4, 0] = ROW
    j2 = np.zeros((6, 6))
    j2[2:6, 2:6] = np.outer(ROW, ROW)  # x = y = 4: ul = int(2.5) = 2, br = int(6.5) = 6
    np.testing.assert_allclose(lab[1].numpy(), j0, atol=1e-7)
    assert not lab[2].any()  # outside the grid: all-zero channel
    np.testing.assert_allclose(lab[3].numpy(), j2, atol=1e-7)
    bg = np.ones((6, 6))
    bg[0:4, 0] = 0
    bg[2:6, 2:6] = 0
    np.testing.assert_array_equal(lab[0].numpy(), bg)


def test_decode_top3_weighted_without_half_cell_offset():
    soft = torch.zeros(4, 4, 5)
    # joint 0: top-3 = 0.5 at (row 1, col 2), 0.3 at (3, 0), 0.2 at (0, 0); 0.1 at (2, 2) is 4th
    soft[1, 1, 2], soft[1, 3, 0], soft[1, 0, 0], soft[1, 2, 2] = 0.5, 0.3, 0.2, 0.1
    # joint 1: nothing -> (-1, -1)
    # joint 2: a single non-zero cell
    soft[3, 2, 3] = 0.7
    soft[0] = 5.0  # the background channel is ignored
    out = heatmaps_to_keypoints(soft)
    # x = 0.5*2 + 0.3*0 + 0.2*0 = 1.0 ; y = 0.5*1 + 0.3*3 + 0.2*0 = 1.4 (weights already sum to 1)
    np.testing.assert_allclose(out, [[1.0, 1.4], [-1.0, -1.0], [3.0, 2.0]], atol=1e-6)


def test_decode_of_drawn_label():
    # column 0 holds [e^-8, e^-2, 1, e^-2] on rows 0..3: top-3 = rows 2, 1, 3
    lab = keypoints_to_heatmaps(np.array([[-0.7, 2.0]]), (6, 6), rule="crw")
    # y = (2 * 1 + 1 * e^-2 + 3 * e^-2) / (1 + 2 e^-2) = 2
    np.testing.assert_allclose(heatmaps_to_keypoints(lab), [[0.0, 2.0]], atol=1e-6)


def test_protocol_b_heatmap_propagation_matches_dense_reference():
    """Propagator (protocol B) on keypoint heatmaps == dense_protocol_b with a front-padded queue, float64."""
    g = torch.Generator().manual_seed(7)
    T, C, h, w, video_len = 7, 16, 12, 12, 3
    topk, radius, temp = 10, 5, 0.05
    feats = [torch.randn(C, h, w, generator=g, dtype=torch.float64) for _ in range(T)]
    pts = np.array([[3.3, 4.1], [8.9, 2.2], [-0.7, 6.0], [11.6, 11.2], [20.0, 3.0]])
    first = keypoints_to_heatmaps(pts, (h, w)).double()
    prop = Propagator(PropagationConfig(protocol="crw", temperature=temp, topk=topk, n_last_frames=video_len,
                                        radius=radius, tile=5))
    prop.reset(feats[0], first)
    short = [(feats[0], first)] * video_len  # front padding: copies of frame 0 with its labels
    for t in range(1, T):
        ctx_f = [feats[0]] + [f for f, _ in short]
        ctx_l = [first] + [s for _, s in short]
        ref = dense_protocol_b(feats[t], ctx_f, ctx_l, n_global=1, temperature=temp, topk=topk, radius=radius)
        out = prop.step(feats[t])
        torch.testing.assert_close(out.double(), ref, atol=1e-5, rtol=1e-5)
        assert not out[5].any()  # a joint outside the grid stays empty: it never comes back
        np.testing.assert_allclose(heatmaps_to_keypoints(out), heatmaps_to_keypoints(ref), atol=1e-4)
        short = short[1:] + [(feats[t], ref)]  # the unnormalised soft prediction enters the queue
