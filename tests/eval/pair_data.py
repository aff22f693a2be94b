"""SPair-71k and HPatches test data: tiny synthetic layouts (with their fixtures), a stand-in matcher and
attention method, and Hedlin et al.'s PCK as plain reference code."""

from __future__ import annotations

import json
from types import SimpleNamespace

import cv2
import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image

from vidprop.config import load_preset
from vidprop.tasks.match import prompt_for


def hedlin_reference(pred, gt, src_box, src_size, trg_size, alpha):
    """Hedlin et al.'s scoring written as their evaluation code does it: float32 tensors, keypoints and the
    SOURCE box rescaled to 512 with each image's (W, H), threshold max(w, h) of that box, ``l2 <= thr * alpha``."""
    imside = 512
    trg_kps = torch.tensor(gt, dtype=torch.float32).t()  # (2, N)
    trg_kps = torch.stack([trg_kps[0] * (imside / trg_size[0]), trg_kps[1] * (imside / trg_size[1])])
    prd = torch.tensor(pred, dtype=torch.float32).t()
    prd = torch.stack([prd[0] * (imside / trg_size[0]), prd[1] * (imside / trg_size[1])])
    bbox = torch.tensor(src_box, dtype=torch.float32)
    bbox[0::2] *= imside / src_size[0]
    bbox[1::2] *= imside / src_size[1]
    thres = torch.max(bbox[2] - bbox[0], bbox[3] - bbox[1])
    l2 = (prd - trg_kps).pow(2).sum(dim=0).pow(0.5)
    return torch.le(l2, thres.expand_as(l2) * alpha).numpy()


class PatchMatcher:
    """Stands in for PairMatcher: features = each pixel's 5x5 neighbourhood (full resolution)."""

    def __init__(self, preset: str, dtype: torch.dtype = torch.float32) -> None:
        self.config = load_preset(preset)
        self.extractor = SimpleNamespace(dtype=dtype)
        self.calls: list[tuple[int, str]] = []

    def prompt(self, category=None, prompt=None):
        return prompt if prompt is not None else prompt_for(self.config.extractor.prompt, category)

    def features(self, image, *, index=0, prompt=""):
        self.calls.append((index, prompt))
        x = torch.from_numpy(image).permute(2, 0, 1)[None].float() / 255.0
        p = F.unfold(F.pad(x, (2, 2, 2, 2), mode="reflect"), 5)  # (1, 75, H*W)
        return (p - p.mean(1, keepdim=True))[0].reshape(75, *image.shape[:2])


def texture(rng, h, w):
    small = rng.random((h // 6, w // 6, 3))
    return (cv2.resize(small, (w, h), interpolation=cv2.INTER_CUBIC).clip(0, 1) * 255).astype(np.uint8)


@pytest.fixture()
def spair_root(tmp_path):
    return make_spair(tmp_path / "SPair-71k")


def make_spair(root):
    """Two categories of 3 shifted copies of a texture, 3 pairs each, one wrong annotation (dog 1->2)."""
    rng = np.random.default_rng(0)
    (root / "PairAnnotation" / "test").mkdir(parents=True)
    shifts = {}
    for cat in ("cat", "dog"):
        (root / "JPEGImages" / cat).mkdir(parents=True)
        base = texture(rng, 60, 80)
        for j, (dx, dy) in enumerate([(0, 0), (4, 2), (-3, 5)]):
            img = np.roll(base, (dy, dx), axis=(0, 1))
            Image.fromarray(img).save(root / "JPEGImages" / cat / f"{cat}{j}.jpg", quality=100)
            shifts[(cat, j)] = (dx, dy)
    n = 0
    for cat in ("cat", "dog"):
        for a, b in [(0, 1), (0, 2), (1, 2)]:
            (sx, sy), (tx, ty) = shifts[(cat, a)], shifts[(cat, b)]
            src = [[20, 20], [40, 30], [55, 40]]
            trg = [[x - sx + tx, y - sy + ty] for x, y in src]
            if cat == "dog" and (a, b) == (1, 2):
                trg[2] = [0, 0]  # a wrong annotation: that point cannot be matched within the threshold
            n += 1
            d = {"src_imname": f"{cat}{a}.jpg", "trg_imname": f"{cat}{b}.jpg", "category": cat,
                 "src_kps": src, "trg_kps": trg, "trg_bndbox": [10, 10, 70, 50], "src_bndbox": [15, 12, 45, 32],
                 "src_imsize": [80, 60, 3], "trg_imsize": [80, 60, 3]}
            (root / "PairAnnotation" / "test" / f"{n:06d}-{cat}{a}-{cat}{b}:{cat}.json").write_text(json.dumps(d))
    return root


class ShiftAttention:
    """Stands in for AttentionMatcher: every match is the source point moved by a fixed offset."""

    dtype = torch.float32
    settings = None

    def __init__(self, offset):
        self.offset = np.asarray(offset, dtype=np.float64)

    def match(self, src, trg, points):
        return SimpleNamespace(target_points=np.asarray(points, np.float64) + self.offset)


def plain_spair_scores(root, offset):
    """Per-pair fraction correct at 0.1 under both protocols, straight from the JSON files."""
    out = {"dift": {}, "hedlin": {}}
    for f in sorted((root / "PairAnnotation" / "test").glob("*.json")):
        d = json.loads(f.read_text())
        pred = np.asarray(d["src_kps"], float) + offset
        gt = np.asarray(d["trg_kps"], float)
        w, h = d["trg_imsize"][:2]
        box = d["trg_bndbox"]
        dist = np.linalg.norm(pred - gt, axis=1)
        out["dift"][f.stem] = np.mean(dist / max(box[3] - box[1], box[2] - box[0]) <= 0.1)
        out["hedlin"][f.stem] = np.mean(hedlin_reference(pred, gt, d["src_bndbox"], d["src_imsize"][:2], (w, h), 0.1))
    return out


@pytest.fixture()
def hpatches_root(tmp_path):
    return make_hpatches(tmp_path / "hpatches")


def make_hpatches(root):
    """i_room (image 6 blank: no homography) and v_wall (images i shifted by (i - 1, -(i % 3)))."""
    rng = np.random.default_rng(1)
    for name in ("i_room", "v_wall"):
        d = root / name
        d.mkdir(parents=True)
        big = texture(rng, 120, 150)
        Image.fromarray(big[10:100, 10:130]).save(d / "1.ppm")
        for i in range(2, 7):
            dx, dy = (i - 1, -(i % 3)) if name == "v_wall" else (0, 0)
            if name == "i_room" and i == 6:
                img = np.full((90, 120, 3), 128, np.uint8)  # featureless: no homography can be fitted
            else:
                img = big[10 + dy : 100 + dy, 10 + dx : 130 + dx]
            Image.fromarray(np.ascontiguousarray(img)).save(d / f"{i}.ppm")
            np.savetxt(d / f"H_1_{i}", np.array([[1, 0, -dx], [0, 1, -dy], [0, 0, 1]], float))
    return root
