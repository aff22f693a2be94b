"""CUB keypoint transfer: a tiny synthetic subsets layout, PCK computed by hand; resume and provenance."""

from __future__ import annotations

import itertools
import json

import numpy as np
import pytest
import torch
import yaml

from tests.eval.cub_release import write_release
from tests.eval.same_results import assert_same_results
from tests.eval.label_matcher import LabelAttention, LabelMatcher, paint
from vidprop.errors import ConfigError, InputError
from vidprop.eval.cub import (
    cub_correct,
    cub_layout,
    cub_pairs,
    group_pairs,
    hedlin_cub_threshold,
    read_cub,
    read_cub_release,
    run_cub,
)

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


# ---------------------------------------------------------------- the CUB_200_2011 release (Hedlin et al.'s layout)
PARTS = [(8, 10), (20, 30), (30, 20)]  # (x, y) of parts 1..3 in every image


def _im(cls, train, size, box, d, vis=(1, 1, 1)):
    return {"cls": cls, "train": train, "size": size, "box": box, "d": d,
            "kps": [(x, y, v) if v else (0, 0, 0) for (x, y), v in zip(PARTS, vis)]}


RELEASE = [
    _im(1, 0, (80, 40), (0, 0, 30, 20), [0, 2, 6]),                  # 1
    _im(1, 1, (50, 50), (0, 0, 10, 10), [0, 0, 0]),                  # 2: a training image, never used
    _im(1, 0, (40, 80), (5, 5, 30, 35), [3, 0, 10]),                 # 3
    _im(1, 0, (64, 64), (0, 0, 50, 40), [1, 5, 0], vis=(1, 1, 0)),   # 4
    _im(2, 0, (60, 60), (0, 0, 20, 20), [0, 0, 0], vis=(1, 0, 1)),   # 5
    _im(2, 0, (60, 60), (0, 0, 20, 25), [4, 4, 4]),                  # 6
    _im(3, 0, (50, 50), (0, 0, 10, 10), [0, 0, 0]),                  # 7, 8: class 3, beyond --classes 2
    _im(3, 0, (50, 50), (0, 0, 10, 10), [0, 0, 0]),
]


@pytest.fixture()
def release(tmp_path):
    write_release(tmp_path / "data", RELEASE)
    return tmp_path / "data"


def authors_cub_pck(images, classes, alpha):
    """Hedlin et al.'s CUB scoring written out plainly from the release's description: the test images of
    classes 1..classes, each unordered pair of a class once (file order, the earlier the source), the parts
    visible in both, images and points rescaled to 512x512, threshold max(box w, box h) * 512 / W of the
    target; per pair the fraction correct.  The matches are where a label matcher finds them (d above)."""
    out = []
    for c in range(1, classes + 1):
        ids = [i for i, im in enumerate(images) if im["cls"] == c and im["train"] == 0]
        for a, b in itertools.combinations(ids, 2):
            src, trg = images[a], images[b]
            w, h = trg["size"]
            thres = max(trg["box"][2], trg["box"][3]) * 512 / w
            hits = []
            for k in range(len(PARTS)):
                if src["kps"][k][2] and trg["kps"][k][2]:
                    gx, gy = trg["kps"][k][0] * 512 / w, trg["kps"][k][1] * 512 / h
                    px, py = trg["kps"][k][0] * 512 / w, (trg["kps"][k][1] - trg["d"][k]) * 512 / h
                    hits.append(((px - gx) ** 2 + (py - gy) ** 2) ** 0.5 <= alpha * thres)
            out.append(sum(hits) / len(hits))
    return out


def test_release_reader(release):
    groups = read_cub_release(release / "CUB_200_2011", classes=2)
    assert [g.name for g in groups] == ["001.Class_1", "002.Class_2"]
    assert [p.name for p in groups[0].images] == ["img_01.png", "img_03.png", "img_04.png"]  # test images only
    assert groups[0].keypoints.shape == (3, 3, 3) and tuple(groups[0].keypoints[2, 2]) == (0, 0, 0)
    assert tuple(groups[0].boxes[1]) == (5, 5, 30, 35)
    assert group_pairs(groups[0]) == [(0, 1), (0, 2), (1, 2)] and group_pairs(groups[1]) == [(0, 1)]  # once each
    assert cub_layout(release) == ("release", release / "CUB_200_2011") and cub_layout(release / "x")[0] == "subsets"
    assert len(read_cub_release(release)) == 3  # classes 1-3 by default, as the authors' loader
    with pytest.raises(ConfigError, match="4 classes asked, the release has 3"):
        read_cub_release(release, classes=4)
    with pytest.raises(ConfigError, match="not subsets"):
        run_cub(LabelMatcher(3), release, release / "out", subsets=[0])
    (release / "CUB_200_2011" / "bounding_boxes.txt").write_text("1 0 0 30 20\n")
    with pytest.raises(InputError, match="bounding_boxes.txt: no entry for image 3"):
        read_cub_release(release, classes=2)
    (release / "CUB_200_2011" / "parts" / "part_locs.txt").unlink()
    with pytest.raises(InputError, match="part_locs.txt: not found"):
        read_cub_release(release, classes=2)


def test_hedlin_threshold_by_hand():
    # a 40x80 target with a 30x35 box: both sides scaled by 512 / W = 12.8 -> 35 * 12.8 = 448 (scaling each
    # side by its own axis would give max(30 * 12.8, 35 * 6.4) = 384)
    assert hedlin_cub_threshold((30, 35), (40, 80)) == pytest.approx(448.0)
    gt = np.array([[30.0, 20.0]])
    pred = gt - [0, 10]  # 64 px at 512 (10 * 512 / 80): within 0.15 x 448 = 67.2, not within 0.15 x 384
    assert cub_correct("hedlin", pred, gt, (40, 80), (5, 5, 30, 35), layout="release")[0.15].all()
    assert not cub_correct("hedlin", pred, gt, (40, 80), (5, 5, 30, 35), layout="release")[0.1].any()
    assert cub_correct("dift", pred, gt, (40, 80), layout="release")[0.15].all()  # 10 <= 0.15 x 80
    # Neural Congealing's 256x256 crops keep no box: its larger side is the crop's / 1.1
    assert cub_correct("hedlin", pred, gt, (256, 256))[0.05].tolist() == [10 * 2 <= 0.05 * 512 / 1.1]


def test_release_both_protocols_by_hand_and_against_the_authors_scoring(release, tmp_path):
    m = LabelMatcher(3)
    s = run_cub(m, release, tmp_path / "run", classes=2, protocols="both")
    assert s["layout"] == "release" and s["method"] == "dift" and list(s["protocols"]) == ["dift", "hedlin"]
    assert m.calls == 5  # each test image of classes 1-2 encoded once
    # pairs (source, target): errors are the target's d of the parts visible in both
    #   (1,3): 3, 0, 10 of a 40x80 target   (1,4), (3,4): 1, 5 of 64x64   (5,6): 4, 4 of 60x60
    # hedlin (at 512, threshold max(box) * 512 / W): (1,3) 19.2, 0, 64 vs 448 -> 2, 2, 3 of 3
    #   (1,4), (3,4) 8, 40 vs 400 -> 1, 2, 2 of 2    (5,6) 34.1, 34.1 vs 213.3 -> 0, 0, 0 of 2
    hed = s["protocols"]["hedlin"]
    assert hed["overall"]["per_image"] == pytest.approx(
        {"0.05": 100 * (2 / 3 + .5 + .5) / 4, "0.1": 100 * (2 / 3 + 2) / 4, "0.15": 75.0})
    ref = {f"{a:g}": 100 * np.mean(authors_cub_pck(RELEASE, 2, a)) for a in (0.05, 0.1, 0.15)}
    assert hed["overall"]["per_image"] == pytest.approx(ref)
    assert hed["headline_values"] == hed["overall"]["per_image"] and "61.6" in hed["compare_to"]
    # dift (max(H, W) of the target, its own pixels), per point per class then the mean over classes:
    #   class 1: (1,3) 80 -> 2, 2, 3   (1,4), (3,4) 64 -> 1, 2, 2 each: 4, 6, 7 of 7   class 2: 60 -> 0, 2, 2 of 2
    dift = s["protocols"]["dift"]
    assert s["mean_over_classes"] == dift["mean_over_groups"] == pytest.approx(
        {"0.05": 100 * 4 / 7 / 2, "0.1": (100 * 6 / 7 + 100) / 2, "0.15": 100.0})
    assert s["overall"] == dift["overall"] and "no published number" in dift["compare_to"]
    rows = (tmp_path / "run" / "pairs.csv").read_text().splitlines()
    assert rows[0].startswith("class,source,target,points,dift:correct@0.05")
    assert rows[1] == "001.Class_1,img_01.png,img_03.png,3,2,2,3,2,2,3" and len(rows) == 1 + 4


def test_attention_defaults_to_hedlins_protocol_and_dift_stays_dift(release, cub_root, tmp_path):
    att = LabelAttention()
    s = run_cub(None, release, tmp_path / "att", classes=2, attention=att)
    assert s["method"] == "attention" and s["protocol"] == "hedlin" and list(s["protocols"]) == ["hedlin"]
    assert s["headline_values"] == pytest.approx(
        {"0.05": 100 * (2 / 3 + .5 + .5) / 4, "0.1": 100 * (2 / 3 + 2) / 4, "0.15": 75.0})
    assert s["points_matched_this_run"] == 3 + 2 + 2 + 2 and len(att.points) == 4
    rec = yaml.safe_load((tmp_path / "att" / "config.yaml").read_text())
    assert rec["method"] == "attention" and rec["protocols"] == ["hedlin"] and rec["layout"] == "release"
    # DIFT on DIFT's subsets: its own protocol and the numbers it always had
    d = run_cub(LabelMatcher(3), cub_root, tmp_path / "dift")
    assert d["protocol"] == "dift" and list(d["protocols"]) == ["dift"]
    assert d["mean_over_subsets"] == pytest.approx({"0.05": 50.0, "0.1": (100 * 10 / 14 + 50) / 2,
                                                    "0.15": (100 * 12 / 14 + 50) / 2})


@pytest.mark.ray
def test_ray_engine_gives_the_same_pairs_and_scores(ray_local, cub_root, release, tmp_path):
    """Subsets and classes spread over 2 Ray workers: every row (in the groups' order) and score as in process."""
    import functools

    from vidprop.engine import EngineOptions

    engine = EngineOptions(kind="ray", workers=2, cpus_per_worker=1)
    for name, root in (("subsets", cub_root), ("release", release)):
        seq, ray = tmp_path / name / "seq", tmp_path / name / "ray"
        run_cub(LabelMatcher(3), root, seq, protocols="both")
        run_cub(functools.partial(LabelMatcher, 3), root, ray, protocols="both", engine=engine)
        assert_same_results(seq, ray)
