"""DiftExtractor's speed-ups must not change its results (tiny random SD only).

* batching frames (config batch_size) == one frame and one ensemble member at a time,
  computed the published way with the extractor's per-frame noise;
* bfloat16 ~= float32, channels_last == default;
* the U-Net stops after the hooked up-block; the VAE encoder runs once per frame;
* same seed -> identical features, another seed or frame index -> different.
"""

from __future__ import annotations

import pytest
import torch

from vidprop.config import ExtractorConfig
from vidprop.features.dift import DiftExtractor, frame_generator
from vidprop.features.published import PublishedDift

E = 3
H, W = 64, 96


def rel_err(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a.float() - b.float()).norm() / b.float().norm())


def frames(n: int, seed: int = 0) -> torch.Tensor:
    return torch.randint(0, 256, (n, 3, H, W), dtype=torch.uint8, generator=torch.Generator().manual_seed(seed))


_cache: dict = {}


def extractor(path, **cfg) -> DiftExtractor:
    key = tuple(sorted(cfg.items()))
    if key not in _cache:
        _cache[key] = DiftExtractor.from_pretrained(path, config=ExtractorConfig(**{"ensemble": E, **cfg}))
    return _cache[key]


@pytest.fixture(scope="module", autouse=True)
def _clear_cache():
    yield
    _cache.clear()


def test_batched_extract_equals_per_frame_per_member_reference(tiny_sd_path):
    ext = extractor(tiny_sd_path, batch_size=4, seed=7)
    imgs, idx = frames(4), [5, 6, 9, 12]
    feats = ext.extract(imgs, indices=idx)  # one U-Net batch of 4 frames x 3 members

    ref_model = extractor(tiny_sd_path, seed=123)  # separate copy of the weights
    pub = PublishedDift(ref_model.unet, ref_model.vae, ref_model.scheduler, prompt_embeds=ref_model.encode_prompt(""))
    h, w = H // 8, W // 8
    for b, i in enumerate(idx):
        g = frame_generator(7, i, torch.device("cpu"))  # the extractor's per-(seed, frame) draws
        n = torch.randn((E, 4, h, w), generator=g)
        eps = torch.randn((E, 4, h, w), generator=g)
        members = [
            pub(imgs[b : b + 1], t=51, up_ft_index=2, ensemble_size=1, sample_noise=n[e : e + 1], noise=eps[e : e + 1])
            for e in range(E)
        ]
        ref = torch.cat(members).mean(0)
        assert rel_err(feats[b], ref) < 1e-5, b
        torch.testing.assert_close(feats[b], ref, rtol=1e-5, atol=1e-5 * float(ref.abs().max()))


def test_batch_size_does_not_change_features(tiny_sd_path):
    imgs, idx = frames(5, seed=1), [0, 1, 2, 3, 4]
    one = extractor(tiny_sd_path, batch_size=1).extract(imgs, indices=idx)
    two = extractor(tiny_sd_path, batch_size=2).extract(imgs, indices=idx)  # batches of 2, 2, 1
    five = extractor(tiny_sd_path, batch_size=8).extract(imgs, indices=idx)
    torch.testing.assert_close(two, one, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(five, one, rtol=1e-5, atol=1e-6)
    # a frame's features depend on its index, not on its batch neighbours
    torch.testing.assert_close(extractor(tiny_sd_path).extract(imgs[3:4], indices=[3]), one[3:4], rtol=1e-5, atol=1e-6)


def test_bfloat16_matches_float32(tiny_sd_path):
    imgs = frames(2, seed=2)
    ref = extractor(tiny_sd_path, batch_size=2).extract(imgs)
    half = extractor(tiny_sd_path, batch_size=2, dtype="bfloat16")
    assert half.unet.dtype == torch.bfloat16 and half.vae.dtype == torch.bfloat16
    out = half.extract(imgs)
    assert out.dtype == torch.bfloat16
    assert rel_err(out, ref) < 3e-2
    cos = torch.nn.functional.cosine_similarity(out.float(), ref, dim=1)
    assert float(cos.min()) > 0.99


def test_channels_last_does_not_change_features(tiny_sd_path):
    imgs = frames(2, seed=3)
    ref = extractor(tiny_sd_path, batch_size=2).extract(imgs)
    out = extractor(tiny_sd_path, batch_size=2, channels_last=True).extract(imgs)
    torch.testing.assert_close(out, ref, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("up", [0, 1, 2, 3])
def test_unet_stops_after_the_hooked_up_block(tiny_sd_path, up):
    ext = extractor(tiny_sd_path)
    calls = {i: 0 for i in range(len(ext.unet.up_blocks))}
    calls["conv_out"] = 0
    hooks = [blk.register_forward_pre_hook(lambda _m, _i, i=i: calls.__setitem__(i, calls[i] + 1))
             for i, blk in enumerate(ext.unet.up_blocks)]
    hooks.append(ext.unet.conv_out.register_forward_pre_hook(lambda *_: calls.__setitem__("conv_out", calls["conv_out"] + 1)))
    try:
        ext.extract(frames(1), up_ft_index=up)
    finally:
        for h in hooks:
            h.remove()
    assert all(calls[i] == 1 for i in range(up + 1))
    assert sum(calls[i] for i in range(up + 1, len(ext.unet.up_blocks))) == 0
    assert calls["conv_out"] == 0
    assert not ext.unet.up_blocks[up]._forward_hooks  # the stopping hook was removed


def test_vae_encoder_runs_once_per_frame_not_per_member(tiny_sd_path):
    ext = extractor(tiny_sd_path, batch_size=2, ensemble=8)
    seen: list[int] = []
    unet_batch: list[int] = []
    h1 = ext.vae.encoder.register_forward_pre_hook(lambda _m, inp: seen.append(inp[0].shape[0]))
    h2 = ext.unet.conv_in.register_forward_pre_hook(lambda _m, inp: unet_batch.append(inp[0].shape[0]))
    try:
        ext.extract(frames(3))  # batches of 2 and 1 frames
    finally:
        h1.remove()
        h2.remove()
    assert seen == [2, 1]  # one image per frame through the encoder
    assert unet_batch == [16, 8]  # frames x ensemble members share a U-Net batch


def test_same_seed_same_features_other_seed_or_index_differs(tiny_sd_path):
    imgs = frames(2, seed=4)
    a = extractor(tiny_sd_path, seed=0).extract(imgs)
    b = extractor(tiny_sd_path, seed=0).extract(imgs)
    assert torch.equal(a, b)
    fresh = DiftExtractor.from_pretrained(tiny_sd_path, config=ExtractorConfig(ensemble=E, seed=0))
    assert torch.equal(fresh.extract(imgs), a)  # a new process-like instance repeats it exactly
    c = extractor(tiny_sd_path, seed=1).extract(imgs)
    assert not torch.allclose(a, c)
    d = extractor(tiny_sd_path, seed=0).extract(imgs, indices=[10, 11])
    assert not torch.allclose(a, d)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_cuda_half_precision_matches_cpu_float32_given_the_same_noise(tiny_sd_path):
    cpu = extractor(tiny_sd_path)
    img = frames(1, seed=5)
    n, eps = torch.randn(E, 4, H // 8, W // 8), torch.randn(E, 4, H // 8, W // 8)
    emb = cpu.encode_prompt("")

    def run(ext: DiftExtractor) -> torch.Tensor:
        mean, std = ext.encode_latent_dist(img)  # pinned, non_blocking copy on CUDA
        lat = (mean.float() + std.float() * n.to(ext.device)) * ext.vae.config.scaling_factor
        return ext.unet_features(lat, eps.to(ext.device), t=51, up_ft_index=2, prompt_embeds=emb).float().mean(0).cpu()

    ref = run(cpu)
    for dtype in ("float16", "bfloat16"):
        gpu = DiftExtractor.from_pretrained(
            tiny_sd_path, config=ExtractorConfig(ensemble=E, channels_last=True), device="cuda", dtype=dtype
        )
        assert rel_err(run(gpu), ref) < 3e-2


def test_float_frames_are_pixel_values_on_the_0_255_scale(tiny_sd_path):
    """Frames resized as floats (frames.resize_dtype float32, CRW's JHMDB loader) are unrounded 0-255 values."""
    ext = extractor(tiny_sd_path)
    x = frames(1, seed=4)
    torch.testing.assert_close(ext.extract(x.float(), indices=[0]), ext.extract(x, indices=[0]), rtol=1e-5, atol=1e-5)
    shifted = ext.extract(x.float() + 0.4, indices=[0])  # not rounded away
    assert not torch.allclose(shifted, ext.extract(x, indices=[0]), atol=1e-6)
