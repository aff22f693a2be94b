"""SD + DINOv2 fusion (sd-dino's recipe) on a tiny random SD and DINOv2, against a plain reference.

The PCA's components have arbitrary signs, so the SD half is compared through
its Gram matrix (the similarity of every pair of positions, over both
images), which does not depend on them; the DINOv2 half is compared directly.
"""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from vidprop.config import ExtractorConfig
from vidprop.errors import ConfigError
from vidprop.features.registry import build_extractor
from vidprop.features.vit import save_random_vit

BLOCKS = (1, 3, 5)  # tiny SD: 2 layers per up block -> inputs of output blocks 1, 3, 5 = first layer of up blocks 0, 1, 2
DIMS = (1, 3, 4)  # at 64x64 the coarsest layer has one position per image
T = 100


@pytest.fixture(scope="module")
def ext(tiny_sd_path, tmp_path_factory):
    dino = save_random_vit(tmp_path_factory.mktemp("dinov2") / "dinov2", "dinov2", seed=4)
    cfg = ExtractorConfig(backbone="sd+dinov2", model=str(tiny_sd_path), dino_model=str(dino), t=T, final_norm=False,
                          fusion_sd_blocks=BLOCKS, fusion_pca_dims=DIMS, fusion_sd_weights=(1.0, 0.5, 2.0))
    return build_extractor(cfg)


def reference(ext, images: torch.Tensor) -> torch.Tensor:
    sd, unet = ext.sd, ext.sd.unet
    with torch.no_grad():
        latents = sd.vae.encode(images.float() / 127.5 - 1).latent_dist.mean * sd.vae.config.scaling_factor
        noise = torch.randn(1, 4, 64, 64, generator=torch.Generator().manual_seed(42))
        noise = F.interpolate(noise, size=latents.shape[-2:], mode="bicubic", align_corners=False)
        abar = float(sd.scheduler.alphas_cumprod[T])
        x_t = abar**0.5 * latents + (1 - abar) ** 0.5 * noise
        # the INPUT of output block k (before its skip is concatenated) = the first C channels entering the next resnet
        taps, handles = {}, []
        for i in range(3):
            nxt = unet.up_blocks[i].resnets[1]
            c = unet.up_blocks[i].resnets[0].out_channels
            handles.append(nxt.register_forward_pre_hook(lambda _m, a, i=i, c=c: taps.__setitem__(i, a[0][:, :c].clone())))
        unet(x_t, torch.full((2,), T), encoder_hidden_states=sd.encode_prompt("").expand(2, -1, -1))
        for h in handles:
            h.remove()
        reduced = []
        for k in range(3):
            m = taps[k]  # (2, C, h, w)
            C = m.shape[1]
            X = m.permute(0, 2, 3, 1).reshape(-1, C)
            X = X - X.mean(0)
            evals, evecs = torch.linalg.eigh(X.T @ X)  # ascending
            P = evecs[:, torch.argsort(evals, descending=True)[: DIMS[k]]]
            reduced.append((X @ P).reshape(2, *m.shape[-2:], -1).permute(0, 3, 1, 2) * (1.0, 0.5, 2.0)[k])
        s5, s4, s3 = reduced
        s4 = torch.cat([s4, F.interpolate(s5, size=s4.shape[-2:], mode="bilinear")], 1)
        sd_part = F.normalize(torch.cat([s3, F.interpolate(s4, size=s3.shape[-2:], mode="bilinear")], 1), dim=1)
        h, w = s3.shape[-2:]
        x = F.interpolate(images.float(), size=(14 * h, 14 * w), mode="bilinear", antialias=True).clamp(0, 255)
        mean = torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1)
        std = torch.tensor([0.229, 0.224, 0.225]).view(1, 3, 1, 1)
        out = ext.dino.model(pixel_values=(x / 255 - mean) / std, output_hidden_states=True)
        tokens = out.hidden_states[-1][:, 1:]  # the last block's tokens BEFORE the final norm
        dino_part = F.normalize(tokens.transpose(1, 2).reshape(2, -1, h, w), dim=1)
    return torch.cat([sd_part, dino_part], 1)


def gram(f: torch.Tensor) -> torch.Tensor:
    x = f.permute(0, 2, 3, 1).reshape(-1, f.shape[1])
    return x @ x.T


def test_pair_features_equal_a_plain_reference(ext):
    imgs = torch.randint(0, 256, (2, 3, 64, 64), dtype=torch.uint8, generator=torch.Generator().manual_seed(2))
    got = ext.extract(imgs)
    ref = reference(ext, imgs)
    assert ext.stride == 16 and ext.multiple == 64 and got.shape == (2, 8 + 16, 4, 4) == ref.shape
    torch.testing.assert_close(got[:, 8:], ref[:, 8:], rtol=1e-4, atol=1e-5)  # DINOv2 half
    torch.testing.assert_close(gram(got[:, :8]), gram(ref[:, :8]), rtol=1e-3, atol=1e-4)  # SD half, sign-free
    assert torch.allclose(got[:, :8].norm(dim=1), torch.ones(2, 4, 4), atol=1e-5)


def test_the_pca_is_joint_unless_fitted_once(ext):
    imgs = torch.randint(0, 256, (2, 3, 64, 64), dtype=torch.uint8, generator=torch.Generator().manual_seed(3))
    pair = ext.extract(imgs)
    alone = ext.extract(imgs[:1])  # fitted on one image: a different projection
    assert not torch.allclose(gram(alone[:, :8]), gram(pair[:1, :8]), atol=1e-3)
    ext.fit_pca(imgs)  # the video mode: one projection kept for every later call
    try:
        kept = ext.extract(imgs[1:])
        torch.testing.assert_close(kept, pair[1:], rtol=1e-4, atol=1e-5)
    finally:
        ext.clear_pca()


def test_pair_matcher_gives_the_pair_to_the_joint_backbone(ext):
    import numpy as np

    from vidprop.config import load_preset
    from vidprop.tasks.match import PairMatcher

    m = PairMatcher(ext, load_preset("semantic").override(frames={"width": 64, "height": 64}))
    assert m.joint
    rng = np.random.default_rng(0)
    a = (rng.random((48, 80, 3)) * 255).astype(np.uint8)
    b = np.ascontiguousarray(a[:, ::-1])
    fs, ft = m.pair_features(a, b)
    both = ext.extract(torch.cat([m._model_input(a), m._model_input(b)]), prompt="")  # one call: one joint PCA
    torch.testing.assert_close(fs, both[0])
    torch.testing.assert_close(ft, both[1])
    with pytest.raises(ConfigError, match="features of a pair together"):
        m.features(a)


def test_layers_must_go_from_coarse_to_fine(tiny_sd_path, tmp_path):
    dino = save_random_vit(tmp_path / "d", "dinov2")
    cfg = ExtractorConfig(backbone="sd+dinov2", model=str(tiny_sd_path), dino_model=str(dino),
                          fusion_sd_blocks=(5, 3, 1), fusion_pca_dims=DIMS)
    with pytest.raises(ConfigError, match="coarsest layer to the finest"):
        build_extractor(cfg)
    with pytest.raises(ConfigError, match="same length"):
        ExtractorConfig(backbone="sd+dinov2", fusion_sd_blocks=(2, 5), fusion_pca_dims=(256, 256, 256))
