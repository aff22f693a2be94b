"""Geometric matching maths: descriptors at keypoints, mutual nearest neighbours, a fitted homography."""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from vidprop.errors import ConfigError, InputError
from vidprop.tasks.match.results import MatchResult


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
