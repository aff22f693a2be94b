"""SPair-71k / HPatches: metrics against hand-computed cases, readers and runners on tiny synthetic layouts."""

from __future__ import annotations

import json
import math

import cv2
import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image

from vidprop.config import load_preset
from vidprop.errors import InputError, OutputExistsError
from vidprop.eval.pairs import (
    corner_error,
    homography_accuracy,
    pck_correct,
    read_hpatches,
    read_spair,
    run_hpatches,
    run_spair,
    summarise_pck,
)
from vidprop.tasks.match import prompt_for


# --------------------------------------------------------------------------- metrics
def test_pck_uses_the_larger_side_of_the_target_box():
    bbox = [10, 20, 110, 70]  # 100 wide, 50 high -> max 100
    gt = np.zeros((4, 2))
    pred = np.array([[3, 4], [6, 8], [10.0001, 0], [9, 12]])  # distances 5, 10, 10.0001, 15
    c = pck_correct(pred, gt, bbox)
    assert c[0.05].tolist() == [True, False, False, False]
    assert c[0.1].tolist() == [True, True, False, False]
    assert c[0.15].tolist() == [True, True, True, True]


def test_per_image_and_per_point_differ_as_hand_computed():
    t, f = True, False
    records = [
        ("cat", {0.1: np.array([t, t, t, f])}),  # 3/4
        ("cat", {0.1: np.array([f])}),  # 0/1
        ("dog", {0.1: np.array([t, f])}),  # 1/2
    ]
    s = summarise_pck(records, alphas=(0.1,))
    assert s["overall"]["per_image"]["0.1"] == pytest.approx(100 * (0.75 + 0 + 0.5) / 3)
    assert s["overall"]["per_point"]["0.1"] == pytest.approx(100 * 4 / 7)
    assert s["per_category"]["cat"]["per_image"]["0.1"] == pytest.approx(100 * 0.375)
    assert s["per_category"]["cat"]["per_point"]["0.1"] == pytest.approx(100 * 3 / 5)
    assert s["per_category"]["dog"]["points"] == 2 and s["overall"]["pairs"] == 3


def test_corner_error_and_homography_accuracy():
    shift = np.array([[1, 0, 3.0], [0, 1, 4.0], [0, 0, 1]])
    assert corner_error(shift, np.eye(3), 640, 480) == pytest.approx(5.0)
    assert corner_error(np.eye(3), np.eye(3), 640, 480) == 0.0
    assert corner_error(None, np.eye(3), 640, 480) == math.inf
    scale = np.diag([2.0, 2.0, 1.0])  # corners (0,0),(0,9),(19,0),(19,9) move by 0, 9, 19, |(19,9)|
    assert corner_error(scale, np.eye(3), 20, 10) == pytest.approx((0 + 9 + 19 + math.hypot(19, 9)) / 4)
    acc = homography_accuracy([0.5, 2.0, 4.0, 10.0, math.inf],
                              ["illumination", "illumination", "viewpoint", "viewpoint", "viewpoint"])
    assert acc["all"] == {"pairs": 5, "1px": 20.0, "3px": 40.0, "5px": 60.0}
    assert acc["illumination"] == {"pairs": 2, "1px": 50.0, "3px": 100.0, "5px": 100.0}
    assert acc["viewpoint"]["3px"] == 0.0 and acc["viewpoint"]["5px"] == pytest.approx(100 / 3)


# --------------------------------------------------------------------------- fakes
class PatchMatcher:
    """Stands in for PairMatcher: features = each pixel's 5x5 neighbourhood (full resolution)."""

    def __init__(self, preset: str) -> None:
        self.config = load_preset(preset)
        self.calls: list[tuple[int, str]] = []

    def prompt(self, category=None, prompt=None):
        return prompt if prompt is not None else prompt_for(self.config.extractor.prompt, category)

    def features(self, image, *, index=0, prompt=""):
        self.calls.append((index, prompt))
        x = torch.from_numpy(image).permute(2, 0, 1)[None].float() / 255.0
        p = F.unfold(F.pad(x, (2, 2, 2, 2), mode="reflect"), 5)  # (1, 75, H*W)
        return (p - p.mean(1, keepdim=True))[0].reshape(75, *image.shape[:2])


def _texture(rng, h, w):
    small = rng.random((h // 6, w // 6, 3))
    return (cv2.resize(small, (w, h), interpolation=cv2.INTER_CUBIC).clip(0, 1) * 255).astype(np.uint8)


@pytest.fixture()
def spair_root(tmp_path):
    rng = np.random.default_rng(0)
    root = tmp_path / "SPair-71k"
    (root / "PairAnnotation" / "test").mkdir(parents=True)
    shifts = {}
    for cat in ("cat", "dog"):
        (root / "JPEGImages" / cat).mkdir(parents=True)
        base = _texture(rng, 60, 80)
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
                 "src_kps": src, "trg_kps": trg, "trg_bndbox": [10, 10, 70, 50],
                 "src_imsize": [80, 60, 3], "trg_imsize": [80, 60, 3]}
            (root / "PairAnnotation" / "test" / f"{n:06d}-{cat}{a}-{cat}{b}:{cat}.json").write_text(json.dumps(d))
    return root


def test_read_spair_layout_and_errors(spair_root, tmp_path):
    pairs = read_spair(spair_root)
    assert len(pairs) == 6 and pairs[0].category == "cat" and pairs[0].src_kps.shape == (3, 2)
    assert pairs[0].src_path == spair_root / "JPEGImages" / "cat" / "cat0.jpg"
    assert len(read_spair(spair_root, limit=2)) == 2
    assert {p.category for p in read_spair(spair_root, categories=["dog"])} == {"dog"}
    with pytest.raises(InputError, match="PairAnnotation/test: no such folder"):
        read_spair(tmp_path / "nowhere")
    bad = spair_root / "PairAnnotation" / "test" / "zzz.json"
    bad.write_text(json.dumps({"category": "cat"}))
    with pytest.raises(InputError, match="zzz.json: not a valid SPair-71k pair annotation"):
        read_spair(spair_root)


def test_run_spair_encodes_each_image_once_and_scores(spair_root, tmp_path):
    m = PatchMatcher("semantic")
    out = tmp_path / "runs" / "spair"
    s = run_spair(m, spair_root, out)
    assert s["images_encoded"] == 6 and len(m.calls) == 6  # 3 images per category, each encoded once
    assert {p for _, p in m.calls} == {"a photo of a cat", "a photo of a dog"}
    assert s["per_category"]["cat"]["per_point"]["0.1"] == 100.0
    assert s["per_category"]["dog"]["per_point"]["0.1"] == pytest.approx(100 * 8 / 9)
    assert s["overall"]["per_image"]["0.1"] == pytest.approx(100 * (5 + 2 / 3) / 6)
    rows = (out / "pairs.csv").read_text().splitlines()
    assert rows[0].startswith("pair,category,points,correct@0.05") and len(rows) == 7
    assert json.loads((out / "summary.json").read_text())["overall"]["points"] == 18
    assert not list(out.glob(".*partial*"))
    with pytest.raises(OutputExistsError):
        run_spair(m, spair_root, out)
    run_spair(m, spair_root, out, limit=1, overwrite=True)
    assert json.loads((out / "summary.json").read_text())["overall"]["pairs"] == 1


@pytest.fixture()
def hpatches_root(tmp_path):
    rng = np.random.default_rng(1)
    root = tmp_path / "hpatches"
    for name in ("i_room", "v_wall"):
        d = root / name
        d.mkdir(parents=True)
        big = _texture(rng, 120, 150)
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


def test_read_hpatches_and_errors(hpatches_root, tmp_path):
    seqs = read_hpatches(hpatches_root)
    assert [s.name for s in seqs] == ["i_room", "v_wall"] and [s.kind for s in seqs] == ["illumination", "viewpoint"]
    assert len(seqs[1].images) == 6 and seqs[1].homographies[0][0, 2] == -1
    assert len(read_hpatches(hpatches_root, limit=1)) == 1
    (hpatches_root / "v_wall" / "H_1_3").write_text("1 2 3\n")
    with pytest.raises(InputError, match="H_1_3: a homography file must hold 3x3 numbers"):
        read_hpatches(hpatches_root)
    with pytest.raises(InputError, match="no such folder"):
        read_hpatches(tmp_path / "missing")


def test_run_hpatches_scores_and_counts_failures(hpatches_root, tmp_path):
    m = PatchMatcher("geometric")
    s = run_hpatches(m, hpatches_root, tmp_path / "out", max_keypoints=200)
    assert s["images_encoded"] == 12 and len(m.calls) == 12  # image 1 of each sequence once
    acc = s["accuracy"]
    assert acc["viewpoint"] == {"pairs": 5, "1px": 100.0, "3px": 100.0, "5px": 100.0}
    assert acc["illumination"]["pairs"] == 5 and acc["illumination"]["1px"] == 80.0  # the blank image fails
    rows = (tmp_path / "out" / "pairs.csv").read_text().splitlines()
    assert len(rows) == 11 and rows[5].endswith(",inf")
