"""A click answered from cached features: equal to semantic_argmax, the full-resolution reference."""

from __future__ import annotations

import base64

import cv2
import numpy as np
import pytest
import torch
import torch.nn.functional as F

from tests.view.conftest import same_feature
from vidprop.tasks.match import semantic_argmax
from vidprop.view.clicks import ClickMatcher, MatchSession, heatmap_jpeg, target_norm_map


def ref_norm(feat: torch.Tensor, size: tuple[int, int]) -> np.ndarray:
    """Plain reference: upsample everything with F.interpolate (float64), then each pixel's norm."""
    up = F.interpolate(feat[None].double(), size, mode="bilinear", align_corners=False)[0]
    return up.norm(dim=0).numpy()


@pytest.mark.parametrize("method", ["gram", "bands"])
@pytest.mark.parametrize("shape,size", [
    ((16, 15, 10), (240, 161)),  # stride 16, an odd width
    ((8, 1, 1), (5, 7)),  # one cell: every pixel is that cell
    ((8, 3, 2), (3, 2)),  # no resizing
    ((4, 6, 9), (4, 5)),  # shrinking
    ((32, 7, 5), (60, 41)),
])
def test_norm_map_equals_the_upsampled_features_norm(method, shape, size):
    g = torch.Generator().manual_seed(sum(shape) + size[0])
    feat = torch.randn(*shape, generator=g) + 0.3  # correlated neighbours, as real features
    got = target_norm_map(feat, size, method=method, chunk_bytes=4 * shape[0] * size[1] * 16)  # 16 rows per band
    ref = ref_norm(feat, size)
    assert got.shape == size and got.dtype == np.float32
    np.testing.assert_allclose(got, ref, rtol=2e-6)


def _same_or_tied(got: tuple[int, int], ref_pt: np.ndarray, ref_map: np.ndarray) -> bool:
    """Same pixel, or a pixel whose reference cosine equals the maximum to float32 rounding.

    Exact ties exist: the upsampling clamps at the border, so the last stride/2 rows and columns
    repeat one feature; which of them wins depends on rounding in either computation.
    """
    if tuple(got) == tuple(int(v) for v in ref_pt):
        return True
    return abs(ref_map[got[1], got[0]] - ref_map[ref_pt[1], ref_pt[0]]) < 1e-6


@pytest.mark.parametrize("seed", [0, 1])
def test_click_equals_semantic_argmax(seed):
    g = torch.Generator().manual_seed(seed)
    fs, ft = torch.randn(64, 12, 20, generator=g), torch.randn(64, 15, 10, generator=g)
    src_size, tgt_size = (190, 317), (240, 161)  # (H, W): not multiples of the grids
    cm = ClickMatcher(fs, ft, src_size, tgt_size)
    rng = np.random.default_rng(seed)
    pts = np.stack([rng.integers(0, 317, 24), rng.integers(0, 190, 24)], axis=1)
    pts[:4] = [[0, 0], [316, 189], [0, 189], [316, 0]]  # the corners
    ref_pts, ref_scores, ref_maps = semantic_argmax(fs, ft, src_size, tgt_size, pts, return_maps=True)
    exact = 0
    for i, (x, y) in enumerate(pts):
        a = cm.query(x, y)
        assert a.source == (x, y)
        assert _same_or_tied(a.target, ref_pts[i], ref_maps[i]), (i, a.target, ref_pts[i])
        exact += a.target == tuple(ref_pts[i])
        assert a.score == pytest.approx(ref_scores[i], abs=1e-5)
        np.testing.assert_allclose(a.cosine, ref_maps[i], atol=1e-5)
    assert exact >= 20  # ties are the exception


def test_identical_images_match_each_pixel_to_itself():
    g = torch.Generator().manual_seed(3)
    f = torch.randn(32, 6, 8, generator=g)
    cm = ClickMatcher(f, f.clone(), (96, 128), (96, 128))
    for x, y in [(40, 30), (64, 48), (100, 70), (20, 60)]:  # inside the interpolated region (no clamped ties)
        a = cm.query(x, y)
        assert a.target == (x, y) and a.score == pytest.approx(1.0, abs=1e-6)


def test_exact_ties_at_the_clamped_border_go_to_the_first_pixel():
    # 96x128 from a 6x8 grid (stride 16): columns 120..127 (and rows 88..95) all repeat the edge feature
    g = torch.Generator().manual_seed(4)
    f = torch.randn(32, 6, 8, generator=g)
    cm = ClickMatcher(f, f.clone(), (96, 128), (96, 128))
    for x, y, first in [(127, 40, (120, 40)), (123, 95, (120, 88)), (40, 90, (40, 88)), (2, 3, (0, 0))]:
        a = cm.query(x, y)
        assert a.target == first and a.score == pytest.approx(1.0, abs=1e-6), (x, y, a.target)
        assert same_feature(a.target, (x, y), (6, 8), (96, 128))
        ref_pt, ref_score, _ = semantic_argmax(f, f, (96, 128), (96, 128), [[x, y]])
        assert same_feature(a.target, tuple(ref_pt[0]), (6, 8), (96, 128))  # the library's pick is in the same tie


def test_points_outside_the_source_are_refused():
    f = torch.randn(8, 2, 2)
    cm = ClickMatcher(f, f, (32, 48), (32, 32))
    for x, y in [(-1, 0), (48, 0), (0, 32), (47.6, 3)]:
        with pytest.raises(ValueError, match="outside the 48x32 source image"):
            cm.query(x, y)
    assert cm.query(47.4, 31.2).source == (47, 31)  # rounded, as semantic_argmax rounds
    with pytest.raises(ValueError, match="differ in channels"):
        ClickMatcher(f, torch.randn(9, 2, 2), (32, 32), (32, 32))


def test_session_click_json_and_heatmap():
    rng = np.random.default_rng(0)
    src = rng.integers(0, 255, (64, 80, 3), dtype=np.uint8)
    tgt = rng.integers(0, 255, (48, 96, 3), dtype=np.uint8)
    g = torch.Generator().manual_seed(0)
    fs, ft = torch.randn(16, 4, 5, generator=g), torch.randn(16, 3, 6, generator=g)
    s = MatchSession(src, tgt, fs, ft, {"source": "a.png", "target": "b.png"})
    out = s.click(10, 20)
    ref_pts, ref_scores, _ = semantic_argmax(fs, ft, (64, 80), (48, 96), [[10, 20]])
    assert out["source"] == [10, 20] and out["target"] == [int(v) for v in ref_pts[0]]
    assert out["score"] == pytest.approx(ref_scores[0], abs=1e-5)
    assert out["min"] <= out["score"] == pytest.approx(out["max"])
    head, b64 = out["heatmap"].split(",", 1)
    assert head == "data:image/jpeg;base64"
    pic = cv2.imdecode(np.frombuffer(base64.b64decode(b64), np.uint8), cv2.IMREAD_COLOR)
    assert pic.shape == (48, 96, 3)
    d = s.describe()
    assert (d["source_size"], d["target_size"], d["source"]) == ([80, 64], [96, 48], "a.png")


def test_heatmap_is_shrunk_for_large_targets():
    m = np.tile(np.linspace(0, 1, 3000, dtype=np.float32), (1500, 1))  # low on the left, high on the right
    pic = cv2.imdecode(np.frombuffer(heatmap_jpeg(m), np.uint8), cv2.IMREAD_COLOR)
    assert pic.shape == (512, 1024, 3)
    # low values blue, high values red (JET)
    assert pic[256, 5, 0] > 100 > pic[256, 5, 2] and pic[256, -5, 2] > 100 > pic[256, -5, 0]
