"""The DINOv3 presets propagate exactly as the authors' notebook (tests/propagation/reference.py: notebook_video).

The propagator never knows the backbone: random L2-normalised features go
through the segmentation session of each preset (labels in, soft labels and
masks out) and through the plain dense notebook loop.
"""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from tests.propagation.reference import notebook_decode, notebook_neighbourhood, notebook_video
from vidprop.config import PropagationConfig, load_preset
from vidprop.propagation.affinity import propagate_context, to_strips
from vidprop.propagation.protocol import PROTOCOLS, protocol_for
from vidprop.tasks.segment import Segmenter

PRESETS = {"davis-dinov3": ("nearest", True), "davis-dinov3-paper": ("bilinear", False)}


def _first_mask(g, H, W, M):
    mask = torch.randint(0, M, (H // 6 + 1, W // 6 + 1), generator=g).numpy().astype(np.uint8)
    mask = np.kron(mask, np.ones((6, 6), np.uint8))[:H, :W]  # blobs, every id present
    mask[:2, :2] = np.arange(4).reshape(2, 2) % M
    return np.ascontiguousarray(mask)


def _features(g, T, h, w, D, palette=None):
    if palette is None:
        return [F.normalize(torch.randn(h, w, D, generator=g, dtype=torch.float64), dim=-1) for _ in range(T)]
    vecs = F.normalize(torch.randn(palette, D, generator=g, dtype=torch.float64), dim=-1)
    return [vecs[torch.randint(0, palette, (h, w), generator=g)] for _ in range(T)]  # many exact ties


def _run_session(preset, feats, first, size):
    cfg = load_preset(preset)
    seg = Segmenter(SimpleNamespace(stride=16), cfg)
    session = seg.session()
    H, W = first.shape
    masks, softs = [], []
    for t, f in enumerate(feats):
        out = session.advance((W, H), first if t == 0 else None, f.permute(2, 0, 1).contiguous())
        masks.append(out)
        if t:
            softs.append(session.last_soft)
    return softs, masks


CASES = {
    # grid wider than the circle (radius 12 matters), more frames than the context of 7
    "odd-grid-long": dict(seed=0, T=10, h=15, w=27, D=6, H=41, W=77, M=3, palette=None),
    # a window wider than the grid, fewer frames than the context
    "window-wider-than-grid": dict(seed=1, T=4, h=5, w=7, D=8, H=37, W=45, M=4, palette=None),
    # a few distinct feature vectors: ties at the k-th value everywhere
    "ties": dict(seed=2, T=9, h=9, w=11, D=5, H=35, W=47, M=3, palette=12),
}


@pytest.mark.parametrize("preset", list(PRESETS))
@pytest.mark.parametrize("case", list(CASES))
def test_presets_equal_the_notebook_loop(preset, case):
    c = CASES[case]
    g = torch.Generator().manual_seed(c["seed"])
    feats = _features(g, c["T"], c["h"], c["w"], c["D"], c["palette"])
    first = _first_mask(g, c["H"], c["W"], c["M"])
    decode, minmax = PRESETS[preset]
    p = load_preset(preset).propagation
    settings = dict(context=p.n_last_frames, size=p.radius, shape="circle", topk=p.topk, temperature=p.temperature,
                    decode=decode, minmax=minmax)
    softs, masks = _run_session(preset, feats, first, (c["W"], c["H"]))
    np.testing.assert_array_equal(masks[0], first)  # frame 0's output is the given mask
    # each step against the notebook's step on the same context: soft labels within 1e-6, the same masks
    step_probs, step_masks = notebook_video(feats, first, queued=[s.permute(1, 2, 0) for s in softs], **settings)
    worst = max((s.double() - r.permute(2, 0, 1)).abs().max().item() for s, r in zip(softs, step_probs))
    assert worst <= 1e-6, worst
    # the same masks, but where two labels' decoded scores are tied within that 1e-6 (the banded kernel sums
    # in another order than the notebook's dense matmul, so float round-off decides such an exact tie)
    flips = 0
    for m, r, probs in zip(masks[1:], step_masks, step_probs):
        scores = notebook_decode(probs, (c["H"], c["W"]), mode=decode, minmax=minmax)[0]
        top2 = torch.topk(scores, 2, dim=0).values
        flips += int(((m != r.numpy()) & ((top2[0] - top2[1]).numpy() > 1e-6)).sum())
    assert flips == 0
    # the whole video against the notebook's own loop: the same masks; the soft labels drift apart only by
    # the float32 round-off the propagator's label queue and weights carry from frame to frame
    ref_probs, ref_masks = notebook_video(feats, first, **settings)
    drift = max((s.double() - r.permute(2, 0, 1)).abs().max().item() for s, r in zip(softs, ref_probs))
    assert drift <= 1e-5, drift
    differing = 0
    for m, r, probs in zip(masks[1:], ref_masks, ref_probs):
        scores = notebook_decode(probs, (c["H"], c["W"]), mode=decode, minmax=minmax)[0]
        top2 = torch.topk(scores, 2, dim=0).values
        tied = (top2[0] - top2[1]).numpy() <= 1e-5  # two labels tied within the drift: round-off decides
        differing += int(((m != r.numpy()) & ~tied).sum())
    assert differing == 0
    if case == "ties":  # the case really has ties at the k-th value
        q, k = feats[1].reshape(-1, c["D"]), feats[0].reshape(-1, c["D"])
        sims = (q @ k.T).masked_fill(~notebook_neighbourhood(c["h"], c["w"], p.radius, "circle").reshape(
            c["h"] * c["w"], -1), float("-inf"))
        top = torch.topk(sims, p.topk + 1, dim=1).values
        assert bool((top[:, p.topk - 1] == top[:, p.topk]).any())


def test_the_two_presets_settings():
    nb, paper = load_preset("davis-dinov3"), load_preset("davis-dinov3-paper")
    for cfg in (nb, paper):
        p = cfg.propagation
        assert (p.protocol, p.topk, p.temperature, p.n_last_frames, p.radius, p.window) == ("dino", 5, 0.2, 7, 12, "circle")
        assert (cfg.extractor.backbone, cfg.extractor.model, cfg.extractor.dtype) == (
            "dinov3", "facebook/dinov3-vitl16-pretrain-lvd1689m", "float32")
        assert (cfg.frames.short_side, cfg.frames.multiple, cfg.frames.interpolation) == (960, 16, "bicubic")
        assert cfg.frames.target_size(854, 480) == (1712, 960)  # a 60x107 grid
    proto = protocol_for(nb.propagation)
    assert (proto.window, proto.decode, proto.minmax, proto.label_resize, proto.keep_ties, proto.global_anchors) == (
        "circle", "nearest", True, "nearest-exact", True, False)
    proto = protocol_for(paper.propagation)
    assert (proto.decode, proto.minmax, nb.frames.rounding, paper.frames.rounding) == ("bilinear", False, "ceil", "nearest")


def test_protocols_a_and_b_are_unchanged_by_the_new_settings():
    assert protocol_for(PropagationConfig(protocol="dino")) is PROTOCOLS["dino"]
    assert protocol_for(PropagationConfig(protocol="crw")) is PROTOCOLS["crw"]
    a, b = PROTOCOLS["dino"], PROTOCOLS["crw"]
    assert (a.window, a.decode, a.minmax, a.label_resize) == ("square", "stride", True, "nearest")
    assert (b.window, b.decode, b.minmax, b.label_resize) == ("disc", "bilinear", False, "bilinear")
    for name in ("davis", "davis-fast", "jhmdb", "davis-dino", "davis-adm"):
        p = load_preset(name).propagation
        assert (p.window, p.decode, p.minmax, p.label_resize) == (None, None, None, None)


def test_circle_window_boundary_by_hand():
    # one query at the centre of a 7x7 grid, one context frame whose every key equals the query:
    # with top-k = all, the soft label is the mean of the allowed keys' labels, so counting them is exact.
    h = w = 7
    q = torch.zeros(h, w, 2, dtype=torch.float64)
    q[..., 0] = 1
    labels = torch.zeros(1, h, w, 2, dtype=torch.float64)
    labels[..., 0] = 1
    labels[0, 3, 5, 0], labels[0, 3, 5, 1] = 0, 1  # (dy, dx) = (0, 2): distance 2, inside a circle of 2
    labels[0, 4, 5, 0], labels[0, 4, 5, 1] = 0, 1  # (1, 2): distance 2.24, outside
    out = propagate_context(q, [(to_strips(q[None], 8), labels)], temperature=0.2, topk=49, radius=2, window="circle",
                            keep_ties=True)
    assert out[1, 3, 3].item() == pytest.approx(1 / 13)  # 13 cells within distance 2, one labelled 1
    out = propagate_context(q, [(to_strips(q[None], 8), labels)], temperature=0.2, topk=49, radius=2, window="disc",
                            keep_ties=True)
    assert out[1, 3, 3].item() == 0.0  # distance < 2: 5 cells, the labelled ones outside
    out = propagate_context(q, [(to_strips(q[None], 8), labels)], temperature=0.2, topk=49, radius=2.5, window="circle",
                            keep_ties=True)
    assert out[1, 3, 3].item() == pytest.approx(2 / 21)  # 21 cells within 2.5, both labelled inside


def _largest_tensor(fn):
    """Run ``fn``; the element count of the largest tensor any torch operation made meanwhile."""
    from torch.utils._python_dispatch import TorchDispatchMode

    class Watch(TorchDispatchMode):
        largest = 0

        def __torch_dispatch__(self, func, types, args=(), kwargs=None):
            out = func(*args, **(kwargs or {}))
            for t in out if isinstance(out, (tuple, list)) else [out]:
                if isinstance(t, torch.Tensor):
                    Watch.largest = max(Watch.largest, t.numel())
            return out

    with Watch():
        fn()
    return Watch.largest


def test_circle_window_is_gathered_within_protocol_a_bound():
    # DAVIS at 960 is a 60x107 grid for DINOv3; protocol A at 480 a 60x104 grid: the same window, the same bound
    from vidprop.propagation.propagator import Propagator

    C, K, n_last, radius, tile = 4, 3, 2, 12, 8  # the bound is per context frame: two queued frames show it
    g = torch.Generator().manual_seed(0)
    largest = {}
    for window, (h, w) in (("circle", (60, 107)), ("square", (60, 104))):
        prop = Propagator(PropagationConfig(protocol="dino", topk=5, n_last_frames=n_last, radius=radius, tile=tile,
                                            window=window))
        prop.reset(torch.randn(C, h, w, generator=g), torch.rand(K, h, w, generator=g))
        for _ in range(n_last):
            prop.push(torch.randn(C, h, w, generator=g), torch.rand(K, h, w, generator=g))
        query = torch.randn(C, h, w, generator=g)
        largest[window] = _largest_tensor(lambda: prop.predict(query))
    # the banded kernel's working set per query tile (affinity.py): frames * s^2 * (s + 2p) * (2p + 2s), the
    # same for both grids (a bound per tile, not per frame size)
    frames, s, p = 1 + n_last, tile, radius
    bound = frames * s * s * (s + 2 * p) * (2 * p + 2 * s)
    assert largest["circle"] <= bound and largest["square"] <= bound
    assert largest["circle"] < (60 * 107) ** 2 // 50  # far from a dense hw x hw affinity
