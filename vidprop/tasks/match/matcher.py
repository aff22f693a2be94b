"""The matcher object: :class:`PairMatcher` (a backbone and its TaskConfig), images in, results out."""

from __future__ import annotations

import zlib
from typing import Any, Sequence

import numpy as np
import torch

from vidprop.config import TaskConfig, fit_backbone_frames, load_preset
from vidprop.errors import ConfigError
from vidprop.io.images import resize_image
from vidprop.tasks.match.edits import propagate_edit_features, sticker_layer
from vidprop.tasks.match.geometric import detect_sift, geometric_match_features
from vidprop.tasks.match.results import EditResult, MatchResult
from vidprop.tasks.match.semantic import semantic_argmax

#: Smallest image side accepted (the model's input multiple).
MIN_SIDE = 32


def prompt_for(template: str, category: str | None = None) -> str:
    """The preset's prompt for a category: ``"a photo of a {category}"`` -> ``"a photo of a cat"``; "" without one."""
    if "{category}" in template:
        return template.format(category=category.strip()) if category and category.strip() else ""
    return template


def image_index(key: str) -> int:
    """A stable per-image noise index (so an image's features do not depend on the pair it is in)."""
    return zlib.crc32(key.encode("utf-8")) & 0x7FFFFFFF


def _names(names: tuple[str, str] | None) -> str:
    return f"between {names[0]} and {names[1]}" if names else ""


class PairMatcher:
    """Backbone features of image pairs, with a preset ("semantic", "geometric", "spair-dino", ...).

    Args:
        extractor: any backbone's extractor (anything with ``extract(images,
            indices=, prompt=)``, ``stride`` and ``device``; see
            :mod:`vidprop.features.registry`).
        config: the TaskConfig (frame resizing and extractor settings).
    """

    def __init__(self, extractor: Any, config: TaskConfig) -> None:
        self.extractor = extractor
        self.config = config

    @classmethod
    def from_pretrained(
        cls,
        model: str | None = None,
        *,
        config: TaskConfig | str = "semantic",
        device: str | torch.device | None = None,
        dtype: str | torch.dtype | None = None,
    ) -> "PairMatcher":
        """Load the config's backbone (``model`` overrides its weights' id) with a preset name or a TaskConfig."""
        from vidprop.features.registry import build_extractor
        from vidprop.tasks.base import fit_to_extractor

        cfg = load_preset(config) if isinstance(config, str) else config
        if model is not None:
            cfg = cfg.override(extractor={"model": str(model)})
        cfg = fit_backbone_frames(cfg)  # sizes that cannot be made valid are refused before the model loads
        ext = build_extractor(cfg.extractor, device=device, dtype=dtype, keep_text_encoder=True)
        return cls(ext, fit_to_extractor(cfg, ext))

    # ------------------------------------------------------------------ features
    def prompt(self, category: str | None = None, prompt: str | None = None) -> str:
        return prompt if prompt is not None else prompt_for(self.config.extractor.prompt, category)

    def _model_input(self, image: np.ndarray) -> torch.Tensor:
        """(H, W, 3) uint8 at its original size -> (1, 3, h, w) uint8 at the preset's size."""
        h, w = image.shape[:2]
        size = self.config.frames.target_size(w, h)
        small = resize_image(np.ascontiguousarray(image[..., :3]), size)
        return torch.from_numpy(np.ascontiguousarray(small)).permute(2, 0, 1)[None]

    def features(self, image: np.ndarray, *, index: int = 0, prompt: str = "") -> torch.Tensor:
        """(H, W, 3) uint8 at its original size -> (C, h, w) features of the preset's resized image."""
        if self.joint:
            raise ConfigError(f"the {self.config.extractor.backbone} backbone computes the features of a pair together "
                              "(a joint PCA): use pair_features(src, tgt); this benchmark or command scores images one by one")
        return self.extractor.extract(self._model_input(image), indices=[int(index)], prompt=prompt)[0]

    @property
    def joint(self) -> bool:
        """True when the backbone computes a pair's features together (sd+dinov2's joint PCA)."""
        return bool(getattr(self.extractor, "joint", False))

    def pair_features(self, src: np.ndarray, tgt: np.ndarray, *, prompt: str = "",
                      indices: tuple[int, int] = (0, 1)) -> tuple[torch.Tensor, torch.Tensor]:
        """Features (C, h, w) of both images: one call for a joint backbone, else one per image."""
        if not self.joint:
            return (self.features(src, index=indices[0], prompt=prompt),
                    self.features(tgt, index=indices[1], prompt=prompt))
        a, b = self._model_input(src), self._model_input(tgt)
        if a.shape != b.shape:
            raise ConfigError(f"the {self.config.extractor.backbone} backbone needs both images at one size "
                              "(frames.mode fixed or square); this preset gives "
                              f"{a.shape[-1]}x{a.shape[-2]} and {b.shape[-1]}x{b.shape[-2]}")
        clear = getattr(self.extractor, "clear_pca", None)
        if clear is not None:
            clear()
        f = self.extractor.extract(torch.cat([a, b]), indices=list(indices), prompt=prompt)
        return f[0], f[1]

    # ------------------------------------------------------------------ tasks
    def match_semantic(
        self,
        src: np.ndarray,
        tgt: np.ndarray,
        points: np.ndarray | Sequence[Sequence[float]],
        *,
        category: str | None = None,
        prompt: str | None = None,
        heatmap: bool = False,
    ) -> MatchResult:
        """Each source point's best cosine match over every target pixel (DIFT's SPair-71k evaluation)."""
        text = self.prompt(category, prompt)
        fs, ft = self.pair_features(src, tgt, prompt=text)
        pts = np.asarray(points, dtype=np.float64).reshape(-1, 2).round()
        tp, scores, maps = semantic_argmax(fs, ft, src.shape[:2], tgt.shape[:2], pts, return_maps=heatmap)
        return MatchResult("semantic", pts, tp.astype(np.float64), scores,
                           heatmaps=list(maps) if maps is not None else None, info={"prompt": text})

    def match_geometric(
        self,
        src: np.ndarray,
        tgt: np.ndarray,
        *,
        src_points: np.ndarray | None = None,
        tgt_points: np.ndarray | None = None,
        max_keypoints: int = 1000,
        method: str | None = None,
        threshold: float | None = None,
        prompt: str | None = None,
        names: tuple[str, str] | None = None,
        distance: str | None = None,
    ) -> MatchResult:
        """Keypoints (given or SIFT), descriptors, mutual nearest neighbours, homography (DIFT's HPatches way).

        ``method`` (lmeds/ransac), ``threshold`` and ``distance`` (cosine/l2): default the config's
        ``matching`` section (the preset's published command).
        """
        m = self.config.matching
        method = m.homography if method is None else method
        threshold = m.threshold if threshold is None else threshold
        distance = m.distance if distance is None else distance
        text = self.prompt(None, prompt)
        kp_s = detect_sift(src, max_keypoints) if src_points is None else np.asarray(src_points, np.float64)
        kp_t = detect_sift(tgt, max_keypoints) if tgt_points is None else np.asarray(tgt_points, np.float64)
        fs, ft = self.pair_features(src, tgt, prompt=text)
        return geometric_match_features(fs, ft, src.shape[:2], tgt.shape[:2], kp_s, kp_t, method=method,
                                        threshold=threshold, what=_names(names), distance=distance)

    def edit(
        self,
        src: np.ndarray,
        tgt: np.ndarray,
        sticker: np.ndarray,
        *,
        at: tuple[float, float] | None = None,
        category: str | None = None,
        prompt: str | None = None,
        max_points: int = 1000,
        threshold: float = 5.0,
        seed: int | None = None,
        composite: str = "straight",
        names: tuple[str, str, str] | None = None,
    ) -> EditResult:
        """Propagate an RGBA edit of ``src`` onto ``tgt`` (see :func:`propagate_edit_features`; the
        points are drawn with ``seed``, by default the config's seed)."""
        layer = sticker_layer(sticker, src.shape[:2], at, name=names[2] if names else "the sticker")
        text = self.prompt(category, prompt)
        fs, ft = self.pair_features(src, tgt, prompt=text)
        what = f"for the edited region {_names(names[:2])}" if names else ""
        seed = self.config.extractor.seed if seed is None else seed
        return propagate_edit_features(fs, ft, layer, tgt, max_points=max_points, threshold=threshold, seed=seed,
                                       composite=composite, what=what)
