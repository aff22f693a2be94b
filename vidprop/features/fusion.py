"""SD + DINOv2 fused features for image pairs (Zhang et al., NeurIPS 2023, "A Tale of Two Features").

The recipe of the authors' evaluation script (Junyi42/sd-dino,
``pck_spair_pascal.py``, its defaults):

* Stable Diffusion 1.5 at 960x960, timestep 100, the latent of the VAE
  posterior MEAN (no sampling), empty prompt;
* the SD part computed on sliding square crops of 512 (ODISE's
  ``FeatureExtractorBackbone.slide_forward`` with ``slide_training``, the
  configuration sd-dino loads: a 960 image gives 2 x 2 crops at offsets 0
  and 448), each crop with ODISE's one shared noise draw (seed 42, 64x64, so
  unresized for a 512 crop), each layer's crop features added into the
  image's grid and averaged where crops overlap (:func:`crop_boxes`);
* three decoder layers: the inputs of the U-Net's output blocks 2, 5 and 8
  (i.e. the outputs of blocks 1, 4 and 7: 1/64, 1/32 and 1/16 of the input);
* each layer reduced to 256 dimensions by ONE PCA fitted on the tokens of
  both images of the pair together; the coarsest layer upsampled (bilinear)
  to the middle one's grid and concatenated after it, both then upsampled
  to the finest layer's grid and concatenated after it (768 channels at 1/16);
* DINOv2 ViT-B/14 at 840x840 (the same grid: 60x60), the patch tokens of its
  last block BEFORE the final norm (the script's "token" facet), ImageNet
  normalisation;
* each half L2-normalised per position, weighted (1, 1) and concatenated
  (1536 channels); the script then matches with the Euclidean distance,
  which for two unit halves ranks exactly as the cosine does.

Because of the joint PCA, the features of the images given to one
:meth:`SdDinoExtractor.extract` call depend on each other: give a pair in
one call (``joint`` is True, and :class:`~vidprop.tasks.match.PairMatcher`
does); for a video, :meth:`SdDinoExtractor.fit_pca` fits it once (on the
first frame) and keeps it.  Where vidprop differs from the script, and why,
is listed in docs/backbones.md (letterboxing, the learned implicit caption,
the PCA solver).
"""

from __future__ import annotations

import logging
from dataclasses import replace
from typing import Any, Sequence

import torch
import torch.nn.functional as F

from vidprop.config import ExtractorConfig
from vidprop.errors import ConfigError
from vidprop.features.base import check_images
from vidprop.features.dift import DiftExtractor, load_sd_components, resolve_device, resolve_dtype
from vidprop.features.hooks import StopForward, layer_output, run_until_stopped
from vidprop.features.vit import VitExtractor, load_vit

__all__ = ["SdDinoExtractor", "crop_boxes", "decoder_layer", "joint_pca", "pca_basis", "project", "shared_noise"]

log = logging.getLogger(__name__)


def decoder_layer(unet: Any, block: int) -> tuple[Any, int]:
    """The module whose output is the INPUT of U-Net output block ``block``, and its stride in latent cells.

    Output blocks are numbered as in the original (non-diffusers) U-Net: each
    diffusers up-block holds ``R`` of them (a resnet, its attention if any,
    and, for the last one, the upsampler).
    """
    ups = unet.up_blocks
    R = len(ups[0].resnets)
    if not 1 <= block <= len(ups) * R - 1:
        raise ConfigError(f"fusion_sd_blocks must be in [1, {len(ups) * R - 1}] for this U-Net, got {block}")
    i, j = divmod(block - 1, R)
    base = 2 ** (len(ups) - 1 - i)  # latent cells per position inside up block i
    if j == R - 1:  # the whole up block, upsampler included
        return ups[i], base // 2 if ups[i].upsamplers else base
    attns = getattr(ups[i], "attentions", None)
    return (attns[j] if attns else ups[i].resnets[j]), base


def shared_noise(seed: int, shape: tuple[int, int], channels: int = 4) -> torch.Tensor:
    """One (1, channels, h, w) draw made at 64x64 from ``seed`` and resized bicubically to (h, w)."""
    g = torch.Generator().manual_seed(int(seed))
    noise = torch.randn(1, channels, 64, 64, generator=g)
    if tuple(shape) != (64, 64):
        noise = F.interpolate(noise, size=tuple(shape), mode="bicubic", align_corners=False)
    return noise


def crop_boxes(height: int, width: int, window: int) -> list[tuple[int, int, int, int]]:
    """The (y1, y2, x1, x2) square crops ODISE's sliding inference takes from a ``height x width`` image.

    The crop side is ``min(window, height, width)`` and the step equals it;
    the last crop of a row or column is moved back to end at the border (so
    it overlaps the one before).  ``window`` 0: the whole image.
    """
    if window <= 0:
        return [(0, height, 0, width)]
    side = min(window, height, width)
    rows = max(height - side + side - 1, 0) // side + 1
    cols = max(width - side + side - 1, 0) // side + 1
    boxes = []
    for r in range(rows):
        for c in range(cols):
            y2, x2 = min(r * side + side, height), min(c * side + side, width)
            boxes.append((max(y2 - side, 0), y2, max(x2 - side, 0), x2))
    return boxes


def pca_basis(maps: Sequence[torch.Tensor], dim: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Mean (C,) and top ``dim`` principal directions (C, q) of the positions of all (C, h, w) ``maps`` together.

    Exact right-singular vectors of the centred (positions x C) matrix
    (deterministic); ``q`` is ``dim`` capped at the number of channels and
    of positions.
    """
    C = maps[0].shape[0]
    X = torch.cat([m.reshape(C, -1).T.float() for m in maps])  # (sum h*w, C)
    mean = X.mean(dim=0)
    q = min(int(dim), C, X.shape[0])
    _, _, Vh = torch.linalg.svd(X - mean, full_matrices=False)
    return mean, Vh[:q].T


def project(m: torch.Tensor, mean: torch.Tensor, basis: torch.Tensor) -> torch.Tensor:
    """(C, h, w) -> (q, h, w): centred and projected on the (C, q) basis."""
    C, h, w = m.shape
    return ((m.reshape(C, -1).T.float() - mean) @ basis).T.reshape(-1, h, w)


def joint_pca(maps: Sequence[torch.Tensor], dim: int) -> list[torch.Tensor]:
    """Each (C, h, w) map projected on the principal directions of all of them together: (q, h, w) maps."""
    mean, basis = pca_basis(maps, dim)
    return [project(m, mean, basis) for m in maps]


class SdDinoExtractor:
    """Fused SD + DINOv2 features (see the module docstring).

    Args:
        sd: a :class:`~vidprop.features.dift.DiftExtractor` holding the SD parts (its prompt cache is used).
        dino: a :class:`~vidprop.features.vit.VitExtractor` of DINOv2 (layer and final norm as configured).
        config: the ``fusion_*`` settings, ``t``, ``prompt``.
    """

    #: The features of the images of one extract() call depend on each other (joint PCA).
    joint = True
    model_revision: str | None = None

    def __init__(self, sd: DiftExtractor, dino: VitExtractor, *, config: ExtractorConfig) -> None:
        self.sd = sd
        self.dino = dino
        self.config = config
        self.device = sd.device
        self.dtype = sd.dtype
        self.layers = [decoder_layer(sd.unet, b) for b in config.fusion_sd_blocks]
        order = sorted(range(len(self.layers)), key=lambda k: -self.layers[k][1])  # coarse -> fine
        if order != list(range(len(self.layers))):
            raise ConfigError("extractor.fusion_sd_blocks must go from the coarsest layer to the finest (e.g. 2, 5, 8)")
        self.vae_factor = sd.vae_factor
        self._basis: list[tuple[torch.Tensor, torch.Tensor]] | None = None
        self.channels = int(sum(min(d, self._layer_channels(k)) for k, d in enumerate(config.fusion_pca_dims))) + dino.channels

    def _layer_channels(self, k: int) -> int:
        block = self.config.fusion_sd_blocks[k]
        unet = self.sd.unet
        R = len(unet.up_blocks[0].resnets)
        i = (block - 1) // R
        return int(unet.up_blocks[i].resnets[0].out_channels)

    @classmethod
    def from_pretrained(cls, *, config: ExtractorConfig, device: str | torch.device | None = None,
                        dtype: str | torch.dtype | None = None) -> "SdDinoExtractor":
        """Load SD (``config.model``) and DINOv2 (``config.dino_model``)."""
        dev = resolve_device(device if device is not None else config.device)
        dt = resolve_dtype(dtype if dtype is not None else config.dtype, dev)
        log.info("loading Stable Diffusion '%s' and DINOv2 '%s' (%s, %s)", config.model, config.dino_model, dev,
                 str(dt).replace("torch.", ""))
        parts = load_sd_components(config.model, revision=config.revision, torch_dtype=dt)
        sd_cfg = replace(config, clean=False, ensemble=1)
        sd = DiftExtractor(parts["unet"], parts["vae"], parts["scheduler"], config=sd_cfg, tokenizer=parts["tokenizer"],
                           text_encoder=parts["text_encoder"], device=dev, dtype=dt, keep_text_encoder=True)
        dino_cfg = replace(config, backbone="dinov2", model=config.dino_model)
        dino = VitExtractor(load_vit("dinov2", config.dino_model, torch_dtype=dt), "dinov2", config=dino_cfg, device=dev, dtype=dt)
        return cls(sd, dino, config=config)

    # ------------------------------------------------------------------ geometry
    @property
    def stride(self) -> int:
        """Pixels (of the SD input) per feature cell: the finest SD layer's."""
        return self.vae_factor * self.layers[-1][1]

    @property
    def multiple(self) -> int:
        return self.vae_factor * self.layers[0][1]

    # ------------------------------------------------------------------ parts
    @torch.inference_mode()
    def sd_layers(self, images: torch.Tensor, prompt: str | None = None) -> list[torch.Tensor]:
        """(B, 3, H, W) uint8 -> the raw SD decoder layers, each (B, C_l, h_l, w_l) float32, coarse to fine."""
        sd = self.sd
        mean, _ = sd.encode_latent_dist(images)  # (B, 4, H/8, W/8): the posterior mean, no sampling
        latents = mean.float() * float(sd.vae.config.scaling_factor)
        noise = shared_noise(self.config.fusion_noise_seed, tuple(latents.shape[-2:]), latents.shape[1]).to(latents.device)
        abar = sd._alphas_cumprod[self.config.t]
        x_t = (float(abar.sqrt()) * latents + float((1 - abar).sqrt()) * noise).to(sd.dtype)
        emb = sd.encode_prompt(self.config.prompt if prompt is None else prompt).expand(x_t.shape[0], -1, -1)
        got: dict[int, torch.Tensor] = {}
        handles = []
        for k, (module, _) in enumerate(self.layers):
            def hook(_m: Any, _i: Any, out: Any, k: int = k) -> None:
                out = layer_output(out)
                got[k] = getattr(out, "sample", out).float()
                if len(got) == len(self.layers):
                    raise StopForward
            handles.append(module.register_forward_hook(hook))
        ts = torch.full((x_t.shape[0],), self.config.t, device=sd.device, dtype=torch.long)
        try:
            run_until_stopped(lambda: sd.unet(x_t, ts, encoder_hidden_states=emb))
        finally:
            for h in handles:
                h.remove()
        return [got[k] for k in range(len(self.layers))]

    @torch.inference_mode()
    def dino_tokens(self, images: torch.Tensor, grid: tuple[int, int]) -> torch.Tensor:
        """(B, 3, H, W) uint8 -> DINOv2 tokens on ``grid`` = (h, w): the image resized to (14 h, 14 w); (B, C, h, w)."""
        p = self.dino.patch
        size = (grid[0] * p, grid[1] * p)
        x = images.to(self.device).float()
        if tuple(x.shape[-2:]) != size:
            x = F.interpolate(x, size=size, mode="bilinear", align_corners=False, antialias=True).clamp(0, 255)
        tok = self.dino.tokens(x)  # (B, N, C) of the configured block
        if self.dino.final_norm:
            tok = self.dino.model.layernorm(tok)
        patches = tok[:, self.dino.prefix_tokens :]
        return patches.transpose(1, 2).reshape(x.shape[0], -1, *grid).float()

    # ------------------------------------------------------------------ extraction
    def sd_feature_maps(self, images: torch.Tensor, prompt: str | None = None) -> list[torch.Tensor]:
        """(B, 3, H, W) uint8 -> each SD layer over the whole image, (B, C_l, H / s_l, W / s_l) float32.

        The crops of :func:`crop_boxes` (``fusion_sd_window``) go through the
        U-Net ``batch_size`` at a time; each layer's crop features are added
        into the image's grid at ``y1 // s_l, x1 // s_l`` and divided by the
        number of crops that cover each cell (ODISE's ``count_mats``).
        """
        check_images(images, multiple=self.multiple)
        B, _, H, W = images.shape
        boxes = crop_boxes(H, W, self.config.fusion_sd_window)
        crops = torch.cat([images[:, :, y1:y2, x1:x2] for y1, y2, x1, x2 in boxes])  # box-major: (n * B, 3, c, c)
        bs = self.config.batch_size
        raw = [self.sd_layers(crops[i : i + bs], prompt) for i in range(0, crops.shape[0], bs)]
        per_crop = [torch.cat([r[k] for r in raw]) for k in range(len(self.layers))]
        if len(boxes) == 1:
            return per_crop
        out = []
        for k, maps in enumerate(per_crop):
            s = self.vae_factor * self.layers[k][1]
            acc = maps.new_zeros(B, maps.shape[1], H // s, W // s)
            count = maps.new_zeros(1, 1, H // s, W // s)
            for n, (y1, y2, x1, x2) in enumerate(boxes):
                acc[:, :, y1 // s : y2 // s, x1 // s : x2 // s] += maps[n * B : (n + 1) * B]
                count[:, :, y1 // s : y2 // s, x1 // s : x2 // s] += 1
            out.append(acc / count)
        return out

    @torch.inference_mode()
    def fit_pca(self, images: torch.Tensor, prompt: str | None = None) -> None:
        """Fit the PCA of each SD layer on ``images`` and keep it for every later call (videos:
        the first frame), until :meth:`clear_pca`."""
        layers = self.sd_feature_maps(images, prompt)
        self._basis = [pca_basis(list(maps), dim) for maps, dim in zip(layers, self.config.fusion_pca_dims)]

    def clear_pca(self) -> None:
        """Back to fitting the PCA on the images of each call."""
        self._basis = None

    @torch.inference_mode()
    def extract(self, images: torch.Tensor, *, indices: Sequence[int] | None = None, prompt: str | None = None) -> torch.Tensor:
        """images (B, 3, H, W) uint8 -> fused features (B, C, H/16, W/16), float32; B = 2 for a pair.

        The PCA is fitted on all B images together (or the one kept by
        :meth:`fit_pca` is used).  ``indices`` are not used: the noise is
        the recipe's single shared draw.
        """
        cfg = self.config
        B = images.shape[0]
        layers = self.sd_feature_maps(images, prompt)
        grid = tuple(layers[-1].shape[-2:])
        basis = self._basis or [pca_basis(list(maps), dim) for maps, dim in zip(layers, cfg.fusion_pca_dims)]
        reduced = [[project(m, mean, P) * float(weight) for m in maps]  # per image (d_k, h_k, w_k)
                   for maps, (mean, P), weight in zip(layers, basis, cfg.fusion_sd_weights)]
        sd_parts = []
        for b in range(B):
            acc = reduced[0][b][None]
            for k in range(1, len(reduced)):  # finer layer first, the coarser ones upsampled after it
                finer = reduced[k][b][None]
                acc = torch.cat([finer, F.interpolate(acc, size=finer.shape[-2:], mode="bilinear", align_corners=False)], dim=1)
            sd_parts.append(acc[0])
        sd_feat = F.normalize(torch.stack(sd_parts), dim=1)  # (B, 768, h, w)
        bs = cfg.batch_size
        dino = torch.cat([self.dino_tokens(images[i : i + bs], grid) for i in range(0, B, bs)])
        dino = F.normalize(dino, dim=1)  # (B, C_dino, h, w)
        w_sd, w_dino = cfg.fusion_weights
        return torch.cat([sd_feat * float(w_sd), dino * float(w_dino)], dim=1)
