"""CUB keypoint transfer: a tiny synthetic subsets layout, PCK computed by hand; resume and provenance."""

from __future__ import annotations

import json

import pytest
import torch
import yaml

from tests.eval.label_matcher import LabelMatcher, paint
from vidprop.errors import ConfigError, InputError
from vidprop.eval.cub import cub_pairs, read_cub, run_cub

# per image: the vertical offset of each keypoint's prediction spot above its ground truth, and visibility
SUBSET0 = {"d": [[0, 3, 5], [1, 7, 2], [4, 0, 10]], "vis": [[1, 1, 1], [1, 0, 1], [1, 1, 1]]}
SUBSET1 = {"d": [[0, 0, 0], [9, 9, 9]], "vis": [[1, 1, 1], [1, 1, 1]]}
GT = [(8, 20), (20, 24), (32, 30)]  # (x, y) of keypoints 1..3 in every 40x40 image


def make_subset(folder, spec) -> None:
    kps = []
    for k, (offsets, vis) in enumerate(zip(spec["d"], spec["vis"])):
        spots = {i + 1: [(x, y - d), (x, y)] for i, ((x, y), d) in enumerate(zip(GT, offsets))}
        paint(folder / "images" / f"img_{k:03d}.png", (40, 40), spots)
        kps.append([[x, y, v] for (x, y), v in zip(GT, vis)])
    (folder / "pck").mkdir(parents=True, exist_ok=True)
    torch.save(torch.tensor(kps, dtype=torch.float32), folder / "pck" / "keypoints.pt")


@pytest.fixture()
def cub_root(tmp_path):
    root = tmp_path / "cub_subsets"
    make_subset(root / "cub_subset_0", SUBSET0)
    make_subset(root / "cub_subset_1", SUBSET1)
    return root


def test_pairs_are_every_ordered_pair():
    assert cub_pairs(3) == [(0, 1), (1, 0), (0, 2), (2, 0), (1, 2), (2, 1)]


def test_pck_per_point_visible_in_both_by_hand(cub_root, tmp_path):
    m = LabelMatcher(3)
    s = run_cub(m, cub_root, tmp_path / "run")
    # threshold alpha * 40 px: 2 / 4 / 6.  Subset 0, (source, target): visible points and their errors (d of the target)
    #   (0,1): kp 1, 3 -> 1, 2   (1,0): kp 1, 3 -> 0, 5   (0,2): 4, 0, 10   (2,0): 0, 3, 5   (1,2): 4, 10   (2,1): 1, 2
    #   correct @0.05: 2+1+1+1+0+2 = 7, @0.1: 2+1+2+2+1+2 = 10, @0.15: 2+2+2+3+1+2 = 12 of 14 points
    # Subset 1: (0,1) errors 9, 9, 9 -> 0 correct; (1,0) errors 0 -> 3 correct; of 6 points
    sub = s["per_category"]
    assert sub["cub_subset_0"]["points"] == 14 and sub["cub_subset_1"]["points"] == 6
    assert sub["cub_subset_0"]["per_point"] == pytest.approx({"0.05": 50.0, "0.1": 100 * 10 / 14, "0.15": 100 * 12 / 14})
    assert sub["cub_subset_1"]["per_point"] == pytest.approx({"0.05": 50.0, "0.1": 50.0, "0.15": 50.0})
    assert s["mean_over_subsets"] == pytest.approx({"0.05": 50.0, "0.1": (100 * 10 / 14 + 50) / 2, "0.15": (100 * 12 / 14 + 50) / 2})
    assert s["overall"]["per_point"]["0.1"] == pytest.approx(100 * 13 / 20)
    assert sub["cub_subset_0"]["per_image"]["0.1"] == pytest.approx(100 * (1 + .5 + 2 / 3 + 2 / 3 + .5 + 1) / 6)
    assert m.calls == 5 and set(m.prompts) == {"a photo of a bird"}  # each image encoded once
    rows = (tmp_path / "run" / "pairs.csv").read_text().splitlines()
    assert rows[0] == "subset,source,target,points,dift:correct@0.05,dift:correct@0.1,dift:correct@0.15"
    assert rows[1] == "cub_subset_0,img_000.png,img_001.png,2,2,2,2" and len(rows) == 1 + 8
    assert json.loads((tmp_path / "run" / "summary.json").read_text())["mean_over_subsets"] == s["mean_over_subsets"]


def test_resume_skips_finished_subsets_and_refuses_other_settings(cub_root, tmp_path):
    out = tmp_path / "run"
    run_cub(LabelMatcher(3), cub_root, out, subsets=[0, 1])
    rec = yaml.safe_load((out / "config.yaml").read_text())
    assert rec["benchmark"].startswith("CUB") and rec["config"]["extractor"]["t"] == 261 and rec["vidprop_version"]
    (out / "parts" / "cub_subset_1.csv").unlink()
    again = LabelMatcher(3)
    s = run_cub(again, cub_root, out, subsets=[0, 1])
    assert again.calls == 2  # only subset 1 (2 images) was encoded again
    assert s["mean_over_subsets"]["0.1"] == pytest.approx((100 * 10 / 14 + 50) / 2)
    other = LabelMatcher(3)
    other.config = other.config.override(extractor={"t": 100})
    with pytest.raises(ConfigError, match="other settings"):
        run_cub(other, cub_root, out, subsets=[0, 1])
    run_cub(other, cub_root, out, subsets=[0, 1], overwrite=True)
    assert other.calls == 5


def test_bad_layouts(tmp_path, cub_root):
    with pytest.raises(InputError, match="no cub_subset"):
        read_cub(tmp_path)
    with pytest.raises(InputError, match=r"subset\(s\) \[7\] not found"):
        read_cub(cub_root, subsets=[7])
    torch.save(torch.zeros(3, 3), cub_root / "cub_subset_0" / "pck" / "keypoints.pt")
    with pytest.raises(InputError, match="expected keypoints of shape"):
        read_cub(cub_root)
    torch.save(torch.zeros(2, 3, 3), cub_root / "cub_subset_0" / "pck" / "keypoints.pt")
    with pytest.raises(InputError, match="3 images in images/ but keypoints for 2"):
        read_cub(cub_root)
