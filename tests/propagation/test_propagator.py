"""The Propagator's context queue reproduces protocols A and B over whole sequences."""

from __future__ import annotations

import torch

from tests.propagation.reference import dense_protocol_a, dense_protocol_b
from vidprop.config import PropagationConfig
from vidprop.propagation.propagator import Propagator


def _sequence(seed, T, C, h, w, K):
    g = torch.Generator().manual_seed(seed)
    feats = [torch.randn(C, h, w, generator=g, dtype=torch.float64) for _ in range(T)]
    first = torch.zeros(K, h, w, dtype=torch.float64)
    ids = torch.randint(0, K, (h, w), generator=g)
    first.scatter_(0, ids[None], 1.0)
    return feats, first


def test_protocol_a_sequence_matches_dense_queue():
    T, C, h, w, K, n_last = 9, 8, 10, 12, 3, 3
    feats, first = _sequence(0, T, C, h, w, K)
    cfg = PropagationConfig(protocol="dino", temperature=0.2, topk=7, n_last_frames=n_last, radius=3, tile=4)
    prop = Propagator(cfg)
    prop.reset(feats[0], first)
    queue = []  # reference: first frame + FIFO of (feat, soft) pairs
    for t in range(1, T):
        ctx_f = [feats[0]] + [f for f, _ in queue]
        ctx_l = [first] + [s for _, s in queue]
        ref = dense_protocol_a(feats[t], ctx_f, ctx_l, temperature=0.2, topk=7, radius=3)
        out = prop.step(feats[t])
        torch.testing.assert_close(out.double(), ref, atol=1e-6, rtol=1e-6)
        assert prop.num_context == min(1 + t, 1 + n_last)
        if len(queue) == n_last:
            queue.pop(0)
        queue.append((feats[t], ref))


def test_protocol_b_sequence_matches_dense_padded_queue():
    T, C, h, w, K, video_len = 8, 8, 9, 9, 4, 3
    feats, first = _sequence(1, T, C, h, w, K)
    cfg = PropagationConfig(protocol="crw", temperature=0.05, topk=5, n_last_frames=video_len, radius=2.5, tile=4)
    prop = Propagator(cfg)
    prop.reset(feats[0], first)
    short = [(feats[0], first)] * video_len  # front padding with copies of frame 0
    for t in range(1, T):
        ctx_f = [feats[0]] + [f for f, _ in short]
        ctx_l = [first] + [s for _, s in short]
        ref = dense_protocol_b(feats[t], ctx_f, ctx_l, n_global=1, temperature=0.05, topk=5, radius=2.5)
        out = prop.step(feats[t])
        torch.testing.assert_close(out.double(), ref, atol=1e-6, rtol=1e-6)
        short = short[1:] + [(feats[t], ref)]


def test_context_memory_is_bounded():
    cfg = PropagationConfig(protocol="dino", n_last_frames=4, topk=3, radius=2)
    prop = Propagator(cfg)
    feats, first = _sequence(2, 30, 4, 6, 6, 2)
    prop.reset(feats[0].float(), first.float())
    buf = prop._keys
    for f in feats[1:]:
        prop.step(f.float())
    assert prop._keys is buf and buf.shape[0] == 5  # one preallocated ring buffer, never grown
    assert prop.num_context == 5


def test_n_last_zero_uses_first_frame_only():
    feats, first = _sequence(3, 4, 4, 5, 5, 2)
    prop = Propagator(PropagationConfig(protocol="dino", n_last_frames=0, topk=3, radius=2))
    prop.reset(feats[0], first)
    for f in feats[1:]:
        out = prop.step(f)
        ref = dense_protocol_a(f, [feats[0]], [first], temperature=0.2, topk=3, radius=2)
        torch.testing.assert_close(out.double(), ref, atol=1e-6, rtol=1e-6)
