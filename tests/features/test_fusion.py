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


def odise_slide_boxes(h_img, w_img, window):
    """ODISE feature_extractor.py slide_forward (slide_training: crop = min(window, image's short side)), plainly."""
    short_side = min(window, min(h_img, w_img))
    h_crop = w_crop = h_stride = w_stride = short_side
    h_grids = max(h_img - h_crop + h_stride - 1, 0) // h_stride + 1
    w_grids = max(w_img - w_crop + w_stride - 1, 0) // w_stride + 1
    out = []
    for h_idx in range(h_grids):
        for w_idx in range(w_grids):
            y1, x1 = h_idx * h_stride, w_idx * w_stride
            y2, x2 = min(y1 + h_crop, h_img), min(x1 + w_crop, w_img)
            out.append((max(y2 - h_crop, 0), y2, max(x2 - w_crop, 0), x2))
    return out


@pytest.mark.parametrize("h,w,window", [(960, 960, 512), (512, 960, 512), (960, 1280, 512), (448, 640, 512),
                                        (128, 192, 128), (64, 64, 512), (1024, 1024, 512)])
def test_crop_layout_is_odises(h, w, window):
    from vidprop.features.fusion import crop_boxes

    assert crop_boxes(h, w, window) == odise_slide_boxes(h, w, window)
    if (h, w, window) == (960, 960, 512):  # 2 x 2 crops at offsets 0 and 448
        assert crop_boxes(h, w, window) == [(0, 512, 0, 512), (0, 512, 448, 960), (448, 960, 0, 512), (448, 960, 448, 960)]
    assert crop_boxes(h, w, 0) == [(0, h, 0, w)]


def test_sliding_sd_layers_are_the_crops_averaged_where_they_overlap(tiny_sd_path, tmp_path):
    """128 x 192 image, window 128: crops at x 0 and 64 overlap on x 64..128; each layer's crop features are placed
    at offset // stride and averaged by the number of crops covering each cell (ODISE's count_mats)."""
    dino = save_random_vit(tmp_path / "dinov2", "dinov2", seed=4)
    cfg = ExtractorConfig(backbone="sd+dinov2", model=str(tiny_sd_path), dino_model=str(dino), t=T, final_norm=False,
                          fusion_sd_blocks=BLOCKS, fusion_pca_dims=DIMS, fusion_sd_window=128, batch_size=3)
    ext = build_extractor(cfg)
    imgs = torch.randint(0, 256, (2, 3, 128, 192), dtype=torch.uint8, generator=torch.Generator().manual_seed(5))
    got = ext.sd_feature_maps(imgs)
    strides = (64, 32, 16)
    for k, s in enumerate(strides):
        acc = torch.zeros(2, got[k].shape[1], 128 // s, 192 // s)
        cnt = torch.zeros(1, 1, 128 // s, 192 // s)
        for y1, y2, x1, x2 in odise_slide_boxes(128, 192, 128):
            crop_feats = ext.sd_layers(imgs[:, :, y1:y2, x1:x2])[k]  # each crop on its own
            acc[:, :, y1 // s : y2 // s, x1 // s : x2 // s] += crop_feats
            cnt[..., y1 // s : y2 // s, x1 // s : x2 // s] += 1
        assert got[k].shape == acc.shape
        torch.testing.assert_close(got[k], acc / cnt, rtol=1e-4, atol=1e-5)
        assert cnt.max() == 2 and cnt.min() == 1
    # one pass over the whole image (window 0) gives other features: the sliding path is not a no-op here
    whole = ext.sd_layers(imgs)[2]
    assert whole.shape == got[2].shape and not torch.allclose(whole, got[2], atol=1e-3)
    assert ext.extract(imgs).shape == (2, 8 + 16, 8, 12)


def test_window_must_be_a_multiple_of_64():
    with pytest.raises(ConfigError, match="fusion_sd_window must be 0 or a positive multiple of 64"):
        ExtractorConfig(backbone="sd+dinov2", fusion_sd_window=500)


def test_a_512_crop_gets_odises_shared_noise_unresized():
    from vidprop.features.fusion import shared_noise

    ref = torch.randn(1, 4, 64, 64, generator=torch.Generator().manual_seed(42))  # ODISE ldm.py: seed 42, the latent size
    torch.testing.assert_close(shared_noise(42, (64, 64)), ref, rtol=0, atol=0)
    assert shared_noise(42, (120, 120)).shape == (1, 4, 120, 120)  # one pass over 960 (window 0): resized
