"""PF-WILLOW: a tiny synthetic release (test_pairs.csv + image folders), PCK computed by hand."""

from __future__ import annotations

import numpy as np
import pytest
import yaml

from tests.eval.same_results import assert_same_results
from tests.eval.label_matcher import LabelAttention, LabelMatcher, paint
from vidprop.errors import ConfigError, InputError
from vidprop.eval.pck import box_threshold
from vidprop.eval.pfwillow import (
    category_prompt_name,
    hedlin_willow_threshold,
    keypoint_box,
    read_pfwillow,
    run_pfwillow,
    willow_correct,
)

XS = [10, 14, 18, 22, 26, 30, 34, 38, 42, 50]
YS = [20, 40, 25, 30, 35, 22, 28, 33, 38, 26]  # box 40 x 20 -> thresholds 2 / 4 / 6 px at alpha .05 / .1 / .15
OFFSETS = {  # per image: how far above each ground-truth point its prediction spot is painted
    "car(G)/a.png": [0] * 10,
    "car(G)/b.png": [0, 1, 2, 3, 4, 5, 6, 7, 0, 0],
    "car(G)/c.png": [10, 10, 10, 10, 10, 0, 0, 0, 0, 0],
    "winebottle(M)/e.png": [0] * 10,
    "winebottle(M)/f.png": [0] * 10,
}
PAIRS = [("car(G)/a.png", "car(G)/b.png"), ("car(G)/b.png", "car(G)/c.png"), ("winebottle(M)/e.png", "winebottle(M)/f.png")]


@pytest.fixture()
def willow(tmp_path):
    root = tmp_path / "PF-WILLOW"
    for name, d in OFFSETS.items():
        paint(root / name, (64, 48), {i + 1: [(x, y - di), (x, y)] for i, (x, y, di) in enumerate(zip(XS, YS, d))})
    kp = [str(v) for v in XS + YS]
    lines = ["imageA,imageB," + ",".join(f"XA{i}" for i in range(20)) + "," + ",".join(f"XB{i}" for i in range(20))]
    lines += [f"PF-dataset/{a},PF-dataset/{b}," + ",".join(kp + kp) for a, b in PAIRS]
    (root / "test_pairs.csv").write_text("\n".join(lines) + "\n")
    return root


def test_reader_and_helpers(willow):
    pairs = read_pfwillow(willow)
    assert [p.category for p in pairs] == ["car(G)", "car(G)", "winebottle(M)"]
    assert pairs[0].src_path == willow / "car(G)" / "a.png" and pairs[0].src_kps.shape == (10, 2)
    assert tuple(pairs[0].trg_kps[9]) == (50, 26)
    assert keypoint_box(pairs[0].trg_kps) == (10, 20, 50, 40)
    assert [category_prompt_name(c) for c in ("car(G)", "winebottle(wC)", "duck(S)")] == ["car", "wine bottle", "duck"]
    assert len(read_pfwillow(willow, limit=1)) == 1
    assert [p.name for p in read_pfwillow(willow, categories=["winebottle(M)"])] == ["0003"]
    # a file without the header row reads the same
    (willow / "test_pairs.csv").write_text("\n".join((willow / "test_pairs.csv").read_text().splitlines()[1:]) + "\n")
    assert [(p.name, p.category) for p in read_pfwillow(willow)] == [(q.name, q.category) for q in pairs]


def test_pck_per_image_by_hand(willow, tmp_path):
    m = LabelMatcher(10)
    s = run_pfwillow(m, willow, tmp_path / "run")
    # errors per pair = the target's offsets: a->b 0,1,...,7,0,0; b->c 10 x5, 0 x5; e->f all 0
    # correct @.05 (<=2): 5, 5, 10   @.1 (<=4): 7, 5, 10   @.15 (<=6): 9, 5, 10   of 10 points each
    o = s["overall"]
    assert o["pairs"] == 3 and o["points"] == 30
    assert o["per_image"] == pytest.approx({"0.05": 100 * 2 / 3, "0.1": 100 * (0.7 + 0.5 + 1) / 3, "0.15": 80.0})
    assert o["per_point"] == pytest.approx({"0.05": 100 * 20 / 30, "0.1": 100 * 22 / 30, "0.15": 100 * 24 / 30})
    assert s["per_category"]["car(G)"]["per_image"]["0.1"] == pytest.approx(60.0)
    assert m.calls == 5 and m.prompts.count("a photo of a car") == 3 and m.prompts.count("a photo of a wine bottle") == 2
    rows = (tmp_path / "run" / "pairs.csv").read_text().splitlines()
    assert rows[0] == ("pair,category,points,dift:correct@0.05,dift:correct@0.1,dift:correct@0.15,dift:pck@0.05,"
                       "dift:pck@0.1,dift:pck@0.15")
    assert rows[1] == "0001,car(G),10,5,7,9,50.00,70.00,90.00"
    assert (tmp_path / "run" / "config.yaml").is_file()


def test_bad_release(tmp_path, willow):
    with pytest.raises(InputError, match="test_pairs.csv"):
        read_pfwillow(tmp_path)
    (willow / "test_pairs.csv").write_text("imageA,imageB,x\nPF-dataset/car(G)/a.png,PF-dataset/car(G)/b.png,1\n")
    with pytest.raises(InputError, match="line 2: expected 42 columns"):
        read_pfwillow(willow)
    row = ",".join(["PF-dataset/car(G)/zz.png", "PF-dataset/car(G)/b.png"] + ["1"] * 40)
    (willow / "test_pairs.csv").write_text("h\n" + row + "\n")
    with pytest.raises(InputError, match="zz.png not found"):
        read_pfwillow(willow)


def authors_willow_pck(src_kps, trg_kps, pred, trg_size, alpha):
    """Hedlin et al.'s PF-WILLOW scoring written out plainly: a (2, 40) keypoint array per image, the 10 used
    slots rescaled to 512 with the image's own size and the rest -1; threshold max over axes of (max - min)
    over ALL 40 slots; a point is correct when its distance is at most alpha times that."""
    w, h = trg_size
    slots = np.full((2, 40), -1.0)
    slots[0, :10] = np.asarray(trg_kps, float)[:, 0] * (512 / w)
    slots[1, :10] = np.asarray(trg_kps, float)[:, 1] * (512 / h)
    thres = max(slots.max(1) - slots.min(1))
    p = np.asarray(pred, float) * np.array([512 / w, 512 / h])
    dist = np.sqrt(((p - slots[:, :10].T) ** 2).sum(1))
    return float(np.mean(dist <= alpha * thres))


def test_hedlin_threshold_by_hand():
    # a 640x480 target; keypoints x 100..300, y 120..240 -> at 512: x 80..240, y 128..256
    kps = np.array([[100, 120], [300, 200], [200, 240]], float)
    plain = box_threshold(keypoint_box(kps), (640, 480), 512)
    assert plain == pytest.approx(max(160, 128))  # the keypoint box's extent at 512
    # the authors' box runs from the -1 padding: max(x_max, y_max) + 1 = 256 + 1
    assert hedlin_willow_threshold(kps, (640, 480)) == pytest.approx(257.0)
    # 10 slots of 10 used: no padding, the plain box
    ten = np.array([[100 + 20 * i, 120 + 12 * i] for i in range(10)], float)
    assert hedlin_willow_threshold(ten, (640, 480), slots=10) == pytest.approx(
        box_threshold(keypoint_box(ten), (640, 480), 512))
    # a prediction 15 px off in x (12 px at 512): within 0.05 x 257 = 12.85 but not 0.05 x 160 = 8
    pred = kps + [15, 0]
    assert willow_correct("hedlin", pred, kps, (640, 480))[0.05].all()
    assert not willow_correct("dift", pred, kps, (640, 480), alphas=(0.05,))[0.05].any()  # 0.05 x 200 = 10 < 15


def test_attention_scores_hedlins_protocol_by_default_and_both_on_request(willow, tmp_path):
    # every match 2.5 px right of the source point, which is the truth here: DIFT's threshold is 0.05 x 40 = 2 px (wrong), Hedlin et al.'s at 512
    # (x * 8) is 20 px against 0.05 x (40 * 512 / 48 + 1) = 21.38 (right); the plain box at 512 (0.05 x 320 = 16)
    # would count it wrong
    att = LabelAttention(shift=(2.5, 0.0), by_label=False)
    s = run_pfwillow(None, willow, tmp_path / "a", attention=att)
    assert s["method"] == "attention" and s["protocol"] == "hedlin" and list(s["protocols"]) == ["hedlin"]
    assert s["overall"]["per_image"] == pytest.approx({"0.05": 100.0, "0.1": 100.0, "0.15": 100.0})
    assert "84.3" in s["compare_to"] and "-1" in s["threshold"]
    assert s["points_matched_this_run"] == 30 and s["images_encoded_this_run"] == 0
    # the attention method gets the keypoints as given, not rounded (DIFT reads rounded pixels)
    assert np.array_equal(att.points[0], read_pfwillow(willow)[0].src_kps)
    both = run_pfwillow(None, willow, tmp_path / "b", attention=LabelAttention(shift=(2.5, 0.0), by_label=False), protocols="both")
    assert list(both["protocols"]) == ["hedlin", "dift"] and both["overall"] == s["overall"]
    assert both["protocols"]["dift"]["overall"]["per_image"] == pytest.approx({"0.05": 0.0, "0.1": 100.0, "0.15": 100.0})
    assert "DIFT" in both["protocols"]["dift"]["compare_to"]
    header = (tmp_path / "b" / "pairs.csv").read_text().splitlines()[0].split(",")
    assert header[3:6] == ["hedlin:correct@0.05", "hedlin:correct@0.1", "hedlin:correct@0.15"]
    assert header[9:12] == ["dift:correct@0.05", "dift:correct@0.1", "dift:correct@0.15"]
    # the runs are resumable only with the same protocols
    with pytest.raises(ConfigError, match="other settings"):
        run_pfwillow(None, willow, tmp_path / "a", attention=LabelAttention(), protocols="both")


def test_hedlin_protocol_matches_a_plain_reference(willow, tmp_path):
    # DIFT's matches (painted labels, errors 0..10 px up) scored under both protocols vs the authors' scoring
    s = run_pfwillow(LabelMatcher(10), willow, tmp_path / "run", protocols="both")
    assert s["protocol"] == "dift" and list(s["protocols"]) == ["dift", "hedlin"]
    ref = {a: [] for a in (0.05, 0.1, 0.15)}
    for p in read_pfwillow(willow):
        d = OFFSETS[p.trg_path.parent.name + "/" + p.trg_path.name]
        pred = p.trg_kps - np.stack([np.zeros(10), d], axis=1)
        for a in ref:
            ref[a].append(authors_willow_pck(p.src_kps, p.trg_kps, pred, (64, 48), a))
    got = s["protocols"]["hedlin"]["overall"]["per_image"]
    assert got == pytest.approx({f"{a:g}": 100 * np.mean(v) for a, v in ref.items()})
    # by hand: at 512 the errors are d * 512 / 48 against 0.05 / 0.1 / 0.15 x (40 * 512 / 48 + 1):
    # d <= 2 / 4 / 6 right, the same counts as DIFT's 2 / 4 / 6 px here
    assert got == pytest.approx(s["protocols"]["dift"]["overall"]["per_image"])


@pytest.mark.ray
def test_ray_engine_gives_the_same_pairs_and_scores(ray_local, willow, tmp_path):
    """Subsets spread over 2 Ray workers (each builds its matcher once): every row and score as in process."""
    import functools

    from vidprop.engine import EngineOptions

    engine = EngineOptions(kind="ray", workers=2, cpus_per_worker=1)
    run_pfwillow(LabelMatcher(10), willow, tmp_path / "seq", protocols="both")
    s = run_pfwillow(functools.partial(LabelMatcher, 10), willow, tmp_path / "ray", protocols="both", engine=engine)
    assert s["images_encoded_this_run"] == 5  # each image once per subset, wherever the subset ran
    seq, ray = tmp_path / "seq", tmp_path / "ray"
    assert assert_same_results(seq, ray)["overall"]["per_image"]["0.1"] == pytest.approx(100 * (0.7 + 0.5 + 1) / 3)
    with pytest.raises(ConfigError, match="give the matcher's TaskConfig or a callable"):
        run_pfwillow(LabelMatcher(10), willow, tmp_path / "loaded", engine=engine)  # a loaded model cannot travel
    with pytest.raises(ConfigError, match="give the matcher's TaskConfig or a callable"):
        run_pfwillow(None, willow, tmp_path / "loaded", attention=LabelAttention(), engine=engine)
    assert not (tmp_path / "loaded").exists()
    # Hedlin et al.'s method on Ray: each worker builds its attention matcher; same rows, scores and record
    run_pfwillow(None, willow, tmp_path / "att-seq", attention=LabelAttention((1.5, 0)))
    run_pfwillow(None, willow, tmp_path / "att-ray", attention=functools.partial(LabelAttention, (1.5, 0)),
                 engine=engine)
    seq, ray = tmp_path / "att-seq", tmp_path / "att-ray"
    a = assert_same_results(seq, ray)
    assert a["method"] == "attention" and a["protocol"] == "hedlin" and a["dtype"] == "float32"
    ra, rb = (yaml.safe_load((d / "config.yaml").read_text()) for d in (seq, ray))
    ra.pop("date"), rb.pop("date"), ra.pop("root"), rb.pop("root")
    assert ra == rb and ra["method"] == "attention" and ra["dtype"] == "float32"
