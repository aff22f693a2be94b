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


# ---------------------------------------------------------------- anchors, channels, precision
def _hard(seed, K, h, w):
    g = torch.Generator().manual_seed(seed)
    lab = torch.zeros(K, h, w, dtype=torch.float64)
    lab.scatter_(0, torch.randint(0, K, (h, w), generator=g)[None], 1.0)
    return lab


def test_protocol_a_anchors_are_windowed_context_slots_before_the_queue():
    """Context = first anchor + later anchors (hard labels, never leave) + FIFO of predictions; anchors are not queued."""
    T, C, h, w, K, n_last = 10, 8, 9, 11, 3, 2
    feats, first = _sequence(4, T, C, h, w, K)
    cfg = PropagationConfig(protocol="dino", temperature=0.2, topk=6, n_last_frames=n_last, radius=3, tile=4)
    prop = Propagator(cfg)
    prop.reset(feats[0], first)
    anchors, queue = [(feats[0], first)], []
    for t in range(1, T):
        ctx = anchors + queue
        ref = dense_protocol_a(feats[t], [f for f, _ in ctx], [lab for _, lab in ctx], temperature=0.2, topk=6, radius=3)
        if t in (3, 6):  # annotated: predicted, then an anchor with hard labels, not a queue entry
            out = prop.predict(feats[t])
            torch.testing.assert_close(out.double(), ref, atol=1e-6, rtol=1e-6)
            hard = _hard(t, K, h, w)
            prop.add_anchor(feats[t], hard)
            anchors.append((feats[t], hard))
            assert prop.num_anchors == len(anchors)
            continue
        out = prop.step(feats[t])
        torch.testing.assert_close(out.double(), ref, atol=1e-6, rtol=1e-6)
        queue = (queue + [(feats[t], ref)])[-n_last:]


def test_protocol_b_anchors_are_global_and_the_queue_is_seeded_once():
    T, C, h, w, K, video_len = 8, 8, 9, 9, 3, 3
    feats, first = _sequence(5, T, C, h, w, K)
    cfg = PropagationConfig(protocol="crw", temperature=0.05, topk=5, n_last_frames=video_len, radius=2.5, tile=4)
    prop = Propagator(cfg)
    prop.reset(feats[0], first)
    anchors, short = [(feats[0], first)], [(feats[0], first)] * video_len
    for t in range(1, T):
        ctx = anchors + short
        ref = dense_protocol_b(feats[t], [f for f, _ in ctx], [lab for _, lab in ctx], n_global=len(anchors),
                               temperature=0.05, topk=5, radius=2.5)
        if t == 4:
            torch.testing.assert_close(prop.predict(feats[t]).double(), ref, atol=1e-6, rtol=1e-6)
            hard = _hard(t, K, h, w)
            prop.add_anchor(feats[t], hard)
            anchors.append((feats[t], hard))
            continue
        torch.testing.assert_close(prop.step(feats[t]).double(), ref, atol=1e-6, rtol=1e-6)
        short = short[1:] + [(feats[t], ref)]


def test_anchor_count_is_bounded_first_stays_oldest_other_leaves():
    for protocol in ("dino", "crw"):
        cfg = PropagationConfig(protocol=protocol, n_last_frames=2, topk=3, radius=2, max_anchors=3)
        feats, first = _sequence(6, 20, 4, 5, 5, 2)
        prop = Propagator(cfg)
        prop.reset(feats[0], first)
        for t in range(1, 20):
            prop.add_anchor(feats[t], _hard(t, 2, 5, 5))
            assert prop.num_anchors == min(1 + t, 3)
            assert prop.num_context == prop.num_anchors + (2 if protocol == "crw" else 0)  # B's queue is seeded
        # the anchors left are frame 0 and the last two (18, 19): compare with a plain reference
        kept = [(feats[0], first), (feats[18], _hard(18, 2, 5, 5)), (feats[19], _hard(19, 2, 5, 5))]
        q = feats[3]
        out = prop.predict(q).double()
        if protocol == "dino":
            ctx = kept  # the queue is still empty
            ref = dense_protocol_a(q, [f for f, _ in ctx], [lab for _, lab in ctx], temperature=0.2, topk=3, radius=2)
        else:
            ctx = kept + [(feats[0], first)] * 2  # seeded queue
            ref = dense_protocol_b(q, [f for f, _ in ctx], [lab for _, lab in ctx], n_global=3, temperature=0.2,
                                   topk=3, radius=2)
        torch.testing.assert_close(out, ref, atol=1e-6, rtol=1e-6)


def test_inserted_channel_is_zero_in_every_context_frame_and_zeroed_channels_stay_zero():
    feats, first = _sequence(7, 6, 6, 7, 7, 3)
    cfg = PropagationConfig(protocol="dino", n_last_frames=3, topk=4, radius=2)
    a, b = Propagator(cfg), Propagator(cfg)
    a.reset(feats[0], first)
    b.reset(feats[0], first)
    for f in feats[1:3]:
        a.step(f)
        b.step(f)
    b.insert_channel(1)  # a new id below the known ones: channel 1, the others shift up
    assert b.num_channels == 4
    pa, pb = a.step(feats[3]), b.step(feats[3])
    torch.testing.assert_close(pb[1], torch.zeros_like(pb[1]))
    torch.testing.assert_close(pb[[0, 2, 3]], pa)
    b.zero_channel(2)
    for f in feats[4:]:
        assert float(b.step(f)[2].abs().max()) == 0.0


def test_half_precision_features_give_the_float32_soft_labels():
    """Affinities are computed in float32: fp16/bf16 features give the dense result on the same (upcast) values."""
    C, h, w, K = 32, 8, 10, 3
    for dtype in (torch.float16, torch.bfloat16):
        for protocol in ("dino", "crw"):
            feats, first = _sequence(8, 5, C, h, w, K)
            feats = [f.to(dtype) for f in feats]
            same = [f.double() for f in feats]  # the values the features carry
            cfg = PropagationConfig(protocol=protocol, temperature=0.1, topk=5, n_last_frames=2, radius=3, tile=4)
            prop = Propagator(cfg)
            prop.reset(feats[0], first.float())
            queue = [(same[0], first)] * (2 if protocol == "crw" else 0)
            for t in range(1, 5):
                ctx = [(same[0], first)] + queue
                if protocol == "dino":
                    ref = dense_protocol_a(same[t], [f for f, _ in ctx], [lab for _, lab in ctx], temperature=0.1,
                                           topk=5, radius=3)
                else:
                    ref = dense_protocol_b(same[t], [f for f, _ in ctx], [lab for _, lab in ctx], n_global=1,
                                           temperature=0.1, topk=5, radius=3)
                out = prop.step(feats[t])
                assert out.dtype == torch.float32
                torch.testing.assert_close(out.double(), ref, atol=2e-5, rtol=2e-5)
                queue = (queue + [(same[t], ref)])[-2:]


def test_fewer_frames_than_context_odd_grid_both_protocols():
    # a queue of 28 that never fills (5 frames), an odd grid that no tile divides, radius wider than the grid
    T, C, h, w, K = 5, 8, 7, 11, 3
    feats, first = _sequence(7, T, C, h, w, K)
    prop = Propagator(PropagationConfig(protocol="dino", temperature=0.2, topk=15, n_last_frames=28, radius=20, tile=3))
    prop.reset(feats[0], first)
    ctx_f, ctx_l = [feats[0]], [first]
    for t in range(1, T):
        ref = dense_protocol_a(feats[t], ctx_f, ctx_l, temperature=0.2, topk=15, radius=20)
        out = prop.step(feats[t])
        torch.testing.assert_close(out.double(), ref, atol=1e-6, rtol=1e-6)
        ctx_f, ctx_l = ctx_f + [feats[t]], ctx_l + [ref]
    prop = Propagator(PropagationConfig(protocol="crw", temperature=0.05, topk=10, n_last_frames=28, radius=3, tile=5))
    prop.reset(feats[0], first)
    short = [(feats[0], first)] * 28
    for t in range(1, T):
        ctx_f = [feats[0]] + [f for f, _ in short]
        ctx_l = [first] + [s for _, s in short]
        ref = dense_protocol_b(feats[t], ctx_f, ctx_l, n_global=1, temperature=0.05, topk=10, radius=3)
        out = prop.step(feats[t])
        torch.testing.assert_close(out.double(), ref, atol=1e-6, rtol=1e-6)
        short = short[1:] + [(feats[t], ref)]
