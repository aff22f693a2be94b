"""The notebook's edit propagation against plain computations written here."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from vidprop.errors import InputError
from vidprop.tasks.match import (
    composite_warped,
    edit_matches,
    propagate_edit_features,
    region_points,
    sticker_layer,
)


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
