"""DAVIS-2017 J&F: hand-computed values, a plain reference of the toolkit's formulas, datasets, bad inputs."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from vidprop.errors import InputError
from vidprop.eval import davis as D
from vidprop.io.masks import write_indexed_png

# --------------------------------------------------------------------------------------- helpers


def box(h: int, w: int, y0: int, y1: int, x0: int, x1: int) -> np.ndarray:
    """(h, w) bool with rows y0..y1 and columns x0..x1 (inclusive) set."""
    m = np.zeros((h, w), bool)
    m[y0 : y1 + 1, x0 : x1 + 1] = True
    return m


def pix(h: int, w: int, *points: tuple[int, int]) -> np.ndarray:
    m = np.zeros((h, w), bool)
    for y, x in points:
        m[y, x] = True
    return m


def make_davis(
    root: Path,
    results: Path,
    seqs: dict[str, tuple[list[np.ndarray], list[np.ndarray]]],
    set: str = "val",
) -> None:
    """Write a DAVIS layout: per sequence (annotation label maps, prediction label maps), uint8."""
    (root / "ImageSets" / "2017").mkdir(parents=True, exist_ok=True)
    (root / "ImageSets" / "2017" / f"{set}.txt").write_text("".join(f"{s}\n" for s in seqs))
    for name, (gts, preds) in seqs.items():
        img = root / "JPEGImages" / "480p" / name
        ann = root / "Annotations" / "480p" / name
        res = results / name
        for d in (img, ann, res):
            d.mkdir(parents=True, exist_ok=True)
        for t, g in enumerate(gts):
            Image.new("RGB", (g.shape[1], g.shape[0])).save(img / f"{t:05d}.jpg")
            write_indexed_png(ann / f"{t:05d}.png", g.astype(np.uint8))
        for t, p in enumerate(preds):
            write_indexed_png(res / f"{t:05d}.png", p.astype(np.uint8))


# --------------------------------------------------------------- plain reference of the formulas
# Written from the protocol text, pixel by pixel, independently of vidprop's code.


def ref_bmap(m: np.ndarray) -> np.ndarray:
    h, w = m.shape
    b = np.zeros((h, w), bool)
    for y in range(h):
        for x in range(w):
            if y == h - 1 and x == w - 1:
                continue  # bottom-right pixel is 0
            if y == h - 1:
                nbrs = [(y, x + 1)]  # last row: east only
            elif x == w - 1:
                nbrs = [(y + 1, x)]  # last column: south only
            else:
                nbrs = [(y, x + 1), (y + 1, x), (y + 1, x + 1)]
            b[y, x] = any(m[y, x] != m[ny, nx] for ny, nx in nbrs)
    return b


def ref_j(g: np.ndarray, p: np.ndarray) -> float:
    inter = int(np.sum(g & p))
    union = int(np.sum(g | p))
    return 1.0 if union == 0 else inter / union


def ref_f(g: np.ndarray, p: np.ndarray) -> float:
    r = math.ceil(0.008 * math.hypot(*g.shape))
    gb = np.argwhere(ref_bmap(g))
    pb = np.argwhere(ref_bmap(p))
    if len(pb) == 0 and len(gb) == 0:
        return 1.0
    if len(pb) == 0 or len(gb) == 0:
        return 0.0  # P=1, R=0 or P=0, R=1

    def matched(a: np.ndarray, b: np.ndarray) -> int:
        # how many points of a lie in the radius-r disk of some point of b
        d2 = ((a[:, None, :] - b[None, :, :]) ** 2).sum(-1)
        return int(np.sum(d2.min(axis=1) <= r * r))

    prec = matched(pb, gb) / len(pb)
    rec = matched(gb, pb) / len(gb)
    return 0.0 if prec + rec == 0 else 2 * prec * rec / (prec + rec)


def ref_stats(v: list[float]) -> tuple[float, float, float]:
    n = len(v)
    vals = [x for x in v if not math.isnan(x)]
    mean = sum(vals) / len(vals)
    recall = sum(1 for x in v if x > 0.5) / n
    ids = [math.floor(1 + i * (n - 1) / 4 + 0.5) - 1 for i in range(5)]

    def nm(seg: list[float]) -> float:
        seg = [x for x in seg if not math.isnan(x)]
        return sum(seg) / len(seg)

    return mean, recall, nm(v[ids[0] : ids[1] + 1]) - nm(v[ids[3] : ids[4] + 1])


def ref_dataset_scores(seqs: dict[str, tuple[list[np.ndarray], list[np.ndarray]]]) -> tuple[dict, dict]:
    """Global row and {<seq>_<k>: (J-Mean, F-Mean)} from the plain reference."""
    rows = {}
    per = []
    for name, (gts, preds) in seqs.items():
        gts = [np.where(g == 255, 0, g) for g in gts]
        k_obj = int(gts[0].max())
        for k in range(1, k_obj + 1):
            js = [ref_j(g == k, p == k) for g, p in zip(gts[1:-1], preds[1:-1])]
            fs = [ref_f(g == k, p == k) for g, p in zip(gts[1:-1], preds[1:-1])]
            per.append((ref_stats(js), ref_stats(fs)))
            rows[f"{name}_{k}"] = (per[-1][0][0], per[-1][1][0])
    col = lambda i, j: sum(o[i][j] for o in per) / len(per)  # noqa: E731
    g = {
        "J-Mean": col(0, 0), "J-Recall": col(0, 1), "J-Decay": col(0, 2),
        "F-Mean": col(1, 0), "F-Recall": col(1, 1), "F-Decay": col(1, 2),
    }
    g["J&F-Mean"] = (g["J-Mean"] + g["F-Mean"]) / 2
    return g, rows


# ------------------------------------------------------------------------------------------- J


def test_j_hand_computed():
    h, w = 6, 6
    gt = np.stack([
        np.zeros((h, w), bool),              # both empty -> 1
        box(h, w, 1, 2, 1, 2),               # 4 px vs 1 px inside -> 1/4
        np.zeros((h, w), bool),              # gt empty, pred 1 px -> 0
        box(h, w, 0, 1, 0, 2),               # 6 px vs 6 px shifted by one row: 3 / 9
        pix(h, w, (5, 5)),                   # one pixel at the corner, identical -> 1
    ])
    pred = np.stack([
        np.zeros((h, w), bool),
        pix(h, w, (2, 2)),
        pix(h, w, (0, 0)),
        box(h, w, 1, 2, 0, 2),
        pix(h, w, (5, 5)),
    ])
    np.testing.assert_allclose(D.db_eval_iou(gt, pred), [1.0, 0.25, 0.0, 1 / 3, 1.0])
    # void pixels leave both counts: frame 1 with the three gt-only pixels void -> 1/1
    void = np.zeros_like(gt)
    void[1] = gt[1] & ~pred[1]
    assert D.db_eval_iou(gt, pred, void)[1] == 1.0
    with pytest.raises(ValueError):
        D.db_eval_iou(gt[0], pred[0])
    with pytest.raises(ValueError):
        D.db_eval_iou(gt, pred[:2])


# -------------------------------------------------------------------------------- boundary map


def test_seg2bmap_hand_computed():
    # one pixel inside: itself and its north, west and north-west neighbours
    assert np.argwhere(D.seg2bmap(pix(4, 4, (1, 1)))).tolist() == [[0, 0], [0, 1], [1, 0], [1, 1]]
    # one pixel at the bottom-right corner: the corner itself is 0
    assert np.argwhere(D.seg2bmap(pix(4, 4, (3, 3)))).tolist() == [[2, 2], [2, 3], [3, 2]]
    # full mask: no boundary at all (the last row/column rules see no change)
    assert not D.seg2bmap(np.ones((4, 5), bool)).any()
    # the last row set: the boundary is the row above it (4 pixels), not the last row
    b = D.seg2bmap(box(4, 4, 3, 3, 0, 3))
    assert np.argwhere(b).tolist() == [[2, 0], [2, 1], [2, 2], [2, 3]]
    # a rectangle rows 2..4, cols 1..3: its outline shifted half a pixel up-left (rows 1..4, cols 0..3)
    b = D.seg2bmap(box(7, 7, 2, 4, 1, 3))
    outline = box(7, 7, 1, 4, 0, 3) & ~box(7, 7, 2, 3, 1, 2)
    np.testing.assert_array_equal(b, outline)
    # stacks are mapped frame by frame
    st = np.stack([pix(4, 4, (1, 1)), pix(4, 4, (3, 3))])
    np.testing.assert_array_equal(D.seg2bmap(st)[1], D.seg2bmap(st[1]))


def test_disk_and_radius_match_the_toolkit():
    from skimage.morphology import disk as sk_disk

    assert D.boundary_radius(480, 854) == 8.0  # ceil(0.008 * 979.6)
    assert D.boundary_radius(10, 10) == 1.0
    assert D.boundary_radius(100, 100) == 2.0  # ceil(1.13)
    for r in (1, 2, 3, 8, 8.0):
        np.testing.assert_array_equal(D.disk(r), sk_disk(r))
    assert D.disk(8).shape == (17, 17) and int(D.disk(8).sum()) == 197  # lattice points with x^2+y^2 <= 64
    assert D.disk(1).tolist() == [[0, 1, 0], [1, 1, 1], [0, 1, 0]]


# ------------------------------------------------------------------------------------------- F


def test_f_hand_computed_small_frames():
    h = w = 10  # radius ceil(0.008 * 14.1) = 1: a plus-shaped dilation
    z = np.zeros((h, w), bool)
    one = pix(h, w, (4, 4))  # boundary {(3,3),(3,4),(4,3),(4,4)}
    cases = [
        (z, z, 1.0),  # both boundaries empty
        (one, z, 0.0),  # prediction empty: P=1, R=0
        (z, one, 0.0),  # ground truth empty: P=0, R=1
        (one, one, 1.0),
        # pixel two columns right: half of each boundary is within 1 px of the other -> P = R = 1/2
        (one, pix(h, w, (4, 6)), 0.5),
        # the same pixel plus a far one: P = 4/8, R = 1 -> F = 2/3
        (one, pix(h, w, (4, 4), (4, 8)), 2 / 3),
        # objects touching the right edge: last column only -> boundary is column 8 (10 px);
        # prediction = columns 8..9 -> boundary column 7, one pixel away: P = R = 1
        (box(h, w, 0, 9, 9, 9), box(h, w, 0, 9, 8, 9), 1.0),
        # prediction = columns 7..9 -> boundary column 6, two away: P = R = 0 -> F = 0
        (box(h, w, 0, 9, 9, 9), box(h, w, 0, 9, 7, 9), 0.0),
        # the whole frame predicted: a full mask has no boundary -> P=0, R=1 -> F=0
        (one, np.ones((h, w), bool), 0.0),
    ]
    gt = np.stack([c[0] for c in cases])
    pred = np.stack([c[1] for c in cases])
    np.testing.assert_allclose(D.db_eval_boundary(gt, pred), [c[2] for c in cases], rtol=0, atol=1e-15)


def test_f_radius_is_8_pixels_at_480p():
    gt = box(480, 854, 100, 199, 100, 299)[None]
    shift8 = np.roll(gt, 8, axis=2)
    shift9 = np.roll(gt, 9, axis=2)
    assert D.db_eval_boundary(gt, shift8)[0] == 1.0  # every boundary pixel moved by exactly 8
    f9 = D.db_eval_boundary(gt, shift9)[0]
    assert 0.5 < f9 < 1.0
    # an object touching the bottom-right corner of the frame
    corner = box(480, 854, 400, 479, 800, 853)[None]
    assert D.db_eval_boundary(corner, corner)[0] == 1.0
    assert D.db_eval_boundary(corner, np.roll(corner, -20, axis=1))[0] < 1.0


# ------------------------------------------------------------------------------- Decay / Recall


@pytest.mark.parametrize(
    "values, mean, recall, decay",
    [
        ([0.7], 0.7, 1.0, 0.0),  # n=1: all four bins are frame 0
        ([0.9, 0.3], 0.6, 0.5, 0.6),  # n=2: ids 0,0,1,1,1: bin0=[.9], bin3=[.3]
        ([1.0, 0.8, 0.6, 0.4], 0.7, 0.75, 0.4),  # n=4: ids 0,1,2,2,3: [1,.8] vs [.6,.4]
        ([1.0, 0.5, 0.5, 0.2, 0.0], 0.44, 0.2, 0.65),  # n=5: 0.5 is not > 0.5; [1,.5] vs [.2,0]
        # n=7: linspace 1,2.5,4,5.5,7 -> halves round UP: ids 0,2,3,5,6: [.9,.8,.7] vs [.4,.3]
        ([0.9, 0.8, 0.7, 0.6, 0.5, 0.4, 0.3], 0.6, 4 / 7, 0.45),
        # n=10: linspace 1,3.25,5.5,7.75,10 -> ids 0,2,5,7,9: v[0:3] vs v[7:10]
        ([1, 1, 1, 0, 0, 0, 0, 0.2, 0.4, 0.6], 0.42, 0.4, 0.6),
        # NaN: ignored by the means, counted as a miss by Recall; n=3 ids 0,1,1,2,2
        ([float("nan"), 1.0, 0.0], 0.5, 1 / 3, 1.0),
    ],
)
def test_statistics_hand_computed(values, mean, recall, decay):
    m, r, d = D.db_statistics(np.array(values, dtype=float))
    assert m == pytest.approx(mean, abs=1e-12)
    assert r == pytest.approx(recall, abs=1e-12)
    assert d == pytest.approx(decay, abs=1e-12)


def test_decay_bins_overlap_and_round_half_up():
    assert D.decay_bins(7) == [(0, 3), (2, 4), (3, 6), (5, 7)]
    assert D.decay_bins(10) == [(0, 3), (2, 6), (5, 8), (7, 10)]
    assert D.decay_bins(3) == [(0, 2), (1, 2), (1, 3), (2, 3)]


# ------------------------------------------------------------- random masks vs the reference


def _random_masks(rng: np.random.Generator, t: int, h: int, w: int) -> np.ndarray:
    m = np.zeros((t, h, w), bool)
    for i in range(t):
        kind = rng.integers(0, 4)
        if kind == 0:
            m[i] = rng.random((h, w)) < rng.uniform(0.05, 0.6)  # noise: many boundaries
        elif kind == 1:
            continue  # empty
        else:
            for _ in range(rng.integers(1, 4)):
                y, x = rng.integers(-3, h), rng.integers(-3, w)
                m[i, max(y, 0) : y + rng.integers(1, h), max(x, 0) : x + rng.integers(1, w)] = True
            if kind == 3:  # touch the last row / column
                m[i, -1, rng.integers(0, w) :] = True
                m[i, rng.integers(0, h) :, -1] = True
    return m


@pytest.mark.parametrize("h, w", [(9, 13), (24, 31), (60, 110)])  # radius 1, 1 and 2 (ceil(0.008 * 125.3))
def test_fast_metrics_equal_plain_reference(h, w):
    rng = np.random.default_rng(h * 1000 + w)
    t = 8
    gt = _random_masks(rng, t, h, w)
    pred = np.where(rng.random((t, 1, 1)) < 0.4, gt, _random_masks(rng, t, h, w))
    pred[0] = np.roll(gt[0], 1, axis=1)
    for i in range(t):
        np.testing.assert_array_equal(D.seg2bmap(gt[i]), ref_bmap(gt[i]))
    np.testing.assert_allclose(D.db_eval_iou(gt, pred), [ref_j(g, p) for g, p in zip(gt, pred)], rtol=0, atol=1e-15)
    np.testing.assert_allclose(D.db_eval_boundary(gt, pred), [ref_f(g, p) for g, p in zip(gt, pred)],
                               rtol=0, atol=1e-15)
    for g, p in zip(gt, pred):  # the fused per-frame path used for scoring
        j, f = D.jf_frame(np.ascontiguousarray(g), np.ascontiguousarray(p), D.disk(D.boundary_radius(h, w)))
        assert j == pytest.approx(ref_j(g, p), abs=1e-15) and f == pytest.approx(ref_f(g, p), abs=1e-15)


def test_fast_f_equals_reference_with_radius_3():
    rng = np.random.default_rng(3)
    h, w = 190, 300  # hypot 355 -> 2.84 -> radius 3
    assert D.boundary_radius(h, w) == 3.0
    gt = np.zeros((3, h, w), bool)
    gt[:, 40:120, 60:200] = True
    gt[1, 150:189, 250:300] = True
    pred = np.roll(gt, (2, 3), axis=(1, 2)) ^ (rng.random((3, h, w)) < 0.002)
    f_ref = [ref_f(g, p) for g, p in zip(gt, pred)]
    np.testing.assert_allclose(D.db_eval_boundary(gt, pred), f_ref, rtol=0, atol=1e-15)
    assert min(f_ref) < 1.0


@pytest.mark.parametrize("n", [1, 2, 3, 4, 5, 6, 7, 9, 10, 23, 70, 104])
def test_statistics_equal_reference(n):
    rng = np.random.default_rng(n)
    v = rng.random(n)
    v[rng.random(n) < 0.1] = 0.5  # exact 0.5 is not a hit
    np.testing.assert_allclose(D.db_statistics(v), ref_stats(list(v)), rtol=0, atol=1e-14)


# ------------------------------------------------------------------------ datasets and scoring


def hand_dataset() -> dict[str, tuple[list[np.ndarray], list[np.ndarray]]]:
    """Two sequences whose scores are worked out by hand in test_scores_of_hand_dataset."""
    h = w = 10
    sq = box(h, w, 3, 5, 3, 5).astype(np.uint8)  # 9 px, boundary = outline rows 2..5, cols 2..5 (12 px)
    g3 = sq.copy()
    g3[8, 8:10] = 255  # void, predicted as the object below: a false positive
    p3 = sq.copy()
    p3[8, 8] = 1
    blob = ([sq, sq, sq, g3, sq], [sq, sq, np.zeros_like(sq), p3, sq])
    h = w = 12
    pair = box(h, w, 1, 3, 1, 3).astype(np.uint8) + 2 * box(h, w, 7, 9, 7, 9).astype(np.uint8)
    only1 = (pair == 1).astype(np.uint8)  # object 2 never predicted: all-zero masks
    return {"blob": blob, "pair": ([pair] * 5, [only1] * 5)}


def test_scores_of_hand_dataset(tmp_path):
    make_davis(tmp_path / "DAVIS", tmp_path / "res", hand_dataset())
    s = D.score_davis(tmp_path / "DAVIS", tmp_path / "res", "val", workers=1, progress=False)
    # blob: J = [1, 0, 9/10]; F = [1, 0, 6/7] (frame 3: P = 12/16 with the void false positive, R = 1)
    blob = s.sequences[0]
    np.testing.assert_allclose(blob.j[0], [1.0, 0.0, 0.9])
    np.testing.assert_allclose(blob.f[0], [1.0, 0.0, 6 / 7])
    assert blob.frame_names == ("00001", "00002", "00003")
    # n=3 bins: [0:2], ..., [2:3] -> Decay = mean(v0, v1) - v2
    o = {x.name: x for x in s.objects}
    assert [*o] == ["blob_1", "pair_1", "pair_2"]
    assert (o["blob_1"].j_mean, o["blob_1"].j_recall, o["blob_1"].j_decay) == pytest.approx((1.9 / 3, 2 / 3, -0.4))
    assert (o["blob_1"].f_mean, o["blob_1"].f_recall, o["blob_1"].f_decay) == pytest.approx((13 / 21, 2 / 3, -5 / 14))
    assert (o["pair_1"].j_mean, o["pair_1"].f_mean, o["pair_2"].j_mean, o["pair_2"].f_mean) == (1.0, 1.0, 0.0, 0.0)
    # global: one entry per object (3), not per sequence (2)
    expected = {
        "J&F-Mean": 683 / 1260, "J-Mean": 49 / 90, "J-Recall": 5 / 9, "J-Decay": -0.4 / 3,
        "F-Mean": 34 / 63, "F-Recall": 5 / 9, "F-Decay": -5 / 42,
    }
    assert s.global_row == pytest.approx(expected, abs=1e-12)
    g_csv, s_csv = D.write_csvs(s, tmp_path / "res")
    assert g_csv.read_text() == (
        "J&F-Mean,J-Mean,J-Recall,J-Decay,F-Mean,F-Recall,F-Decay\n"
        "0.542,0.544,0.556,-0.133,0.540,0.556,-0.119\n"
    )
    assert s_csv.read_text() == "Sequence,J-Mean,F-Mean\nblob_1,0.633,0.619\npair_1,1.000,1.000\npair_2,0.000,0.000\n"


def test_tables_are_printed_like_the_toolkit(tmp_path):
    # the toolkit prints pandas' DataFrame.to_string(index=False); these strings come from pandas
    objects = (
        D.ObjectScore("blob", 1, 2 / 3, 0.5, 0.0, 2 / 3, 0.5, 0.0),
        D.ObjectScore("pair", 1, 1.0, 1.0, 0.0, 1.0, 1.0, 0.0),
        D.ObjectScore("pair", 2, 0.25, 0.0, 0.0, 0.5, 0.0, 0.0),
    )
    row = {"J&F-Mean": 2 / 3, "J-Mean": 2 / 3, "J-Recall": 2 / 3, "J-Decay": -0.5,
           "F-Mean": 2 / 3, "F-Recall": 2 / 3, "F-Decay": -0.5}
    text = D.format_tables(D.DavisScores("val", row, objects, ()))
    assert text == (
        "--------------------------- Global results for val ---------------------------\n"
        " J&F-Mean   J-Mean  J-Recall  J-Decay   F-Mean  F-Recall  F-Decay\n"
        " 0.666667 0.666667  0.666667     -0.5 0.666667  0.666667     -0.5\n"
        "\n---------- Per sequence results for val ----------\n"
        "Sequence   J-Mean   F-Mean\n"
        "  blob_1 0.666667 0.666667\n"
        "  pair_1 1.000000 1.000000\n"
        "  pair_2 0.250000 0.500000\n"
    )


def random_dataset(seed: int = 0) -> dict[str, tuple[list[np.ndarray], list[np.ndarray]]]:
    """Sequences of 1-3 moving boxes (96x128, radius 2), void rectangles, perturbed predictions."""
    rng = np.random.default_rng(seed)
    h, w = 96, 128
    seqs = {}
    for s, (k_obj, n) in enumerate([(1, 5), (2, 7), (3, 6), (2, 4)]):
        gts, preds = [], []
        start = rng.integers(0, [h - 30, w - 30], size=(k_obj, 2))
        size = rng.integers(8, 40, size=(k_obj, 2))
        vel = rng.integers(-4, 5, size=(k_obj, 2))
        for t in range(n):
            g = np.zeros((h, w), np.uint8)
            for k in range(k_obj):
                y, x = start[k] + vel[k] * t
                g[max(y, 0) : y + size[k, 0], max(x, 0) : x + size[k, 1]] = k + 1
            p = np.roll(g, tuple(rng.integers(-3, 4, size=2)), axis=(0, 1))
            p[rng.random((h, w)) < 0.01] = rng.integers(0, k_obj + 1)
            if t % 3 == 2 and k_obj > 1:
                p[p == 2] = 0  # object 2 missed in this frame
            if t == 2:
                g[5:15, 100:120] = 255
            gts.append(g)
            preds.append(p)
        seqs[f"rand{s}"] = (gts, preds)
    return seqs


@pytest.fixture(scope="module")
def random_davis(tmp_path_factory):
    d = tmp_path_factory.mktemp("rand")
    seqs = random_dataset()
    make_davis(d / "DAVIS", d / "res", seqs)
    return d / "DAVIS", d / "res", seqs


def test_aggregation_equals_reference_and_workers_agree(random_davis):
    root, res, seqs = random_davis
    s1 = D.score_davis(root, res, "val", workers=1, progress=False)
    s2 = D.score_davis(root, res, "val", workers=2, progress=False)
    assert s1.global_row == s2.global_row  # bit for bit
    assert [o.name for o in s1.objects] == [o.name for o in s2.objects]
    assert s1.objects == s2.objects
    g_ref, rows_ref = ref_dataset_scores(seqs)
    assert len(s1.objects) == 1 + 2 + 3 + 2
    assert s1.global_row == pytest.approx(g_ref, abs=1e-12)
    rows = {o.name: (o.j_mean, o.f_mean) for o in s1.objects}
    assert rows.keys() == rows_ref.keys()
    for name, (j, f) in rows.items():  # pytest >= 9 refuses nested mappings in approx
        assert (j, f) == pytest.approx(rows_ref[name], abs=1e-12), name
    assert 0.2 < s1.jf_mean < 0.95  # a real, imperfect score
    # a subset of sequences
    sub = D.score_davis(root, res, "val", sequences=["rand2"], workers=1, progress=False)
    assert [o.name for o in sub.objects] == ["rand2_1", "rand2_2", "rand2_3"]


def test_old_csvs_are_recomputed_and_summary_written(random_davis, tmp_path):
    root, res, _ = random_davis
    out = tmp_path / "report"
    out.mkdir()
    (out / "global_results-val.csv").write_text("J&F-Mean\n0.999\n")
    s = D.score_davis(root, res, "val", workers=1, progress=False)
    g, _ = D.write_csvs(s, out)
    assert g.read_text().splitlines()[1].split(",")[0] == "%.3f" % s.jf_mean != "0.999"
    png = D.write_summary_image(s, out / "per-sequence_jf-val.png")
    im = Image.open(png)
    assert im.format == "PNG" and im.height > 4 * 16
    assert not list(out.glob(".*partial*"))


# --------------------------------------------------------------------------------- bad inputs


@pytest.fixture
def small(tmp_path):
    seqs = hand_dataset()
    make_davis(tmp_path / "DAVIS", tmp_path / "res", seqs)
    return tmp_path / "DAVIS", tmp_path / "res"


def _score(root, res):
    return D.score_davis(root, res, "val", workers=1, progress=False)


def test_missing_imagesets_file(small):
    root, res = small
    (root / "ImageSets" / "2017" / "val.txt").unlink()
    with pytest.raises(InputError, match=r"ImageSets/2017/val\.txt"):
        _score(root, res)


def test_sequence_without_frames_or_annotations(small):
    root, res = small
    for f in (root / "JPEGImages" / "480p" / "pair").glob("*.jpg"):
        f.unlink()
    with pytest.raises(InputError, match=r"sequence pair: no frames in .*JPEGImages/480p/pair"):
        _score(root, res)
    with pytest.raises(InputError, match=r"sequence blob: no annotations in .*Annotations/480p/blob"):
        for f in (root / "Annotations" / "480p" / "blob").glob("*.png"):
            f.unlink()
        _score(root, res)


def test_missing_result_frame(small):
    root, res = small
    (res / "pair" / "00002.png").unlink()
    with pytest.raises(InputError, match=r"sequence pair: result frame .*pair/00002\.png is missing"):
        _score(root, res)


def test_missing_results_folder(small):
    root, res = small
    import shutil

    shutil.rmtree(res / "blob")
    with pytest.raises(InputError, match=r"results folder .*blob not found"):
        _score(root, res)


def test_rgb_result_png(small):
    root, res = small
    path = res / "blob" / "00003.png"
    Image.open(path).convert("RGB").save(path)
    with pytest.raises(InputError, match=r"blob/00003\.png: RGB image with 3 channels"):
        _score(root, res)


def test_object_id_above_the_annotation(small):
    root, res = small
    p = np.zeros((12, 12), np.uint8)
    p[0, 0] = 3
    write_indexed_png(res / "pair" / "00001.png", p)
    with pytest.raises(InputError, match=r"pair/00001\.png holds object id 3 but the first annotation has 2"):
        _score(root, res)


def test_result_of_another_size(small):
    root, res = small
    write_indexed_png(res / "blob" / "00002.png", np.zeros((10, 11), np.uint8))
    with pytest.raises(InputError, match=r"blob/00002\.png is 11x10 but its annotation is 10x10"):
        _score(root, res)


def test_errors_from_worker_processes_keep_their_message(small):
    root, res = small
    (res / "pair" / "00003.png").unlink()
    with pytest.raises(InputError, match=r"pair/00003\.png is missing"):
        D.score_davis(root, res, "val", workers=2, progress=False)


def test_too_short_sequence(tmp_path):
    g = box(8, 8, 2, 4, 2, 4).astype(np.uint8)
    make_davis(tmp_path / "DAVIS", tmp_path / "res", {"two": ([g, g], [g, g])})
    with pytest.raises(InputError, match="sequence two: 2 annotated frame"):
        _score(tmp_path / "DAVIS", tmp_path / "res")
