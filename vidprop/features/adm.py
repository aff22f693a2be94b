"""DIFT_adm: features of OpenAI's guided-diffusion U-Net (ADM), in pixel space.

The U-Net is written here with exactly the parameter names of the published
checkpoints (``time_embed.*``, ``input_blocks.N.*``, ``middle_block.*``,
``output_blocks.N.*``, ``out.*``), so ``256x256_diffusion_uncond.pt`` loads
with strict key matching.  Its architecture (Dhariwal & Nichol 2021):
residual blocks with scale-shift normalisation conditioned on the timestep,
residual blocks for down- and up-sampling, self-attention at the listed
downsampling factors (heads of ``num_head_channels`` channels, the
checkpoint's "legacy" head order: each head's q, k, v are contiguous).

Features (Tang et al. 2023): the image in [-1, 1] is noised to timestep
``t`` with the linear beta schedule (1e-4 to 0.02 over 1000 steps), one
noise draw per ensemble member; the output of ``output_blocks[up_ft_index]``
(each block receives the previous output concatenated with its skip, as
the model's forward does) is averaged over the ensemble.  The forward stops
after that block.  Noise is drawn per (seed, frame index), so a frame's
features do not depend on batching.

    >>> ext = AdmExtractor.from_pretrained("256x256_diffusion_uncond.pt", config=ExtractorConfig(backbone="adm"))
    >>> feats = ext.extract(frames_uint8)          # (B, 3, H, W) -> (B, 512, H/8, W/8) at up_ft_index 7
"""

from __future__ import annotations

import dataclasses
import logging
import math
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from vidprop.config import ExtractorConfig
from vidprop.errors import ConfigError, ModelLoadError
from vidprop.features.base import check_images
from vidprop.features.dift import frame_generator, resolve_device, resolve_dtype

__all__ = [
    "AdmConfig",
    "AdmUNet",
    "AdmExtractor",
    "ADM_256_UNCOND",
    "ADM_TINY",
    "linear_alphas_cumprod",
    "timestep_embedding",
    "load_adm_state_dict",
    "save_random_adm",
]

log = logging.getLogger(__name__)

ADM_URL = "https://openaipublic.blob.core.windows.net/diffusion/jul-2021/256x256_diffusion_uncond.pt"


# --------------------------------------------------------------------------- architecture
@dataclass(frozen=True)
class AdmConfig:
    """An ADM U-Net architecture (the fields of guided-diffusion's ``UNetModel`` that shape it).

    ``attention_ds``: downsampling factors with self-attention (the published
    flag ``--attention_resolutions 32,16,8`` at image size 256 means 8, 16, 32).
    """

    in_channels: int = 3
    model_channels: int = 256
    out_channels: int = 6  # learn_sigma: mean and variance
    num_res_blocks: int = 2
    attention_ds: tuple[int, ...] = (8, 16, 32)
    channel_mult: tuple[int, ...] = (1, 1, 2, 2, 4, 4)
    num_head_channels: int = 64
    num_groups: int = 32
    use_scale_shift_norm: bool = True
    resblock_updown: bool = True

    def __post_init__(self) -> None:
        for name in ("attention_ds", "channel_mult"):
            object.__setattr__(self, name, tuple(getattr(self, name)))

    @property
    def levels(self) -> int:
        return len(self.channel_mult)

    @property
    def num_output_blocks(self) -> int:
        return self.levels * (self.num_res_blocks + 1)

    def output_level(self, index: int) -> int:
        """Resolution level (0 = full) at which output block ``index`` runs."""
        return self.levels - 1 - index // (self.num_res_blocks + 1)

    def output_stride(self, index: int) -> int:
        """Pixels per feature cell of output block ``index`` (its last layer may upsample by 2)."""
        level = self.output_level(index)
        upsamples = level > 0 and index % (self.num_res_blocks + 1) == self.num_res_blocks
        return 2 ** (level - 1) if upsamples else 2**level

    def output_channels(self, index: int) -> int:
        return self.model_channels * self.channel_mult[self.output_level(index)]

    @property
    def multiple(self) -> int:
        """Image sides must be multiples of this (every downsampling halves them exactly)."""
        return 2 ** (self.levels - 1)


#: The published 256x256 unconditional model (``256x256_diffusion_uncond.pt``).
ADM_256_UNCOND = AdmConfig()
#: A tiny configuration of the same design, for tests and examples.
ADM_TINY = AdmConfig(model_channels=16, num_res_blocks=1, attention_ds=(2, 4), channel_mult=(1, 2, 2),
                     num_head_channels=8, num_groups=4)


class GroupNorm32(nn.GroupNorm):
    """GroupNorm computed in float32 whatever the activations' dtype (as the checkpoint was trained)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.group_norm(x.float(), self.num_groups, self.weight.float(), self.bias.float(), self.eps).to(x.dtype)


class _Resample(nn.Module):
    """Nearest 2x upsampling or 2x2 average pooling (no parameters)."""

    def __init__(self, up: bool) -> None:
        super().__init__()
        self.up = up

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.interpolate(x, scale_factor=2, mode="nearest") if self.up else F.avg_pool2d(x, 2)


class ResBlock(nn.Module):
    """Residual block conditioned on the timestep embedding (scale-shift norm), optionally resampling."""

    def __init__(self, cin: int, cout: int, emb: int, cfg: AdmConfig, *, up: bool = False, down: bool = False) -> None:
        super().__init__()
        self.scale_shift = cfg.use_scale_shift_norm
        self.in_layers = nn.Sequential(GroupNorm32(cfg.num_groups, cin), nn.SiLU(), nn.Conv2d(cin, cout, 3, padding=1))
        self.resample = _Resample(up) if (up or down) else None
        self.emb_layers = nn.Sequential(nn.SiLU(), nn.Linear(emb, 2 * cout if self.scale_shift else cout))
        self.out_layers = nn.Sequential(
            GroupNorm32(cfg.num_groups, cout), nn.SiLU(), nn.Dropout(0.0), nn.Conv2d(cout, cout, 3, padding=1)
        )
        self.skip_connection = nn.Identity() if cin == cout else nn.Conv2d(cin, cout, 1)

    def forward(self, x: torch.Tensor, emb: torch.Tensor) -> torch.Tensor:
        # x (N, cin, h, w), emb (N, E) -> (N, cout, h', w')
        if self.resample is not None:  # norm + SiLU, resample both paths, then the conv
            h = self.in_layers[1](self.in_layers[0](x))
            h, x = self.resample(h), self.resample(x)
            h = self.in_layers[2](h)
        else:
            h = self.in_layers(x)
        e = self.emb_layers(emb).to(h.dtype)[..., None, None]
        if self.scale_shift:
            scale, shift = e.chunk(2, dim=1)
            h = self.out_layers[0](h) * (1 + scale) + shift
            h = self.out_layers[3](self.out_layers[2](self.out_layers[1](h)))
        else:
            h = self.out_layers(h + e)
        return self.skip_connection(x) + h


class AttentionBlock(nn.Module):
    """Self-attention over all positions; heads of ``head_channels``, q/k/v contiguous per head."""

    def __init__(self, channels: int, cfg: AdmConfig) -> None:
        super().__init__()
        if channels % cfg.num_head_channels:
            raise ValueError(f"{channels} channels are not divisible by num_head_channels {cfg.num_head_channels}")
        self.heads = channels // cfg.num_head_channels
        self.norm = GroupNorm32(cfg.num_groups, channels)
        self.qkv = nn.Conv1d(channels, 3 * channels, 1)
        self.proj_out = nn.Conv1d(channels, channels, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, c, h, w = x.shape
        flat = x.reshape(b, c, h * w)  # (B, C, T)
        qkv = self.qkv(self.norm(flat))  # (B, 3C, T)
        ch = c // self.heads
        q, k, v = qkv.reshape(b, self.heads, 3 * ch, h * w).transpose(2, 3).split(ch, dim=3)  # (B, H, T, ch) each
        a = F.scaled_dot_product_attention(q, k, v)  # softmax(q k^T / sqrt(ch)) v
        out = self.proj_out(a.transpose(2, 3).reshape(b, c, h * w))
        return (flat + out).reshape(b, c, h, w)


class TimestepSequential(nn.Sequential):
    """A sequence of layers; residual blocks also receive the timestep embedding."""

    def forward(self, x: torch.Tensor, emb: torch.Tensor) -> torch.Tensor:  # type: ignore[override]
        for layer in self:
            x = layer(x, emb) if isinstance(layer, ResBlock) else layer(x)
        return x


def timestep_embedding(t: torch.Tensor, dim: int, max_period: float = 10000.0) -> torch.Tensor:
    """Sinusoidal embedding (N,) -> (N, dim): [cos(t f_i), sin(t f_i)], f_i = max_period^(-i / (dim/2))."""
    half = dim // 2
    freqs = torch.exp(-math.log(max_period) * torch.arange(half, dtype=torch.float32, device=t.device) / half)
    args = t.float()[:, None] * freqs[None]
    emb = torch.cat([torch.cos(args), torch.sin(args)], dim=-1)
    if dim % 2:
        emb = torch.cat([emb, torch.zeros_like(emb[:, :1])], dim=-1)
    return emb


class AdmUNet(nn.Module):
    """The guided-diffusion U-Net (no class conditioning), parameter names as its checkpoints."""

    def __init__(self, cfg: AdmConfig = ADM_256_UNCOND) -> None:
        super().__init__()
        self.cfg = cfg
        mc = cfg.model_channels
        emb = 4 * mc
        self.time_embed = nn.Sequential(nn.Linear(mc, emb), nn.SiLU(), nn.Linear(emb, emb))
        ch = mc * cfg.channel_mult[0]
        self.input_blocks = nn.ModuleList([TimestepSequential(nn.Conv2d(cfg.in_channels, ch, 3, padding=1))])
        skips = [ch]
        ds = 1
        for level, mult in enumerate(cfg.channel_mult):
            for _ in range(cfg.num_res_blocks):
                layers: list[nn.Module] = [ResBlock(ch, mc * mult, emb, cfg)]
                ch = mc * mult
                if ds in cfg.attention_ds:
                    layers.append(AttentionBlock(ch, cfg))
                self.input_blocks.append(TimestepSequential(*layers))
                skips.append(ch)
            if level != cfg.levels - 1:
                if not cfg.resblock_updown:
                    raise NotImplementedError("only resblock up/down-sampling (the published models) is implemented")
                self.input_blocks.append(TimestepSequential(ResBlock(ch, ch, emb, cfg, down=True)))
                skips.append(ch)
                ds *= 2
        self.middle_block = TimestepSequential(ResBlock(ch, ch, emb, cfg), AttentionBlock(ch, cfg), ResBlock(ch, ch, emb, cfg))
        self.output_blocks = nn.ModuleList()
        for level, mult in reversed(list(enumerate(cfg.channel_mult))):
            for i in range(cfg.num_res_blocks + 1):
                layers = [ResBlock(ch + skips.pop(), mc * mult, emb, cfg)]
                ch = mc * mult
                if ds in cfg.attention_ds:
                    layers.append(AttentionBlock(ch, cfg))
                if level and i == cfg.num_res_blocks:
                    layers.append(ResBlock(ch, ch, emb, cfg, up=True))
                    ds //= 2
                self.output_blocks.append(TimestepSequential(*layers))
        self.out = nn.Sequential(GroupNorm32(cfg.num_groups, ch), nn.SiLU(), nn.Conv2d(mc * cfg.channel_mult[0], cfg.out_channels, 3, padding=1))

    def embed(self, t: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
        """Timestep embedding (N,) -> (N, 4 * model_channels), computed in float32."""
        lin0, lin2 = self.time_embed[0], self.time_embed[2]
        e = timestep_embedding(t, self.cfg.model_channels)
        e = F.linear(e, lin0.weight.float(), lin0.bias.float())
        e = F.linear(F.silu(e), lin2.weight.float(), lin2.bias.float())
        return e.to(dtype)

    def features(self, x: torch.Tensor, t: torch.Tensor, up_ft_index: int) -> torch.Tensor:
        """x_t (N, C, H, W), t (N,) -> output of ``output_blocks[up_ft_index]``; later blocks are not run."""
        if not 0 <= up_ft_index < len(self.output_blocks):
            raise ConfigError(f"up_ft_index must be in [0, {len(self.output_blocks) - 1}] for ADM, got {up_ft_index}")
        emb = self.embed(t, x.dtype)
        hs = []
        h = x
        for block in self.input_blocks:
            h = block(h, emb)
            hs.append(h)
        h = self.middle_block(h, emb)
        for block in self.output_blocks[: up_ft_index + 1]:
            h = block(torch.cat([h, hs.pop()], dim=1), emb)
        return h

    def forward(self, x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        """The full model: x_t (N, C, H, W) -> (N, out_channels, H, W) (noise and variance prediction)."""
        h = self.features(x, t, len(self.output_blocks) - 1)
        return self.out(h)


# --------------------------------------------------------------------------- loading
def linear_alphas_cumprod(steps: int = 1000, beta_start: float = 1e-4, beta_end: float = 0.02) -> torch.Tensor:
    """abar_t = prod_{s <= t} (1 - beta_s) of the linear schedule, float64 (steps,)."""
    scale = 1000 / steps
    betas = np.linspace(scale * beta_start, scale * beta_end, steps, dtype=np.float64)
    return torch.from_numpy(np.cumprod(1.0 - betas))


def _read_checkpoint(weights: str) -> tuple[dict[str, torch.Tensor], AdmConfig]:
    """A published ADM state dict (-> the 256x256 architecture), or vidprop's {"adm_config", "state_dict"} file."""
    src = str(weights)
    if src.startswith(("http://", "https://")):
        from torch.hub import download_url_to_file, get_dir

        folder = Path(get_dir()) / "checkpoints"
        folder.mkdir(parents=True, exist_ok=True)
        path = folder / Path(src.split("?")[0]).name
        if not path.exists():
            log.info("downloading %s to %s (asked for by the URL given)", src, path)
            try:
                download_url_to_file(src, str(path), progress=False)
            except Exception as exc:  # noqa: BLE001 - network errors of many kinds
                raise ModelLoadError(f"could not download the ADM checkpoint {src}: {exc}") from exc
    else:
        path = Path(src).expanduser()
    if not path.is_file():
        raise ModelLoadError(
            f"ADM checkpoint {src} not found; download {ADM_URL} (OpenAI's guided-diffusion, about 2.1 GB) "
            "and pass its path with --weights"
        )
    try:
        data = torch.load(path, map_location="cpu", weights_only=True, mmap=True)
    except Exception as exc:  # noqa: BLE001 - pickle/zip errors of many kinds
        raise ModelLoadError(f"{path}: not a readable PyTorch checkpoint ({type(exc).__name__}: {exc})") from None
    if not isinstance(data, dict):
        raise ModelLoadError(f"{path}: expected a state dict, got {type(data).__name__}")
    if "adm_config" in data and "state_dict" in data:
        cfg = data["adm_config"]
        return data["state_dict"], AdmConfig(**{k: (tuple(v) if isinstance(v, list) else v) for k, v in cfg.items()})
    return data, ADM_256_UNCOND


def load_adm_state_dict(model: AdmUNet, state: dict[str, torch.Tensor], source: str) -> None:
    """Strict loading with an error naming what is missing or unexpected."""
    own = model.state_dict()
    missing = sorted(set(own) - set(state))
    unexpected = sorted(set(state) - set(own))
    wrong = sorted(k for k in set(own) & set(state) if tuple(own[k].shape) != tuple(state[k].shape))
    if missing or unexpected or wrong:
        parts = []
        for label, keys in (("missing", missing), ("unexpected", unexpected), ("with other shapes", wrong)):
            if keys:
                parts.append(f"{len(keys)} {label} (e.g. {', '.join(keys[:3])})")
        raise ModelLoadError(
            f"{source}: not a {type(model).__name__} checkpoint of this architecture: keys " + "; ".join(parts)
            + "; the 256x256 unconditional model (256x256_diffusion_uncond.pt) is expected"
        )
    model.load_state_dict(state, strict=True, assign=True)


def save_random_adm(path: str | Path, cfg: AdmConfig = ADM_TINY, seed: int = 0) -> Path:
    """Write a randomly initialised ADM (vidprop's checkpoint format, with its architecture) to ``path``."""
    torch.manual_seed(seed)
    model = AdmUNet(cfg)
    with torch.no_grad():  # the published init zeroes some convolutions; random weights exercise every path
        for p in model.parameters():
            if p.ndim > 1 and float(p.abs().max()) == 0:
                p.normal_(0, 0.02)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save({"adm_config": dataclasses.asdict(cfg), "state_dict": model.state_dict()}, path)
    return path


# --------------------------------------------------------------------------- extractor
class AdmExtractor:
    """ADM U-Net features (DIFT_adm) for batches of frames.

    Args:
        unet: an :class:`AdmUNet` with loaded weights.
        config: extraction settings (t, up_ft_index, ensemble, seed, batch_size, dtype, device).
    """

    model_revision: str | None = None

    def __init__(self, unet: AdmUNet, *, config: ExtractorConfig | None = None,
                 device: str | torch.device | None = None, dtype: str | torch.dtype | None = None) -> None:
        self.config = config or ExtractorConfig(backbone="adm", t=51, up_ft_index=7, ensemble=4)
        self.device = resolve_device(device if device is not None else self.config.device)
        self.dtype = resolve_dtype(dtype if dtype is not None else self.config.dtype, self.device)
        self.unet = unet.to(self.device, self.dtype).eval().requires_grad_(False)
        n = self.unet.cfg.num_output_blocks
        if not 0 <= self.config.up_ft_index < n:
            raise ConfigError(f"up_ft_index must be in [0, {n - 1}] for ADM, got {self.config.up_ft_index}")
        self._alphas_cumprod = linear_alphas_cumprod()

    @classmethod
    def from_pretrained(cls, weights: str | os.PathLike | None = None, *, config: ExtractorConfig | None = None,
                        device: str | torch.device | None = None, dtype: str | torch.dtype | None = None) -> "AdmExtractor":
        """Load a checkpoint file (default: ``config.weights``) with strict key matching; nothing is downloaded
        unless ``weights`` is an http(s) URL."""
        config = config or ExtractorConfig(backbone="adm", t=51, up_ft_index=7, ensemble=4)
        src = str(weights) if weights is not None else (config.weights or config.model)
        if not src:
            raise ModelLoadError(f"the ADM backbone needs its checkpoint: --weights /path/to/256x256_diffusion_uncond.pt "
                                 f"(download it yourself from {ADM_URL})")
        state, arch = _read_checkpoint(src)
        with torch.device("meta"):
            unet = AdmUNet(arch)
        unet = unet.to_empty(device="cpu")
        load_adm_state_dict(unet, state, src)
        log.info("loaded ADM from %s (%d parameters)", src, sum(p.numel() for p in unet.parameters()))
        return cls(unet, config=config, device=device, dtype=dtype)

    # ------------------------------------------------------------------ properties
    def stride_for(self, up_ft_index: int) -> int:
        return self.unet.cfg.output_stride(up_ft_index)

    def channels_for(self, up_ft_index: int) -> int:
        return self.unet.cfg.output_channels(up_ft_index)

    @property
    def stride(self) -> int:
        return self.stride_for(self.config.up_ft_index)

    @property
    def channels(self) -> int:
        return self.channels_for(self.config.up_ft_index)

    @property
    def multiple(self) -> int:
        return self.unet.cfg.multiple

    # ------------------------------------------------------------------ extraction
    def _noise(self, indices: Sequence[int], shape: tuple[int, ...], ensemble: int) -> torch.Tensor:
        """Per-frame draws, (B, E, 3, H, W) float32, seeded per (seed, frame index)."""
        gen_device = self.device if self.device.type == "cuda" else torch.device("cpu")
        out = []
        for idx in indices:
            g = frame_generator(self.config.seed, idx, gen_device)
            out.append(torch.randn((ensemble, *shape), generator=g, device=gen_device, dtype=torch.float32))
        return torch.stack(out).to(self.device)

    @torch.inference_mode()
    def extract(self, images: torch.Tensor, *, indices: Sequence[int] | None = None, prompt: str | None = None,
                t: int | None = None, up_ft_index: int | None = None, ensemble: int | None = None) -> torch.Tensor:
        """images (B, 3, H, W) uint8 RGB -> features (B, C, H/stride, W/stride), ensemble-averaged.

        ``prompt`` is accepted and ignored (ADM is unconditional).  Frames go
        through the U-Net ``config.batch_size`` at a time, each with its
        ``ensemble`` noise draws in the same batch; the mean is taken in float32.
        """
        cfg = self.config
        t = cfg.t if t is None else int(t)
        up = cfg.up_ft_index if up_ft_index is None else int(up_ft_index)
        E = cfg.ensemble if ensemble is None else int(ensemble)
        check_images(images, multiple=self.multiple)
        B = images.shape[0]
        indices = list(range(B)) if indices is None else list(indices)
        if len(indices) != B:
            raise ValueError(f"got {len(indices)} indices for {B} images")
        bs = cfg.batch_size
        if B > bs:
            return torch.cat([self.extract(images[i : i + bs], indices=indices[i : i + bs], t=t, up_ft_index=up, ensemble=E)
                              for i in range(0, B, bs)])
        x0 = images.to(self.device).float() / 127.5 - 1.0  # (B, 3, H, W) in [-1, 1]
        eps = self._noise(indices, tuple(x0.shape[1:]), E)  # (B, E, 3, H, W)
        abar = self._alphas_cumprod[t]
        x_t = float(abar.sqrt()) * x0[:, None] + float((1 - abar).sqrt()) * eps  # (B, E, 3, H, W)
        ts = torch.full((B * E,), t, device=self.device, dtype=torch.long)
        feats = self.unet.features(x_t.flatten(0, 1).to(self.dtype), ts, up)  # (B*E, C, h, w)
        return feats.float().unflatten(0, (B, E)).mean(1).to(self.dtype)
