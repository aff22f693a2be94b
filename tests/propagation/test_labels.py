from __future__ import annotations

import numpy as np
import torch

from tests.propagation.reference import decode_crw, decode_dino
from vidprop.propagation.labels import labels_bilinear, labels_nearest, norm_mask, one_hot


def test_one_hot_keeps_given_ids_in_channel_order():
    m = np.array([[0, 7, 7], [3, 0, 3]], np.uint8)
    oh = one_hot(m, [3, 7])
    assert oh.shape == (3, 2, 3)
    np.testing.assert_array_equal(oh[0].numpy(), [[1, 0, 0], [0, 1, 0]])
    np.testing.assert_array_equal(oh[1].numpy(), [[0, 0, 0], [1, 0, 1]])
    np.testing.assert_array_equal(oh[2].numpy(), [[0, 1, 1], [0, 0, 0]])


def test_labels_nearest_matches_pil_nearest():
    m = np.zeros((16, 24), np.uint8)
    m[4:12, 8:16] = 5
    lab = labels_nearest(m, (2, 3), [5])  # grid (gh=2, gw=3): PIL picks pixels at rows 4, 12 and cols 4, 12, 20
    np.testing.assert_array_equal(lab[1].numpy(), [[0, 1, 0], [0, 0, 0]])
    np.testing.assert_array_equal((lab[0] + lab[1]).numpy(), np.ones((2, 3)))


def test_labels_bilinear_is_soft_at_edges():
    m = np.zeros((8, 8), np.uint8)
    m[:, 4:] = 1
    lab = labels_bilinear(m, (2, 2), [1])
    # downsampling by 4 without antialias samples at source x = 1.5 and 5.5: averages pixels (1,2) and (5,6)
    np.testing.assert_allclose(lab[1].numpy(), [[0, 1], [0, 1]])
    m2 = np.zeros((4, 4), np.uint8)
    m2[:, 2:] = 1
    lab2 = labels_bilinear(m2, (1, 2), [1])  # factor 2: samples at x = 0.5 and 2.5
    np.testing.assert_allclose(lab2[1].numpy(), [[0.0, 1.0]])
    m3 = np.zeros((2, 3), np.uint8)
    m3[:, 1] = 1
    lab3 = labels_bilinear(m3, (2, 2), [1])  # x scale 1.5: centres map to x = 0.25 and 1.75
    np.testing.assert_allclose(lab3[1].numpy(), [[0.25, 0.25], [0.25, 0.25]], atol=1e-6)


def test_norm_mask_like_dino():
    soft = torch.tensor([[[0.2, 0.6], [0.4, 0.2]], [[0.0, 0.0], [0.0, 0.0]], [[1.0, 3.0], [2.0, 1.0]]])
    out = norm_mask(soft)
    torch.testing.assert_close(out[0], torch.tensor([[0.0, 1.0], [0.5, 0.0]]))
    torch.testing.assert_close(out[1], torch.zeros(2, 2))  # max 0: untouched
    torch.testing.assert_close(out[2], torch.tensor([[0.0, 1.0], [0.5, 0.0]]))


def test_decode_dino_restores_ids_and_size():
    soft = torch.zeros(3, 2, 2)
    soft[0] = torch.tensor([[0.9, 0.1], [0.9, 0.9]])
    soft[1] = torch.tensor([[0.1, 0.9], [0.1, 0.1]])
    soft[2] = torch.tensor([[0.0, 0.0], [0.0, 0.0]])
    out = decode_dino(soft, 4, (8, 8), [4, 9])
    assert out.shape == (8, 8) and out.dtype == np.uint8
    assert set(np.unique(out)) == {0, 4}
    assert out[0, 7] == 4 and out[7, 0] == 0
    out2 = decode_dino(soft, 4, (10, 6), [4, 9])  # nearest resize to the original size
    assert out2.shape == (6, 10)


def test_decode_crw_argmax_after_bilinear():
    soft = torch.tensor([[[1.0, 0.0]], [[0.0, 1.0]]])  # (2, 1, 2)
    out = decode_crw(soft, (4, 1), [2])
    np.testing.assert_array_equal(out, [[0, 0, 2, 2]])


def dift_norm_mask(mask):
    """DIFT's / DINO's norm_mask written plainly: per channel with max > 0, (x - min) / max of that."""
    mask = mask.clone()
    for c in range(mask.shape[0]):
        ch = mask[c]
        if ch.max() > 0:
            ch = ch - ch.min()
            mask[c] = ch / ch.max()
    return mask


def test_constant_positive_channel_is_zeroed_a_deliberate_difference_from_the_reference():
    # an object whose propagated score is exactly constant and > 0 over the frame (it covers the frame)
    soft = torch.stack([torch.tensor([[0.2, 0.6], [0.4, 0.1]]), torch.full((2, 2), 0.7)])
    ref = dift_norm_mask(soft)
    assert torch.isnan(ref[1]).all()  # the reference divides 0 by 0 ...
    assert (torch.max(ref, dim=0)[1] == 1).all()  # ... and torch.max takes the NaN: object 1 everywhere
    got = norm_mask(soft)
    torch.testing.assert_close(got[1], torch.zeros(2, 2))  # vidprop: the channel is zeroed (docs/propagation.md)
    torch.testing.assert_close(got[0], ref[0])  # every other channel as the reference
    assert torch.argmax(got, dim=0).tolist() == [[0, 0], [0, 0]]
