"""Hedlin et al.'s attention matcher on the tiny random SD: capture, gradients, optimisation, determinism."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from vidprop.errors import ConfigError, ModelLoadError
from vidprop.features.attention import (
    DEFAULT_ATTENTION_MODEL,
    PAPER_LAYERS,
    AttentionMatcher,
    AttentionSettings,
    crop_box,
    gaussian_bump,
    resolve_layers,
)

TINY = AttentionSettings(image_size=64, steps=3, rounds=2, crops=4)
TINY_LAYERS = [
    "up_blocks.1.attentions.0.transformer_blocks.0.attn2",
    "up_blocks.1.attentions.1.transformer_blocks.0.attn2",
    "up_blocks.2.attentions.0.transformer_blocks.0.attn2",
]


@pytest.fixture(scope="module")
def matcher(tiny_sd_path):
    return AttentionMatcher.from_pretrained(tiny_sd_path, TINY, device="cpu")


@pytest.fixture(scope="module")
def image():
    rng = np.random.default_rng(0)
    return rng.integers(0, 256, (48, 80, 3), dtype=np.uint8)


def test_paper_defaults_are_frozen():
    s = AttentionSettings()
    assert (s.steps, s.rounds, s.crops, s.t_opt, s.t_inf, s.image_size) == (129, 5, 20, 140, 40, 512)
    assert s.lr == 0.0023755632 and s.sigma == pytest.approx(28, abs=0.1) and s.noise == "uniform"
    assert (s.crop_fraction, s.margin, s.token, s.num_tokens) == (0.9317, 0.15, 1, 77)
    assert s.layers == PAPER_LAYERS and DEFAULT_ATTENTION_MODEL == "CompVis/stable-diffusion-v1-4"
    with pytest.raises(dataclasses.FrozenInstanceError):
        s.steps = 3  # type: ignore[misc]
    with pytest.raises(ConfigError, match="noise"):
        AttentionSettings(noise="laplace")  # type: ignore[arg-type]
    assert TINY.sigma_px == pytest.approx(s.sigma * 64 / 512)


def test_paper_layers_on_an_sd14_layout():
    """Three attentions in up_blocks[1] (layers_per_block=2, like SD 1.x) and the first of up_blocks[2]."""
    from diffusers import UNet2DConditionModel

    unet = UNet2DConditionModel(
        sample_size=8, block_out_channels=(8, 8, 8, 8), layers_per_block=2, cross_attention_dim=8,
        attention_head_dim=2, norm_num_groups=4,
        down_block_types=("CrossAttnDownBlock2D",) * 3 + ("DownBlock2D",),
        up_block_types=("UpBlock2D",) + ("CrossAttnUpBlock2D",) * 3,
    )
    names = resolve_layers(unet, PAPER_LAYERS)
    assert [n.split(".transformer_blocks")[0] for n in names] == [
        "up_blocks.1.attentions.0", "up_blocks.1.attentions.1", "up_blocks.1.attentions.2", "up_blocks.2.attentions.0"]
    with pytest.raises(ConfigError, match="up_blocks.9.*no cross-attention.*up_blocks.1.attentions.0"):
        resolve_layers(unet, ("up_blocks.9",))


def _x_t(matcher, image, t=140):
    return matcher._noisy_latents(matcher._prepare(image)[None].repeat(2, 1, 1, 1), t, matcher.generator(9))


def test_captured_maps_have_the_right_layers_shapes_and_values(matcher, image):
    unet = matcher.unet
    x_t = _x_t(matcher, image)
    prompt = torch.randn(2, 77, unet.config.cross_attention_dim, generator=torch.Generator().manual_seed(0))
    before = {k: type(v) for k, v in unet.attn_processors.items()}

    # reference: softmax(QK^T * scale) from each attn2's own inputs, token 1, mean over heads
    ref = {}

    def hook(name):
        def fn(module, args, kwargs):
            hs, enc = args[0], kwargs["encoder_hidden_states"]
            q = module.head_to_batch_dim(module.to_q(hs))
            k = module.head_to_batch_dim(module.to_k(enc))
            p = (q @ k.transpose(1, 2) * module.scale).softmax(-1)
            ref[name] = p.view(hs.shape[0], module.heads, hs.shape[1], -1)[..., 1].mean(1)
        return fn

    handles = [unet.get_submodule(n).register_forward_pre_hook(hook(n), with_kwargs=True) for n in TINY_LAYERS]
    try:
        with torch.no_grad(), matcher.capture() as store:
            maps = matcher.attention_maps(store, x_t, 140, prompt)
    finally:
        for h in handles:
            h.remove()
    assert store.names == TINY_LAYERS
    assert [tuple(m.shape) for m in maps] == [(2, 2, 2), (2, 2, 2), (2, 4, 4)]  # 64 px: latent 8, /4 and /2
    for name, m in zip(TINY_LAYERS, maps):
        torch.testing.assert_close(m.reshape(2, -1), ref[name], rtol=1e-5, atol=1e-6)
        assert torch.all((m >= 0) & (m <= 1))
    assert matcher.upsampled(maps).shape == (2, 3, 64, 64)
    assert {k: type(v) for k, v in unet.attn_processors.items()} == before  # processors restored


def test_capture_leaves_the_unet_output_unchanged(matcher, image):
    x_t = _x_t(matcher, image)
    prompt = torch.randn(2, 77, 16, generator=torch.Generator().manual_seed(1))
    t = torch.full((2,), 140)
    with torch.no_grad():
        plain = matcher.unet(x_t, t, encoder_hidden_states=prompt).sample
        with matcher.capture(stop_early=False):
            captured = matcher.unet(x_t, t, encoder_hidden_states=prompt).sample
    torch.testing.assert_close(captured, plain, rtol=1e-4, atol=1e-5)


def test_gradients_reach_the_prompt_and_the_loss_falls(matcher, image):
    assert all(not p.requires_grad for p in matcher.unet.parameters())
    x_t = _x_t(matcher, image)[:1]
    prompt = torch.randn(1, 77, 16, generator=torch.Generator().manual_seed(2)).requires_grad_(True)
    opt = torch.optim.Adam([prompt], lr=0.05)
    target = gaussian_bump(torch.tensor([[20.0, 30.0]]), 64, TINY.sigma_px)
    losses = []
    with matcher.capture() as store:
        for _ in range(3):
            with torch.enable_grad():
                maps = matcher.upsampled(matcher.attention_maps(store, x_t, 140, prompt)).mean(1)
                loss = F.mse_loss(maps, target)
                opt.zero_grad()
                loss.backward()
            assert prompt.grad is not None and torch.isfinite(prompt.grad).all() and prompt.grad.abs().sum() > 0
            opt.step()
            losses.append(loss.item())
    assert all(b < a for a, b in zip(losses, losses[1:])), losses
    assert all(p.grad is None for p in matcher.unet.parameters())


def test_optimize_shapes_and_the_same_seed_gives_the_same_match(matcher, image):
    emb, losses = matcher.optimize(image, (30, 20), generator=matcher.generator(0, 0))
    assert emb.shape == (2, 77, 16) and not emb.requires_grad and losses.shape == (2, 3)
    tgt = np.roll(image, (2, 3), axis=(0, 1))
    a = matcher.match(image, tgt, [(30, 20)], return_maps=True)
    b = matcher.match(image, tgt, [(30, 20)], return_maps=True)
    np.testing.assert_array_equal(a.target_points, b.target_points)
    np.testing.assert_array_equal(a.maps[0], b.maps[0])
    np.testing.assert_array_equal(a.losses[0], losses)  # match() seeds the query the same way
    assert a.target_points.shape == (1, 2) and a.maps[0].shape == (64, 64)
    assert np.all((a.target_points >= 0) & (a.target_points <= [80, 48]))
    assert a.maps[0].sum() == pytest.approx(1.0, abs=1e-4)  # mean over layers of per-layer softmaxes


def test_crop_box_keeps_the_margin_and_finds_corners():
    g = torch.Generator().manual_seed(0)
    S, c, margin = 512, int(512 * 0.9317), 0.15
    for p in (100.0, 256.0, 400.0):
        for _ in range(20):
            x0 = crop_box(p, S, c, margin, g)
            assert 0 <= x0 <= S - c and int(c * margin) <= p - x0 <= c - int(c * margin)
    assert crop_box(0.0, S, c, margin, g) == 0 and crop_box(float(S), S, c, margin, g) == S - c


def test_unloadable_model_says_how_to_pass_a_local_folder(monkeypatch, tmp_path):
    with pytest.raises(ModelLoadError, match="--model"):
        AttentionMatcher.from_pretrained(tmp_path / "missing", TINY)
    monkeypatch.setenv("HF_HOME", str(tmp_path))  # empty cache; the Hub is offline in tests
    with pytest.raises(ModelLoadError, match=r"CompVis/stable-diffusion-v1-4.*--model /path/to/folder"):
        AttentionMatcher.from_pretrained(None, TINY)
