"""The lean semantic argmax against the full-resolution computation, on features whose answer is known."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from vidprop.tasks.match import (
    semantic_argmax,
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
