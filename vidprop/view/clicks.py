"""Interactive semantic matching: a click on the source answered from cached features.

The answer is exactly :func:`vidprop.tasks.match.semantic_argmax`'s -- the
source feature at the clicked pixel of the bilinearly upsampled source map,
its cosine with every pixel of the upsampled target map, the first maximum --
but cheap enough for a click.  Bilinear upsampling ``up`` is linear, so for a
unit query ``q``::

    cosine(q, up(F)(p)) = q . up(F)(p) / |up(F)(p)| = up(q . F)(p) / |up(F)(p)|

The norm map ``|up(F)(p)|`` over every target pixel is computed once
(:func:`target_norm_map`: from the dot products of neighbouring grid cells,
or band by band as ``semantic_argmax`` does; the full-resolution features
are never held); a click then costs a dot product at feature resolution,
``(C) x (C, h*w)``, and the upsampling of one scalar map.
"""

from __future__ import annotations

import base64
import logging
import threading
import time
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from vidprop.tasks.match import DEFAULT_CHUNK_BYTES, bilinear_weights, upsample_rows

__all__ = ["target_norm_map", "ClickMatcher", "ClickAnswer", "MatchSession", "heatmap_jpeg"]

log = logging.getLogger(__name__)

#: F.normalize's epsilon (what semantic_argmax divides by at worst).
EPS = 1e-12


def target_norm_map(feat: torch.Tensor, size: tuple[int, int], *, method: str = "gram",
                    chunk_bytes: int = DEFAULT_CHUNK_BYTES) -> np.ndarray:
    """|up(feat)(p)| for every pixel p of ``size`` = (H, W): (H, W) float32.

    ``up`` is bilinear upsampling of ``feat`` (C, h, w) with align_corners=False
    (``F.interpolate``'s).  Two ways, equal up to rounding:

    * ``"bands"``: upsample a band of rows at a time (at most ``chunk_bytes``
      of full-resolution features at once) and take each pixel's norm -- what
      ``semantic_argmax`` does per query, O(C * H * W);
    * ``"gram"`` (default): each upsampled vector is a combination
      ``sum_k a_k F_k`` of its four grid neighbours, so its squared norm is
      ``sum_kl a_k a_l <F_k, F_l>``: the dot products of neighbouring grid
      cells (five (h, w) maps, O(C * h * w)) combined per pixel in float64,
      O(H * W), a band of rows at a time; 256x (the stride squared) less
      work at stride 16.
    """
    if feat.ndim != 3:
        raise ValueError(f"features must be (C, h, w), got shape {tuple(feat.shape)}")
    H, W = size
    if method == "bands":
        C = feat.shape[0]
        rows = max(1, min(H, int(chunk_bytes // max(1, 4 * C * W))))
        out = torch.empty((H, W), dtype=torch.float32, device=feat.device)
        with torch.no_grad():
            for r0 in range(0, H, rows):
                r1 = min(H, r0 + rows)
                band = upsample_rows(feat, (H, W), slice(r0, r1))  # (C, r, W)
                out[r0:r1] = torch.linalg.vector_norm(band, dim=0)
        return out.cpu().numpy()
    if method != "gram":
        raise ValueError(f"method must be 'gram' or 'bands', got {method!r}")
    f = feat.detach().to("cpu", torch.float64)  # (C, h, w)
    _, h, w = f.shape
    right = torch.cat([f[:, :, 1:], f[:, :, -1:]], dim=2)  # F[y, x+1] (clamped at the border, as the weights)
    down = torch.cat([f[:, 1:], f[:, -1:]], dim=1)  # F[y+1, x]
    diag = torch.cat([right[:, 1:], right[:, -1:]], dim=1)  # F[y+1, x+1]
    nn_ = (f * f).sum(0).numpy()  # <F[y,x], F[y,x]>           (h, w)
    hx = (f * right).sum(0).numpy()  # <F[y,x], F[y,x+1]>
    vy = (f * down).sum(0).numpy()  # <F[y,x], F[y+1,x]>
    dg = (f * diag).sum(0).numpy()  # <F[y,x], F[y+1,x+1]>
    an = (right * down).sum(0).numpy()  # <F[y,x+1], F[y+1,x]>
    ix0, ix1, wx0, wx1 = (a.astype(np.float64) if a.dtype.kind == "f" else a for a in _axis(w, W))
    iy0, iy1, wy0, wy1 = (a.astype(np.float64) if a.dtype.kind == "f" else a for a in _axis(h, H))
    out = np.empty((H, W), np.float32)
    rows = max(1, int(chunk_bytes // max(1, 8 * 16 * W)))  # ~16 float64 (rows, W) temporaries per band
    for r0 in range(0, H, rows):
        r = slice(r0, min(H, r0 + rows))
        y0, y1 = iy0[r], iy1[r]
        # the four neighbours P = F[y0,x0], Q = F[y0,x1], R = F[y1,x0], S = F[y1,x1] and their weights
        cp, cq = wy0[r, None] * wx0[None], wy0[r, None] * wx1[None]  # (rows, W)
        cr, cs = wy1[r, None] * wx0[None], wy1[r, None] * wx1[None]

        def at(m: np.ndarray, ys: np.ndarray, xs: np.ndarray) -> np.ndarray:
            return m[np.ix_(ys, xs)]  # (rows, W)

        sq = (cp * cp * at(nn_, y0, ix0) + cq * cq * at(nn_, y0, ix1) + cr * cr * at(nn_, y1, ix0)
              + cs * cs * at(nn_, y1, ix1))
        cross = (cp * cq * at(hx, y0, ix0) + cr * cs * at(hx, y1, ix0)  # P.Q, R.S (horizontal)
                 + cp * cr * at(vy, y0, ix0) + cq * cs * at(vy, y0, ix1)  # P.R, Q.S (vertical)
                 + cp * cs * at(dg, y0, ix0) + cq * cr * at(an, y0, ix0))  # P.S, Q.R (diagonals)
        # where x1 == x0 (or y1 == y0) the clamped maps above hold <F, F> itself, as the formula needs
        out[r] = np.sqrt(np.maximum(sq + 2.0 * cross, 0.0))
    return out


@dataclass(frozen=True)
class ClickAnswer:
    """The best match of one source pixel."""

    source: tuple[int, int]  # (x, y) source pixel (rounded click)
    target: tuple[int, int]  # (x, y) target pixel of the highest cosine (first in row-major order)
    score: float  # that cosine
    cosine: np.ndarray  # (H_t, W_t) float32: the cosine of every target pixel
    seconds: float  # time to answer (excluding any drawing)


def _axis(n_in: int, n_out: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """:func:`~vidprop.tasks.match.bilinear_weights` as NumPy arrays (i0, i1, w0, w1).

    Where the border clamps (i0 == i1) the weights are set to (1, 0): the
    same value, exactly, for every clamped position (the last stride/2 pixels
    of a row or column repeat one feature), so ties among them go to the
    first pixel, as the argmax's row-major order says, instead of to rounding.
    """
    i0, i1, w0, w1 = (t.cpu().numpy() for t in bilinear_weights(n_in, n_out))
    same = i0 == i1
    return i0, i1, np.where(same, np.float32(1), w0), np.where(same, np.float32(0), w1)


class ClickMatcher:
    """Answer clicks on the source from cached (C, h, w) feature maps.

    Args:
        src_feat, tgt_feat: (C, h, w) features of the source and the target.
        src_size, tgt_size: the ORIGINAL image sizes (H, W) the maps stand for.
        norm_method, chunk_bytes: how the one-off norm map is computed (see :func:`target_norm_map`).

    A click runs in NumPy on the calling thread (a gemv and a few (H, W)
    element-wise passes): small operations that a thread pool would only slow
    down on a busy machine.
    """

    def __init__(self, src_feat: torch.Tensor, tgt_feat: torch.Tensor, src_size: tuple[int, int],
                 tgt_size: tuple[int, int], *, norm_method: str = "gram",
                 chunk_bytes: int = DEFAULT_CHUNK_BYTES) -> None:
        if src_feat.ndim != 3 or tgt_feat.ndim != 3:
            raise ValueError(f"features must be (C, h, w), got {tuple(src_feat.shape)} and {tuple(tgt_feat.shape)}")
        if src_feat.shape[0] != tgt_feat.shape[0]:
            raise ValueError(f"source and target features differ in channels: {src_feat.shape[0]} vs {tgt_feat.shape[0]}")
        self.src_size = (int(src_size[0]), int(src_size[1]))
        self.tgt_size = (int(tgt_size[0]), int(tgt_size[1]))
        tgt = tgt_feat.detach().float()
        C, h, w = tgt.shape
        self._src = np.ascontiguousarray(src_feat.detach().float().cpu().numpy())  # (C, hs, ws)
        self._tgt = np.ascontiguousarray(tgt.cpu().numpy().reshape(C, h * w))  # (C, h*w)
        self._tgt_grid = (h, w)
        self._sx = _axis(src_feat.shape[2], self.src_size[1])
        self._sy = _axis(src_feat.shape[1], self.src_size[0])
        self._tx = _axis(w, self.tgt_size[1])
        self._ty = _axis(h, self.tgt_size[0])
        t0 = time.perf_counter()
        norm = target_norm_map(tgt, self.tgt_size, method=norm_method, chunk_bytes=chunk_bytes)
        self.norm = np.maximum(norm, EPS)  # (H_t, W_t) float32
        self.setup_seconds = time.perf_counter() - t0
        self._lock = threading.Lock()

    def source_feature(self, x: int, y: int) -> np.ndarray:
        """(C,) feature of the upsampled source map at integer pixel (x, y), unnormalised.

        The four-neighbour bilinear combination, in upsample_rows' order (width, then height).
        """
        ix0, ix1, wx0, wx1 = (a[x] for a in self._sx)
        iy0, iy1, wy0, wy1 = (a[y] for a in self._sy)
        f = self._src
        r0 = f[:, iy0, ix0] * wx0 + f[:, iy0, ix1] * wx1
        r1 = f[:, iy1, ix0] * wx0 + f[:, iy1, ix1] * wx1
        return r0 * wy0 + r1 * wy1

    def upsample(self, low: np.ndarray) -> np.ndarray:
        """A (h, w) map of the target grid upsampled bilinearly to the target size: (H_t, W_t) float32."""
        ix0, ix1, wx0, wx1 = self._tx
        iy0, iy1, wy0, wy1 = self._ty
        bx = low[:, ix0] * wx0 + low[:, ix1] * wx1  # (h, W_t): width first, as upsample_rows
        return bx[iy0] * wy0[:, None] + bx[iy1] * wy1[:, None]

    def query(self, x: float, y: float) -> ClickAnswer:
        """The best target match of source pixel (x, y) (rounded to integers; must lie inside the source)."""
        xi, yi = int(round(float(x))), int(round(float(y)))
        H, W = self.src_size
        if not (0 <= xi < W and 0 <= yi < H):
            raise ValueError(f"point ({xi}, {yi}) is outside the {W}x{H} source image")
        with self._lock:
            t0 = time.perf_counter()
            q = self.source_feature(xi, yi)  # (C,)
            q = q / max(float(np.linalg.norm(q)), EPS)  # F.normalize
            low = (q @ self._tgt).reshape(self._tgt_grid)  # (h, w): q . F at feature resolution
            cos = self.upsample(low)  # (H_t, W_t) = up(q . F)
            cos /= self.norm
            flat = int(np.argmax(cos))  # first maximum in row-major order
            Wt = self.tgt_size[1]
            dt = time.perf_counter() - t0
        return ClickAnswer((xi, yi), (flat % Wt, flat // Wt), float(cos.flat[flat]), cos, dt)


def heatmap_jpeg(cosine: np.ndarray, *, max_side: int = 1024, quality: int = 90) -> bytes:
    """A JET-coloured JPEG of a (H, W) map, min-max normalised; shrunk (area) so its long side is at most ``max_side``.

    A picture for the eye only (the numbers travel as JSON); JPEG encodes in a
    few milliseconds where PNG takes tens at 768x768.
    """
    import cv2

    m = np.asarray(cosine, dtype=np.float32)
    h, w = m.shape
    if max(h, w) > max_side:
        s = max_side / max(h, w)
        m = cv2.resize(m, (max(1, round(w * s)), max(1, round(h * s))), interpolation=cv2.INTER_AREA)
    u8 = cv2.normalize(m, None, 0, 255, cv2.NORM_MINMAX, cv2.CV_8U)  # min-max in one pass (all 0 if flat)
    bgr = cv2.applyColorMap(u8, cv2.COLORMAP_JET)
    ok, buf = cv2.imencode(".jpg", bgr, [cv2.IMWRITE_JPEG_QUALITY, int(quality)])
    if not ok:  # pragma: no cover
        raise ValueError("JPEG encoding failed")
    return buf.tobytes()


class MatchSession:
    """Two images, their features and a :class:`ClickMatcher`: what the match page serves.

    Args:
        source, target: (H, W, 3) uint8 RGB images at their original size.
        src_feat, tgt_feat: their (C, h, w) features.
        info: shown on the page (names, model, prompt ...).
    """

    def __init__(self, source: np.ndarray, target: np.ndarray, src_feat: torch.Tensor, tgt_feat: torch.Tensor,
                 info: dict[str, Any] | None = None) -> None:
        from vidprop.view.frames import encode_jpeg

        self.source = source
        self.target = target
        self.matcher = ClickMatcher(src_feat, tgt_feat, source.shape[:2], target.shape[:2])
        self.info = dict(info or {})
        self.images = {"source": encode_jpeg(source, 95), "target": encode_jpeg(target, 95)}
        log.info("click matcher ready: target norm map %dx%d in %.2f s", target.shape[1], target.shape[0],
                 self.matcher.setup_seconds)

    @classmethod
    def from_matcher(cls, matcher: Any, source: np.ndarray, target: np.ndarray, *, prompt: str = "",
                     names: tuple[str, str] = ("source", "target"), progress: bool = True) -> "MatchSession":
        """Compute both images' features once with a :class:`~vidprop.tasks.match.PairMatcher` (indices 0 and 1, as ``match``)."""
        feats = list(matcher.pair_features(source, target, prompt=prompt)) if getattr(matcher, "joint", False) else []
        for i, (image, name) in enumerate(((source, names[0]), (target, names[1])) if not feats else ()):
            t0 = time.perf_counter()
            if progress:
                log.info("features %d/2: %s (%dx%d) ...", i + 1, name, image.shape[1], image.shape[0])
            feats.append(matcher.features(image, index=i, prompt=prompt))
            if progress:
                log.info("features %d/2: %s done in %.1f s, %s", i + 1, name, time.perf_counter() - t0,
                         "x".join(str(v) for v in feats[-1].shape))
        ext = matcher.config.extractor
        info = {"source": names[0], "target": names[1], "prompt": prompt, "model": ext.model,
                "features": list(feats[0].shape), "stride": getattr(matcher.extractor, "stride", None)}
        return cls(source, target, feats[0], feats[1], info)

    def describe(self) -> dict[str, Any]:
        return {
            **self.info,
            "source_size": [int(self.source.shape[1]), int(self.source.shape[0])],
            "target_size": [int(self.target.shape[1]), int(self.target.shape[0])],
            "setup_seconds": round(self.matcher.setup_seconds, 3),
        }

    def click(self, x: float, y: float) -> dict[str, Any]:
        """The JSON answer of a click: the match, its cosine, the map's range and the heatmap as a data URL."""
        t0 = time.perf_counter()
        ans = self.matcher.query(x, y)
        pic = heatmap_jpeg(ans.cosine)
        return {
            "source": list(ans.source),
            "target": list(ans.target),
            "score": ans.score,
            "min": float(ans.cosine.min()),
            "max": float(ans.cosine.max()),
            "heatmap": "data:image/jpeg;base64," + base64.b64encode(pic).decode("ascii"),
            "query_ms": round(ans.seconds * 1000, 2),
            "total_ms": round((time.perf_counter() - t0) * 1000, 2),
        }
