"""PCK: DIFT's, Hedlin et al.'s and the helpers' maths against hand-computed cases and plain references."""

from __future__ import annotations

import numpy as np
import pytest

from tests.eval.pair_data import hedlin_reference
from vidprop.errors import ConfigError
from vidprop.eval.pck import (
    PCK_PROTOCOLS,
    box_threshold,
    pck_correct,
    protocol_correct,
    rescale_points,
    resolve_protocols,
    summarise_pck,
)


def test_pck_uses_the_larger_side_of_the_target_box():
    bbox = [10, 20, 110, 70]  # 100 wide, 50 high -> max 100
    gt = np.zeros((4, 2))
    pred = np.array([[3, 4], [6, 8], [10.0001, 0], [9, 12]])  # distances 5, 10, 10.0001, 15
    c = pck_correct(pred, gt, bbox)
    assert c[0.05].tolist() == [True, False, False, False]
    assert c[0.1].tolist() == [True, True, False, False]
    assert c[0.15].tolist() == [True, True, True, True]


def test_both_protocols_on_a_hand_computed_pair():
    # source 1000x500 with box 200 x 400 px -> 102.4 x 409.6 at 512x512: threshold 409.6
    # target 256x1024 (x doubles, y halves at 512); its own box is 200 x 100 px: threshold 200
    src_box, src_size = [100, 50, 300, 450], (1000, 500)
    trg_box, trg_size = [0, 0, 200, 100], (256, 1024)
    gt = np.array([[100.0, 200.0]] * 4)
    pred = np.array([[110, 200], [100, 240], [111, 200], [100, 290]], dtype=np.float64)
    # at 512: offsets (20, 0), (0, 20), (22, 0), (0, 45) against 20.48 / 40.96 / 61.44
    h = protocol_correct("hedlin", pred, gt, src_box=src_box, trg_box=trg_box, src_size=src_size, trg_size=trg_size)
    assert h[0.05].tolist() == [True, True, False, False]
    assert h[0.1].tolist() == [True, True, True, False]
    assert h[0.15].tolist() == [True, True, True, True]
    # original pixels: distances 10, 40, 11, 90 against 10 / 20 / 30
    d = protocol_correct("dift", pred, gt, src_box=src_box, trg_box=trg_box, src_size=src_size, trg_size=trg_size)
    assert d[0.05].tolist() == [True, False, False, False]
    assert d[0.1].tolist() == [True, False, True, False]
    assert d[0.15].tolist() == [True, False, True, False]
    assert box_threshold(src_box, src_size, 512) == pytest.approx(409.6)
    assert box_threshold(trg_box) == 200
    np.testing.assert_allclose(rescale_points(pred[:1], trg_size, 512), [[220.0, 100.0]])
    np.testing.assert_array_equal(rescale_points(pred, trg_size, None), pred)
    assert PCK_PROTOCOLS["hedlin"].box == "source" and PCK_PROTOCOLS["hedlin"].space == 512
    assert "45.4" in PCK_PROTOCOLS["hedlin"].compare_to and "52.9" in PCK_PROTOCOLS["dift"].compare_to
    with pytest.raises(ValueError, match="hedlin PCK protocol needs the source bounding box"):
        protocol_correct("hedlin", pred, gt, src_box=None, trg_box=trg_box, src_size=src_size, trg_size=trg_size)


def test_hedlin_protocol_equals_their_evaluation_code():
    rng = np.random.default_rng(3)
    for _ in range(20):
        src_size = tuple(int(v) for v in rng.integers(100, 900, 2))
        trg_size = tuple(int(v) for v in rng.integers(100, 900, 2))
        x1, y1 = rng.integers(0, 50, 2)
        src_box = [int(x1), int(y1), int(x1 + rng.integers(20, 90)), int(y1 + rng.integers(20, 90))]
        gt = rng.integers(0, 100, (12, 2)).astype(np.float64)
        pred = gt + rng.normal(0, 8, (12, 2))
        got = protocol_correct("hedlin", pred, gt, src_box=src_box, trg_box=None, src_size=src_size,
                               trg_size=trg_size, alphas=(0.05, 0.1))
        for a in (0.05, 0.1):
            np.testing.assert_array_equal(got[a], hedlin_reference(pred, gt, src_box, src_size, trg_size, a))


def test_pck_helper_takes_a_box_a_size_space_and_alpha():
    """The pieces other benchmarks reuse: a threshold from any box in any space, or given directly."""
    # a CUB-like threshold: an image-sized box of a 400x200 image measured at 512x512
    assert box_threshold([0, 0, 400, 200], (400, 200), 512) == 512
    c = pck_correct(np.array([[0.0, 30.0]]), np.zeros((1, 2)), alphas=(0.05, 0.1), threshold=512)
    assert c[0.05].tolist() == [False] and c[0.1].tolist() == [True]  # 30 > 25.6, 30 <= 51.2
    assert resolve_protocols("dift") == ["dift"] and resolve_protocols("attention") == ["hedlin"]
    assert resolve_protocols("attention", "both") == ["hedlin", "dift"]
    assert resolve_protocols("dift", ["hedlin", "hedlin"]) == ["hedlin"]
    with pytest.raises(ConfigError, match="unknown PCK protocol"):
        resolve_protocols("dift", "cub")


def test_per_image_and_per_point_differ_as_hand_computed():
    t, f = True, False
    records = [
        ("cat", {0.1: np.array([t, t, t, f])}),  # 3/4
        ("cat", {0.1: np.array([f])}),  # 0/1
        ("dog", {0.1: np.array([t, f])}),  # 1/2
    ]
    s = summarise_pck(records, alphas=(0.1,))
    assert s["overall"]["per_image"]["0.1"] == pytest.approx(100 * (0.75 + 0 + 0.5) / 3)
    assert s["overall"]["per_point"]["0.1"] == pytest.approx(100 * 4 / 7)
    assert s["per_category"]["cat"]["per_image"]["0.1"] == pytest.approx(100 * 0.375)
    assert s["per_category"]["cat"]["per_point"]["0.1"] == pytest.approx(100 * 3 / 5)
    assert s["per_category"]["dog"]["points"] == 2 and s["overall"]["pairs"] == 3
