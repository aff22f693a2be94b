"""Optimised-prompt attention matching (Hedlin et al., NeurIPS 2023).

"Unsupervised Semantic Correspondence Using Stable Diffusion": a free text
embedding is optimised so that the U-Net's cross-attention to one token
peaks at the query point of the source image; the target image is then run
with that embedding and the attention maximum is the match.  Follows the
authors' code and their tuned defaults (docs/static-pairs.md):

* the "prompt" is a free (1, 77, d) tensor fed as the U-Net's encoder hidden
  states, d = ``unet.config.cross_attention_dim`` (no text encoder), N(0, 1) init;
* attention = softmax(QK^T / sqrt(d)) of the ``attn2`` layers under
  ``settings.layers`` (default: all of ``up_blocks[1]`` and the first of
  ``up_blocks[2]``), token ``settings.token`` (1).  Each layer's map is
  averaged over the SECOND HALF of its heads by default (heads 4-7 of 8: the
  authors' attention store keeps ``attn[h // 2:]``, a leftover of the
  classifier-free-guidance code it came from; ``heads="all"`` averages every
  head).  It is captured through diffusers' attention-processor interface
  (``unet.set_attn_processor``), so any current diffusers release works; the
  forward stops once the last of these layers has run (nothing after it
  affects the maps);
* optimisation: Adam (lr 0.0023755632), 129 steps x 5 rounds, one random
  93.17% crop per step (the point kept 15% of the crop side from its border),
  VAE mean latent noised to t=140 with uniform noise (their ``rand_like``;
  Gaussian optional); every layer's map is upsampled to ``image_size`` and the
  loss is ONE mean squared error over the stacked per-layer maps against a
  Gaussian bump (peak 1, sigma 27.98 px at 512) at the point, i.e. the mean
  over layers of each layer's MSE (:func:`attention_loss`);
* inference: per embedding 20 crops (4 at the corners, then crops around the
  running maximum); each crop's per-layer maps are upsampled straight to the
  crop's side and pasted back (:func:`crop_maps`), averaged by coverage,
  averaged over embeddings, softmax over pixels per layer, mean over layers,
  argmax.

Rounds are independent problems batched together (one Adam over a
(rounds, 77, d) tensor with the SUM of per-round losses is exactly
``rounds`` separate Adams); at inference the embeddings share batches too.
``settings.batch_size`` bounds the U-Net batch.  Randomness (initial
embeddings, crops, noise) comes from a ``torch.Generator`` seeded from
``(settings.seed, query index)``: the same seed gives the same match.

Coordinates: a query pixel ``(x, y)`` of a ``W x H`` image sits at
``(x * S / W, y * S / H)`` in the ``S x S`` model image (their normalised
keypoint times S); the match is the argmax pixel plus 0.5 (its centre), scaled
back by ``W / S``, ``H / S``.

The capture of the cross-attention maps is :mod:`vidprop.features.attention_capture`.

Cost with the defaults: 645 U-Net forward+backward passes and VAE encodes to
optimise one point, plus 100 forwards to infer -- minutes per point on a GPU.
"""

from __future__ import annotations

import logging
import math
import os
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from typing import Any, Iterator, Literal, Sequence

import numpy as np
import torch
import torch.nn.functional as F

from vidprop.errors import ConfigError, ModelLoadError
from vidprop.features.attention_capture import AttentionStore, CrossAttentionCapture, check_heads, resolve_layers
from vidprop.features.hooks import run_until_stopped
from vidprop.progress import progress_bar

__all__ = [
    "DEFAULT_ATTENTION_MODEL",
    "PAPER_LAYERS",
    "AttentionSettings",
    "AttentionMatcher",
    "AttentionMatch",
    "attention_loss",
    "crop_box",
    "crop_maps",
    "gaussian_bump",
]

log = logging.getLogger(__name__)

#: The authors used Stable Diffusion 1.4.
DEFAULT_ATTENTION_MODEL = "CompVis/stable-diffusion-v1-4"
#: Module prefixes whose ``attn2`` layers are captured: the three attentions of
#: ``up_blocks[1]`` (16x16 at 512) and the first of ``up_blocks[2]`` (32x32).
PAPER_LAYERS = ("up_blocks.1", "up_blocks.2.attentions.0")


@dataclass(frozen=True)
class AttentionSettings:
    """The paper's tuned settings (the defaults of the authors' evaluation script)."""

    #: Adam steps per round.
    steps: int = 129
    #: Independent optimisations (embeddings) per query point.
    rounds: int = 5
    #: Crops per embedding at inference (the first 4 at the corners).
    crops: int = 20
    lr: float = 0.0023755632
    #: Gaussian target width in pixels at image_size 512 (scaled with image_size).
    sigma: float = 27.97853316
    #: Timesteps (of the 50-step DDIM schedule 980, 960, ..., 0) while optimising / inferring.
    t_opt: int = 140
    t_inf: int = 40
    #: "uniform" (their rand_like) or "gaussian" (DDPM's) noise.
    noise: Literal["uniform", "gaussian"] = "uniform"
    #: Module prefixes: every ``attn2`` under each is one captured layer.
    layers: tuple[str, ...] = PAPER_LAYERS
    #: Token whose attention map is used.
    token: int = 1
    #: Tokens of the free prompt.
    num_tokens: int = 77
    #: Side of the square model image (their 512x512, aspect ratio not kept).
    image_size: int = 512
    #: Crop side as a fraction of the image side (their 93.16549%).
    crop_fraction: float = 0.9317
    #: The point stays at least this fraction of the crop side from the crop border.
    margin: float = 0.15
    #: Heads averaged per layer: "second_half" (heads h//2.., as the authors' code keeps them) or "all".
    heads: Literal["second_half", "all"] = "second_half"
    #: Most U-Net samples per call (rounds while optimising, embeddings x crops at inference).
    batch_size: int = 5
    seed: int = 0

    def __post_init__(self) -> None:
        for name in ("steps", "rounds", "crops", "num_tokens", "batch_size"):
            if getattr(self, name) < 1:
                raise ConfigError(f"attention.{name} must be >= 1, got {getattr(self, name)}")
        if self.image_size < 64 or self.image_size % 64:
            raise ConfigError(f"attention.image_size must be a positive multiple of 64, got {self.image_size}")
        if not 0 < self.crop_fraction <= 1:
            raise ConfigError(f"attention.crop_fraction must be in (0, 1], got {self.crop_fraction}")
        if not 0 <= self.margin < 0.5:
            raise ConfigError(f"attention.margin must be in [0, 0.5), got {self.margin}")
        check_heads(self.heads)
        if self.noise not in ("uniform", "gaussian"):
            raise ConfigError(f"attention.noise must be uniform or gaussian, got {self.noise!r}")
        if not 0 <= self.t_opt < 1000 or not 0 <= self.t_inf < 1000:
            raise ConfigError("attention.t_opt and attention.t_inf must be in [0, 1000)")
        if self.lr <= 0 or self.sigma <= 0:
            raise ConfigError("attention.lr and attention.sigma must be > 0")
        if not self.layers:
            raise ConfigError("attention.layers must name at least one module")
        if not 0 <= self.token < self.num_tokens:
            raise ConfigError(f"attention.token must be in [0, {self.num_tokens - 1}], got {self.token}")
        object.__setattr__(self, "layers", tuple(self.layers))

    @property
    def sigma_px(self) -> float:
        """Gaussian sigma in pixels of the ``image_size`` model image."""
        return self.sigma * self.image_size / 512.0

    @property
    def crop_side(self) -> int:
        return max(8, int(self.image_size * self.crop_fraction))

    def override(self, **values: Any) -> "AttentionSettings":
        """A copy with the non-None ``values`` replaced."""
        return replace(self, **{k: v for k, v in values.items() if v is not None})


def crop_box(point: float, size: int, crop: int, margin: float, generator: torch.Generator | None) -> int:
    """Start of a random ``crop``-long window of ``[0, size)`` that keeps ``point`` at least
    ``int(crop * margin)`` from both ends (their ``crop_image``).

    When no such window exists (a point near the border) the window is the one
    centred on the point, clamped to the image: for a corner, the corner crop.
    """
    m = int(crop * margin)
    p = int(point)
    lo = max(0, p - crop + m)
    hi = min(size - crop, p - m)
    if lo > hi:
        return int(min(max(round(point - crop / 2), 0), size - crop))
    if lo == hi or generator is None:
        return lo if generator is not None else (lo + hi) // 2
    return int(torch.randint(lo, hi + 1, (1,), generator=generator).item())


def gaussian_bump(centers: torch.Tensor, size: int, sigma: float) -> torch.Tensor:
    """(B, size, size) Gaussians of peak 1 at ``centers`` (B, 2) (x, y) in pixel units."""
    ax = torch.arange(size, dtype=torch.float32, device=centers.device)
    dx = (ax[None, None, :] - centers[:, 0, None, None]) ** 2
    dy = (ax[None, :, None] - centers[:, 1, None, None]) ** 2
    return torch.exp(-(dx + dy) / (2 * sigma**2))


def attention_loss(maps: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """The optimisation loss per sample: (B,) mean squared error of the stacked per-layer maps.

    ``maps`` (B, L, S, S): each layer's head-averaged map, upsampled to S;
    ``target`` (B, S, S): the Gaussian bump.  Every layer is compared with the
    target and the squared errors are averaged over layers and pixels -- the
    mean over layers of each layer's MSE (the authors' single ``MSELoss`` over
    the stacked maps).  This is NOT the MSE of the layer-averaged map: that one
    drops the spread of the layers around their mean, and its gradient points
    elsewhere.
    """
    if maps.ndim != 4 or target.ndim != 3 or maps.shape[0] != target.shape[0] or maps.shape[2:] != target.shape[1:]:
        raise ValueError(f"attention_loss: maps (B, L, S, S) and target (B, S, S) expected, got "
                         f"{tuple(maps.shape)} and {tuple(target.shape)}")
    return ((maps - target[:, None]) ** 2).mean(dim=(1, 2, 3))


def crop_maps(maps: Sequence[torch.Tensor], side: int) -> torch.Tensor:
    """Per-layer maps of one batch of crops, each (B, h_l, w_l), upsampled bilinearly
    (align_corners=False) straight to the crop's ``side`` in image pixels: (B, L, side, side)."""
    return torch.stack(
        [F.interpolate(m[:, None].float(), size=(side, side), mode="bilinear", align_corners=False)[:, 0]
         for m in maps], dim=1)


@dataclass
class AttentionMatch:
    """Matches of the attention method: target points (N, 2), scores, and the final maps (S x S) if asked."""

    target_points: np.ndarray
    scores: np.ndarray
    maps: list[np.ndarray] | None = None
    losses: list[np.ndarray] = field(default_factory=list)


class AttentionMatcher:
    """Hedlin et al.'s matcher over Stable Diffusion parts (U-Net frozen, prompt optimised).

    Args:
        unet, vae, scheduler: diffusers parts (SD 1.x layout for the paper's layers).
        settings: :class:`AttentionSettings` (the paper's by default).
        device, dtype: default CUDA if available, float32 (the authors' precision).
    """

    def __init__(self, unet: Any, vae: Any, scheduler: Any, settings: AttentionSettings | None = None, *,
                 device: str | torch.device | None = None, dtype: str | torch.dtype | None = "float32") -> None:
        from vidprop.features.dift import move_module, resolve_device, resolve_dtype

        self.settings = settings or AttentionSettings()
        self.device = resolve_device(device)
        self.dtype = resolve_dtype(dtype, self.device)
        self.unet = move_module(unet, self.device, self.dtype).eval().requires_grad_(False)
        self.vae = move_module(vae, self.device, self.dtype).eval().requires_grad_(False)
        self.scheduler = scheduler
        self._abar = scheduler.alphas_cumprod.to(torch.float64)
        self.layer_names = resolve_layers(self.unet, self.settings.layers)
        self.embed_dim = int(self.unet.config.cross_attention_dim)
        self.vae_factor = 2 ** (len(self.vae.config.block_out_channels) - 1)
        self.model_id: str | None = None  # the Hub id or folder it was loaded from, when known

    @classmethod
    def from_pretrained(cls, model: str | os.PathLike | None = None, settings: AttentionSettings | None = None, *,
                        revision: str | None = None, device: str | torch.device | None = None,
                        dtype: str | torch.dtype | None = "float32") -> "AttentionMatcher":
        """Load U-Net, VAE and scheduler (no text encoder) from a Hub id or a local diffusers folder."""
        from vidprop.features.dift import load_sd_components

        model = str(model or DEFAULT_ATTENTION_MODEL)
        try:
            parts = load_sd_components(model, revision=revision, components=("unet", "vae", "scheduler"))
        except ModelLoadError as exc:
            msg = str(exc)
            if "--model" not in msg:  # pragma: no cover - load_sd_components always says it
                msg += "; pass --model /path/to/a/local/diffusers/folder"
            raise ModelLoadError(msg) from exc
        matcher = cls(parts["unet"], parts["vae"], parts["scheduler"], settings, device=device, dtype=dtype)
        matcher.model_id = model  # recorded with benchmark results
        return matcher

    # ------------------------------------------------------------------ pieces
    @contextmanager
    def capture(self, stop_early: bool = True) -> Iterator[AttentionStore]:
        """Install the capturing processors on the chosen ``attn2`` layers; restore the old ones after."""
        store = AttentionStore([n.rsplit(".processor", 1)[0] for n in self.layer_names])
        store.stop_early = stop_early
        original = dict(self.unet.attn_processors)
        procs = dict(original)
        for proc_name, name in zip(self.layer_names, store.names):
            procs[proc_name] = CrossAttentionCapture(store, name, self.settings.token, self.settings.heads)
        self.unet.set_attn_processor(procs)
        try:
            yield store
        finally:
            self.unet.set_attn_processor(dict(original))

    def attention_maps(self, store: AttentionStore, x_t: torch.Tensor, t: int,
                       prompt: torch.Tensor) -> list[torch.Tensor]:
        """One U-Net call; the captured maps per layer, each (B, h_l, w_l) float32."""
        store.reset()
        h, w = x_t.shape[-2:]
        timestep = torch.full((x_t.shape[0],), int(t), device=self.device, dtype=torch.long)
        run_until_stopped(lambda: self.unet(x_t, timestep, encoder_hidden_states=prompt.to(self.dtype)))
        out = []
        for name in store.names:
            if name not in store.maps:  # pragma: no cover - a layer the forward never reached
                raise RuntimeError(f"attention layer {name} was not reached by the U-Net forward")
            m = store.maps[name]
            f = math.sqrt(h * w / m.shape[1])
            hl, wl = int(round(h / f)), int(round(w / f))
            out.append(m.reshape(m.shape[0], hl, wl))
        return out

    def upsampled(self, maps: list[torch.Tensor]) -> torch.Tensor:
        """Per-layer maps upsampled bilinearly to S x S: (B, L, S, S)."""
        return crop_maps(maps, self.settings.image_size)

    def _prepare(self, image: np.ndarray) -> torch.Tensor:
        """(H, W, 3) uint8 -> (3, S, S) float in [-1, 1] (aspect ratio not kept)."""
        S = self.settings.image_size
        x = torch.from_numpy(np.ascontiguousarray(image[..., :3])).permute(2, 0, 1)[None].float()
        x = F.interpolate(x, size=(S, S), mode="bilinear", align_corners=False, antialias=True)
        return (x[0] / 127.5 - 1.0).clamp(-1, 1).to(self.device)

    def _crops(self, img: torch.Tensor, boxes: Sequence[tuple[int, int]]) -> torch.Tensor:
        S, c = self.settings.image_size, self.settings.crop_side
        out = [F.interpolate(img[None, :, y : y + c, x : x + c], size=(S, S), mode="bilinear", align_corners=False)
               for x, y in boxes]
        return torch.cat(out)

    @torch.no_grad()
    def _noisy_latents(self, crops: torch.Tensor, t: int, generator: torch.Generator) -> torch.Tensor:
        z = self.vae.encode(crops.to(self.dtype)).latent_dist.mean.float() * float(self.vae.config.scaling_factor)
        gen_dev = generator.device
        if self.settings.noise == "uniform":
            n = torch.rand(z.shape, generator=generator, device=gen_dev)
        else:
            n = torch.randn(z.shape, generator=generator, device=gen_dev)
        abar = self._abar[int(t)]
        x_t = float(abar.sqrt()) * z + float((1 - abar).sqrt()) * n.to(z.device)
        return x_t.to(self.dtype)

    def generator(self, *key: int) -> torch.Generator:
        """A generator seeded from (settings.seed, *key)."""
        state = np.random.SeedSequence([int(self.settings.seed), *map(int, key)]).generate_state(1, dtype=np.uint64)[0]
        g = torch.Generator(device=self.device if self.device.type == "cuda" else "cpu")
        g.manual_seed(int(state) & 0x7FFF_FFFF_FFFF_FFFF)
        return g

    def _point_in_model(self, image: np.ndarray, point: Sequence[float]) -> tuple[float, float]:
        H, W = image.shape[:2]
        S = self.settings.image_size
        return float(point[0]) * S / W, float(point[1]) * S / H

    # ------------------------------------------------------------------ optimisation
    def optimize(self, image: np.ndarray, point: Sequence[float], *, generator: torch.Generator | None = None,
                 progress: bool = False) -> tuple[torch.Tensor, np.ndarray]:
        """Optimise ``rounds`` embeddings so token ``token`` attends to ``point`` of ``image``.

        Returns ``(embeddings (rounds, num_tokens, d), losses (rounds, steps))``.
        """
        s = self.settings
        S, c = s.image_size, s.crop_side
        gen = generator or self.generator(0)
        img = self._prepare(image)
        px, py = self._point_in_model(image, point)
        embeddings, losses = [], []
        bar = progress_bar(total=s.rounds * s.steps, desc="optimise prompt", unit="step", enabled=progress)
        try:
            for r0 in range(0, s.rounds, s.batch_size):
                r = min(s.batch_size, s.rounds - r0)
                init = torch.randn((r, s.num_tokens, self.embed_dim), generator=gen, device=gen.device)
                prompt = init.to(self.device, torch.float32).requires_grad_(True)
                opt = torch.optim.Adam([prompt], lr=s.lr)
                hist = torch.zeros((r, s.steps))
                with self.capture() as store:
                    for step in range(s.steps):
                        boxes = [(crop_box(px, S, c, s.margin, gen), crop_box(py, S, c, s.margin, gen)) for _ in range(r)]
                        with torch.no_grad():
                            x_t = self._noisy_latents(self._crops(img, boxes), s.t_opt, gen)
                        centers = torch.tensor([[(px - x) * S / c, (py - y) * S / c] for x, y in boxes],
                                               device=self.device)
                        target = gaussian_bump(centers, S, s.sigma_px)
                        with torch.enable_grad():
                            maps = self.upsampled(self.attention_maps(store, x_t, s.t_opt, prompt))  # (r, L, S, S)
                            per_round = attention_loss(maps, target)  # (r,): mean over layers of each MSE
                            opt.zero_grad(set_to_none=True)
                            per_round.sum().backward()  # sum: each round gets exactly its own gradient
                        opt.step()
                        hist[:, step] = per_round.detach().cpu()
                        bar.update(r)
                embeddings.append(prompt.detach())
                losses.append(hist)
        finally:
            bar.close()
        return torch.cat(embeddings), torch.cat(losses).numpy()

    # ------------------------------------------------------------------ inference
    @torch.no_grad()
    def infer(self, image: np.ndarray, embeddings: torch.Tensor, *, generator: torch.Generator | None = None,
              progress: bool = False) -> torch.Tensor:
        """The final (S, S) map of ``embeddings`` over ``image`` (crop-averaged, softmax per layer, mean)."""
        s = self.settings
        S, c = s.image_size, s.crop_side
        gen = generator or self.generator(0, 1)
        img = self._prepare(image)
        R, L = embeddings.shape[0], len(self.layer_names)
        sums = torch.zeros((R, L, S, S), device=self.device)
        counts = torch.zeros((R, 1, S, S), device=self.device)
        corners = [(0.0, 0.0), (0.0, float(S)), (float(S), 0.0), (float(S), float(S))]
        jobs: list[list[tuple[int, tuple[int, int]]]] = []  # per wave: (embedding, box)
        n_corner = min(4, s.crops)
        jobs.append([(r, (crop_box(x, S, c, s.margin, None), crop_box(y, S, c, s.margin, None)))
                     for r in range(R) for x, y in corners[:n_corner]])
        bar = progress_bar(total=R * s.crops, desc="attention inference", unit="crop", enabled=progress)
        try:
            with self.capture() as store:
                for wave in range(s.crops - n_corner + 1):
                    if wave > 0:  # crops around each embedding's running maximum
                        avg = (sums / counts.clamp(min=1)).mean(dim=1).flatten(1)  # (R, S*S)
                        idx = avg.argmax(dim=1).tolist()
                        jobs.append([(r, (crop_box(i % S, S, c, s.margin, gen), crop_box(i // S, S, c, s.margin, gen)))
                                     for r, i in enumerate(idx)])
                    todo = jobs[-1]
                    for a in range(0, len(todo), s.batch_size):
                        part = todo[a : a + s.batch_size]
                        x_t = self._noisy_latents(self._crops(img, [b for _, b in part]), s.t_inf, gen)
                        prompt = embeddings[[r for r, _ in part]].to(self.device)
                        back = crop_maps(self.attention_maps(store, x_t, s.t_inf, prompt), c)  # (b, L, c, c)
                        for k, (r, (x, y)) in enumerate(part):
                            sums[r, :, y : y + c, x : x + c] += back[k]
                            counts[r, :, y : y + c, x : x + c] += 1
                        bar.update(len(part))
        finally:
            bar.close()
        avg = (sums / counts.clamp(min=1)).mean(dim=0)  # (L, S, S): average over embeddings
        probs = avg.flatten(1).softmax(dim=1).view(L, S, S)  # softmax over pixels, per layer
        return probs.mean(dim=0)

    def match(self, src: np.ndarray, tgt: np.ndarray, points: np.ndarray | Sequence[Sequence[float]], *,
              return_maps: bool = False, progress: bool = False) -> AttentionMatch:
        """Match each source point: optimise embeddings on ``src``, take the attention maximum on ``tgt``."""
        pts = np.asarray(points, dtype=np.float64).reshape(-1, 2)
        S = self.settings.image_size
        Ht, Wt = tgt.shape[:2]
        out_pts, scores, maps, losses = [], [], [], []
        for qi, p in enumerate(pts):
            emb, loss = self.optimize(src, p, generator=self.generator(qi, 0), progress=progress)
            final = self.infer(tgt, emb, generator=self.generator(qi, 1), progress=progress)
            i = int(final.flatten().argmax())
            x, y = i % S, i // S
            out_pts.append(((x + 0.5) * Wt / S, (y + 0.5) * Ht / S))
            scores.append(float(final[y, x]))
            losses.append(loss)
            if return_maps:
                maps.append(final.cpu().numpy())
        return AttentionMatch(np.asarray(out_pts, dtype=np.float64).reshape(-1, 2), np.asarray(scores),
                              maps if return_maps else None, losses)
