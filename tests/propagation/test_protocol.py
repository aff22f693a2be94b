"""The protocol objects say what differs between protocols A and B; their mask coding equals the published one."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from tests.propagation.reference import decode_crw, decode_dino
from vidprop.propagation.labels import labels_bilinear, labels_nearest
from vidprop.propagation.protocol import PROTOCOLS, get_protocol


def test_the_two_protocols():
    a, b = get_protocol("dino"), get_protocol("crw")
    assert (a.window, a.keep_ties, a.global_anchors, a.seed_queue, a.label_resize) == (
        "square", True, False, False, "nearest")
    assert (b.window, b.keep_ties, b.global_anchors, b.seed_queue, b.label_resize) == (
        "disc", False, True, True, "bilinear")
    assert set(PROTOCOLS) == {"dino", "crw"}
    with pytest.raises(ValueError, match="dino, crw"):
        get_protocol("xmem")


def test_mask_coding_is_the_published_one():
    g = torch.Generator().manual_seed(0)
    mask = np.zeros((32, 48), np.uint8)
    mask[4:20, 8:30] = 3
    mask[18:30, 20:44] = 7
    ids = [3, 7]
    a, b = get_protocol("dino"), get_protocol("crw")
    torch.testing.assert_close(a.encode_mask(mask, (4, 6), ids), labels_nearest(mask, (4, 6), ids))
    torch.testing.assert_close(b.encode_mask(mask, (4, 6), ids), labels_bilinear(mask, (4, 6), ids))
    soft = torch.rand(3, 4, 6, generator=g)
    np.testing.assert_array_equal(a.decode_mask(soft, 8, (50, 30), ids)[0], decode_dino(soft, 8, (50, 30), ids))
    np.testing.assert_array_equal(b.decode_mask(soft, 8, (50, 30), ids)[0], decode_crw(soft, (50, 30), ids))


def test_excluded_ids_give_the_best_remaining_label_background_included():
    # protocol B decodes at the frame size: a 1 x 3 map, channels bg, id 2, id 5
    soft = torch.tensor([[[0.1, 0.5, 0.2]], [[0.8, 0.3, 0.1]], [[0.3, 0.2, 0.7]]])
    pred, alt = get_protocol("crw").decode_mask(soft, 8, (3, 1), [2, 5], exclude=[2])
    np.testing.assert_array_equal(pred, [[2, 0, 5]])
    np.testing.assert_array_equal(alt, [[5, 0, 5]])  # without id 2: argmax over bg and id 5
    pred, alt = get_protocol("crw").decode_mask(soft, 8, (3, 1), [2, 5], exclude=[2, 5])
    np.testing.assert_array_equal(alt, [[0, 0, 0]])
    # protocol A: normalised per channel at the model input's size, then resized to the frame
    soft = torch.zeros(3, 1, 2)
    soft[0] = torch.tensor([[0.2, 0.6]])
    soft[1] = torch.tensor([[0.9, 0.1]])
    soft[2] = torch.tensor([[0.5, 0.4]])
    pred, alt = get_protocol("dino").decode_mask(soft, 1, (4, 2), [1, 4], exclude=[1])
    # normalised: bg [0, 1], id 1 [1, 0], id 4 [1, 0]: ties go to the lower channel
    np.testing.assert_array_equal(pred, [[1, 1, 0, 0], [1, 1, 0, 0]])
    np.testing.assert_array_equal(alt, [[4, 4, 0, 0], [4, 4, 0, 0]])
    assert get_protocol("dino").decode_mask(soft, 1, (2, 1), [1, 4])[1] is None
