"""The published DIFT computation (baseline of `vidprop bench extract`) vs vidprop's optimised path.

Both are fed the SAME latent-sample noise n (z = mean + std * n) and the SAME
diffusion noise eps, so the features must agree to float32 rounding although
vidprop encodes the frame once (not E times), uses SDPA instead of sliced
attention and stops the U-Net with its own hook.
"""

from __future__ import annotations

import pytest
import torch

from vidprop.config import ExtractorConfig
from vidprop.features.dift import DiftExtractor
from vidprop.features.published import PublishedDift
from vidprop.features.tiny import build_random_sd

E = 4


def rel_err(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a.float() - b.float()).norm() / b.float().norm())


@pytest.fixture(scope="module")
def ext(tiny_sd_path) -> DiftExtractor:
    return DiftExtractor.from_pretrained(tiny_sd_path, config=ExtractorConfig(ensemble=E, t=261, up_ft_index=1))


def published(tiny_sd_path, ext: DiftExtractor, **kw) -> PublishedDift:
    # an independent copy of the same weights, so the two never share modules
    other = DiftExtractor.from_pretrained(tiny_sd_path, config=ExtractorConfig(ensemble=1))
    return PublishedDift(other.unet, other.vae, other.scheduler, prompt_embeds=ext.encode_prompt(""), **kw)


@pytest.fixture(scope="module")
def pub(tiny_sd_path, ext) -> PublishedDift:
    return published(tiny_sd_path, ext)


def noise(shape: tuple[int, ...], seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return torch.randn(shape, generator=g), torch.randn(shape, generator=g)


@pytest.mark.parametrize("up,t", [(1, 261), (2, 51), (3, 0)])
def test_optimised_path_equals_published_computation_given_the_same_noise(ext, pub, up, t):
    img = torch.randint(0, 256, (1, 3, 64, 96), dtype=torch.uint8, generator=torch.Generator().manual_seed(up))
    n, eps = noise((E, 4, 8, 12), seed=10 + up)
    ref = pub(img, t=t, up_ft_index=up, ensemble_size=E, sample_noise=n, noise=eps)

    mean, std = ext.encode_latent_dist(img)  # VAE once
    latents = (mean + std * n) * ext.vae.config.scaling_factor  # (E, 4, h, w) by broadcasting
    ours = ext.unet_features(latents, eps, t=t, up_ft_index=up, prompt_embeds=ext.encode_prompt("")).mean(0, keepdim=True)

    assert ours.shape == ref.shape == (1, ext.channels_for(up), 64 // ext.stride_for(up), 96 // ext.stride_for(up))
    assert rel_err(ours, ref) < 1e-5
    torch.testing.assert_close(ours, ref, rtol=1e-5, atol=1e-5 * float(ref.abs().max()))


def test_published_full_forward_captures_the_same_block_output(tiny_sd_path, ext, pub):
    full = published(tiny_sd_path, ext, full_forward=True)
    img = torch.randint(0, 256, (1, 3, 64, 64), dtype=torch.uint8)
    n, eps = noise((2, 4, 8, 8), seed=3)
    calls = []
    full.unet.conv_out.register_forward_pre_hook(lambda *_: calls.append(1))
    a = full(img, t=51, up_ft_index=2, ensemble_size=2, sample_noise=n, noise=eps)
    b = pub(img, t=51, up_ft_index=2, ensemble_size=2, sample_noise=n, noise=eps)
    assert calls == [1]  # the whole forward ran
    torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6)


def test_published_way_slices_attention_and_encodes_every_copy(pub):
    procs = {type(p).__name__ for p in pub.unet.attn_processors.values()}
    assert procs == {"SlicedAttnProcessor"}
    seen = []
    h = pub.vae.encoder.register_forward_pre_hook(lambda _m, inp: seen.append(inp[0].shape[0]))
    try:
        pub(torch.zeros(1, 3, 64, 64, dtype=torch.uint8), t=51, up_ft_index=2, ensemble_size=E)
    finally:
        h.remove()
    assert seen == [E]  # E identical copies through the VAE encoder


def test_vidprop_uses_pytorch_sdpa_attention(ext):
    procs = {type(p).__name__ for p in ext.unet.attn_processors.values()}
    procs |= {type(p).__name__ for p in ext.vae.attn_processors.values()}
    assert procs == {"AttnProcessor2_0"}  # F.scaled_dot_product_attention


def test_published_random_draws_follow_the_generator(pub):
    img = torch.randint(0, 256, (1, 3, 64, 64), dtype=torch.uint8)
    a = pub(img, t=51, up_ft_index=2, ensemble_size=2, generator=torch.Generator().manual_seed(1))
    b = pub(img, t=51, up_ft_index=2, ensemble_size=2, generator=torch.Generator().manual_seed(1))
    c = pub(img, t=51, up_ft_index=2, ensemble_size=2, generator=torch.Generator().manual_seed(2))
    assert torch.equal(a, b) and not torch.equal(a, c)


def test_published_accepts_freshly_built_parts():
    parts = build_random_sd("tiny", with_text_encoder=False)
    model = PublishedDift(parts["unet"], parts["vae"], parts["scheduler"], prompt_embeds=torch.zeros(1, 77, 16))
    out = model(torch.zeros(1, 3, 64, 64, dtype=torch.uint8), t=51, up_ft_index=2, ensemble_size=2)
    assert out.shape == (1, 16, 8, 8) and out.dtype == torch.float32
    with pytest.raises(ValueError, match="one frame per call"):
        model(torch.zeros(2, 3, 64, 64, dtype=torch.uint8))
