"""Randomly initialised Stable Diffusion parts, saved in diffusers format.

Used by the tests, the examples and the benchmarks, the way diffusers' own
tests use tiny random models: the folder written here loads through exactly
the same ``from_pretrained`` path as a real checkpoint, and no download is
needed.  ``architecture="sd21"`` builds the real Stable Diffusion 2.1 U-Net
and VAE shapes (random weights: speed does not depend on weight values).
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Literal

import torch

__all__ = ["build_random_sd", "sd15_unet_config", "sd21_unet_config", "sd21_vae_config", "save_random_sd"]

log = logging.getLogger(__name__)


def sd21_unet_config() -> dict:
    """The U-Net config of stable-diffusion-2-1 (768-v)."""
    return dict(
        sample_size=96,
        in_channels=4,
        out_channels=4,
        layers_per_block=2,
        block_out_channels=(320, 640, 1280, 1280),
        down_block_types=("CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "DownBlock2D"),
        up_block_types=("UpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D"),
        cross_attention_dim=1024,
        attention_head_dim=(5, 10, 20, 20),
        use_linear_projection=True,
        upcast_attention=True,
        norm_num_groups=32,
    )


def sd15_unet_config() -> dict:
    """The U-Net config of stable-diffusion-v1-5."""
    return dict(
        sample_size=64,
        in_channels=4,
        out_channels=4,
        layers_per_block=2,
        block_out_channels=(320, 640, 1280, 1280),
        down_block_types=("CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "DownBlock2D"),
        up_block_types=("UpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D"),
        cross_attention_dim=768,
        attention_head_dim=8,
        norm_num_groups=32,
    )


def sd21_vae_config() -> dict:
    """The VAE config of stable-diffusion-2-1."""
    return dict(
        in_channels=3,
        out_channels=3,
        down_block_types=("DownEncoderBlock2D",) * 4,
        up_block_types=("UpDecoderBlock2D",) * 4,
        block_out_channels=(128, 256, 512, 512),
        layers_per_block=2,
        latent_channels=4,
        norm_num_groups=32,
        sample_size=768,
        scaling_factor=0.18215,
    )


def _tiny_unet_config(cross_dim: int) -> dict:
    # Four levels like SD, so up_ft_index 0..3 have SD's strides (32, 16, 8, 8).
    return dict(
        sample_size=16,
        in_channels=4,
        out_channels=4,
        layers_per_block=1,
        block_out_channels=(8, 16, 16, 16),
        down_block_types=("CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "DownBlock2D"),
        up_block_types=("UpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D"),
        cross_attention_dim=cross_dim,
        attention_head_dim=2,
        norm_num_groups=4,
        use_linear_projection=True,
    )


def _tiny_vae_config() -> dict:
    # Four levels: downsampling factor 8 like SD's VAE.
    return dict(
        in_channels=3,
        out_channels=3,
        down_block_types=("DownEncoderBlock2D",) * 4,
        up_block_types=("UpDecoderBlock2D",) * 4,
        block_out_channels=(4, 8, 8, 8),
        layers_per_block=1,
        latent_channels=4,
        norm_num_groups=4,
        sample_size=64,
        scaling_factor=0.18215,
    )


def _write_tiny_tokenizer(folder: Path) -> None:
    """A CLIP BPE tokenizer over single characters (no merges), written to ``folder``."""
    from transformers import CLIPTokenizer

    folder.mkdir(parents=True, exist_ok=True)
    chars = [chr(c) for c in range(ord("a"), ord("z") + 1)] + list("0123456789.,!?'-")
    vocab: dict[str, int] = {}
    for c in chars:
        vocab[c] = len(vocab)
    for c in chars:
        vocab[c + "</w>"] = len(vocab)
    vocab["<|startoftext|>"] = len(vocab)
    vocab["<|endoftext|>"] = len(vocab)
    (folder / "vocab.json").write_text(json.dumps(vocab))
    (folder / "merges.txt").write_text("#version: 0.2\n")
    tok = CLIPTokenizer(str(folder / "vocab.json"), str(folder / "merges.txt"), model_max_length=77)
    tok.save_pretrained(str(folder))


def build_random_sd(
    architecture: Literal["tiny", "sd21", "sd15"] = "tiny", seed: int = 0, with_text_encoder: bool = True
) -> dict:
    """Build randomly initialised SD parts: ``unet``, ``vae``, ``scheduler`` (+ ``text_encoder``)."""
    from diffusers import AutoencoderKL, DDIMScheduler, UNet2DConditionModel

    torch.manual_seed(seed)
    if architecture == "tiny":
        cross_dim = 16
        unet = UNet2DConditionModel(**_tiny_unet_config(cross_dim))
        vae = AutoencoderKL(**_tiny_vae_config())
    elif architecture == "sd21":
        cross_dim = 1024
        unet = UNet2DConditionModel(**sd21_unet_config())
        vae = AutoencoderKL(**sd21_vae_config())
    elif architecture == "sd15":  # the VAE is the same as SD 2.1's (its sample size aside)
        cross_dim = 768
        unet = UNet2DConditionModel(**sd15_unet_config())
        vae = AutoencoderKL(**{**sd21_vae_config(), "sample_size": 512})
    else:
        raise ValueError(f"unknown architecture {architecture!r}")
    scheduler = DDIMScheduler(
        beta_start=0.00085,
        beta_end=0.012,
        beta_schedule="scaled_linear",
        num_train_timesteps=1000,
        clip_sample=False,
        set_alpha_to_one=False,
        steps_offset=1,
        prediction_type="v_prediction" if architecture == "sd21" else "epsilon",
    )
    parts = {"unet": unet.eval(), "vae": vae.eval(), "scheduler": scheduler}
    if with_text_encoder:
        from transformers import CLIPTextConfig, CLIPTextModel

        n_vocab = 2 * 42 + 2
        text_cfg = CLIPTextConfig(
            vocab_size=n_vocab,
            hidden_size=cross_dim if architecture == "tiny" else 64,
            intermediate_size=32,
            num_hidden_layers=1,
            num_attention_heads=2,
            max_position_embeddings=77,
            bos_token_id=n_vocab - 2,
            eos_token_id=n_vocab - 1,
            pad_token_id=n_vocab - 1,
            projection_dim=cross_dim,
        )
        parts["text_encoder"] = CLIPTextModel(text_cfg).eval()
    return parts


def save_random_sd(folder: str | Path, architecture: Literal["tiny", "sd21"] = "tiny", seed: int = 0) -> Path:
    """Write a random SD in diffusers format to ``folder`` and return it.

    The folder has ``model_index.json`` and ``unet/ vae/ scheduler/
    text_encoder/ tokenizer/`` like a Hub checkpoint.  For ``sd21`` only the
    U-Net, VAE and scheduler are written (no text encoder: the empty prompt
    of the sd21 bench is a zero embedding).
    """
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    parts = build_random_sd(architecture, seed=seed, with_text_encoder=architecture == "tiny")
    index = {"_class_name": "StableDiffusionPipeline", "_diffusers_version": "0.27.0"}
    for name in ("unet", "vae"):
        parts[name].save_pretrained(folder / name)
        index[name] = ["diffusers", type(parts[name]).__name__]
    parts["scheduler"].save_pretrained(folder / "scheduler")
    index["scheduler"] = ["diffusers", "DDIMScheduler"]
    if "text_encoder" in parts:
        parts["text_encoder"].save_pretrained(folder / "text_encoder")
        _write_tiny_tokenizer(folder / "tokenizer")
        index["text_encoder"] = ["transformers", "CLIPTextModel"]
        index["tokenizer"] = ["transformers", "CLIPTokenizer"]
    (folder / "model_index.json").write_text(json.dumps(index, indent=2))
    log.debug("wrote a random %s Stable Diffusion to %s", architecture, folder)
    return folder
