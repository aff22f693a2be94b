"""The Segmenter API: the run profile that `segment --profile` and `bench segment` print."""

from __future__ import annotations

import time

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from vidprop.config import load_preset
from vidprop.errors import InputError
from vidprop.io.masks import read_mask, write_indexed_png
from vidprop.io.synthetic import SyntheticScene, write_video
from vidprop.io.source import read_source_record
from vidprop.tasks.segment import Segmenter, segment_video


@pytest.fixture(scope="module")
def clip(tmp_path_factory):
    d = tmp_path_factory.mktemp("clip")
    scene = SyntheticScene(width=96, height=64, num_frames=5, num_objects=2, seed=1)
    write_video(scene, d / "clip.mp4")
    write_indexed_png(d / "mask.png", scene.frame(0)[1])
    return d


def test_profile_splits_the_wall_time_of_a_run(clip, tiny_sd_path, tmp_path):
    cfg = load_preset("davis").override(frames={"short_side": 64}, extractor={"ensemble": 1})
    seg = Segmenter.from_pretrained(str(tiny_sd_path), config=cfg)
    assert seg.extractor.config.ensemble == 1
    t_outer = time.perf_counter()
    res = segment_video(clip / "clip.mp4", clip / "mask.png", tmp_path, segmenter=seg, progress=False)
    t_outer = time.perf_counter() - t_outer
    prof = res.timing  # the run's own Profile
    assert prof.frames == res.num_frames == 5
    assert set(prof.seconds) == {"decode", "extract", "propagate", "postprocess", "write"}
    assert set(prof.background) == {"decode+resize", "write"}
    assert all(v >= 0 for v in [*prof.seconds.values(), *prof.background.values()])
    assert prof.background["write"] > 0 and prof.background["decode+resize"] > 0
    # the main-thread stages are disjoint parts of the run's wall time, which is inside the call's
    assert sum(prof.seconds.values()) <= prof.total <= t_outer
    assert prof.fps == pytest.approx(5 / prof.total)
    assert res.profile.startswith(f"5 frames in {prof.total:.2f}s, {prof.fps:.2f} frames/s; decode ")


class ColourStats:
    """A backbone-free extractor: per 8x8 cell, the mean and spread of R, G, B (centred over channels).

    On the synthetic scenes the objects' colours differ from the background,
    so these features separate them: the propagator, which never knows what
    made its features, must then follow the objects.
    """

    stride = 8
    channels = 6
    device = torch.device("cpu")
    dtype = torch.float32

    def extract(self, images, *, indices=None):
        x = images.float() / 255  # (B, 3, H, W)
        mean = F.avg_pool2d(x, 8)
        spread = (F.avg_pool2d(x * x, 8) - mean * mean).clamp_min(0).sqrt()
        f = torch.cat([mean, spread], 1)  # (B, 6, H/8, W/8)
        return f - f.mean(1, keepdim=True)


def test_two_sessions_of_one_segmenter_keep_separate_profiles():
    scene = SyntheticScene(width=96, height=64, num_frames=4, num_objects=2, seed=4, object_ids=(3, 8))
    frames, masks = [scene.frame(t)[0] for t in range(4)], [scene.frame(t)[1] for t in range(4)]
    seg = Segmenter(ColourStats(), load_preset("davis").override(frames={"short_side": 64}))
    one, two = seg.session(), seg.session()
    assert one.profile is not two.profile
    for t, f in enumerate(frames):
        one.step(f, masks[0] if t == 0 else None)
    assert one.profile.seconds["extract"] > 0 and one.profile.seconds["propagate"] > 0
    assert dict(two.profile.seconds) == {}  # stepping one session leaves the other's timings alone
    two.step(frames[0], masks[0])
    extract_one = one.profile.seconds["extract"]
    assert two.profile.seconds["extract"] > 0 and one.profile.seconds["extract"] == extract_one
    # a run of the same Segmenter (its loop) has a Profile of its own too
    assert len(list(seg.run(frames, masks[0]))) == 4 and one.profile.seconds["extract"] == extract_one
    assert not hasattr(seg, "last_profile")


def _mean_iou(res, scene):
    ious = []
    for t, stem in enumerate(res.frame_names[1:], start=1):
        pred, _ = read_mask(res.output_dir / f"{stem}.png")
        gt = scene.frame(t)[1]
        for k in scene.object_ids:
            union = ((pred == k) | (gt == k)).sum()
            if union:
                ious.append(((pred == k) & (gt == k)).sum() / union)
    return float(np.mean(ious))


def test_features_that_separate_the_objects_are_followed(tmp_path):
    scene = SyntheticScene(width=320, height=192, num_frames=12, num_objects=2, seed=4, object_ids=(3, 8))
    write_video(scene, tmp_path / "scene.mp4", lossless=True)
    write_indexed_png(tmp_path / "mask.png", scene.frame(0)[1])
    seg = Segmenter(ColourStats(), load_preset("davis").override(frames={"short_side": 192}))
    res = segment_video(tmp_path / "scene.mp4", tmp_path / "mask.png", tmp_path / "out", segmenter=seg, progress=False)
    assert res.num_frames == 12
    assert _mean_iou(res, scene) > 0.8  # 0.88 when written; random features give about 0.06
    rec = read_source_record(res.output_dir)  # where `vidprop view` finds the original frames
    assert rec["video"] == str((tmp_path / "scene.mp4").resolve()) and rec["kind"] == "video"
    assert (rec["frames"], rec["width"], rec["height"], rec["task"]) == (12, 320, 192, "segment")


@pytest.mark.weights
def test_real_weights_follow_moving_objects(real_model_path, tmp_path):
    """With real SD 2.1 weights, the DAVIS preset tracks two textured objects (mean IoU over frames > 0.7)."""
    scene = SyntheticScene(width=320, height=192, num_frames=12, num_objects=2, seed=4)
    write_video(scene, tmp_path / "scene.mp4", lossless=True)
    write_indexed_png(tmp_path / "mask.png", scene.frame(0)[1])
    cfg = load_preset("davis").override(frames={"short_side": 192}, extractor={"ensemble": 2})
    seg = Segmenter.from_pretrained(str(real_model_path), config=cfg)
    res = segment_video(tmp_path / "scene.mp4", tmp_path / "mask.png", tmp_path / "out", segmenter=seg, progress=False)
    assert _mean_iou(res, scene) > 0.7


# ---------------------------------------------------------------- annotations at any frame
def _scene(n=16, enter=10, w=192, h=128, seed=0, recolour=None):
    """A red disc (id 3) and, from frame ``enter``, a blue square (id 8) moving over a panning textured background.

    ``recolour``: the frame from which the disc turns yellow (its appearance changes, so propagation loses it).
    Returns (frames, masks).
    """
    import cv2

    rng = np.random.default_rng(seed)
    bw = w + 3 * n
    small = rng.integers(0, 256, (h // 8, bw // 8, 3), dtype=np.uint8)
    bg = (0.5 * np.array([90, 120, 80]) + 0.5 * cv2.resize(small, (bw, h), interpolation=cv2.INTER_CUBIC)).astype(np.uint8)
    yy, xx = np.mgrid[:h, :w]
    frames, masks = [], []
    for t in range(n):
        img = bg[:, 2 * t : 2 * t + w].copy()
        m = np.zeros((h, w), np.uint8)
        disc = (yy - 50 - t) ** 2 + (xx - 45 - 3 * t) ** 2 <= 26**2
        colour = [230, 210, 40] if recolour is not None and t >= recolour else [220, 50, 40]
        img[disc] = (np.array(colour) + rng.integers(-20, 20, (int(disc.sum()), 3))).clip(0, 255)
        m[disc] = 3
        if t >= enter:
            sq = (abs(yy - 80 + (t - enter)) <= 24) & (abs(xx - 150 + 3 * (t - enter)) <= 24)
            img[sq] = (np.array([40, 70, 230]) + rng.integers(-20, 20, (int(sq.sum()), 3))).clip(0, 255)
            m[sq] = 8
        frames.append(img)
        masks.append(m)
    return frames, masks


def _iou(a, b):
    union = (a | b).sum()
    return float((a & b).sum() / union) if union else 1.0


def _segmenter(protocol, **prop):
    settings = {"protocol": protocol, "n_last_frames": 4, "radius": 5, "topk": 8, **prop}
    return Segmenter(ColourStats(), load_preset("davis").override(frames={"short_side": 128}, propagation=settings))


def _reference_run(frames, first, protocol, stride=8, n_last=3, topk=6, radius=3, temperature=0.2):
    """Frame-0-only segmentation straight from the published protocols, with the plain dense propagation."""
    from tests.propagation.reference import decode_crw, decode_dino, dense_protocol_a, dense_protocol_b
    from vidprop.propagation.labels import labels_bilinear, labels_nearest, object_ids

    ext = ColourStats()
    feats = [ext.extract(torch.from_numpy(f[None]).permute(0, 3, 1, 2))[0].double() for f in frames]
    ids = object_ids(first)
    grid = tuple(feats[0].shape[-2:])
    lab0 = (labels_nearest if protocol == "dino" else labels_bilinear)(first, grid, ids).double()
    size = (first.shape[1], first.shape[0])
    queue = [] if protocol == "dino" else [(feats[0], lab0)] * n_last
    out = [first]
    for f in feats[1:]:
        ctx = [(feats[0], lab0)] + queue
        args = ([c for c, _ in ctx], [lab for _, lab in ctx])
        if protocol == "dino":
            soft = dense_protocol_a(f, *args, temperature=temperature, topk=topk, radius=radius)
            out.append(decode_dino(soft.float(), stride, size, ids))
        else:
            soft = dense_protocol_b(f, *args, n_global=1, temperature=temperature, topk=topk, radius=radius)
            out.append(decode_crw(soft.float(), size, ids))
        queue = (queue + [(f, soft)])[-n_last:]
    return out


@pytest.mark.parametrize("protocol", ["dino", "crw"])
def test_first_frame_only_runs_are_the_published_protocol(protocol):
    scene = SyntheticScene(width=96, height=64, num_frames=6, num_objects=2, seed=4, object_ids=(3, 8))
    frames, masks = [scene.frame(t)[0] for t in range(6)], [scene.frame(t)[1] for t in range(6)]
    seg = Segmenter(ColourStats(), load_preset("davis").override(
        frames={"short_side": 64}, propagation={"protocol": protocol, "n_last_frames": 3, "topk": 6, "radius": 3}))
    ours = list(seg.run(frames, masks[0]))
    ref = _reference_run(frames, masks[0], protocol)
    for t, (a, b) in enumerate(zip(ours, ref)):
        np.testing.assert_array_equal(a, b, err_msg=f"frame {t}")
    # the same run through annotations={0: mask}, and one frame at a time through a session
    np.testing.assert_array_equal(np.stack(list(seg.run(frames, annotations={0: masks[0]}))), np.stack(ours))
    session = seg.session()
    stepped = [session.step(f, masks[0] if t == 0 else None) for t, f in enumerate(frames)]
    np.testing.assert_array_equal(np.stack(stepped), np.stack(ours))


@pytest.mark.parametrize("protocol", ["dino", "crw"])
def test_an_object_entering_later_is_followed_from_its_annotation(protocol):
    frames, masks = _scene()
    seg = _segmenter(protocol)
    enter = np.where(masks[10] == 8, 8, 0).astype(np.uint8)  # objects mode: only the new object
    outs = list(seg.run(frames, annotations={0: masks[0], 10: enter}))
    assert not any((o == 8).any() for o in outs[:10])  # absent before its first annotation
    np.testing.assert_array_equal(outs[10] == 8, masks[10] == 8)
    assert np.mean([_iou(outs[t] == 8, masks[t] == 8) for t in range(11, 16)]) > 0.8  # 0.88 when written
    assert np.mean([_iou(outs[t] == 3, masks[t] == 3) for t in range(1, 16)]) > 0.8  # the other is still followed


@pytest.mark.parametrize("protocol", ["dino", "crw"])
def test_a_correction_is_exact_on_its_frame_and_improves_what_follows(protocol):
    frames, masks = _scene(n=14, enter=99, recolour=4)  # the disc turns yellow at frame 4: propagation loses it
    seg = _segmenter(protocol, n_last_frames=2)
    plain = list(seg.run(frames, masks[0]))
    fixed = list(seg.run(frames, annotations={0: masks[0], 5: masks[5]}))
    assert _iou(plain[5] == 3, masks[5] == 3) < 0.1  # the deliberately wrong prediction
    np.testing.assert_array_equal(fixed[5], masks[5])
    before = np.mean([_iou(plain[t] == 3, masks[t] == 3) for t in range(6, 14)])
    after = np.mean([_iou(fixed[t] == 3, masks[t] == 3) for t in range(6, 14)])
    assert after > before + 0.5  # 0.0 -> 0.83 when written


@pytest.mark.parametrize("protocol", ["dino", "crw"])
def test_last_frame_annotation_with_both_directions_predicts_earlier_frames(protocol, caplog):
    frames, masks = _scene()
    seg = _segmenter(protocol)
    with caplog.at_level("WARNING"):
        fwd = list(seg.run(frames, annotations={15: masks[15]}))
    assert not any(o.any() for o in fwd[:15]) and "--direction both" in caplog.text
    both = list(seg.run(frames, annotations={15: masks[15]}, direction="both"))
    np.testing.assert_array_equal(both[15], masks[15])
    assert np.mean([_iou(both[t] == 3, masks[t] == 3) for t in range(15)]) > 0.8  # 0.91 when written
    assert np.mean([_iou(both[t] == 8, masks[t] == 8) for t in range(10, 15)]) > 0.8


def test_objects_mode_merge_takes_the_best_remaining_label_where_the_annotation_takes_pixels_away():
    frames, masks = _scene(n=8, enter=0)
    seg = _segmenter("dino")
    session = seg.session()
    for t in range(4):
        session.step(frames[t], masks[t] if t == 0 else None)
    ann = np.where(masks[4] == 3, 3, 0).astype(np.uint8)
    ann = np.roll(ann, 12, axis=1)  # id 3 is put 12 px to the right of where it is predicted
    out = session.step(frames[4], ann)
    # a plain reading of the rule, from the same decoded map
    proto = session.protocol
    scores = proto.scores(session.last_soft, 8, (192, 128))  # (K, H, W): channels bg, 3, 8
    pred = np.array([0, 3, 8], np.uint8)[scores.argmax(0).numpy()]
    alt = np.array([0, 8], np.uint8)[scores[[0, 2]].argmax(0).numpy()]
    want = np.where(ann == 3, 3, np.where(pred == 3, alt, pred))
    np.testing.assert_array_equal(out, want)
    assert (pred == 3).sum() > 0 and ((pred == 3) & (ann == 0)).any()  # the rule was exercised
    assert session.num_anchors == 2 and session.annotated == [(0, (3, 8)), (4, (3,))]


def test_frame_mode_removes_objects_absent_from_an_annotation():
    frames, masks = _scene(n=8, enter=0)
    seg = _segmenter("crw")
    only3 = np.where(masks[5] == 3, 3, 0).astype(np.uint8)
    outs = list(seg.run(frames, annotations={0: masks[0], 5: only3}, mode="frame"))
    np.testing.assert_array_equal(outs[5], only3)  # the complete labelling of its frame
    assert not any((o == 8).any() for o in outs[5:]) and (outs[4] == 8).any()
    kept = list(seg.run(frames, annotations={0: masks[0], 5: only3}))  # objects mode: id 8 goes on
    assert all((o == 8).any() for o in kept[5:])
    with pytest.raises(InputError, match="mask is empty"):
        list(seg.run(frames, annotations={0: masks[0], 5: np.zeros_like(only3)}))
    empty = list(seg.run(frames, annotations={0: masks[0], 5: np.zeros_like(only3)}, mode="frame"))
    assert not any(o.any() for o in empty[5:])  # every object left


def test_ids_stay_in_ascending_order_and_anchors_are_bounded():
    frames, masks = _scene(n=8, enter=0)
    seg = _segmenter("dino", max_anchors=3)
    session = seg.session()
    sizes = []
    for t, f in enumerate(frames):
        ann = np.where(masks[t] == 8, 8, 0).astype(np.uint8) if t == 0 else (masks[t] if t >= 2 else None)
        session.step(f, ann)
        if t == 0:
            assert session.ids == [8]
        if t >= 2:
            assert session.ids == [3, 8]
            assert session.num_anchors == min(t, 3)
            prop = session.propagator
            sizes.append(sum(x.numel() for x in (prop._keys, prop._labels, prop._extra_keys, prop._extra_labels)
                             if x is not None))
    assert len(set(sizes[2:])) == 1  # annotating every frame: the context stops growing at max_anchors


def test_annotation_checks():
    frames, masks = _scene(n=4, enter=0)
    seg = _segmenter("dino")
    with pytest.raises(InputError, match="annotates frame 9 but the video ended after frame 3"):
        list(seg.run(frames, annotations={0: masks[0], 9: masks[0]}))
    with pytest.raises(InputError, match="the mask is 10x10 but the frames are 192x128"):
        list(seg.run(frames, annotations={0: masks[0], 2: np.ones((10, 10), np.uint8)}))
    with pytest.raises(InputError, match="frame 0 is annotated twice"):
        seg.run(frames, masks[0], annotations={0: masks[0]})


def test_first_frame_runs_write_what_they_always_wrote(tmp_path):
    scene = SyntheticScene(width=96, height=64, num_frames=4, num_objects=2, seed=4, object_ids=(3, 8))
    write_video(scene, tmp_path / "v.mp4", lossless=True)
    write_indexed_png(tmp_path / "m.png", scene.frame(0)[1])
    write_indexed_png(tmp_path / "m2.png", scene.frame(2)[1])
    seg = Segmenter(ColourStats(), load_preset("davis").override(frames={"short_side": 64}))
    res = segment_video(tmp_path / "v.mp4", tmp_path / "m.png", tmp_path / "a", segmenter=seg, progress=False,
                        overlay=False)
    assert sorted(p.name for p in res.output_dir.iterdir()) == [f"{i:05d}.png" for i in range(4)] + ["source.json"]
    assert res.annotations is None and res.exports == {}
    res = segment_video(tmp_path / "v.mp4", tmp_path / "m.png", tmp_path / "b", segmenter=seg, progress=False,
                        overlay=False, annotations={2: tmp_path / "m2.png"})
    assert res.annotations == res.output_dir / "annotations.json" and res.annotations.is_file()


def test_a_first_frame_run_writes_no_annotation_record_whatever_its_range_or_direction(tmp_path):
    """README: annotations.json only for runs with annotations beyond a first-frame mask."""
    scene = SyntheticScene(width=96, height=64, num_frames=5, num_objects=2, seed=4, object_ids=(3, 8))
    write_video(scene, tmp_path / "v.mp4", lossless=True)
    write_indexed_png(tmp_path / "m.png", scene.frame(0)[1])
    write_indexed_png(tmp_path / "m1.png", scene.frame(1)[1])
    seg = Segmenter(ColourStats(), load_preset("davis").override(frames={"short_side": 64}))
    for out, kwargs in [("part", {"max_frames": 3}), ("both", {"direction": "both"}), ("frame", {"mode": "frame"})]:
        res = segment_video(tmp_path / "v.mp4", tmp_path / "m.png", tmp_path / out, segmenter=seg, progress=False,
                            overlay=False, **kwargs)
        assert res.annotations is None and not (res.output_dir / "annotations.json").exists(), out
    # the run's first frame with --frames 1: is a first-frame run too; an annotation later is not
    res = segment_video(tmp_path / "v.mp4", None, tmp_path / "from1", segmenter=seg, progress=False, overlay=False,
                        annotations={1: tmp_path / "m1.png"}, frames="1:")
    assert res.annotations is None
    res = segment_video(tmp_path / "v.mp4", None, tmp_path / "later", segmenter=seg, progress=False, overlay=False,
                        annotations={1: tmp_path / "m1.png"})
    assert res.annotations is not None and res.annotations.is_file()
