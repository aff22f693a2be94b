"""Static image pairs with DIFT: semantic and geometric matching, and edit propagation.

Follows the DIFT authors' evaluation code and edit-propagation notebook
(docs/static-pairs.md has the conventions).

    from vidprop.tasks.match import PairMatcher
    m = PairMatcher.from_pretrained(config="semantic")          # DIFT, SPair-71k settings
    res = m.match_semantic(src, tgt, [(120, 80)], category="cat")
    res.target_points                                           # (N, 2) pixel coordinates in tgt

    g = PairMatcher.from_pretrained(config="geometric")         # DIFT, HPatches settings
    res = g.match_geometric(src, tgt)                           # SIFT keypoints, mutual NN, LMEDS
    res.homography, res.inliers

    out = m.edit(src, tgt, sticker_rgba)                        # EditResult.image: the edited target
                                                                # (DIFT's notebook: 1,000 points, RANSAC 5 px)

Images are (H, W, 3) uint8 RGB arrays at their ORIGINAL size; points are
pixel coordinates (x right, y down).  The matching functions below also work
on feature maps directly (any backbone), which is how the tests check them
against known answers.

Semantic matching computes exactly the spec's quantity -- features
upsampled bilinearly (align_corners=False) to the full image size, the source
feature taken at the integer point, cosine with every target pixel, argmax --
without materialising the full-resolution target features: the target is
upsampled a band of rows at a time (separable bilinear weights, the same
formula as ``F.interpolate``), normalised per pixel and scored against all
queries at once, keeping a running maximum.
"""

from __future__ import annotations

import logging
import math
import zlib
from dataclasses import dataclass, field
from typing import Any, Sequence

import numpy as np
import torch
import torch.nn.functional as F

from vidprop.config import TaskConfig, fit_backbone_frames, load_preset
from vidprop.errors import ConfigError, InputError
from vidprop.io.images import resize_image

__all__ = [
    "MatchResult",
    "EditResult",
    "PairMatcher",
    "bilinear_weights",
    "upsample_rows",
    "sample_upsampled",
    "semantic_argmax",
    "sample_descriptors",
    "mutual_nearest",
    "fit_homography",
    "detect_sift",
    "geometric_match_features",
    "sticker_layer",
    "region_points",
    "edit_matches",
    "composite_warped",
    "propagate_edit_features",
    "prompt_for",
    "image_index",
    "MIN_SIDE",
]

log = logging.getLogger(__name__)

#: Smallest image side accepted (the model's input multiple).
MIN_SIDE = 32
#: Bytes of full-resolution target features materialised at once by semantic_argmax.
DEFAULT_CHUNK_BYTES = 64 << 20


# --------------------------------------------------------------------------- results
@dataclass
class MatchResult:
    """Matches from a source image to a target image.

    ``source_points``/``target_points`` are (N, 2) pixel coordinates (x, y);
    ``scores`` the cosine similarity (semantic, geometric) or the attention
    value (attention) of each match.  Geometric matching adds the homography
    (3x3, source -> target pixels), the inlier mask and the keypoint counts.
    ``heatmaps`` (when asked for) hold one (H_tgt, W_tgt) float32 map per query.
    """

    mode: str
    source_points: np.ndarray
    target_points: np.ndarray
    scores: np.ndarray
    heatmaps: list[np.ndarray] | None = None
    homography: np.ndarray | None = None
    inliers: np.ndarray | None = None
    num_source_keypoints: int | None = None
    num_target_keypoints: int | None = None
    info: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        d: dict[str, Any] = {"mode": self.mode, "matches": []}
        for i in range(len(self.source_points)):
            row = {
                "index": i + 1,
                "source": [float(v) for v in self.source_points[i]],
                "target": [float(v) for v in self.target_points[i]],
                "score": float(self.scores[i]),
            }
            if self.inliers is not None:
                row["inlier"] = bool(self.inliers[i])
            d["matches"].append(row)
        if self.homography is not None:
            d["homography"] = np.asarray(self.homography, dtype=float).tolist()
        if self.inliers is not None:
            d["num_inliers"] = int(np.count_nonzero(self.inliers))
        if self.num_source_keypoints is not None:
            d["num_source_keypoints"] = int(self.num_source_keypoints)
            d["num_target_keypoints"] = int(self.num_target_keypoints or 0)
        d.update(self.info)
        return d


@dataclass
class EditResult:
    """The edited target and how it was obtained (matches inside the edited region, RANSAC fit)."""

    image: np.ndarray
    homography: np.ndarray
    source_points: np.ndarray
    target_points: np.ndarray
    inliers: np.ndarray

    def to_dict(self) -> dict[str, Any]:
        return {
            "homography": self.homography.tolist(),
            "num_matches": int(len(self.source_points)),
            "num_inliers": int(np.count_nonzero(self.inliers)),
            "matches": [
                {"source": [float(v) for v in s], "target": [float(v) for v in t], "inlier": bool(k)}
                for s, t, k in zip(self.source_points, self.target_points, self.inliers)
            ],
        }


# --------------------------------------------------------------------------- semantic
def bilinear_weights(n_in: int, n_out: int, device: torch.device | str = "cpu", *,
                     align_corners: bool = False) -> tuple[torch.Tensor, ...]:
    """Index and weight vectors of bilinear resizing ``n_in -> n_out``.

    Output position ``o`` is ``w0[o] * in[i0[o]] + w1[o] * in[i1[o]]``: the
    formula of ``F.interpolate(mode="bilinear")``; source coordinate
    ``(o + 0.5) * n_in / n_out - 0.5`` clamped at 0, or with
    ``align_corners=True`` ``o * (n_in - 1) / (n_out - 1)``.
    """
    o = torch.arange(n_out, dtype=torch.float32, device=device)
    if align_corners:
        src = o * ((n_in - 1) / (n_out - 1)) if n_out > 1 else torch.zeros_like(o)
    else:
        src = ((o + 0.5) * (n_in / n_out) - 0.5).clamp(min=0)
    i0 = src.floor().long().clamp(max=n_in - 1)
    i1 = (i0 + 1).clamp(max=n_in - 1)
    w1 = src - i0.to(src.dtype)
    return i0, i1, 1.0 - w1, w1


def upsample_rows(feat: torch.Tensor, size: tuple[int, int], rows: torch.Tensor | slice, *,
                  align_corners: bool = False) -> torch.Tensor:
    """Rows ``rows`` of ``feat`` (C, h, w) bilinearly upsampled to ``size`` = (H, W): (C, len(rows), W).

    Equal to ``F.interpolate(feat[None], size, mode="bilinear",
    align_corners=align_corners)[0][:, rows]`` (float32) without computing the
    other rows.
    """
    H, W = size
    C, h, w = feat.shape
    dev = feat.device
    ix0, ix1, wx0, wx1 = bilinear_weights(w, W, dev, align_corners=align_corners)
    iy0, iy1, wy0, wy1 = bilinear_weights(h, H, dev, align_corners=align_corners)
    if isinstance(rows, slice):
        rows = torch.arange(H, device=dev)[rows]
    rows = torch.as_tensor(rows, device=dev).long()
    y0, y1 = iy0[rows], iy1[rows]
    lo, hi = int(y0.min()), int(y1.max()) + 1  # the low-resolution rows these output rows need
    band = feat[:, lo:hi].float()
    bx = band[:, :, ix0] * wx0 + band[:, :, ix1] * wx1  # (C, hi-lo, W): width first, as PyTorch does
    return bx[:, y0 - lo] * wy0[rows, None] + bx[:, y1 - lo] * wy1[rows, None]


def sample_upsampled(feat: torch.Tensor, size: tuple[int, int], points: np.ndarray | torch.Tensor) -> torch.Tensor:
    """Feature of the (C, h, w) map upsampled to ``size`` = (H, W) at integer pixels ``points`` (N, 2) (x, y): (N, C)."""
    pts = torch.as_tensor(np.asarray(points), device=feat.device).round().long().reshape(-1, 2)
    out = []
    for x, y in pts.tolist():
        out.append(upsample_rows(feat, size, torch.tensor([y], device=feat.device))[:, 0, x])
    if not out:
        return torch.zeros((0, feat.shape[0]), device=feat.device)
    return torch.stack(out)


def semantic_argmax(
    src_feat: torch.Tensor,
    tgt_feat: torch.Tensor,
    src_size: tuple[int, int],
    tgt_size: tuple[int, int],
    points: np.ndarray | Sequence[Sequence[float]],
    *,
    return_maps: bool = False,
    chunk_bytes: int = DEFAULT_CHUNK_BYTES,
    query_chunk: int = 256,
) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
    """Cosine argmax over every target pixel, at full image resolution.

    Args:
        src_feat, tgt_feat: (C, h, w) feature maps of the source and target.
        src_size, tgt_size: ORIGINAL image sizes (H, W) the maps are upsampled to.
        points: (N, 2) source pixels (x, y); rounded to integers.
        return_maps: also return the (N, H_t, W_t) cosine maps.

    Returns ``(target_points (N, 2) int64 (x, y), scores (N,), maps or None)``.
    Identical to upsampling both maps with ``F.interpolate(bilinear)``,
    normalising every pixel's feature and taking the argmax of the dot
    products (first maximum in row-major order), with at most
    ``chunk_bytes`` of upsampled target features in memory at once.
    """
    pts = np.asarray(points, dtype=np.float64).reshape(-1, 2)
    N = len(pts)
    Ht, Wt = tgt_size
    C = tgt_feat.shape[0]
    q = F.normalize(sample_upsampled(src_feat, src_size, pts), dim=1)  # (N, C) float32
    tgt = tgt_feat.to(q.device)
    rows_per_chunk = max(1, min(Ht, int(chunk_bytes // max(1, 4 * C * Wt))))
    best = torch.full((N,), -math.inf, device=q.device)
    arg = torch.zeros((N,), dtype=torch.long, device=q.device)
    maps = np.empty((N, Ht, Wt), np.float32) if return_maps else None
    for r0 in range(0, Ht, rows_per_chunk):
        r1 = min(Ht, r0 + rows_per_chunk)
        band = upsample_rows(tgt, (Ht, Wt), slice(r0, r1))  # (C, r, W)
        band = F.normalize(band.reshape(C, -1), dim=0)  # (C, r*W)
        for a in range(0, N, query_chunk):
            b = min(N, a + query_chunk)
            sim = q[a:b] @ band  # (n, r*W)
            val, idx = sim.max(dim=1)  # first maximum within the band
            better = val > best[a:b]  # strictly: an earlier band keeps ties
            best[a:b] = torch.where(better, val, best[a:b])
            arg[a:b] = torch.where(better, idx + r0 * Wt, arg[a:b])
            if maps is not None:
                maps[a:b, r0:r1] = sim.reshape(b - a, r1 - r0, Wt).cpu().numpy()
    arg_np = arg.cpu().numpy()
    tgt_pts = np.stack([arg_np % Wt, arg_np // Wt], axis=1).astype(np.int64)
    return tgt_pts, best.cpu().numpy().astype(np.float64), maps


# --------------------------------------------------------------------------- geometric
def sample_descriptors(feat: torch.Tensor, points: np.ndarray, size: tuple[int, int], *,
                       convention: str = "dift") -> torch.Tensor:
    """Bilinear (grid_sample) descriptors of the (C, h, w) map at pixels ``points`` (N, 2) of an image of ``size`` (H, W).

    ``convention="dift"`` (default) samples as DIFT's HPatches evaluation: a
    pixel ``(x, y)`` becomes ``(x - c_x) / c_x`` with ``c_x = (W - 1) / 2``
    (float32; likewise y), read by ``grid_sample`` with ``align_corners=False``
    and zero padding -- so map column ``x * w / (W - 1) - 0.5``; the same
    keypoints give the same values as the published runs.
    ``convention="centres"``: ``(x + 0.5) / W * 2 - 1`` with border padding,
    exactly the map upsampled bilinearly to the image size read at that pixel.
    Returns (N, C) float32.
    """
    H, W = size
    pts = torch.as_tensor(np.asarray(points, dtype=np.float32), device=feat.device).reshape(1, 1, -1, 2)
    if convention == "dift":
        c = torch.tensor([(W - 1) / 2.0, (H - 1) / 2.0], dtype=torch.float32, device=feat.device)
        grid = (pts - c) / c
        padding = "zeros"
    elif convention == "centres":
        grid = torch.empty_like(pts)
        grid[..., 0] = (pts[..., 0] + 0.5) / W * 2 - 1
        grid[..., 1] = (pts[..., 1] + 0.5) / H * 2 - 1
        padding = "border"
    else:
        raise ConfigError(f"descriptor sampling convention must be dift or centres, got {convention!r}")
    out = F.grid_sample(feat[None].float(), grid, mode="bilinear", padding_mode=padding, align_corners=False)
    return out[0, :, 0].T.contiguous()  # (N, C)


def mutual_nearest(desc_a: torch.Tensor, desc_b: torch.Tensor, distance: str = "cosine"
                   ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Mutual nearest neighbours: (indices in a, indices in b, cosine similarities of the matches).

    ``distance="cosine"``: nearest by the cosine of the descriptors; ``"l2"``: by the squared
    Euclidean distance of the raw descriptors, ``|a|^2 + |b|^2 - 2 a.b`` (DIFT's
    ``eval_homography.py`` ``mnn_matcher``, L9-24, used for DIFT_adm).
    """
    if distance not in ("cosine", "l2"):
        raise ConfigError(f"distance must be cosine or l2, got {distance!r}")
    if len(desc_a) == 0 or len(desc_b) == 0:
        e = np.zeros(0, np.int64)
        return e, e, np.zeros(0)
    a, b = desc_a.float(), desc_b.float()
    cos = F.normalize(a, dim=1) @ F.normalize(b, dim=1).T
    if distance == "l2":
        sim = -((a * a).sum(dim=1, keepdim=True) + (b * b).sum(dim=1)[None, :] - 2 * (a @ b.T))
    else:
        sim = cos
    ab = sim.argmax(dim=1)
    ba = sim.argmax(dim=0)
    ia = torch.arange(len(desc_a), device=sim.device)
    keep = ba[ab] == ia
    ia, ib = ia[keep], ab[keep]
    return ia.cpu().numpy(), ib.cpu().numpy(), cos[ia, ib].cpu().numpy().astype(np.float64)


def fit_homography(
    src: np.ndarray, dst: np.ndarray, *, method: str = "lmeds", threshold: float = 3.0, what: str = ""
) -> tuple[np.ndarray, np.ndarray]:
    """``cv2.findHomography`` (LMEDS or RANSAC, reprojection threshold in pixels) with clear errors.

    Returns (H (3, 3) float64, inlier mask (N,) bool).  Raises
    :class:`InputError` (mentioning ``what``, e.g. the image names) when
    there are fewer than 4 matches or no homography fits them.
    """
    import cv2

    src = np.asarray(src, dtype=np.float64).reshape(-1, 2)
    dst = np.asarray(dst, dtype=np.float64).reshape(-1, 2)
    where = f" {what}" if what else ""
    methods = {"lmeds": cv2.LMEDS, "ransac": cv2.RANSAC}
    if method not in methods:
        raise ConfigError(f"homography method must be lmeds or ransac, got {method!r}")
    n = len(src)
    distinct = min(len(np.unique(src.round(3), axis=0)), len(np.unique(dst.round(3), axis=0))) if n else 0
    if n < 4 or distinct < 4:
        raise InputError(
            f"too few matches for a homography{where}: {n} match(es), {distinct} distinct; at least 4 are needed"
        )
    try:
        H, mask = cv2.findHomography(src.astype(np.float32), dst.astype(np.float32), methods[method], float(threshold))
    except cv2.error as exc:  # pragma: no cover - OpenCV rejects degenerate input in various ways
        msg = str(exc).strip().splitlines()[-1] if str(exc).strip() else "OpenCV error"
        raise InputError(f"could not fit a homography{where} to {n} matches: {msg}") from None
    if H is None or not np.all(np.isfinite(H)) or abs(np.linalg.det(H)) < 1e-12:
        raise InputError(f"could not fit a homography{where} to {n} matches (degenerate configuration)")
    return H.astype(np.float64), mask.reshape(-1).astype(bool)


def detect_sift(image: np.ndarray, max_keypoints: int = 1000) -> np.ndarray:
    """Up to ``max_keypoints`` OpenCV SIFT keypoints (strongest first, duplicate locations removed): (N, 2) float."""
    import cv2

    grey = cv2.cvtColor(np.ascontiguousarray(image[..., :3]), cv2.COLOR_RGB2GRAY)
    kps = cv2.SIFT_create().detect(grey, None)
    kps = sorted(kps, key=lambda k: -k.response)
    seen: set[tuple[int, int]] = set()
    out = []
    for k in kps:
        key = (int(round(k.pt[0] * 4)), int(round(k.pt[1] * 4)))  # quarter-pixel duplicates (orientations)
        if key in seen:
            continue
        seen.add(key)
        out.append(k.pt)
        if len(out) >= max_keypoints:
            break
    return np.asarray(out, dtype=np.float64).reshape(-1, 2)


def geometric_match_features(
    src_feat: torch.Tensor,
    tgt_feat: torch.Tensor,
    src_size: tuple[int, int],
    tgt_size: tuple[int, int],
    src_kps: np.ndarray,
    tgt_kps: np.ndarray,
    *,
    method: str = "lmeds",
    threshold: float = 3.0,
    what: str = "",
    require_homography: bool = True,
    convention: str = "dift",
    distance: str = "cosine",
) -> MatchResult:
    """Descriptors at the keypoints (:func:`sample_descriptors`), mutual nearest neighbours under
    ``distance`` (cosine or l2), homography.

    ``require_homography=False`` returns the matches without H when it cannot be fitted.
    """
    src_kps = np.asarray(src_kps, dtype=np.float64).reshape(-1, 2)
    tgt_kps = np.asarray(tgt_kps, dtype=np.float64).reshape(-1, 2)
    da = sample_descriptors(src_feat, src_kps, src_size, convention=convention)
    db = sample_descriptors(tgt_feat, tgt_kps, tgt_size, convention=convention)
    ia, ib, sims = mutual_nearest(da, db, distance)
    res = MatchResult("geometric", src_kps[ia], tgt_kps[ib], sims,
                      num_source_keypoints=len(src_kps), num_target_keypoints=len(tgt_kps))
    try:
        res.homography, res.inliers = fit_homography(res.source_points, res.target_points, method=method,
                                                     threshold=threshold, what=what)
    except InputError:
        if require_homography:
            raise
    return res


# --------------------------------------------------------------------------- edits
def sticker_layer(sticker: np.ndarray, source_size: tuple[int, int], at: tuple[float, float] | None = None,
                  *, name: str = "the sticker") -> np.ndarray:
    """The (H, W, 4) RGBA edit layer over the source: ``sticker`` itself, or placed with its top-left at ``at``."""
    H, W = source_size
    if sticker.ndim != 3 or sticker.shape[2] != 4:
        raise InputError(f"{name}: an RGBA sticker (H, W, 4) is needed, got shape {sticker.shape}")
    if at is None:
        if sticker.shape[:2] != (H, W):
            raise InputError(
                f"{name} is {sticker.shape[1]}x{sticker.shape[0]} but the source is {W}x{H}; give a layer the "
                "size of the source, or place a smaller sticker with --at X,Y (its top-left corner)"
            )
        layer = sticker
    else:
        x, y = int(round(at[0])), int(round(at[1]))
        layer = np.zeros((H, W, 4), np.uint8)
        sh, sw = sticker.shape[:2]
        x0, y0, x1, y1 = max(x, 0), max(y, 0), min(x + sw, W), min(y + sh, H)
        if x1 <= x0 or y1 <= y0:
            raise InputError(f"{name} placed at {x},{y} ({sw}x{sh}) lies outside the source ({W}x{H})")
        layer[y0:y1, x0:x1] = sticker[y0 - y : y1 - y, x0 - x : x1 - x]
    if not np.any(layer[..., 3] > 0):
        raise InputError(f"{name} is fully transparent over the source: there is nothing to propagate")
    return layer


def region_points(alpha: np.ndarray, max_points: int = 1000, seed: int = 0) -> np.ndarray:
    """Up to ``max_points`` random pixels (x, y) of the region ``alpha > 0`` (int64, (N, 2)).

    As DIFT's edit-propagation notebook: the region's pixels in row-major
    order, a random permutation (``torch.randperm``, here from a generator
    seeded with ``seed``), the first ``max_points``.
    """
    ys, xs = np.nonzero(np.asarray(alpha) > 0)
    if len(xs) == 0:
        return np.zeros((0, 2), np.int64)
    g = torch.Generator().manual_seed(int(seed))
    keep = torch.randperm(len(xs), generator=g)[: int(max_points)].numpy()
    return np.stack([xs[keep], ys[keep]], axis=1).astype(np.int64)


def edit_matches(
    src_feat: torch.Tensor,
    tgt_feat: torch.Tensor,
    src_size: tuple[int, int],
    tgt_size: tuple[int, int],
    points: np.ndarray,
    *,
    chunk_bytes: int = DEFAULT_CHUNK_BYTES,
) -> np.ndarray:
    """Each source pixel's nearest target pixel, as DIFT's edit-propagation notebook finds it.

    Both (C, h, w) maps are L2-normalised per position at their own
    resolution, then read bilinearly with ``align_corners=True`` (a pixel x of a
    W-wide image at map column ``x * (w - 1) / (W - 1)``): the source at
    ``points`` (N, 2) (x, y), the target at every pixel; the match is the target
    pixel at the smallest Euclidean distance (the notebook's ``cdist`` + ``min``;
    the sampled vectors are not renormalised, so this is not the cosine argmax).
    The target is upsampled a band of rows at a time (at most ``chunk_bytes``).
    Returns (N, 2) int64 target pixels (x, y).
    """
    pts = np.asarray(points, dtype=np.float64).reshape(-1, 2)
    N = len(pts)
    if N == 0:
        return np.zeros((0, 2), np.int64)
    Hs, Ws = src_size
    Ht, Wt = tgt_size
    src = F.normalize(src_feat.float(), dim=0)
    tgt = F.normalize(tgt_feat.float(), dim=0).to(src.device)
    C = src.shape[0]
    grid = torch.as_tensor(pts, dtype=torch.float32, device=src.device)
    grid = grid / torch.tensor([Ws - 1.0, Hs - 1.0], device=src.device) * 2 - 1
    q = F.grid_sample(src[None], grid[None, None], mode="bilinear", align_corners=True)[0, :, 0].T  # (N, C)
    rows_per_chunk = max(1, min(Ht, int(chunk_bytes // max(1, 4 * C * Wt))))
    best = torch.full((N,), math.inf, device=q.device)
    arg = torch.zeros((N,), dtype=torch.long, device=q.device)
    for r0 in range(0, Ht, rows_per_chunk):
        r1 = min(Ht, r0 + rows_per_chunk)
        band = upsample_rows(tgt, (Ht, Wt), slice(r0, r1), align_corners=True).reshape(C, -1)  # (C, r*W)
        d2 = (band * band).sum(0)[None] - 2 * (q @ band)  # squared distance minus |q|^2 (constant per query)
        val, idx = d2.min(dim=1)  # first minimum within the band
        better = val < best
        best = torch.where(better, val, best)
        arg = torch.where(better, idx + r0 * Wt, arg)
    a = arg.cpu().numpy()
    return np.stack([a % Wt, a // Wt], axis=1).astype(np.int64)


def composite_warped(target: np.ndarray, layer: np.ndarray, H: np.ndarray, *, mode: str = "straight") -> np.ndarray:
    """Warp the RGBA ``layer`` (source pixels) by ``H`` into the target and alpha-composite it.

    ``mode="straight"`` (default) as DIFT's notebook: the uint8 RGBA layer is
    warped as it is (bilinear, transparent outside), then
    ``a * rgb + (1 - a) * target`` with ``a = alpha / 255``, truncated to uint8.
    ``mode="premultiplied"``: colours are multiplied by alpha before warping and
    the result rounded -- no dark or coloured fringe where the warp blends
    opaque pixels with transparent ones whose hidden colour differs.
    """
    import cv2

    h, w = target.shape[:2]
    if mode == "straight":
        warped = cv2.warpPerspective(np.ascontiguousarray(layer), H.astype(np.float64), (w, h))
        a = warped[..., 3:] / 255
        out = a * warped[..., :3] + (1 - a) * target[..., :3]
        return out.astype(np.uint8)
    if mode != "premultiplied":
        raise ConfigError(f"compositing mode must be straight or premultiplied, got {mode!r}")
    a = layer[..., 3:4].astype(np.float32) / 255.0
    premult = np.concatenate([layer[..., :3].astype(np.float32) * a, a * 255.0], axis=2)
    warped = cv2.warpPerspective(premult, H.astype(np.float64), (w, h), flags=cv2.INTER_LINEAR,
                                 borderMode=cv2.BORDER_CONSTANT, borderValue=0)
    wa = np.clip(warped[..., 3:4] / 255.0, 0.0, 1.0)
    out = warped[..., :3] + target[..., :3].astype(np.float32) * (1.0 - wa)
    return np.clip(out + 0.5, 0, 255).astype(np.uint8)


def _warn_if_implausible(H: np.ndarray, pts: np.ndarray, inliers: np.ndarray) -> None:
    """Log a warning when the fitted homography flips or hugely rescales the edited region."""
    c = np.append(pts.mean(axis=0), 1.0)
    w = H @ c
    # Jacobian of the projective map at the region's centre
    J = (H[:2, :2] * w[2] - np.outer(w[:2], H[2, :2])) / w[2] ** 2
    det = float(np.linalg.det(J))
    if w[2] <= 0 or det <= 0 or not 1 / 25 <= det <= 25 or inliers.mean() < 0.2:
        log.warning("the homography for the edit looks implausible (local area scale %.3g, %d of %d matches "
                    "inliers); the sticker may be misplaced", det, int(inliers.sum()), len(inliers))


def propagate_edit_features(
    src_feat: torch.Tensor,
    tgt_feat: torch.Tensor,
    layer: np.ndarray,
    target: np.ndarray,
    *,
    max_points: int = 1000,
    threshold: float = 5.0,
    seed: int = 0,
    composite: str = "straight",
    what: str = "",
) -> EditResult:
    """Edit propagation on given features, as DIFT's notebook: ``max_points`` random pixels of the edited
    region (seeded), their nearest target pixels (:func:`edit_matches`), a RANSAC homography
    (``threshold`` px), the layer warped and composited (:func:`composite_warped`)."""
    src_size = layer.shape[:2]
    tgt_size = target.shape[:2]
    pts = region_points(layer[..., 3], max_points, seed)
    tgt_pts = edit_matches(src_feat, tgt_feat, src_size, tgt_size, pts)
    H, inliers = fit_homography(pts, tgt_pts, method="ransac", threshold=threshold,
                                what=what or "for the edited region")
    _warn_if_implausible(H, pts, inliers)
    return EditResult(composite_warped(target, layer, H, mode=composite), H, pts.astype(np.float64),
                      tgt_pts.astype(np.float64), inliers)


# --------------------------------------------------------------------------- model side
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
