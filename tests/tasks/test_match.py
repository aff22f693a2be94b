"""Matchers on features whose answer is known; the lean semantic argmax, the HPatches descriptor sampling and
the notebook's edit propagation against plain computations written here."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from vidprop.errors import ConfigError, InputError
from vidprop.tasks.match import (
    composite_warped,
    detect_sift,
    edit_matches,
    fit_homography,
    geometric_match_features,
    mutual_nearest,
    prompt_for,
    propagate_edit_features,
    region_points,
    sample_descriptors,
    semantic_argmax,
    sticker_layer,
    upsample_rows,
)


def reference_semantic(src_feat, tgt_feat, src_size, tgt_size, points):
    """The spec's computation, written plainly: upsample both maps to full size, cosine over every target pixel."""
    su = F.interpolate(src_feat[None], size=src_size, mode="bilinear", align_corners=False)[0]
    tu = F.interpolate(tgt_feat[None], size=tgt_size, mode="bilinear", align_corners=False)[0]
    tn = F.normalize(tu.reshape(tu.shape[0], -1), dim=0)
    out, scores, maps = [], [], []
    for x, y in np.asarray(points, dtype=np.int64):
        q = F.normalize(su[:, y, x], dim=0)
        sim = q @ tn
        i = int(sim.argmax())
        out.append((i % tgt_size[1], i // tgt_size[1]))
        scores.append(float(sim[i]))
        maps.append(sim.reshape(tgt_size).numpy())
    return np.array(out), np.array(scores), np.stack(maps)


def test_upsample_rows_equals_interpolate():
    g = torch.Generator().manual_seed(0)
    feat = torch.randn(5, 7, 9, generator=g)
    full = F.interpolate(feat[None], size=(37, 23), mode="bilinear", align_corners=False)[0]
    for rows in (slice(0, 37), slice(5, 6), slice(30, 37), torch.tensor([0, 17, 36])):
        torch.testing.assert_close(upsample_rows(feat, (37, 23), rows), full[:, rows], rtol=0, atol=1e-5)


@pytest.mark.parametrize("chunk_bytes", [1, 4 * 16 * 61 * 3, 64 << 20])
def test_lean_semantic_argmax_equals_full_resolution_reference(chunk_bytes):
    g = torch.Generator().manual_seed(1)
    src = torch.randn(16, 6, 8, generator=g)
    tgt = torch.randn(16, 5, 7, generator=g)
    rng = np.random.default_rng(0)
    pts = np.stack([rng.integers(0, 70, 25), rng.integers(0, 50, 25)], axis=1)
    ref_pts, ref_scores, ref_maps = reference_semantic(src, tgt, (50, 70), (45, 61), pts)
    got, scores, maps = semantic_argmax(src, tgt, (50, 70), (45, 61), pts, return_maps=True,
                                        chunk_bytes=chunk_bytes, query_chunk=7)
    np.testing.assert_array_equal(got, ref_pts)
    np.testing.assert_allclose(scores, ref_scores, atol=1e-5)
    np.testing.assert_allclose(maps, ref_maps, atol=1e-5)


def test_semantic_exact_on_shifted_copy():
    """Full-resolution features; the target is the source shifted by (dx, dy): every match is exact."""
    g = torch.Generator().manual_seed(2)
    src = torch.randn(8, 40, 50, generator=g)
    dx, dy = 7, 3
    tgt = torch.randn(8, 40, 50, generator=g)
    tgt[:, dy:, dx:] = src[:, : 40 - dy, : 50 - dx]
    pts = np.array([[0, 0], [10, 20], [42, 36], [5, 30]])
    got, scores, _ = semantic_argmax(src, tgt, (40, 50), (40, 50), pts)
    np.testing.assert_array_equal(got, pts + [dx, dy])
    np.testing.assert_allclose(scores, 1.0, atol=1e-5)


def test_semantic_identity_through_upsampling():
    """Same low-resolution map for both images, upsampled 8x: each pixel finds itself."""
    g = torch.Generator().manual_seed(3)
    feat = torch.randn(32, 6, 6, generator=g)
    pts = np.array([[0, 0], [43, 40], [13, 29], [30, 4], [24, 24], [47, 47]])
    got, scores, _ = semantic_argmax(feat, feat.clone(), (48, 48), (48, 48), pts)
    np.testing.assert_array_equal(got[:5], pts[:5])
    # pixels 44..47 all hold the last cell's feature (clamped): ties go to the first in row-major order
    np.testing.assert_array_equal(got[5], [44, 44])
    np.testing.assert_allclose(scores, 1.0, atol=1e-5)


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


def test_edit_on_a_shifted_copy_is_exact():
    g = torch.Generator().manual_seed(5)
    H, W, dx, dy = 48, 64, 6, 4
    src_feat = torch.randn(8, H, W, generator=g)
    tgt_feat = torch.randn(8, H, W, generator=g)
    tgt_feat[:, dy:, dx:] = src_feat[:, : H - dy, : W - dx]
    target = np.full((H, W, 3), 40, np.uint8)
    layer = np.zeros((H, W, 4), np.uint8)
    layer[10:30, 12:40] = (250, 10, 20, 255)
    res = propagate_edit_features(src_feat, tgt_feat, layer, target, max_points=64)
    np.testing.assert_allclose(res.homography, [[1, 0, dx], [0, 1, dy], [0, 0, 1]], atol=1e-6)
    assert res.inliers.all() and len(res.source_points) == 64  # random pixels of the 20x28 region
    np.testing.assert_array_equal(res.image[10 + dy : 30 + dy, 12 + dx : 40 + dx], np.full((20, 28, 3), (250, 10, 20)))
    untouched = np.ones((H, W), bool)
    untouched[10 + dy : 30 + dy, 12 + dx : 40 + dx] = False
    assert np.all(res.image[untouched] == 40)


def test_sticker_layer_placement_and_errors():
    sticker = np.zeros((10, 20, 4), np.uint8)
    sticker[..., 3] = 255
    layer = sticker_layer(sticker, (50, 60), at=(55, -4))
    assert layer.shape == (50, 60, 4)
    assert layer[..., 3].sum() == 255 * 5 * 6  # clipped at the right and top borders
    assert layer[0:6, 55:60, 3].all()
    with pytest.raises(InputError, match="sticker is 20x10 but the source is 60x50.*--at"):
        sticker_layer(sticker, (50, 60))
    with pytest.raises(InputError, match="outside the source"):
        sticker_layer(sticker, (50, 60), at=(100, 0))
    with pytest.raises(InputError, match="fully transparent"):
        sticker_layer(np.zeros((50, 60, 4), np.uint8), (50, 60))


def notebook_points(alpha: np.ndarray, n: int, seed: int) -> np.ndarray:
    """DIFT's notebook: a (h, w) grid of (x, y), the pixels under the sticker's alpha in row-major order,
    a random permutation, the first n (its randperm, here from a seeded generator)."""
    h, w = alpha.shape
    gy, gx = torch.meshgrid(torch.arange(h), torch.arange(w), indexing="ij")
    grid = torch.stack((gx, gy), -1)
    coord = grid[torch.from_numpy(alpha > 0)]
    return coord[torch.randperm(len(coord), generator=torch.Generator().manual_seed(seed))][:n].numpy()


def notebook_matches(src_feat, tgt_feat, src_size, tgt_size, coord_src):
    """DIFT's notebook: normalise the maps, grid_sample with align_corners=True at x / (w - 1) * 2 - 1 (every
    target pixel), cdist, min."""
    (hs, ws), (ht, wt) = src_size, tgt_size
    fs = F.normalize(src_feat, p=2, dim=0)
    ft = F.normalize(tgt_feat, p=2, dim=0)
    gy, gx = torch.meshgrid(torch.arange(ht), torch.arange(wt), indexing="ij")
    grid_trg = torch.stack((gx, gy), -1)
    cs = torch.as_tensor(coord_src)
    cs_n = cs / torch.tensor([ws - 1.0, hs - 1.0]) * 2 - 1.0
    gt_n = grid_trg / torch.tensor([wt - 1.0, ht - 1.0]) * 2 - 1.0
    feat_src = F.grid_sample(fs[None], cs_n[None, None].float(), align_corners=True).squeeze().T
    feat_trg = F.grid_sample(ft[None], gt_n[None].float(), align_corners=True).squeeze()
    distances = torch.cdist(feat_src, feat_trg.permute(1, 2, 0).reshape(-1, fs.shape[0]))
    _, indices = torch.min(distances, dim=1)
    return grid_trg.reshape(-1, 2)[indices].numpy()


def test_edit_points_are_the_notebooks_random_pixels():
    alpha = np.zeros((40, 50), np.uint8)
    alpha[5:30, 10:45] = 255
    alpha[6, 11] = 0
    pts = region_points(alpha, 100, seed=3)
    np.testing.assert_array_equal(pts, notebook_points(alpha, 100, 3))
    assert len(pts) == 100 and len(np.unique(pts, axis=0)) == 100 and np.all(alpha[pts[:, 1], pts[:, 0]] > 0)
    assert not np.array_equal(pts, region_points(alpha, 100, seed=4))  # the seed picks the points
    np.testing.assert_array_equal(region_points(alpha, 100, seed=3), pts)  # ... deterministically
    assert len(region_points(alpha, 10_000)) == np.count_nonzero(alpha)  # fewer pixels than asked: all of them


@pytest.mark.parametrize("chunk_bytes", [4 * 16 * 33 * 4, 64 << 20])  # 4 target rows at a time, or all
def test_edit_matches_equal_the_notebooks_nearest_neighbours(chunk_bytes):
    g = torch.Generator().manual_seed(7)
    src = torch.randn(16, 6, 8, generator=g)
    tgt = torch.randn(16, 7, 5, generator=g) * torch.linspace(0.5, 2, 5)  # unequal norms: L2 != cosine
    rng = np.random.default_rng(2)
    pts = np.stack([rng.integers(0, 70, 60), rng.integers(0, 50, 60)], axis=1)
    got = edit_matches(src, tgt, (50, 70), (45, 33), pts, chunk_bytes=chunk_bytes)
    np.testing.assert_array_equal(got, notebook_matches(src, tgt, (50, 70), (45, 33), pts))


def test_straight_compositing_as_the_notebook_and_premultiplied_as_an_option():
    import cv2

    rng = np.random.default_rng(0)
    target = rng.integers(0, 256, (20, 30, 3), dtype=np.uint8)
    layer = np.zeros((20, 30, 4), np.uint8)
    layer[..., :3] = (0, 255, 0)  # hidden colour of the transparent pixels
    layer[5:10, 5:15] = (200, 100, 50, 128)
    layer[6, 6, 3] = 255
    shift = np.array([[1, 0, 3], [0, 1, 2], [0, 0, 1]], np.float64)  # integer shift: the warp is exact
    out = composite_warped(target, layer, shift)
    moved = np.zeros_like(layer)
    moved[2:, 3:] = layer[:-2, :-3]
    a = moved[..., 3:] / 255
    np.testing.assert_array_equal(out, (a * moved[..., :3] + (1 - a) * target).astype(np.uint8))  # truncated
    assert out[7, 8].tolist() == [int(c * 128 / 255 + (1 - 128 / 255) * v) for c, v in zip((200, 100, 50), target[7, 8])]
    assert out[8, 9].tolist() == [200, 100, 50] and out[0, 0].tolist() == target[0, 0].tolist()
    # half a pixel off: straight alpha lets the hidden green bleed into the fringe, premultiplied does not
    half = np.array([[1, 0, 0.5], [0, 1, 0], [0, 0, 1]], np.float64)
    black = np.zeros_like(target)
    straight = composite_warped(black, layer, half)
    premult = composite_warped(black, layer, half, mode="premultiplied")
    # pixel (x=5, y=7) reads source x=4.5: half a transparent green pixel, half the sticker (green 100, alpha 128)
    warped = cv2.warpPerspective(layer, half, (30, 20))
    assert warped[7, 5, 1] == 178 and warped[7, 5, 3] == 64  # (255 + 100) / 2, (0 + 128) / 2
    assert straight[7, 5, 1] == int(64 / 255 * 178) == 44  # the hidden green leaks in
    assert premult[7, 5, 1] == round(0.5 * 100 * 128 / 255) == 25  # coverage-weighted sticker colour
    with pytest.raises(Exception, match="straight or premultiplied"):
        composite_warped(black, layer, half, mode="over")


def test_prompt_for_category():
    assert prompt_for("a photo of a {category}", "cat") == "a photo of a cat"
    assert prompt_for("a photo of a {category}", None) == ""
    assert prompt_for("", "cat") == ""
