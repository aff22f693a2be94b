"""CleanDIFT: a U-Net state dict replacing SD's (strict), features of the clean latents in one pass."""

from __future__ import annotations

import pytest
import torch
from safetensors.torch import save_file

from vidprop.config import ExtractorConfig
from vidprop.errors import ModelLoadError
from vidprop.features.dift import frame_generator
from vidprop.features.registry import build_extractor
from vidprop.features.tiny import build_random_sd


@pytest.fixture(scope="module")
def unet_file(tmp_path_factory):
    """Another tiny U-Net's weights (seed 1) standing in for the fine-tuned CleanDIFT U-Net."""
    state = {k: v.contiguous() for k, v in build_random_sd("tiny", seed=1, with_text_encoder=False)["unet"].state_dict().items()}
    path = tmp_path_factory.mktemp("cleandift") / "cleandift_unet.safetensors"
    save_file(state, str(path))
    return path, state


def test_weights_replace_the_unet_and_features_use_clean_latents(tiny_sd_path, unet_file):
    path, state = unet_file
    cfg = ExtractorConfig(backbone="cleandift", model=str(tiny_sd_path), weights=str(path), t=261, up_ft_index=1,
                          ensemble=1, seed=3)
    ext = build_extractor(cfg)
    assert ext.config.clean
    own = ext.unet.state_dict()
    assert set(own) == set(state) and all(torch.equal(own[k], state[k]) for k in state)

    imgs = torch.randint(0, 256, (2, 3, 64, 96), dtype=torch.uint8, generator=torch.Generator().manual_seed(0))
    got = ext.extract(imgs, indices=[7, 8])
    out: dict = {}
    hook = ext.unet.up_blocks[1].register_forward_hook(lambda _m, _i, o: out.__setitem__("f", o))
    with torch.no_grad():
        for b, idx in enumerate((7, 8)):
            dist = ext.vae.encode(imgs[b : b + 1].float() / 127.5 - 1).latent_dist
            n = torch.randn((1, 4, 8, 12), generator=frame_generator(3, idx, torch.device("cpu")))  # the latent sample's draw
            z = (dist.mean + dist.std * n) * ext.vae.config.scaling_factor  # no diffusion noise added
            ext.unet(z, torch.tensor([261]), encoder_hidden_states=ext.encode_prompt(""))
            torch.testing.assert_close(got[b], out["f"][0], rtol=1e-4, atol=1e-5)
    hook.remove()


def test_full_checkpoint_gives_its_learned_timestep_and_loading_is_strict(tiny_sd_path, unet_file, tmp_path):
    _, state = unet_file
    full = {f"unet_feature_extractor_cleandift.{k}": v for k, v in state.items()}
    full.update({"unet_feature_extractor_base.conv_in.weight": state["conv_in.weight"].clone(), "timestep": torch.tensor(263.6)})
    save_file(full, str(tmp_path / "full.safetensors"))
    ext = build_extractor(ExtractorConfig(backbone="cleandift", model=str(tiny_sd_path), weights=str(tmp_path / "full.safetensors"),
                                          t=261, ensemble=1))
    assert ext.config.t == 264 and torch.equal(ext.unet.state_dict()["conv_in.weight"], state["conv_in.weight"])

    short = dict(state)
    del short["conv_out.bias"]
    save_file(short, str(tmp_path / "short.safetensors"))
    with pytest.raises(ModelLoadError, match=r"1 missing \(e.g. conv_out.bias\)"):
        build_extractor(ExtractorConfig(backbone="cleandift", model=str(tiny_sd_path), weights=str(tmp_path / "short.safetensors")))
    with pytest.raises(ModelLoadError, match="not found"):
        build_extractor(ExtractorConfig(backbone="cleandift", model=str(tiny_sd_path), weights=str(tmp_path / "nope.safetensors")))
