"""`bench extract --backbone dinov3` builds the released ViT-L/16 architecture; its FLOPs by hand."""

from __future__ import annotations

import pytest

from vidprop.bench.backbones import BENCH_BACKBONES, count_flops


def test_dinov3_vitl16_flops_at_960_match_a_hand_count():
    assert BENCH_BACKBONES["dinov3"].preset == "davis-dinov3"
    flops, shape = count_flops("dinov3", (960, 1712))  # counted on the meta device: nothing is computed
    assert shape == [1024, 60, 107]
    n, d, layers = 1 + 4 + 60 * 107, 1024, 24  # CLS + 4 registers + patches
    per_layer = 2 * n * d * 3 * d + 2 * n * d * d + 2 * 2 * n * n * d + 2 * 2 * n * d * 4 * d  # qkv, proj, attention, MLP
    patch_embed = 2 * 60 * 107 * (3 * 16 * 16) * d
    assert flops == pytest.approx(layers * per_layer + patch_embed, rel=1e-3)
