"""Hedlin et al.'s attention matcher on the tiny random SD: capture, head selection, the loss and its
gradient, crop pasting, optimisation, determinism -- each against a plain reference written here."""

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
    attention_loss,
    crop_box,
    crop_maps,
    gaussian_bump,
)
from vidprop.features.attention_capture import resolve_layers

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
    assert s.heads == "second_half"
    with pytest.raises(ConfigError, match="heads"):
        AttentionSettings(heads="first_half")  # type: ignore[arg-type]
    assert s.layers == PAPER_LAYERS and DEFAULT_ATTENTION_MODEL == "CompVis/stable-diffusion-v1-4"
    with pytest.raises(dataclasses.FrozenInstanceError):
        s.steps = 3  # type: ignore[misc]
    with pytest.raises(ConfigError, match="noise"):
        AttentionSettings(noise="laplace")  # type: ignore[arg-type]
    assert TINY.sigma_px == pytest.approx(s.sigma * 64 / 512)


@pytest.mark.parametrize("bad", [True, False, 1, "second-half", "ALL", None, ("all",)])
def test_heads_outside_the_documented_choices_are_refused_in_one_line(bad):
    from vidprop.features.attention_capture import AttentionStore, CrossAttentionCapture

    for make in (lambda: AttentionSettings(heads=bad), lambda: CrossAttentionCapture(AttentionStore(["x"]), "x", 1, bad)):
        with pytest.raises(ConfigError) as err:
            make()
        assert "heads must be 'second_half' or 'all'" in str(err.value) and "\n" not in str(err.value)
    assert CrossAttentionCapture(AttentionStore(["x"]), "x", 1, "all").heads == "all"


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

    # reference: softmax(QK^T * scale) from each attn2's own inputs, token 1, mean over the second half of
    # the heads (the default; the tiny U-Net has 2 heads, so head 1 alone)
    ref = {}

    def hook(name):
        def fn(module, args, kwargs):
            hs, enc = args[0], kwargs["encoder_hidden_states"]
            q = module.head_to_batch_dim(module.to_q(hs))
            k = module.head_to_batch_dim(module.to_k(enc))
            p = (q @ k.transpose(1, 2) * module.scale).softmax(-1)
            ref[name] = p.view(hs.shape[0], module.heads, hs.shape[1], -1)[:, module.heads // 2 :, :, 1].mean(1)
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
                loss = attention_loss(matcher.upsampled(matcher.attention_maps(store, x_t, 140, prompt)), target)[0]
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


def test_unloadable_model_says_how_to_pass_a_local_folder(tmp_path):
    with pytest.raises(ModelLoadError, match="--model"):
        AttentionMatcher.from_pretrained(tmp_path / "missing", TINY)
    # the default id is not in the cache, and the Hub is offline in tests
    with pytest.raises(ModelLoadError, match=r"'CompVis/stable-diffusion-v1-4' is not in the local Hugging Face "
                                             r"cache.*`hf download CompVis/stable-diffusion-v1-4 --local-dir "
                                             r"stable-diffusion-v1-4`.*--model /path/to/stable-diffusion-v1-4"):
        AttentionMatcher.from_pretrained(None, TINY)


# --------------------------------------------------------------------------- the loss
def plain_loss(maps, target):
    """The authors' loss, written as their code does: one MSELoss over the stacked per-layer maps
    against the Gaussian repeated for every layer, per sample."""
    out = []
    for b in range(maps.shape[0]):
        L = maps.shape[1]
        stacked = maps[b].reshape(L, -1)
        gt = target[b].reshape(1, -1).repeat(L, 1)
        out.append(torch.nn.MSELoss()(stacked, gt))
    return torch.stack(out)


def test_loss_is_the_mean_of_per_layer_mses_and_its_gradient_matches():
    g = torch.Generator().manual_seed(0)
    maps = torch.rand(2, 4, 16, 16, generator=g, dtype=torch.float64) * 0.5
    maps[:, 0] += 0.4  # layers that disagree: a real between-layer spread
    target = gaussian_bump(torch.tensor([[5.0, 9.0], [12.0, 3.0]]), 16, 3.0).double()
    a = maps.clone().requires_grad_(True)
    b = maps.clone().requires_grad_(True)
    got, ref = attention_loss(a, target), plain_loss(b, target)
    torch.testing.assert_close(got, ref, rtol=1e-12, atol=0)
    # the same as the mean over layers of each layer's own MSE
    per_layer = torch.stack([((maps[:, l] - target) ** 2).mean(dim=(1, 2)) for l in range(4)]).mean(0)
    torch.testing.assert_close(got.detach(), per_layer, rtol=1e-12, atol=0)
    got.sum().backward()
    ref.sum().backward()
    torch.testing.assert_close(a.grad, b.grad, rtol=1e-12, atol=0)
    # ... and not the MSE of the layer-averaged map: smaller by the between-layer variance, another gradient
    c = maps.clone().requires_grad_(True)
    averaged = ((c.mean(1) - target) ** 2).mean(dim=(1, 2))
    variance = maps.var(dim=1, unbiased=False).mean(dim=(1, 2))
    torch.testing.assert_close(got.detach(), averaged.detach() + variance, rtol=1e-10, atol=0)
    averaged.sum().backward()
    cos = F.cosine_similarity(a.grad.flatten(), c.grad.flatten(), dim=0)
    assert cos < 0.9, cos
    with pytest.raises(ValueError, match="attention_loss"):
        attention_loss(maps[:, 0], target)


def test_optimize_takes_the_per_layer_loss(matcher, image):
    """Replay the first Adam step with the plain loss: the recorded losses are those values."""
    s = matcher.settings
    S, c = s.image_size, s.crop_side
    emb, losses = matcher.optimize(image, (30, 20), generator=matcher.generator(0, 0))
    gen = matcher.generator(0, 0)
    prompt = torch.randn((s.rounds, s.num_tokens, matcher.embed_dim), generator=gen)
    px, py = matcher._point_in_model(image, (30, 20))
    boxes = [(crop_box(px, S, c, s.margin, gen), crop_box(py, S, c, s.margin, gen)) for _ in range(s.rounds)]
    x_t = matcher._noisy_latents(matcher._crops(matcher._prepare(image), boxes), s.t_opt, gen)
    target = gaussian_bump(torch.tensor([[(px - x) * S / c, (py - y) * S / c] for x, y in boxes]), S, s.sigma_px)
    with torch.no_grad(), matcher.capture() as store:
        maps = matcher.attention_maps(store, x_t, s.t_opt, prompt)
    up = torch.stack([F.interpolate(m[:, None], size=(S, S), mode="bilinear", align_corners=False)[:, 0]
                      for m in maps], dim=1)
    np.testing.assert_allclose(losses[:, 0], plain_loss(up, target).numpy(), rtol=1e-5)
    averaged = ((up.mean(1) - target) ** 2).mean(dim=(1, 2)).numpy()
    assert np.all(np.abs(losses[:, 0] - averaged) > 1e-6 * averaged)  # the layer-averaged loss is not it


# --------------------------------------------------------------------------- head selection
def test_second_half_of_the_heads_by_default_all_as_an_option(matcher, image):
    """An SD-like U-Net with 8 heads: the default averages heads 4-7 (the authors' attn[h // 2:]), "all" 0-7."""
    from diffusers import UNet2DConditionModel

    torch.manual_seed(0)
    unet = UNet2DConditionModel(
        sample_size=8, in_channels=4, out_channels=4, block_out_channels=(16, 16, 16, 16), layers_per_block=1,
        cross_attention_dim=16, attention_head_dim=8, norm_num_groups=4,
        down_block_types=("CrossAttnDownBlock2D",) * 3 + ("DownBlock2D",),
        up_block_types=("UpBlock2D",) + ("CrossAttnUpBlock2D",) * 3,
    )
    per_head = {}

    def hook(name):
        def fn(module, args, kwargs):
            hs, enc = args[0], kwargs["encoder_hidden_states"]
            q = module.head_to_batch_dim(module.to_q(hs))
            k = module.head_to_batch_dim(module.to_k(enc))
            p = (q @ k.transpose(1, 2) * module.scale).softmax(-1)
            per_head[name] = p.view(hs.shape[0], module.heads, hs.shape[1], -1)[..., 1]  # (B, heads, N)
        return fn

    names = [n.rsplit(".processor", 1)[0] for n in resolve_layers(unet, PAPER_LAYERS)]
    assert all(unet.get_submodule(n).heads == 8 for n in names)
    handles = [unet.get_submodule(n).register_forward_pre_hook(hook(n), with_kwargs=True) for n in names]
    x_t = _x_t(matcher, image)
    prompt = torch.randn(2, 77, 16, generator=torch.Generator().manual_seed(3))
    got = {}
    try:
        for heads in ("second_half", "all"):
            m = AttentionMatcher(unet, matcher.vae, matcher.scheduler, dataclasses.replace(TINY, heads=heads),
                                 device="cpu")
            with torch.no_grad(), m.capture() as store:
                got[heads] = [x.reshape(2, -1) for x in m.attention_maps(store, x_t, 140, prompt)]
    finally:
        for h in handles:
            h.remove()
    for name, half, every in zip(names, got["second_half"], got["all"]):
        ref = per_head[name]
        torch.testing.assert_close(half, ref[:, 4:8].mean(1), rtol=1e-5, atol=1e-7)
        torch.testing.assert_close(every, ref.mean(1), rtol=1e-5, atol=1e-7)
        assert (half - every).abs().max() > 1e-4  # the choice matters


# --------------------------------------------------------------------------- crop pasting
def plain_resize(a: np.ndarray, size: int) -> np.ndarray:
    """Bilinear resize of a 2-D array written out (pixel centres, source index clamped at 0, as PyTorch)."""
    def weights(n_in):
        w = np.zeros((size, n_in))
        for o in range(size):
            src = max((o + 0.5) * n_in / size - 0.5, 0.0)
            i0 = min(int(np.floor(src)), n_in - 1)
            i1 = min(i0 + 1, n_in - 1)
            w[o, i0] += 1 - (src - i0)
            w[o, i1] += src - i0
        return w
    return weights(a.shape[0]) @ a @ weights(a.shape[1]).T


def test_crop_maps_go_straight_to_the_crop_side():
    g = torch.Generator().manual_seed(4)
    maps = [torch.rand(3, 2, 2, generator=g), torch.rand(3, 4, 4, generator=g)]
    out = crop_maps(maps, 59)
    assert out.shape == (3, 2, 59, 59)
    for b in range(3):
        for layer, m in enumerate(maps):
            np.testing.assert_allclose(out[b, layer].numpy(), plain_resize(m[b].double().numpy(), 59), atol=1e-6)
    via_512 = F.interpolate(F.interpolate(maps[1][:, None], size=(64, 64), mode="bilinear"), size=(59, 59),
                            mode="bilinear")[:, 0]
    assert (via_512 - out[:, 1]).abs().max() > 1e-3  # the old round trip gives other values


def test_inference_pastes_each_crop_at_its_side(matcher, image, monkeypatch):
    """Four corner crops per embedding with known per-layer maps: the final map equals pasting each crop's maps
    (resized straight to the crop side) into image coordinates, averaging by coverage, then over embeddings,
    a softmax per layer and the mean over layers."""
    s = dataclasses.replace(TINY, crops=4, batch_size=3)
    m = AttentionMatcher(matcher.unet, matcher.vae, matcher.scheduler, s, device="cpu")
    S, c = s.image_size, s.crop_side
    rng = np.random.default_rng(5)
    R = 2
    known = [[rng.random((n, n)) * 3 for n in (2, 2, 4)] for _ in range(R * 4)]  # job k: R x 4 corners
    calls = []

    def fake_maps(store, x_t, t, prompt):
        k0 = sum(calls)
        calls.append(x_t.shape[0])
        return [torch.tensor(np.stack([known[k0 + i][layer] for i in range(x_t.shape[0])]), dtype=torch.float32)
                for layer in range(3)]

    monkeypatch.setattr(m, "attention_maps", fake_maps)
    final = m.infer(image, torch.zeros(R, 77, 16)).numpy()
    assert calls == [3, 3, 2]
    corners = [(0, 0), (0, S - c), (S - c, 0), (S - c, S - c)]  # (x, y) starts of the crops at (0,0),(0,S),(S,0),(S,S)
    sums, counts = np.zeros((R, 3, S, S)), np.zeros((R, 1, S, S))
    for k, maps_k in enumerate(known):
        r, (x, y) = k // 4, corners[k % 4]
        for layer in range(3):
            sums[r, layer, y : y + c, x : x + c] += plain_resize(maps_k[layer], c)
        counts[r, :, y : y + c, x : x + c] += 1
    avg = (sums / counts).mean(0).reshape(3, -1)
    soft = np.exp(avg - avg.max(1, keepdims=True))
    soft /= soft.sum(1, keepdims=True)
    np.testing.assert_allclose(final, soft.mean(0).reshape(S, S), rtol=1e-4, atol=1e-9)
