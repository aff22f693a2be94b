"""The banded propagation kernel equals the plain dense protocols (tests/propagation/reference.py)."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from tests.propagation.reference import dense_protocol_a, dense_protocol_b
from vidprop.propagation.affinity import propagate_context, to_strips, window_allows, window_reach, window_size


def propagate(query, keys, labels, *, global_keys=None, global_labels=None, tile=8, **kw):
    """query (h, w, C); keys (S, h, w, C); labels (S, h, w, K) -> (K, h, w) through the kernel's strip layout."""
    g = (global_keys, global_labels) if global_keys is not None else None
    return propagate_context(query, [(to_strips(keys, tile), labels)], g, tile=tile, **kw)


def _channels_last(feats):
    return torch.stack([F.normalize(f, dim=0) for f in feats]).permute(0, 2, 3, 1).contiguous()


def _labels_last(labels):
    return torch.stack(labels).permute(0, 2, 3, 1).contiguous()


def _random_case(seed, C, h, w, N, K, dtype=torch.float64):
    g = torch.Generator().manual_seed(seed)
    q = torch.randn(C, h, w, generator=g, dtype=dtype)
    ctx = [torch.randn(C, h, w, generator=g, dtype=dtype) for _ in range(N)]
    labs = [torch.softmax(3 * torch.randn(K, h, w, generator=g, dtype=dtype), 0) for _ in range(N)]
    return q, ctx, labs


def _kth_gap(q, ctx, radius, topk, window):
    """Smallest gap between the k-th and (k+1)-th allowed logit over all queries (to set ties aside)."""
    C, h, w = q.shape
    qn = F.normalize(q.reshape(C, -1), dim=0)
    ys, xs = torch.meshgrid(torch.arange(h), torch.arange(w), indexing="ij")
    ys, xs = ys.reshape(-1), xs.reshape(-1)
    dy, dx = ys[:, None] - ys[None], xs[:, None] - xs[None]
    allowed = (dy.abs() <= radius) & (dx.abs() <= radius) if window == "square" else (dy**2 + dx**2) < radius**2
    sims = [F.normalize(c.reshape(C, -1), dim=0).T @ qn for c in ctx]  # (keys, queries)
    a = torch.cat([s.masked_fill(~allowed, float("-inf")) for s in sims], dim=0)
    top = torch.topk(a, topk + 1, dim=0).values
    return (top[topk - 1] - top[topk]).abs().min().item()


@pytest.mark.parametrize(
    "C,h,w,N,K,radius,topk,tile",
    [
        (16, 9, 13, 3, 4, 3, 15, 4),
        (8, 12, 7, 5, 3, 2.5, 15, 8),
        (32, 20, 20, 2, 5, 15, 15, 8),
        (8, 6, 6, 1, 2, 1, 5, 3),  # fewer keys in window than topk at the corners
        (12, 11, 17, 4, 6, 4, 7, 5),
        (8, 5, 9, 2, 3, 100, 10, 16),  # window wider than the frame, tile wider than the frame
    ],
)
def test_protocol_a_matches_dense(C, h, w, N, K, radius, topk, tile):
    q, ctx, labs = _random_case(h * 100 + w, C, h, w, N, K)
    ref = dense_protocol_a(q, ctx, labs, temperature=0.2, topk=topk, radius=radius)
    out = propagate(
        F.normalize(q, dim=0).permute(1, 2, 0).contiguous(), _channels_last(ctx), _labels_last(labs),
        temperature=0.2, topk=topk, radius=radius, window="square", keep_ties=True, tile=tile,
    )
    assert out.shape == (K, h, w)
    torch.testing.assert_close(out.double(), ref, atol=1e-6, rtol=1e-6)


@pytest.mark.parametrize(
    "C,h,w,N,K,radius,topk,tile",
    [
        (16, 9, 13, 3, 4, 3, 10, 4),
        (8, 12, 7, 5, 3, 2.5, 10, 8),
        (16, 10, 10, 8, 16, 5, 10, 8),
        (8, 7, 9, 2, 2, 1, 5, 2),  # disc of radius 1 = the query's own cell only
    ],
)
def test_protocol_b_matches_dense(C, h, w, N, K, radius, topk, tile):
    q, ctx, labs = _random_case(h * 100 + w + 7, C, h, w, N, K)
    ref = dense_protocol_b(q, ctx, labs, n_global=1, temperature=0.05, topk=topk, radius=radius)
    g_keys = F.normalize(ctx[0], dim=0).reshape(C, -1).T[None].contiguous()
    g_labels = labs[0].reshape(K, -1).T[None].contiguous()
    out = propagate(
        F.normalize(q, dim=0).permute(1, 2, 0).contiguous(), _channels_last(ctx[1:]), _labels_last(labs[1:]),
        global_keys=g_keys, global_labels=g_labels,
        temperature=0.05, topk=topk, radius=radius, window="disc", keep_ties=False, tile=tile,
    )
    torch.testing.assert_close(out.double(), ref, atol=1e-6, rtol=1e-6)


def test_float32_agrees_when_no_near_ties():
    C, h, w, N, K = 32, 16, 24, 4, 3
    for seed in range(20):
        q, ctx, labs = _random_case(seed, C, h, w, N, K, dtype=torch.float32)
        if _kth_gap(q.double(), [c.double() for c in ctx], 6, 15, "square") > 1e-4:
            break
    else:  # pragma: no cover
        pytest.skip("no random case without near-ties")
    ref = dense_protocol_a(q, ctx, labs, temperature=0.2, topk=15, radius=6)
    out = propagate(
        F.normalize(q, dim=0).permute(1, 2, 0).contiguous(), _channels_last(ctx), _labels_last(labs),
        temperature=0.2, topk=15, radius=6, window="square", keep_ties=True,
    )
    torch.testing.assert_close(out.double(), ref, atol=1e-6, rtol=0)
    assert torch.equal(out.argmax(0), ref.argmax(0))


def test_ties_at_kth_value_are_kept_in_protocol_a():
    # Hand-made: 1 context frame 1x3, query identical to keys 0 and 1 (cos 1), key 2 orthogonal.
    # topk=1: both tied keys (cos 1) are kept, so the label is the mean of theirs.
    q = torch.tensor([[[1.0]], [[0.0]]])  # (C=2, 1, 1)
    key = torch.tensor([[[1.0, 1.0, 0.0]], [[0.0, 0.0, 1.0]]])  # (2, 1, 3)
    lab = torch.tensor([[[1.0, 0.0, 0.0]], [[0.0, 1.0, 1.0]]])  # (K=2, 1, 3)
    # The query frame has the key frame's size: put the query at (0, 1) by using a 1x3 query map.
    qmap = torch.stack([q[:, 0, 0]] * 3, dim=1)[:, None, :]  # (2, 1, 3) all equal to q
    out = propagate(
        qmap.permute(1, 2, 0).contiguous(), key.permute(1, 2, 0)[None].contiguous(), lab.permute(1, 2, 0)[None].contiguous(),
        temperature=0.2, topk=1, radius=5, window="square", keep_ties=True,
    )
    torch.testing.assert_close(out[:, 0, 1], torch.tensor([0.5, 0.5]))
    # Protocol B keeps exactly k=1: one of the two tied keys, so a hard label.
    out_b = propagate(
        qmap.permute(1, 2, 0).contiguous(), key.permute(1, 2, 0)[None].contiguous(), lab.permute(1, 2, 0)[None].contiguous(),
        temperature=0.2, topk=1, radius=5, window="disc", keep_ties=False,
    )
    assert sorted(out_b[:, 0, 1].tolist()) == [0.0, 1.0]


def test_hand_computed_two_keys():
    # One query, two keys in window with cos 1 and 0: weights softmax([1, 0] / T).
    T = 0.5
    qmap = torch.tensor([[[1.0, 0.0]]])  # (h=1, w=1, C=2)
    keys = torch.tensor([[[[1.0, 0.0]]], [[[0.0, 1.0]]]])  # (S=2, 1, 1, 2)
    labels = torch.tensor([[[[1.0, 0.0]]], [[[0.0, 1.0]]]])  # (S=2, 1, 1, K=2)
    out = propagate(qmap, keys, labels, temperature=T, topk=2, radius=1, window="square", keep_ties=True)
    e = torch.exp(torch.tensor(1 / T))
    torch.testing.assert_close(out[:, 0, 0], torch.tensor([e / (e + 1), 1 / (e + 1)]))


def test_window_reach():
    assert window_reach(15, "square") == 15
    assert window_reach(2.5, "square") == 2
    assert window_reach(5, "disc") == 4  # distance < 5
    assert window_reach(5.5, "disc") == 5
    assert window_reach(12, "circle") == 12  # distance <= 12
    assert window_reach(2.5, "circle") == 2
    with pytest.raises(ValueError):
        window_reach(3, "diamond")


# ---------------------------------------------------------------- the banded kernel's edge cases
@pytest.mark.parametrize("tile", [1, 3, 5, 16])
def test_protocol_a_any_tile_odd_grid(tile):
    # odd grid, tiles that do not divide it (padded last strip), one wider than the frame
    C, h, w, N, K = 8, 11, 13, 3, 4
    q, ctx, labs = _random_case(tile, C, h, w, N, K)
    ref = dense_protocol_a(q, ctx, labs, temperature=0.2, topk=9, radius=4)
    out = propagate(
        F.normalize(q, dim=0).permute(1, 2, 0).contiguous(), _channels_last(ctx), _labels_last(labs),
        temperature=0.2, topk=9, radius=4, window="square", keep_ties=True, tile=tile,
    )
    torch.testing.assert_close(out.double(), ref, atol=1e-6, rtol=1e-6)


@pytest.mark.parametrize("tile,radius", [(4, 40), (8, 3.5), (3, 1.5)])
def test_protocol_b_radius_larger_than_grid_and_small(tile, radius):
    C, h, w, N, K = 8, 7, 10, 4, 3
    q, ctx, labs = _random_case(int(radius * 10) + tile, C, h, w, N, K)
    ref = dense_protocol_b(q, ctx, labs, n_global=1, temperature=0.05, topk=6, radius=radius)
    g_keys = F.normalize(ctx[0], dim=0).reshape(C, -1).T[None].contiguous()
    g_labels = labs[0].reshape(K, -1).T[None].contiguous()
    out = propagate(
        F.normalize(q, dim=0).permute(1, 2, 0).contiguous(), _channels_last(ctx[1:]), _labels_last(labs[1:]),
        global_keys=g_keys, global_labels=g_labels,
        temperature=0.05, topk=6, radius=radius, window="disc", keep_ties=False, tile=tile,
    )
    torch.testing.assert_close(out.double(), ref, atol=1e-6, rtol=1e-6)


@pytest.mark.parametrize("tile", [2, 4, 8])
def test_protocol_a_ties_from_a_repeated_frame_are_all_kept(tile):
    # The same features twice in the context with different labels: every cosine is tied with its twin,
    # so with an odd k the k-th value is tied at every query; protocol A keeps both twins.
    C, h, w, K = 8, 9, 7, 3
    q, ctx, labs = _random_case(5, C, h, w, 2, K)
    ctx = [ctx[0], ctx[1], ctx[0].clone()]
    labs = [labs[0], labs[1], torch.roll(labs[0], 1, dims=0)]
    ref = dense_protocol_a(q, ctx, labs, temperature=0.2, topk=5, radius=2)
    out = propagate(
        F.normalize(q, dim=0).permute(1, 2, 0).contiguous(), _channels_last(ctx), _labels_last(labs),
        temperature=0.2, topk=5, radius=2, window="square", keep_ties=True, tile=tile,
    )
    torch.testing.assert_close(out.double(), ref, atol=1e-6, rtol=1e-6)
    # without keeping ties the twins' labels would not be averaged: the result differs
    once = propagate(
        F.normalize(q, dim=0).permute(1, 2, 0).contiguous(), _channels_last(ctx), _labels_last(labs),
        temperature=0.2, topk=5, radius=2, window="square", keep_ties=False, tile=tile,
    )
    assert (once.double() - ref).abs().max() > 1e-3


def test_one_context_frame_and_fewer_keys_than_k():
    # a single context frame (fewer frames than any queue); a radius-1 window holds at most 9 keys < k = 10
    C, h, w, K = 4, 3, 4, 2
    q, ctx, labs = _random_case(11, C, h, w, 1, K)
    ref = dense_protocol_a(q, ctx, labs, temperature=0.2, topk=10, radius=1)
    out = propagate(
        F.normalize(q, dim=0).permute(1, 2, 0).contiguous(), _channels_last(ctx), _labels_last(labs),
        temperature=0.2, topk=10, radius=1, window="square", keep_ties=True, tile=2,
    )
    torch.testing.assert_close(out.double(), ref, atol=1e-6, rtol=1e-6)


def test_groups_and_global_frames_in_one_call():
    # windowed frames split over two groups (as the propagator passes anchors and queue) give the same labels
    C, h, w, N, K = 8, 9, 10, 4, 3
    q, ctx, labs = _random_case(21, C, h, w, N, K)
    qn = F.normalize(q, dim=0).permute(1, 2, 0).contiguous()
    keys, lab = to_strips(_channels_last(ctx), 4), _labels_last(labs)
    kw = dict(temperature=0.2, topk=7, radius=3, window="square", keep_ties=True, tile=4)
    one = propagate_context(qn, [(keys, lab)], **kw)
    split = propagate_context(qn, [(keys[:1], lab[:1]), (keys[1:3], lab[1:3]), (keys[3:], lab[3:])], **kw)
    torch.testing.assert_close(split, one, atol=1e-6, rtol=0)
    torch.testing.assert_close(one.double(), dense_protocol_a(q, ctx, labs, temperature=0.2, topk=7, radius=3),
                               atol=1e-6, rtol=1e-6)


def test_keys_must_be_in_the_tile_strip_layout():
    C, h, w = 4, 5, 6
    q = torch.randn(h, w, C)
    keys = to_strips(torch.randn(2, h, w, C), 4)
    with pytest.raises(ValueError, match="strip layout"):
        propagate_context(q, [(keys, torch.rand(2, h, w, 2))], temperature=0.2, topk=3, radius=2,
                          window="square", keep_ties=True, tile=3)


def test_to_strips_layout():
    x = torch.arange(2 * 3 * 5 * 2, dtype=torch.float32).reshape(2, 3, 5, 2)  # (S, h, w, D)
    s = to_strips(x, 2)
    assert s.shape == (2, 3, 3, 2, 2)  # (S, strips, h, tile, D)
    for strip in range(3):
        for c in range(2):
            col = strip * 2 + c
            if col < 5:
                assert torch.equal(s[:, strip, :, c], x[:, :, col])
            else:
                assert not s[:, strip, :, c].any()  # zero padding


def test_window_predicate_and_size():
    d = torch.arange(-3, 4)
    sq = window_allows(d[:, None], d[None, :], 2, "square")
    assert int(sq.sum()) == 25 and window_size(2, "square") == 25
    assert window_size(15, "square") == 961
    disc = window_allows(d[:, None], d[None, :], 2.5, "disc")
    # dy^2 + dx^2 < 6.25: the 21 cells of offsets with |d| <= 2 except the 4 corners (8 > 6.25)
    assert int(disc.sum()) == 21 and window_size(2.5, "disc") == 21
    circle = window_allows(d[:, None], d[None, :], 2, "circle")
    # dy^2 + dx^2 <= 4: the 13 cells within distance 2 (the 5x5 square less its 12 cells beyond distance 2)
    assert int(circle.sum()) == 13 and window_size(2, "circle") == 13
    with pytest.raises(ValueError):
        window_allows(d, d, 2, "diamond")


@pytest.mark.parametrize("threads", [1, 2, 3])
def test_tiles_spread_over_threads_give_the_same_labels(threads):
    """Tiles run side by side on CPU threads: the same soft labels (to the bit) as one thread, and the dense
    reference's, for protocol A with ties and protocol B with a global frame; torch's thread count is restored."""
    q, ctx, labs = _random_case(7, 8, 13, 21, 4, 3, dtype=torch.float32)
    ctx[2] = ctx[1].clone()  # a repeated frame: ties at the k-th value
    labs[2] = labs[1].clone()
    qn, keys, lab = F.normalize(q, dim=0).permute(1, 2, 0).contiguous(), _channels_last(ctx), _labels_last(labs)
    kw = dict(temperature=0.2, topk=5, radius=3, tile=4)
    saved = torch.get_num_threads()
    one_a = propagate(qn, keys, lab, window="square", keep_ties=True, threads=1, **kw)
    many_a = propagate(qn, keys, lab, window="square", keep_ties=True, threads=threads, **kw)
    assert torch.get_num_threads() == saved
    assert torch.equal(one_a, many_a)
    ref_a = dense_protocol_a(q.double(), [c.double() for c in ctx], [x.double() for x in labs], temperature=0.2,
                             topk=5, radius=3)
    torch.testing.assert_close(many_a.double(), ref_a, atol=1e-5, rtol=1e-5)
    g = (keys[:1].reshape(1, -1, 8), lab[:1].reshape(1, -1, 3))
    one_b = propagate(qn, keys[1:], lab[1:], global_keys=g[0], global_labels=g[1], window="disc",
                      keep_ties=False, threads=1, **kw)
    many_b = propagate(qn, keys[1:], lab[1:], global_keys=g[0], global_labels=g[1], window="disc",
                       keep_ties=False, threads=threads, **kw)
    assert torch.equal(one_b, many_b)
