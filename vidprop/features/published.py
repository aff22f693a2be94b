"""The published DIFT featurizer's way of computing features, as a baseline.

A plain re-implementation of ``SDFeaturizer.forward`` from the DIFT code
(github.com/Tsingularity/dift, ``src/models/dift_sd.py``) on current
diffusers, for the ``extract`` benchmark and the equivalence tests.  It does
the same work the published code does for one frame:

* the image is repeated ``ensemble_size`` times and EVERY copy goes through
  the VAE encoder: ``vae.encode(img.repeat(E, 1, 1, 1)).latent_dist.sample()``;
* ``scheduler.add_noise`` with fresh noise for every copy;
* one U-Net call on the ``E`` noisy latents; the published code uses a
  copied U-Net forward that breaks out of the up-block loop after
  ``max(up_ft_indices)``.  Here the same thing is done with a forward hook on
  ``up_blocks[up_ft_index]`` (``full_forward=False``, the default); with
  ``full_forward=True`` the whole U-Net forward runs to ``conv_out`` and the
  block's output is only captured (what a pipeline that does not stop pays);
* float32 weights and activations, with attention slicing
  (``pipe.enable_attention_slicing()`` -> ``unet.set_attention_slice("auto")``);
* one frame per call, ensemble mean of the block outputs.

The published code draws its noise with no generator; here a generator may
be passed, or the latent-sample noise ``n`` (``z = mean + std * n``) and the
diffusion noise ``eps`` may be given explicitly so tests can compare the
computation with :class:`vidprop.features.dift.DiftExtractor` draw for draw.
"""

from __future__ import annotations

from typing import Any

import torch

from vidprop.features.hooks import StopForward, run_until_stopped

__all__ = ["PublishedDift", "enable_published_attention_slicing"]


def enable_published_attention_slicing(unet: Any) -> None:
    """What ``StableDiffusionPipeline.enable_attention_slicing()`` does to the U-Net."""
    if hasattr(unet, "set_attention_slice"):
        unet.set_attention_slice("auto")
        return
    from diffusers.models.attention_processor import SlicedAttnProcessor  # pragma: no cover - older/newer diffusers

    procs = {}
    for name, module in unet.named_modules():  # pragma: no cover
        if hasattr(module, "set_processor") and hasattr(module, "heads"):
            procs[name] = SlicedAttnProcessor(max(1, module.heads // 2))
    for name, proc in procs.items():  # pragma: no cover
        unet.get_submodule(name).set_processor(proc)


def _to_fp32(module: Any, device: torch.device) -> Any:
    param = next(module.parameters(), None)
    if param is not None and param.dtype != torch.float32:
        module = module.to(dtype=torch.float32)
    return module.to(device)


class PublishedDift:
    """DIFT features the published way (see module docstring).

    Args:
        unet, vae, scheduler: diffusers Stable Diffusion parts; moved to
            ``device`` in float32 (the published code's precision).
        prompt_embeds: (1, L, D) prompt embedding.
        attention_slicing: slice the U-Net attention like the published code.
        full_forward: run the U-Net to its end instead of stopping after the
            hooked up-block.
    """

    def __init__(
        self,
        unet: Any,
        vae: Any,
        scheduler: Any,
        *,
        prompt_embeds: torch.Tensor,
        device: str | torch.device = "cpu",
        attention_slicing: bool = True,
        full_forward: bool = False,
    ) -> None:
        self.device = torch.device(device)
        self.unet = _to_fp32(unet, self.device).eval().requires_grad_(False)
        self.vae = _to_fp32(vae, self.device).eval().requires_grad_(False)
        self.scheduler = scheduler
        self.prompt_embeds = prompt_embeds.to(self.device, torch.float32)
        self.full_forward = full_forward
        if attention_slicing:
            enable_published_attention_slicing(self.unet)

    @torch.no_grad()
    def __call__(
        self,
        image: torch.Tensor,
        *,
        t: int = 261,
        up_ft_index: int = 1,
        ensemble_size: int = 8,
        generator: torch.Generator | None = None,
        sample_noise: torch.Tensor | None = None,
        noise: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """image (1, 3, H, W) uint8 RGB (or float in [-1, 1]) -> features (1, C, h, w).

        ``sample_noise`` and ``noise``, each (E, 4, H/8, W/8), replace the
        random draws of the latent sample and of ``add_noise``.
        """
        if image.ndim != 4 or image.shape[0] != 1:
            raise ValueError(f"one frame per call, (1, 3, H, W); got {tuple(image.shape)}")
        img = image.to(self.device)
        img = img.float() / 127.5 - 1.0 if img.dtype == torch.uint8 else img.float()
        E = int(ensemble_size)
        img = img.repeat(E, 1, 1, 1)  # ensem, c, h, w: every copy is encoded
        dist = self.vae.encode(img).latent_dist
        if sample_noise is None:
            z = dist.sample(generator=generator)
        else:
            z = dist.mean + dist.std * sample_noise.to(self.device, torch.float32)
        latents = z * self.vae.config.scaling_factor
        ts = torch.tensor(int(t), dtype=torch.long, device=self.device)
        if noise is None:
            noise = torch.randn(latents.shape, generator=generator, device=latents.device, dtype=latents.dtype)
        latents_noisy = self.scheduler.add_noise(latents, noise.to(latents), ts)

        captured: dict[str, torch.Tensor] = {}

        def hook(_module: Any, _inp: Any, output: Any) -> None:
            captured["ft"] = output[0] if isinstance(output, tuple) else output
            if not self.full_forward:
                raise StopForward

        handle = self.unet.up_blocks[up_ft_index].register_forward_hook(hook)
        try:
            run_until_stopped(lambda: self.unet(latents_noisy, ts, encoder_hidden_states=self.prompt_embeds.repeat(E, 1, 1)))
        finally:
            handle.remove()
        return captured["ft"].mean(0, keepdim=True)  # 1, c, h, w
