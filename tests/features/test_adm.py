"""ADM (guided diffusion): the published checkpoint's names and shapes, and DIFT_adm features vs a plain reference."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from vidprop.config import ExtractorConfig
from vidprop.errors import ConfigError, ModelLoadError
from vidprop.features.adm import ADM_256_UNCOND, ADM_TINY, AdmExtractor, AdmUNet, save_random_adm
from vidprop.features.dift import frame_generator

# ----------------------------------------------------------------------------------------------------------------
# The published 256x256 unconditional model, written out block by block from its flags
# (num_channels 256, channel_mult 1,1,2,2,4,4, num_res_blocks 2, attention at 32/16/8 px = factors 8/16/32,
# resblock_updown, scale-shift norm, learn_sigma): (kind, input channels, output channels) of every block.
INPUT_BLOCKS = [
    ("conv", 3, 256),
    ("res", 256, 256), ("res", 256, 256), ("down", 256, 256),
    ("res", 256, 256), ("res", 256, 256), ("down", 256, 256),
    ("res", 256, 512), ("res", 512, 512), ("down", 512, 512),
    ("res+attn", 512, 512), ("res+attn", 512, 512), ("down", 512, 512),
    ("res+attn", 512, 1024), ("res+attn", 1024, 1024), ("down", 1024, 1024),
    ("res+attn", 1024, 1024), ("res+attn", 1024, 1024),
]
OUTPUT_BLOCKS = [  # input = previous output + the skip popped from the input blocks
    ("res+attn", 2048, 1024), ("res+attn", 2048, 1024), ("res+attn+up", 2048, 1024),
    ("res+attn", 2048, 1024), ("res+attn", 2048, 1024), ("res+attn+up", 1536, 1024),
    ("res+attn", 1536, 512), ("res+attn", 1024, 512), ("res+attn+up", 1024, 512),
    ("res", 1024, 512), ("res", 1024, 512), ("res+up", 768, 512),
    ("res", 768, 256), ("res", 512, 256), ("res+up", 512, 256),
    ("res", 512, 256), ("res", 512, 256), ("res", 512, 256),
]
EMB = 1024


def _res(prefix: str, cin: int, cout: int) -> dict[str, tuple[int, ...]]:
    d = {
        f"{prefix}.in_layers.0.weight": (cin,), f"{prefix}.in_layers.0.bias": (cin,),
        f"{prefix}.in_layers.2.weight": (cout, cin, 3, 3), f"{prefix}.in_layers.2.bias": (cout,),
        f"{prefix}.emb_layers.1.weight": (2 * cout, EMB), f"{prefix}.emb_layers.1.bias": (2 * cout,),
        f"{prefix}.out_layers.0.weight": (cout,), f"{prefix}.out_layers.0.bias": (cout,),
        f"{prefix}.out_layers.3.weight": (cout, cout, 3, 3), f"{prefix}.out_layers.3.bias": (cout,),
    }
    if cin != cout:
        d.update({f"{prefix}.skip_connection.weight": (cout, cin, 1, 1), f"{prefix}.skip_connection.bias": (cout,)})
    return d


def _attn(prefix: str, c: int) -> dict[str, tuple[int, ...]]:
    return {f"{prefix}.norm.weight": (c,), f"{prefix}.norm.bias": (c,), f"{prefix}.qkv.weight": (3 * c, c, 1),
            f"{prefix}.qkv.bias": (3 * c,), f"{prefix}.proj_out.weight": (c, c, 1), f"{prefix}.proj_out.bias": (c,)}


def published_parameters() -> dict[str, tuple[int, ...]]:
    p: dict[str, tuple[int, ...]] = {"time_embed.0.weight": (EMB, 256), "time_embed.0.bias": (EMB,),
                                     "time_embed.2.weight": (EMB, EMB), "time_embed.2.bias": (EMB,)}
    for i, (kind, cin, cout) in enumerate(INPUT_BLOCKS):
        if kind == "conv":
            p.update({f"input_blocks.{i}.0.weight": (cout, cin, 3, 3), f"input_blocks.{i}.0.bias": (cout,)})
            continue
        p.update(_res(f"input_blocks.{i}.0", cin, cout))
        if "attn" in kind:
            p.update(_attn(f"input_blocks.{i}.1", cout))
    p.update(_res("middle_block.0", 1024, 1024))
    p.update(_attn("middle_block.1", 1024))
    p.update(_res("middle_block.2", 1024, 1024))
    for i, (kind, cin, cout) in enumerate(OUTPUT_BLOCKS):
        p.update(_res(f"output_blocks.{i}.0", cin, cout))
        j = 1
        if "attn" in kind:
            p.update(_attn(f"output_blocks.{i}.1", cout))
            j = 2
        if "up" in kind:
            p.update(_res(f"output_blocks.{i}.{j}", cout, cout))
    p.update({"out.0.weight": (256,), "out.0.bias": (256,), "out.2.weight": (6, 256, 3, 3), "out.2.bias": (6,)})
    return p


def test_published_architecture_has_the_checkpoint_names_and_shapes():
    with torch.device("meta"):
        model = AdmUNet(ADM_256_UNCOND)
    got = {k: tuple(v.shape) for k, v in model.state_dict().items()}
    want = published_parameters()
    assert sorted(set(got) - set(want)) == [] and sorted(set(want) - set(got)) == []
    assert {k: v for k, v in got.items() if want[k] != v} == {}
    assert sum(math.prod(s) for s in want.values()) == 552_814_086


def test_strides_and_channels_by_index():
    strides = [32, 32, 16, 16, 16, 8, 8, 8, 4, 4, 4, 2, 2, 2, 1, 1, 1, 1]  # 0-1: 32, 2-4: 16, ..., 14-17: 1
    assert [ADM_256_UNCOND.output_stride(i) for i in range(18)] == strides
    assert [ADM_256_UNCOND.output_channels(i) for i in range(18)] == [cout for _, _, cout in OUTPUT_BLOCKS]
    assert ADM_256_UNCOND.output_channels(7) == 512 and ADM_256_UNCOND.multiple == 32
    # the tiny model's output blocks give the sizes its strides promise (one forward, every block hooked)
    model = AdmUNet(ADM_TINY)
    shapes = {}
    for i, block in enumerate(model.output_blocks):
        block.register_forward_hook(lambda _m, _i, out, i=i: shapes.__setitem__(i, tuple(out.shape)))
    with torch.no_grad():
        model(torch.zeros(1, 3, 16, 24), torch.tensor([3]))
    for i in range(ADM_TINY.num_output_blocks):
        s = ADM_TINY.output_stride(i)
        assert shapes[i] == (1, ADM_TINY.output_channels(i), 16 // s, 24 // s), i


# ----------------------------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def tiny_adm(tmp_path_factory):
    return save_random_adm(tmp_path_factory.mktemp("adm") / "tiny-adm.pt", ADM_TINY, seed=3)


def _sinusoid(t: int, dim: int) -> torch.Tensor:
    half = dim // 2
    freqs = np.exp(-np.log(10000.0) * np.arange(half) / half)
    return torch.tensor(np.concatenate([np.cos(t * freqs), np.sin(t * freqs)]), dtype=torch.float32)[None]


def reference_features(unet, images, indices, *, seed, t, up, E):
    """Step by step: x_t of each member with the frame's own draws, the blocks one by one, the ensemble mean."""
    betas = np.linspace(1e-4, 0.02, 1000)
    abar = float(np.prod(1.0 - betas[: t + 1]))
    out = []
    for img, idx in zip(images, indices):
        g = frame_generator(seed, idx, torch.device("cpu"))
        eps = torch.randn((E, *img.shape), generator=g)
        x0 = img.float() / 127.5 - 1.0
        emb = unet.time_embed(_sinusoid(t, unet.cfg.model_channels))
        members = []
        for e in range(E):
            h = (math.sqrt(abar) * x0 + math.sqrt(1 - abar) * eps[e])[None]
            skips = []
            for block in unet.input_blocks:
                h = block(h, emb)
                skips.append(h)
            h = unet.middle_block(h, emb)
            for i, block in enumerate(unet.output_blocks):
                h = block(torch.cat([h, skips.pop()], dim=1), emb)
                if i == up:
                    break
            members.append(h[0])
        out.append(torch.stack(members).mean(0))
    return torch.stack(out)


def test_features_equal_a_step_by_step_reference(tiny_adm):
    cfg = ExtractorConfig(backbone="adm", weights=str(tiny_adm), t=51, up_ft_index=3, ensemble=2, seed=5, batch_size=2)
    ext = AdmExtractor.from_pretrained(config=cfg)
    assert (ext.stride, ext.channels) == (1, 32)
    imgs = torch.randint(0, 256, (3, 3, 8, 12), dtype=torch.uint8, generator=torch.Generator().manual_seed(0))
    idx = [4, 9, 2]
    got = ext.extract(imgs, indices=idx)  # batches of 2 + 1 frames, each with its 2 members
    with torch.no_grad():
        ref = reference_features(ext.unet, imgs, idx, seed=5, t=51, up=3, E=2)
    assert got.shape == (3, 32, 8, 12)
    torch.testing.assert_close(got, ref, rtol=1e-4, atol=1e-5 * float(ref.abs().max()))
    # a frame's features depend on its index and the seed, not on its batch neighbours
    torch.testing.assert_close(ext.extract(imgs[1:2], indices=[9]), got[1:2], rtol=1e-5, atol=1e-6)
    assert not torch.allclose(ext.extract(imgs[1:2], indices=[10]), got[1:2])


def test_forward_stops_after_the_feature_block(tiny_adm):
    ext = AdmExtractor.from_pretrained(tiny_adm, config=ExtractorConfig(backbone="adm", up_ft_index=1, ensemble=1))
    calls = []
    for i, block in enumerate(ext.unet.output_blocks):
        block.register_forward_pre_hook(lambda _m, _i, i=i: calls.append(i))
    ext.unet.out.register_forward_pre_hook(lambda _m, _i: calls.append("out"))
    f = ext.extract(torch.zeros(1, 3, 16, 16, dtype=torch.uint8))
    assert calls == [0, 1] and f.shape == (1, 32, 8, 8)  # stride 2 after block 1's upsampling


def test_attention_and_resblocks_match_plain_formulas():
    torch.manual_seed(0)
    model = AdmUNet(ADM_TINY).eval()
    for p in model.parameters():
        torch.nn.init.normal_(p, std=0.2)
    attn = model.middle_block[1]  # 32 channels, 4 heads of 8
    x = torch.randn(2, 32, 3, 5)
    with torch.no_grad():
        # the checkpoint's legacy attention: heads split before q/k/v, q and k each scaled by ch^-1/4
        b, c, h, w = x.shape
        flat = x.reshape(b, c, -1)
        qkv = F.conv1d(F.group_norm(flat, 4, attn.norm.weight, attn.norm.bias), attn.qkv.weight, attn.qkv.bias)
        heads = c // 8
        q, k, v = qkv.reshape(b * heads, 3 * 8, -1).split(8, dim=1)
        s = 1 / math.sqrt(math.sqrt(8))
        wgt = torch.softmax(torch.einsum("bct,bcs->bts", q * s, k * s), dim=-1)
        a = torch.einsum("bts,bcs->bct", wgt, v).reshape(b, c, -1)
        ref = (flat + F.conv1d(a, attn.proj_out.weight, attn.proj_out.bias)).reshape(b, c, h, w)
        torch.testing.assert_close(attn(x), ref, rtol=1e-5, atol=1e-5)

        emb = torch.randn(2, 64)
        for block, resample in ((model.input_blocks[2][0], "down"), (model.output_blocks[1][2], "up")):
            xin = torch.randn(2, block.in_layers[0].num_channels, 4, 6)
            h1 = F.silu(F.group_norm(xin, 4, block.in_layers[0].weight, block.in_layers[0].bias))
            if resample == "down":
                h1, skip = F.avg_pool2d(h1, 2), F.avg_pool2d(xin, 2)
            else:
                h1, skip = F.interpolate(h1, scale_factor=2.0), F.interpolate(xin, scale_factor=2.0)
            h1 = F.conv2d(h1, block.in_layers[2].weight, block.in_layers[2].bias, padding=1)
            scale, shift = F.linear(F.silu(emb), block.emb_layers[1].weight, block.emb_layers[1].bias)[..., None, None].chunk(2, 1)
            h1 = F.group_norm(h1, 4, block.out_layers[0].weight, block.out_layers[0].bias) * (1 + scale) + shift
            h1 = F.conv2d(F.silu(h1), block.out_layers[3].weight, block.out_layers[3].bias, padding=1)
            torch.testing.assert_close(block(xin, emb), skip + h1, rtol=1e-5, atol=1e-5)


def test_loading_is_strict_and_never_implicit(tiny_adm, tmp_path):
    with pytest.raises(ModelLoadError, match="--weights"):
        AdmExtractor.from_pretrained(config=ExtractorConfig(backbone="adm"))
    with pytest.raises(ModelLoadError, match="not found.*256x256_diffusion_uncond"):
        AdmExtractor.from_pretrained(tmp_path / "missing.pt", config=ExtractorConfig(backbone="adm"))
    # a plain state dict is read as the published architecture: the tiny weights do not fit it
    data = torch.load(tiny_adm, weights_only=True)
    torch.save(data["state_dict"], tmp_path / "plain.pt")
    with pytest.raises(ModelLoadError, match="missing.*unexpected|missing.*other shapes"):
        AdmExtractor.from_pretrained(tmp_path / "plain.pt", config=ExtractorConfig(backbone="adm"))
    # one key short of the architecture: named in the error
    state = dict(data["state_dict"])
    del state["out.2.bias"]
    torch.save({"adm_config": data["adm_config"], "state_dict": state}, tmp_path / "short.pt")
    with pytest.raises(ModelLoadError, match=r"1 missing \(e.g. out.2.bias\)"):
        AdmExtractor.from_pretrained(tmp_path / "short.pt", config=ExtractorConfig(backbone="adm"))
    (tmp_path / "junk.pt").write_text("not a checkpoint")
    with pytest.raises(ModelLoadError, match="not a readable PyTorch checkpoint"):
        AdmExtractor.from_pretrained(tmp_path / "junk.pt", config=ExtractorConfig(backbone="adm"))
    with pytest.raises(ConfigError, match="up_ft_index must be in"):
        AdmExtractor.from_pretrained(tiny_adm, config=ExtractorConfig(backbone="adm", up_ft_index=6))
