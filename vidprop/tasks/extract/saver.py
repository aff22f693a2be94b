"""The feature saver of ``vidprop extract`` and what its image and video jobs share when writing files.

:class:`FeatureSaver` (an extractor loaded on first use, with its TaskConfig),
:class:`SaveOptions`, :class:`ExtractResult`, and the store writing both jobs
do: the settings every file records, the features as saved (upsampled, in the
save dtype, on the CPU), the error for files made with other settings.  The
jobs: :mod:`vidprop.tasks.extract.images`, :mod:`vidprop.tasks.extract.video`.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, Sequence

import numpy as np
import torch
import torch.nn.functional as F

from vidprop.config import TaskConfig, fit_backbone_frames, load_preset
from vidprop.errors import ConfigError, InputError, OutputExistsError
from vidprop.features.base import FeatureExtractor
from vidprop.io.feature_store import FORMATS, FileStatus
from vidprop.io.images import resize_image

__all__ = [
    "IMAGE_PRESET",
    "VIDEO_PRESET",
    "FORMAT_VERSION",
    "SaveOptions",
    "DEFAULT_OPTIONS",
    "ExtractResult",
    "FeatureSaver",
    "upsample_features",
    "check_stride",
    "output_settings",
    "upsample_record",
    "to_saved",
    "conflict_error",
]

log = logging.getLogger(__name__)

#: Preset for still images: the defaults of DIFT's extract_dift.py.
IMAGE_PRESET = "dift"
#: Preset for videos: the DAVIS settings ``vidprop segment`` uses by default.
VIDEO_PRESET = "davis-fast"
#: Version of the recorded settings' layout.
FORMAT_VERSION = 1
_SAVE_DTYPES = {"float32": torch.float32, "float16": torch.float16}


@dataclass(frozen=True)
class SaveOptions:
    """How features are saved.

    Args:
        format: "pt", "safetensors" or "npz"; None = ``pt`` for images (DIFT's
            layout) and ``safetensors`` for videos (``pt`` is for images only).
        save_dtype: "float32" (exact) or "float16" (half the size).
        upsample: upsample the features to the input image's size (bilinear,
            ``align_corners=False``, as DIFT's demo code) before saving.  Large:
            C x H x W values per image.
        chunk: video frames per file (1 = one file per frame, named after it).
        overwrite: recompute and replace existing outputs.
    """

    format: Literal["pt", "safetensors", "npz"] | None = None
    save_dtype: Literal["float32", "float16"] = "float32"
    upsample: bool = False
    chunk: int = 16
    overwrite: bool = False

    def __post_init__(self) -> None:
        if self.format is not None and self.format not in FORMATS:
            raise ConfigError(f"unknown feature format {self.format!r}; use {', '.join(FORMATS)}")
        if self.save_dtype not in _SAVE_DTYPES:
            raise ConfigError(f"save dtype must be float32 or float16, got {self.save_dtype!r}")
        if int(self.chunk) < 1:
            raise ConfigError(f"chunk must be >= 1 frame, got {self.chunk}")


#: The options a job uses when given none (all defaults).
DEFAULT_OPTIONS = SaveOptions()


@dataclass
class ExtractResult:
    """What an extraction wrote.

    ``output``: the feature file (one image saved to a file name), the output
    folder (images) or the video's folder; ``index``: a video's index.json.
    ``frames_extracted`` went through the model in ``seconds`` (wall time,
    model loading excluded); ``skipped`` files were already complete.
    """

    output: Path
    written: list[Path] = field(default_factory=list)
    skipped: list[Path] = field(default_factory=list)
    frames_extracted: int = 0
    frames_total: int = 0
    seconds: float = 0.0
    index: Path | None = None

    @property
    def fps(self) -> float:
        return self.frames_extracted / self.seconds if self.seconds > 0 else 0.0


def upsample_features(features: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """(B, C, h, w) -> (B, C, H, W) with ``size`` = (W, H): bilinear, align_corners=False, in float32."""
    if features.ndim != 4:
        raise ValueError(f"features must be (B, C, h, w), got {tuple(features.shape)}")
    w, h = size
    return F.interpolate(features.float(), size=(int(h), int(w)), mode="bilinear", align_corners=False)


class FeatureSaver:
    """A feature extractor (loaded on first use) and the TaskConfig it runs with.

    Args:
        config: a TaskConfig or a preset name (frame resizing + extractor settings).
        extractor: an already built extractor; None = load DIFT from
            ``config.extractor`` when the first frame needs it (nothing is
            loaded when every output is already complete).
        device, dtype: where and in what precision to run the loaded model.
    """

    def __init__(
        self,
        config: TaskConfig | str = IMAGE_PRESET,
        extractor: FeatureExtractor | None = None,
        *,
        device: str | torch.device | None = None,
        dtype: str | torch.dtype | None = None,
    ) -> None:
        self.config = load_preset(config) if isinstance(config, str) else config
        # sizes fitted to the backbone (or refused) before the model loads
        self.config = fit_backbone_frames(self.config)
        if "{" in self.config.extractor.prompt:
            raise ConfigError(
                f"the prompt {self.config.extractor.prompt!r} has a placeholder; give the full prompt "
                "(e.g. --prompt 'a photo of a cat')"
            )
        if self.config.extractor.backbone == "sd+dinov2":
            raise ConfigError(
                "the sd+dinov2 backbone computes the features of an image PAIR together (a joint PCA); "
                "`extract` saves one image's features: choose another backbone (sd, adm, dino, clip, dinov2, cleandift)"
            )
        if extractor is not None:
            _check_same_settings(self.config, extractor)
        self._extractor = extractor
        self._device = device
        self._dtype = dtype

    @classmethod
    def from_pretrained(
        cls,
        model: str | None = None,
        *,
        config: TaskConfig | str = IMAGE_PRESET,
        device: str | torch.device | None = None,
        dtype: str | torch.dtype | None = None,
    ) -> "FeatureSaver":
        """Load the model now (default: the config's) with a preset name or a TaskConfig."""
        cfg = load_preset(config) if isinstance(config, str) else config
        if model is not None:
            cfg = cfg.override(extractor={"model": str(model)})
        saver = cls(cfg, device=device, dtype=dtype)
        saver.extractor  # noqa: B018 - load
        return saver

    @property
    def loaded(self) -> bool:
        return self._extractor is not None

    @property
    def extractor(self) -> FeatureExtractor:
        if self._extractor is None:
            from vidprop.features.registry import build_extractor

            self._extractor = build_extractor(self.config.extractor, device=self._device, dtype=self._dtype)
        return self._extractor

    def settings(self) -> dict[str, Any]:
        """The extraction settings recorded in every file (known before the model is loaded)."""
        from vidprop.features.dift import resolve_device, resolve_dtype, resolve_revision

        cfg = self.config.extractor
        if self._extractor is not None:
            ext = self._extractor
            cfg = getattr(ext, "config", cfg)
            dtype = ext.dtype
            revision = getattr(ext, "model_revision", None) or cfg.revision
        else:
            device = resolve_device(self._device if self._device is not None else cfg.device)
            dtype = resolve_dtype(self._dtype if self._dtype is not None else cfg.dtype, device)
            revision = resolve_revision(cfg.model, cfg.revision)
        return {
            "backbone": cfg.backbone,
            "model": str(cfg.model),
            "revision": revision,
            "weights": cfg.weights,
            "layer": cfg.layer,
            "t": int(cfg.t),
            "up_ft_index": int(cfg.up_ft_index),
            "ensemble": int(cfg.ensemble),
            "seed": int(cfg.seed),
            "prompt": cfg.prompt,
            "dtype": str(dtype).replace("torch.", ""),
        }

    @property
    def batch_size(self) -> int:
        """Frames per call of the extractor (its own config's when it was given, else the config's)."""
        own = getattr(self._extractor, "config", None) or self.config.extractor
        return max(1, int(getattr(own, "batch_size", 1)))

    def model_info(self) -> dict[str, Any]:
        """Settings known once the model is loaded: stride, channels, device."""
        ext = self.extractor
        return {"stride": int(ext.stride), "channels": int(ext.channels), "device": str(ext.device)}

    def image_features(self, image: np.ndarray) -> torch.Tensor:
        """One (H, W, 3) uint8 RGB image at any size -> its (C, h, w) features, as :func:`extract_images` saves them.

        Resized to the config's model size with PIL bicubic, noise for index 0.
        """
        if image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8:
            raise ValueError(f"image must be (H, W, 3) uint8 RGB, got {image.shape} {image.dtype}")
        h, w = image.shape[:2]
        check_stride((w, h), int(self.extractor.stride), "the image")
        small = resize_image(np.ascontiguousarray(image), self.config.frames.target_size(w, h))
        return self.extract([small], [0])[0]

    def extract(self, frames: Sequence[np.ndarray], indices: Sequence[int]) -> torch.Tensor:
        """Model-size (H, W, 3) uint8 RGB frames -> features (B, C, h, w) on the extractor's device."""
        # A contiguous (B, 3, H, W) batch, as torchvision's PILToTensor gives DIFT's script (the memory
        # layout of the input picks the convolution kernels, which round differently in the last bits).
        x = torch.from_numpy(np.stack(frames)).permute(0, 3, 1, 2).contiguous()  # (B, 3, H, W) uint8
        return self.extractor.extract(x, indices=list(indices))


#: ExtractorConfig fields that change the features: a given extractor must agree with the config on them.
_FEATURE_FIELDS = ("model", "revision", "t", "up_ft_index", "ensemble", "prompt", "seed")


def _check_same_settings(config: TaskConfig, extractor: Any) -> None:
    own = getattr(extractor, "config", None)
    if own is None:
        return
    diff = [f"{k}={getattr(own, k)!r} (config: {getattr(config.extractor, k)!r})"
            for k in _FEATURE_FIELDS if getattr(own, k, None) != getattr(config.extractor, k)]
    if diff:
        raise ConfigError(
            "the extractor was built with other settings than the config's: " + ", ".join(diff)
            + "; build it from this config (FeatureSaver(config) loads it) so the saved settings are true"
        )


# --------------------------------------------------------------------------- what the jobs share when writing
def check_stride(size: tuple[int, int], stride: int, what: str) -> None:
    w, h = size
    if w < stride or h < stride:
        raise InputError(
            f"{what}: the image is {w}x{h}, too small for features at stride {stride} "
            f"(at least {stride}x{stride} pixels are needed)"
        )


def output_settings(options: SaveOptions, size: tuple[int, int], model_size: tuple[int, int], resize: str) -> dict[str, Any]:
    same = tuple(model_size) == tuple(size)
    return {
        "input_size": list(size),
        "model_size": list(model_size),
        "resize": "none" if same else resize,
        "upsample": bool(options.upsample),
        "save_dtype": options.save_dtype,
    }


def upsample_record(options: SaveOptions) -> dict[str, Any]:
    return {"upsample_mode": "bilinear", "align_corners": False} if options.upsample else {}


def to_saved(feats: torch.Tensor, options: SaveOptions, size: tuple[int, int]) -> torch.Tensor:
    """(B, C, h, w) on the device -> upsampled if asked, in the save dtype, on the CPU."""
    if options.upsample:
        feats = upsample_features(feats, size)
    return feats.to(dtype=_SAVE_DTYPES[options.save_dtype]).to("cpu")


def conflict_error(conflicts: list[tuple[Path, FileStatus]]) -> OutputExistsError:
    path, status = conflicts[0]
    what = "was not written by vidprop extract" if status.state == "foreign" else "was made with other settings"
    more = f" (and {len(conflicts) - 1} more file(s))" if len(conflicts) > 1 else ""
    return OutputExistsError(
        f"{path} already exists and {what} ({status.reason}){more}; pass --overwrite (overwrite=True) to replace it"
    )
