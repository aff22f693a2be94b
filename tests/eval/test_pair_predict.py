"""PairPredictor: DIFT encodes each image once per group and reads rounded, clipped source pixels; the
attention method gets the points as given."""

from __future__ import annotations

import numpy as np
import pytest

from tests.eval.label_matcher import LabelAttention, LabelMatcher
from vidprop.eval.pair_predict import PairPredictor, round_and_clip


def test_round_and_clip():
    pts = np.array([[-3.0, 2.4], [9.6, 7.5], [4.5, 100.0]])
    # half to even (numpy), then into the image
    assert round_and_clip(pts, (8, 10)).tolist() == [[0, 2], [9, 7], [4, 7]]


def _images():
    src = np.zeros((8, 10, 3), np.uint8)
    trg = np.zeros((8, 10, 3), np.uint8)
    src[2, 3, 0], src[7, 9, 0] = 1, 2  # labels at (3, 2) and (9, 7)
    trg[5, 1, 0], trg[0, 6, 0] = 1, 2
    return src, trg


def test_dift_encodes_each_image_once_and_reads_rounded_pixels():
    src, trg = _images()
    m = LabelMatcher(2)
    predict = PairPredictor(m, prompt="a photo of a bird", group="g")
    pts = np.array([[3.4, 1.6], [9.7, 7.2]])  # round to (3, 2) and (10 -> clipped 9, 7)
    assert predict("s.png", src, "t.png", trg, pts).tolist() == [[1, 5], [6, 0]]
    assert predict("t.png", trg, "s.png", src, np.array([[1.0, 5.0]])).tolist() == [[3, 2]]
    assert m.calls == 2 and predict.encoded == 2 and predict.points == 3 and set(m.prompts) == {"a photo of a bird"}
    assert predict("s.png", src, "t.png", trg, np.zeros((0, 2))).shape == (0, 2) and predict.points == 3


def test_attention_gets_the_points_unrounded():
    src, trg = _images()
    att = LabelAttention()
    predict = PairPredictor(None, attention=att)
    pts = np.array([[3.4, 1.6], [8.6, 7.2]])
    assert predict("s.png", src, "t.png", trg, pts).tolist() == [[1, 5], [6, 0]]
    assert np.array_equal(att.points[0], pts) and predict.method == "attention" and predict.encoded == 0
    with pytest.raises(ValueError, match="needs a matcher"):
        PairPredictor(None)
