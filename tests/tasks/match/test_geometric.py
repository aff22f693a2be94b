"""Geometric matching: HPatches descriptor sampling, DIFT's mutual nearest neighbours, a known homography."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from vidprop.errors import ConfigError, InputError
from vidprop.tasks.match import (
    detect_sift,
    fit_homography,
    geometric_match_features,
    mutual_nearest,
    sample_descriptors,
)


def test_descriptors_are_the_upsampled_map_at_the_keypoints():
    g = torch.Generator().manual_seed(4)
    feat = torch.randn(6, 8, 12, generator=g)
    H, W = 64, 96
    up = F.interpolate(feat[None], size=(H, W), mode="bilinear", align_corners=False)[0]
    pts = np.array([[0, 0], [95, 63], [17, 40], [50, 3]], dtype=np.float64)
    d = sample_descriptors(feat, pts, (H, W), convention="centres")
    torch.testing.assert_close(d, up[:, pts[:, 1].astype(int), pts[:, 0].astype(int)].T, rtol=0, atol=1e-5)
    # a linear ramp stays linear: sub-pixel points land exactly in between
    ramp = torch.arange(12, dtype=torch.float32).repeat(1, 8, 1)  # value = column index of the cell
    v = sample_descriptors(ramp, np.array([[20.0, 30.0], [20.5, 30.0]]), (64, 96), convention="centres")[:, 0]
    assert v[0].item() == pytest.approx((20 + 0.5) / 8 - 0.5, abs=1e-6)
    assert v[1].item() == pytest.approx((21 + 0.5) / 8 - 0.5 - 0.5 / 8, abs=1e-6)


def plain_dift_sample(feat: np.ndarray, x: float, y: float, W: int, H: int) -> np.ndarray:
    """DIFT's HPatches sampling written out: pixel x sits at map column x * w / (W - 1) - 0.5 (their
    (x - c) / c with c = (W - 1) / 2, read by grid_sample with align_corners=False), bilinear, zeros outside."""
    C, h, w = feat.shape
    u, v = x * w / (W - 1) - 0.5, y * h / (H - 1) - 0.5
    i0, j0 = int(np.floor(u)), int(np.floor(v))
    out = np.zeros(C)
    for j, wy in ((j0, 1 - (v - j0)), (j0 + 1, v - j0)):
        for i, wx in ((i0, 1 - (u - i0)), (i0 + 1, u - i0)):
            if 0 <= i < w and 0 <= j < h:
                out += wx * wy * feat[:, j, i]
    return out


def test_descriptors_sample_as_difts_hpatches_evaluation():
    g = torch.Generator().manual_seed(6)
    feat = torch.randn(5, 12, 16, generator=g)
    H, W = 480, 640
    rng = np.random.default_rng(1)
    pts = np.concatenate([np.stack([rng.uniform(0, W - 1, 30), rng.uniform(0, H - 1, 30)], axis=1),
                          [[0, 0], [W - 1, H - 1], [W - 1, 0], [3.5, 479]]]).astype(np.float32).astype(np.float64)
    d = sample_descriptors(feat, pts, (H, W))  # the default convention
    ref = np.stack([plain_dift_sample(feat.double().numpy(), x, y, W, H) for x, y in pts])
    np.testing.assert_allclose(d.numpy(), ref, rtol=1e-4, atol=1e-5)
    # corner pixel (0, 0) lands at map (-0.5, -0.5): a quarter of cell (0, 0), the rest zero padding
    np.testing.assert_allclose(d[-4].numpy(), 0.25 * feat[:, 0, 0].numpy(), atol=1e-6)
    # ... where the pixel-centre convention reads cell (0, 0) itself
    assert not np.allclose(d.numpy(), sample_descriptors(feat, pts, (H, W), convention="centres").numpy(), atol=1e-3)


def test_mutual_nearest_neighbours():
    a = torch.tensor([[1.0, 0, 0], [0, 1, 0], [0, 0, 1], [1, 1, 0]])
    b = torch.tensor([[0, 0, 2.0], [3, 0.1, 0], [0, 1, 0.1]])
    ia, ib, sims = mutual_nearest(a, b)
    assert sorted(zip(ia.tolist(), ib.tolist())) == [(0, 1), (1, 2), (2, 0)]  # a[3] is not mutual
    assert np.all(sims > 0.99)


def dift_mnn_matcher(descriptors_a, descriptors_b, metric="cosine"):
    """DIFT's eval_homography.py mnn_matcher (L9-24), written plainly: (N, 2) index pairs."""
    if metric == "cosine":
        sim = F.normalize(descriptors_a) @ F.normalize(descriptors_b).t()
    else:
        dist = ((descriptors_a ** 2).sum(1, keepdim=True) + (descriptors_b ** 2).sum(1, keepdim=True).t()
                - 2 * descriptors_a.mm(descriptors_b.t()))
        sim = -dist
    nn12 = torch.max(sim, dim=1)[1]
    nn21 = torch.max(sim, dim=0)[1]
    ids1 = torch.arange(0, sim.shape[0])
    mask = ids1 == nn21[nn12]
    return torch.stack([ids1[mask], nn12[mask]]).t().numpy()


@pytest.mark.parametrize("metric", ["cosine", "l2"])
def test_mutual_nearest_matches_difts_matcher_for_both_distances(metric):
    # synthetic descriptors of uneven norms (as raw DIFT features): the two distances pick different pairs
    g = torch.Generator().manual_seed(3)
    a = torch.randn(300, 16, generator=g) * torch.rand(300, 1, generator=g).mul(3).add(0.2)
    b = torch.randn(280, 16, generator=g) * torch.rand(280, 1, generator=g).mul(3).add(0.2)
    ia, ib, sims = mutual_nearest(a, b, metric)
    ref = dift_mnn_matcher(a, b, metric)
    assert len(ref) > 20
    np.testing.assert_array_equal(np.stack([ia, ib], 1), ref)
    cos = (F.normalize(a, dim=1)[ia] * F.normalize(b, dim=1)[ib]).sum(1).numpy()
    np.testing.assert_allclose(sims, cos, atol=1e-6)  # the score reported is the cosine either way
    other = dift_mnn_matcher(a, b, "l2" if metric == "cosine" else "cosine")
    assert {tuple(r) for r in other} != {tuple(r) for r in ref}  # the distance matters on these descriptors


def test_mutual_nearest_refuses_an_unknown_distance():
    with pytest.raises(ConfigError, match="distance must be cosine or l2"):
        mutual_nearest(torch.ones(2, 3), torch.ones(2, 3), "l1")


def _position_code(u: np.ndarray, v: np.ndarray) -> np.ndarray:
    """A smooth, distinctive descriptor of a continuous position (channels first)."""
    rng = np.random.default_rng(7)
    freqs = rng.normal(size=(24, 2)) * 0.15
    phase = rng.uniform(0, 2 * np.pi, 24)
    arg = freqs[:, 0, None, None] * u[None] + freqs[:, 1, None, None] * v[None] + phase[:, None, None]
    return np.concatenate([np.sin(arg), np.cos(arg)]).astype(np.float32)


@pytest.mark.parametrize("method", ["lmeds", "ransac"])
def test_geometric_recovers_a_known_homography(method):
    H_true = np.array([[0.9, 0.08, 12.0], [-0.05, 1.05, 6.0], [2e-4, -1e-4, 1.0]])
    Hs, Ws, Ht, Wt = 80, 100, 90, 120
    ys, xs = np.mgrid[0:Hs, 0:Ws].astype(np.float64)
    src_feat = torch.from_numpy(_position_code(xs, ys))
    Y, X = np.mgrid[0:Ht, 0:Wt].astype(np.float64)
    inv = np.linalg.inv(H_true)
    den = inv[2, 0] * X + inv[2, 1] * Y + inv[2, 2]
    u = (inv[0, 0] * X + inv[0, 1] * Y + inv[0, 2]) / den
    v = (inv[1, 0] * X + inv[1, 1] * Y + inv[1, 2]) / den
    tgt_feat = torch.from_numpy(_position_code(u, v))  # the target "sees" source position H^-1(p)
    rng = np.random.default_rng(0)
    src_kps = np.stack([rng.integers(10, 80, 40), rng.integers(10, 60, 40)], axis=1).astype(np.float64)
    src_kps = np.unique(src_kps, axis=0)
    p = np.c_[src_kps, np.ones(len(src_kps))] @ H_true.T
    tgt_kps = p[:, :2] / p[:, 2:]
    tgt_kps = np.concatenate([tgt_kps, rng.uniform(0, 110, (15, 2))])  # plus distractors
    res = geometric_match_features(src_feat, tgt_feat, (Hs, Ws), (Ht, Wt), src_kps, tgt_kps, method=method)
    assert len(res.source_points) >= 0.9 * len(src_kps)
    proj = np.c_[res.source_points, np.ones(len(res.source_points))] @ H_true.T
    np.testing.assert_allclose(proj[:, :2] / proj[:, 2:], res.target_points, atol=1e-6)  # all matches right
    corners = np.array([[0, 0, 1], [0, Hs - 1, 1], [Ws - 1, 0, 1], [Ws - 1, Hs - 1, 1]], float)
    a, b = corners @ res.homography.T, corners @ H_true.T
    assert np.abs(a[:, :2] / a[:, 2:] - b[:, :2] / b[:, 2:]).max() < 0.05
    assert res.inliers.sum() >= 0.9 * len(res.source_points)


def test_fit_homography_errors_are_clear():
    with pytest.raises(InputError, match="too few matches for a homography between a.jpg and b.jpg: 3 match"):
        fit_homography(np.zeros((3, 2)), np.ones((3, 2)), what="between a.jpg and b.jpg")
    same = np.tile([[5.0, 5.0]], (10, 1))
    with pytest.raises(InputError, match="too few matches.*1 distinct"):
        fit_homography(same, same + 1)


def test_sift_keypoints_are_distinct_and_capped():
    rng = np.random.default_rng(0)
    import cv2

    img = (cv2.resize(rng.random((20, 30, 3)), (150, 100), interpolation=cv2.INTER_CUBIC).clip(0, 1) * 255)
    kps = detect_sift(img.astype(np.uint8), max_keypoints=25)
    assert 4 <= len(kps) <= 25 and len(np.unique(kps.round(2), axis=0)) == len(kps)
    assert np.all((kps >= 0) & (kps < [150, 100]))
