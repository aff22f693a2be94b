"""SPair-71k / HPatches: both PCK protocols and the HPatches protocol against hand-computed cases and plain
references written here, readers and runners on tiny synthetic layouts."""

from __future__ import annotations

import json
import logging
import math
from types import SimpleNamespace

import cv2
import numpy as np
import pytest
import torch
import torch.nn.functional as F
import yaml
from PIL import Image

from vidprop.config import load_preset
from vidprop.errors import ConfigError, InputError
from vidprop.eval.hpatches import (
    HIGH_RES_SEQUENCES,
    corner_error,
    homography_accuracy,
    hpatches_differences,
    hpatches_keypoints,
    read_hpatches,
    read_keypoint_file,
    run_hpatches,
)
from vidprop.eval.pck import (
    PCK_PROTOCOLS,
    box_threshold,
    pck_correct,
    protocol_correct,
    rescale_points,
    resolve_protocols,
    summarise_pck,
)
from vidprop.eval.spair import read_spair, run_spair, spair_differences
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


def test_both_protocols_on_a_hand_computed_pair():
    # source 1000x500 with box 200 x 400 px -> 102.4 x 409.6 at 512x512: threshold 409.6
    # target 256x1024 (x doubles, y halves at 512); its own box is 200 x 100 px: threshold 200
    src_box, src_size = [100, 50, 300, 450], (1000, 500)
    trg_box, trg_size = [0, 0, 200, 100], (256, 1024)
    gt = np.array([[100.0, 200.0]] * 4)
    pred = np.array([[110, 200], [100, 240], [111, 200], [100, 290]], dtype=np.float64)
    # at 512: offsets (20, 0), (0, 20), (22, 0), (0, 45) against 20.48 / 40.96 / 61.44
    h = protocol_correct("hedlin", pred, gt, src_box=src_box, trg_box=trg_box, src_size=src_size, trg_size=trg_size)
    assert h[0.05].tolist() == [True, True, False, False]
    assert h[0.1].tolist() == [True, True, True, False]
    assert h[0.15].tolist() == [True, True, True, True]
    # original pixels: distances 10, 40, 11, 90 against 10 / 20 / 30
    d = protocol_correct("dift", pred, gt, src_box=src_box, trg_box=trg_box, src_size=src_size, trg_size=trg_size)
    assert d[0.05].tolist() == [True, False, False, False]
    assert d[0.1].tolist() == [True, False, True, False]
    assert d[0.15].tolist() == [True, False, True, False]
    assert box_threshold(src_box, src_size, 512) == pytest.approx(409.6)
    assert box_threshold(trg_box) == 200
    np.testing.assert_allclose(rescale_points(pred[:1], trg_size, 512), [[220.0, 100.0]])
    np.testing.assert_array_equal(rescale_points(pred, trg_size, None), pred)
    assert PCK_PROTOCOLS["hedlin"].box == "source" and PCK_PROTOCOLS["hedlin"].space == 512
    assert "45.4" in PCK_PROTOCOLS["hedlin"].compare_to and "52.9" in PCK_PROTOCOLS["dift"].compare_to
    with pytest.raises(ValueError, match="hedlin PCK protocol needs the source bounding box"):
        protocol_correct("hedlin", pred, gt, src_box=None, trg_box=trg_box, src_size=src_size, trg_size=trg_size)


def test_hedlin_protocol_equals_their_evaluation_code():
    rng = np.random.default_rng(3)
    for _ in range(20):
        src_size = tuple(int(v) for v in rng.integers(100, 900, 2))
        trg_size = tuple(int(v) for v in rng.integers(100, 900, 2))
        x1, y1 = rng.integers(0, 50, 2)
        src_box = [int(x1), int(y1), int(x1 + rng.integers(20, 90)), int(y1 + rng.integers(20, 90))]
        gt = rng.integers(0, 100, (12, 2)).astype(np.float64)
        pred = gt + rng.normal(0, 8, (12, 2))
        got = protocol_correct("hedlin", pred, gt, src_box=src_box, trg_box=None, src_size=src_size,
                               trg_size=trg_size, alphas=(0.05, 0.1))
        for a in (0.05, 0.1):
            np.testing.assert_array_equal(got[a], hedlin_reference(pred, gt, src_box, src_size, trg_size, a))


def test_pck_helper_takes_a_box_a_size_space_and_alpha():
    """The pieces other benchmarks reuse: a threshold from any box in any space, or given directly."""
    # a CUB-like threshold: an image-sized box of a 400x200 image measured at 512x512
    assert box_threshold([0, 0, 400, 200], (400, 200), 512) == 512
    c = pck_correct(np.array([[0.0, 30.0]]), np.zeros((1, 2)), alphas=(0.05, 0.1), threshold=512)
    assert c[0.05].tolist() == [False] and c[0.1].tolist() == [True]  # 30 > 25.6, 30 <= 51.2
    assert resolve_protocols("dift") == ["dift"] and resolve_protocols("attention") == ["hedlin"]
    assert resolve_protocols("attention", "both") == ["hedlin", "dift"]
    assert resolve_protocols("dift", ["hedlin", "hedlin"]) == ["hedlin"]
    with pytest.raises(ConfigError, match="unknown PCK protocol"):
        resolve_protocols("dift", "cub")


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
    # "all" is the i_ and v_ pairs only
    acc = homography_accuracy([0.5, 0.5, 10.0], ["illumination", "other", "viewpoint"])
    assert acc["all"] == {"pairs": 2, "1px": 50.0, "3px": 50.0, "5px": 50.0}


# --------------------------------------------------------------------------- fakes
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


def _texture(rng, h, w):
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
                 "src_kps": src, "trg_kps": trg, "trg_bndbox": [10, 10, 70, 50], "src_bndbox": [15, 12, 45, 32],
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
    assert s["images_encoded_this_run"] == 6 and len(m.calls) == 6  # 3 images per category, each encoded once
    assert {p for _, p in m.calls} == {"a photo of a cat", "a photo of a dog"}
    assert s["per_category"]["cat"]["per_point"]["0.1"] == 100.0
    assert s["per_category"]["dog"]["per_point"]["0.1"] == pytest.approx(100 * 8 / 9)
    assert s["overall"]["per_image"]["0.1"] == pytest.approx(100 * (5 + 2 / 3) / 6)
    rows = (out / "pairs.csv").read_text().splitlines()
    assert rows[0].startswith("pair,category,points,dift:correct@0.05") and len(rows) == 7
    assert s["protocol"] == "dift" and list(s["protocols"]) == ["dift"] and s["dtype"] == "float32"
    assert s["protocols"]["dift"]["overall"] == s["overall"] and "TARGET box" in s["threshold"]
    assert s["published"] is True and s["differences_from_published"] == []
    assert json.loads((out / "summary.json").read_text())["overall"]["points"] == 18
    assert not list(out.glob(".*partial*"))
    record = yaml.safe_load((out / "config.yaml").read_text())
    assert record["benchmark"] == "SPair-71k" and record["preset"] == "semantic" and record["protocols"] == ["dift"]
    # a rerun resumes: every category is finished, nothing is encoded again, the same results
    (out / "parts" / "dog.csv").unlink()  # as if the run had been stopped during "dog"
    again = run_spair(m, spair_root, out)
    assert again["images_encoded_this_run"] == 3 and len(m.calls) == 9 and {p for _, p in m.calls[6:]} == {
        "a photo of a dog"}
    assert (out / "pairs.csv").read_text().splitlines() == rows
    again.pop("seconds"), s.pop("seconds")
    assert again == {**s, "images_encoded_this_run": 3}
    with pytest.raises(ConfigError, match="other settings"):  # other settings into the same folder
        run_spair(m, spair_root, out, limit=1)
    run_spair(m, spair_root, out, limit=1, overwrite=True)
    saved = json.loads((out / "summary.json").read_text())
    assert saved["overall"]["pairs"] == 1 and saved["differences_from_published"] == ["only the first 1 pair(s)"]
    m16 = PatchMatcher("semantic", dtype=torch.float16)
    s = run_spair(m16, spair_root, out, use_category_prompt=False, overwrite=True)
    assert s["differences_from_published"] == ["no category prompt", "computed in float16 instead of the authors' "
                                               "float32"]


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


def test_run_spair_attention_scores_hedlins_protocol_by_default_and_both_on_request(spair_root, tmp_path):
    # pairs 0->1 end up 4 px off in x: within 0.1 x 60 px (DIFT: the target box's larger side) but not within
    # 0.1 x 192 at 512 (Hedlin: the source box, 30 px x 6.4) = 3 px of the 80 px wide target
    offset = (8.0, 2.0)
    ref = plain_spair_scores(spair_root, offset)
    s = run_spair(None, spair_root, tmp_path / "a", attention=ShiftAttention(offset))
    assert s["method"] == "attention" and s["protocol"] == "hedlin" and list(s["protocols"]) == ["hedlin"]
    assert s["overall"]["per_image"]["0.1"] == pytest.approx(100 * np.mean(list(ref["hedlin"].values())))
    assert "SOURCE box" in s["threshold"] and "45.4" in s["compare_to"]
    both = run_spair(None, spair_root, tmp_path / "b", attention=ShiftAttention(offset), protocols="both")
    assert list(both["protocols"]) == ["hedlin", "dift"] and both["overall"] == s["overall"]
    for name in ("dift", "hedlin"):
        got = both["protocols"][name]["overall"]["per_image"]["0.1"]
        assert got == pytest.approx(100 * np.mean(list(ref[name].values())))
    assert s["overall"]["per_image"]["0.1"] == 0.0
    assert both["protocols"]["dift"]["overall"]["per_image"]["0.1"] == pytest.approx(100 / 3)
    header = (tmp_path / "b" / "pairs.csv").read_text().splitlines()[0].split(",")
    assert header[3:5] == ["hedlin:correct@0.05", "hedlin:correct@0.1"] and "dift:pck@0.15" in header
    saved = json.loads((tmp_path / "b" / "summary.json").read_text())
    assert saved["protocols"]["dift"]["description"].startswith("distance <= alpha * max(h, w) of the TARGET")


def test_what_makes_a_run_not_the_published_one():
    from vidprop.features.attention import AttentionSettings

    assert spair_differences("attention", AttentionSettings(batch_size=2, seed=5), dtype="float32") == []
    assert spair_differences("attention", AttentionSettings(heads="all", steps=10), split="val") == [
        "split val instead of test", "attention settings changed from the paper's: steps, heads"]
    assert spair_differences("dift", load_preset("semantic"), categories=["cat"]) == ["only the categories cat"]
    assert spair_differences("dift", load_preset("semantic").override(extractor={"t": 100})) == [
        "settings changed from a published preset (semantic)"]


def test_hedlin_protocol_needs_the_source_box(spair_root, tmp_path):
    f = sorted((spair_root / "PairAnnotation" / "test").glob("*.json"))[1]
    d = json.loads(f.read_text())
    del d["src_bndbox"]
    f.write_text(json.dumps(d))
    assert read_spair(spair_root)[1].src_bbox is None and read_spair(spair_root)[0].src_bbox == (15, 12, 45, 32)
    run_spair(PatchMatcher("semantic"), spair_root, tmp_path / "ok")  # DIFT's protocol does not need it
    with pytest.raises(InputError, match=f"{f.name}: no src_bndbox, which the hedlin PCK protocol needs"):
        run_spair(PatchMatcher("semantic"), spair_root, tmp_path / "no", protocols="hedlin")


@pytest.fixture()
def hpatches_root(tmp_path):
    return make_hpatches(tmp_path / "hpatches")


def make_hpatches(root):
    """i_room (image 6 blank: no homography) and v_wall (images i shifted by (i - 1, -(i % 3)))."""
    rng = np.random.default_rng(1)
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
    assert s["images_encoded_this_run"] == 12 and len(m.calls) == 12  # image 1 of each sequence once
    acc = s["accuracy"]
    assert acc["viewpoint"] == {"pairs": 5, "1px": 100.0, "3px": 100.0, "5px": 100.0}
    assert acc["illumination"]["pairs"] == 5 and acc["illumination"]["1px"] == 80.0  # the blank image fails
    rows = (tmp_path / "out" / "pairs.csv").read_text().splitlines()
    assert len(rows) == 11 and rows[5].endswith(",inf")
    # resumable per sequence: a finished one is read back (its "inf" too), the missing one recomputed
    (tmp_path / "out" / "parts" / "v_wall.csv").unlink()
    again = run_hpatches(m, hpatches_root, tmp_path / "out", max_keypoints=200)
    assert again["images_encoded_this_run"] == 6 and again["accuracy"] == acc
    assert (tmp_path / "out" / "pairs.csv").read_text().splitlines() == rows
    with pytest.raises(ConfigError, match="other settings"):
        run_hpatches(m, hpatches_root, tmp_path / "out", max_keypoints=100)


def test_hpatches_scores_exact_corner_errors_also_when_resumed(hpatches_root, tmp_path, monkeypatch):
    """An error a hair above 3 px is wrong at 3 px, in the first run and when read back from its part."""
    import itertools

    import vidprop.eval.hpatches as hpatches

    errors = itertools.cycle([3.00004, 0.5, 2.99996, 7.0, 1.0])  # each sequence's 5 pairs
    monkeypatch.setattr(hpatches, "corner_error", lambda *a: next(errors))
    out = tmp_path / "out"
    s = run_hpatches(PatchMatcher("geometric"), hpatches_root, out, max_keypoints=50)
    assert s["accuracy"]["all"]["3px"] == 60.0 and s["accuracy"]["all"]["1px"] == 40.0
    (out / "parts" / "v_wall.csv").unlink()  # i_room is read back from its part
    again = run_hpatches(PatchMatcher("geometric"), hpatches_root, out, max_keypoints=50)
    assert again["accuracy"] == s["accuracy"]


def test_keypoint_files_are_read_as_dift_reads_them(tmp_path):
    """float32 'x y' rows; duplicates removed with np.unique over rows, which sorts them by x then y."""
    f = tmp_path / "i_room-1.kp"
    f.write_text("12.5 3.25\n0.1 40\n12.5 3.25\n0.1 7\n300.123456789 2\n")
    kps = read_keypoint_file(f)
    expected = np.array([[0.1, 7], [0.1, 40], [12.5, 3.25], [300.123456789, 2]], dtype=np.float32)
    assert kps.dtype == np.float64
    np.testing.assert_array_equal(kps, expected.astype(np.float64))  # float32 values, sorted, 4 of 5 rows
    np.testing.assert_array_equal(hpatches_keypoints(tmp_path, "i_room", 1), kps)
    (tmp_path / "one.kp").write_text("5 6\n")
    assert read_keypoint_file(tmp_path / "one.kp").tolist() == [[5.0, 6.0]]
    (tmp_path / "bad.kp").write_text("1 2 3\n4 5 6\n")
    with pytest.raises(InputError, match="bad.kp: a keypoint file must hold rows of 2 finite numbers"):
        read_keypoint_file(tmp_path / "bad.kp")
    (tmp_path / "empty.kp").write_text("")
    with pytest.raises(InputError, match="empty.kp: no keypoints"):
        read_keypoint_file(tmp_path / "empty.kp")
    with pytest.raises(InputError, match="v_x-2.kp: keypoint file not found"):
        hpatches_keypoints(tmp_path, "v_x", 2)


def test_high_resolution_and_other_sequences_are_left_out(hpatches_root, caplog):
    import shutil

    assert len(HIGH_RES_SEQUENCES) == 8 and "i_dc" in HIGH_RES_SEQUENCES and "v_talent" in HIGH_RES_SEQUENCES
    for name in ("i_dc", "v_talent", "x_extra"):
        shutil.copytree(hpatches_root / "v_wall", hpatches_root / name)
    with caplog.at_level(logging.WARNING, logger="vidprop.eval.hpatches"):
        seqs = read_hpatches(hpatches_root)
    assert [s.name for s in seqs] == ["i_room", "v_wall"]
    assert "high-resolution sequence(s) the standard HPatches download removes" in caplog.text
    assert "i_dc, v_talent" in caplog.text and "x_extra" in caplog.text
    assert [s.name for s in read_hpatches(hpatches_root, include_high_res=True)] == ["i_dc", "i_room", "v_talent",
                                                                                      "v_wall"]


def test_run_hpatches_with_keypoint_files_and_the_precision_it_ran_in(hpatches_root, tmp_path):
    kp_dir = tmp_path / "superpoint-1k"
    kp_dir.mkdir()
    rng = np.random.default_rng(2)
    base = np.stack([rng.uniform(8, 100, 80), rng.uniform(8, 70, 80)], axis=1).round(1)
    for seq in ("i_room", "v_wall"):
        for i in range(1, 7):
            dx, dy = (i - 1, -(i % 3)) if (seq == "v_wall" and i > 1) else (0, 0)
            pts = np.concatenate([base - [dx, dy], base[:5] - [dx, dy]])  # 5 rows twice; H_1_i moves by -(dx, dy)
            np.savetxt(kp_dir / f"{seq}-{i}.kp", pts, fmt="%.4f")
    m = PatchMatcher("geometric", dtype=torch.float16)
    s = run_hpatches(m, hpatches_root, tmp_path / "out", keypoints=kp_dir)
    assert s["keypoints"] == {"source": "files", "folder": str(kp_dir)} and s["dtype"] == "float16"
    assert s["high_res_sequences"] == "excluded"
    assert s["published"] is False and s["differences_from_published"] == [
        "features computed in float16 instead of the authors' float32"]
    assert s["accuracy"]["viewpoint"] == {"pairs": 5, "1px": 100.0, "3px": 100.0, "5px": 100.0}
    rows = [r.split(",") for r in (tmp_path / "out" / "pairs.csv").read_text().splitlines()[1:]]
    assert {(r[3], r[4]) for r in rows} == {("80", "80")}  # duplicates removed
    (kp_dir / "v_wall-4.kp").unlink()
    with pytest.raises(InputError, match="v_wall-4.kp: keypoint file not found"):
        run_hpatches(m, hpatches_root, tmp_path / "out2", keypoints=kp_dir)
    geo = load_preset("geometric")
    assert geo.extractor.dtype == "float32" and geo.published  # published-number runs: the authors' float32
    assert not geo.override(extractor={"dtype": "float16"}).published
    assert hpatches_differences(geo, kp_dir, False, "lmeds", 3) == []
    assert hpatches_differences(geo, None, True, "ransac", 3, limit=2) == [
        "only the first 2 sequence(s)", "SIFT keypoints instead of the SuperPoint keypoint files",
        "the 8 high-resolution sequences included",
        "cosine matches and ransac at 3 px instead of the preset's cosine and lmeds at 3 px"]
    adm = load_preset("hpatches-adm")  # DIFT_adm's published command: --metric l2 --mode ransac
    assert adm.published and (adm.matching.distance, adm.matching.homography, adm.matching.threshold) == ("l2", "ransac", 3.0)
    assert hpatches_differences(adm, kp_dir, False, "ransac", 3, distance="l2") == []
    assert hpatches_differences(adm, kp_dir, False, "lmeds", 3, distance="cosine") == [
        "cosine matches and lmeds at 3 px instead of the preset's l2 and ransac at 3 px"]


def test_hpatches_adm_runs_difts_published_matching_l2_and_ransac(hpatches_root, tmp_path, monkeypatch):
    """The preset's matching section reaches the matcher: L2 mutual neighbours and RANSAC at 3 px (DIFT_adm's command)."""
    import vidprop.tasks.match as match

    seen = []
    real = match.geometric_match_features

    def spy(*a, **kw):
        seen.append((kw["distance"], kw["method"], kw["threshold"]))
        return real(*a, **kw)

    monkeypatch.setattr(match, "geometric_match_features", spy)
    s = run_hpatches(PatchMatcher("hpatches-adm"), hpatches_root, tmp_path / "adm", max_keypoints=100)
    assert set(seen) == {("l2", "ransac", 3.0)} and len(seen) == 10
    assert s["distance"] == "l2" and s["homography"] == {"method": "ransac", "threshold": 3.0}
    seen.clear()
    s = run_hpatches(PatchMatcher("hpatches-adm"), hpatches_root, tmp_path / "cos", max_keypoints=100,
                     distance="cosine", method="lmeds")
    assert set(seen) == {("cosine", "lmeds", 3.0)}
    assert "cosine matches and lmeds at 3 px instead of the preset's l2 and ransac at 3 px" in s["differences_from_published"]


def test_run_spair_scores_sd_dinos_protocol_on_their_sampled_pairs(spair_root, tmp_path):
    from vidprop.eval.sddino_pck import category_mean

    s = run_spair(PatchMatcher("semantic"), spair_root, tmp_path / "sd", protocols="sd-dino", sample=4)
    r = s["protocols"]["sd-dino"]
    assert s["protocol"] == "sd-dino" and "59.9" in r["compare_to"]
    assert s["overall"]["pairs"] == 8  # 4 per category, drawn with replacement from 3
    assert r["overall"]["category_mean"] == category_mean(r["per_category"])
    assert "4 pairs per category drawn as sd-dino's script draws them (seed 42)" in s["differences_from_published"]
    rows = (tmp_path / "sd" / "pairs.csv").read_text().splitlines()
    assert rows[0].split(",")[3] == "sd-dino:correct@0.05" and len(rows) == 9
