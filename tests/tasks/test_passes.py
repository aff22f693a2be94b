"""``direction="both"``: every object flows back from its own first annotation, against a plain reading of the rule."""

from __future__ import annotations

import numpy as np
import pytest

from tests.tasks.test_segment import _scene, _segmenter
from vidprop.tasks.passes import BackwardPass, merge_backward, plan_backward_passes


def _only(mask, *ids):
    return np.where(np.isin(mask, ids), mask, 0).astype(np.uint8)


def _reference_both(seg, frames, anns, mode):
    """The rule of docs/annotations.md, written plainly with forward runs of the public API.

    Forward pass as usual; for each frame k that annotates ids for the first
    time, a forward run over the reversed frames k, k-1, ..., lo whose only
    annotation is the one at k (lo: the run's start; in frame mode the frame
    after the previous annotation).  A frame's pixel is the forward label if
    not background, else the label of the nearest (smallest k) pass covering
    it that gives one of its new ids there.
    """
    out = [m.copy() for m in seg.run(frames, annotations=anns, mode=mode)]
    seen, previous = set(), None
    for k in sorted(anns):
        ids = set(np.unique(anns[k]).tolist()) - {0}
        new = ids - seen
        seen |= ids
        lo = 0 if mode == "objects" or previous is None else previous + 1
        previous = k
        if not new or lo >= k:
            continue
        rev = list(seg.run(frames[k : lo - 1 if lo else None : -1], annotations={0: anns[k]}, mode=mode))
        for t in range(lo, k):
            b = rev[k - t]
            for y, x in zip(*np.nonzero(out[t] == 0)):
                if int(b[y, x]) in new:
                    out[t][y, x] = b[y, x]
    return out


@pytest.mark.parametrize("protocol", ["dino", "crw"])
def test_each_object_flows_back_from_its_own_first_annotation(protocol):
    frames, masks = _scene(n=14, enter=5)
    seg = _segmenter(protocol)
    anns = {3: _only(masks[3], 3), 8: _only(masks[8], 8), 11: masks[11]}
    both = list(seg.run(frames, annotations=anns, direction="both"))
    ref = _reference_both(seg, frames, anns, "objects")
    for t, (a, b) in enumerate(zip(both, ref)):
        np.testing.assert_array_equal(a, b, err_msg=f"frame {t}")
    # the object first annotated at frame 8 is now present before it (it was absent from 0-7 before)
    assert all((both[t] == 8).any() for t in range(5, 8))
    assert np.mean([((both[t] == 8) & (masks[t] == 8)).sum() / ((both[t] == 8) | (masks[t] == 8)).sum()
                    for t in range(5, 8)]) > 0.5
    # the forward-only run is unchanged: the object is absent before its annotation
    fwd = list(seg.run(frames, annotations=anns))
    assert not any((o == 8).any() for o in fwd[:8])
    for t in range(3, 14):
        np.testing.assert_array_equal(np.where(fwd[t] != 0, fwd[t], 0), np.where(fwd[t] != 0, both[t], 0))


def test_frame_mode_passes_stop_at_the_previous_annotation():
    frames, masks = _scene(n=12, enter=3)
    seg = _segmenter("crw")
    anns = {2: _only(masks[2], 3), 7: masks[7]}
    both = list(seg.run(frames, annotations=anns, mode="frame", direction="both"))
    ref = _reference_both(seg, frames, anns, "frame")
    for t, (a, b) in enumerate(zip(both, ref)):
        np.testing.assert_array_equal(a, b, err_msg=f"frame {t}")
    assert not (both[2] == 8).any()  # the complete labelling of frame 2 says 8 is absent there
    assert all((both[t] == 8).any() for t in range(3, 7))


def test_a_single_new_object_frame_is_the_former_rule():
    frames, masks = _scene(n=10, enter=0)
    seg = _segmenter("dino")
    anns = {6: masks[6], 8: masks[8]}  # every object first annotated at 6; 8 is a correction
    both = list(seg.run(frames, annotations=anns, direction="both"))
    back = list(seg.run(frames[6::-1], annotations={0: masks[6]}))
    fwd = list(seg.run(frames, annotations=anns))
    for t in range(6):
        np.testing.assert_array_equal(both[t], back[6 - t])
    for t in range(6, 10):
        np.testing.assert_array_equal(both[t], fwd[t])


def test_plan_and_merge():
    a = np.zeros((2, 3), np.uint8)
    m = {
        0: np.array([[1, 0, 0], [0, 0, 0]], np.uint8),
        4: np.array([[1, 2, 0], [0, 0, 0]], np.uint8),  # 2 is new at 4
        6: np.array([[0, 0, 0], [0, 0, 1]], np.uint8),  # a correction: nothing new
        9: np.array([[3, 0, 5], [0, 0, 0]], np.uint8),  # 3 and 5 new at 9
    }
    assert plan_backward_passes(m, start=0) == [BackwardPass(4, 0, (2,)), BackwardPass(9, 0, (3, 5))]
    assert plan_backward_passes(m, mode="frame", start=0) == [BackwardPass(4, 1, (2,)), BackwardPass(9, 7, (3, 5))]
    assert plan_backward_passes({5: m[9], 7: m[4]}, start=2) == [BackwardPass(5, 2, (3, 5)), BackwardPass(7, 2, (1, 2))]
    assert plan_backward_passes({2: m[0]}, start=2) == []  # nothing before the first frame of the run
    cur = np.array([[1, 0, 0], [0, 0, 4]], np.uint8)
    back = np.array([[2, 2, 7], [2, 3, 2]], np.uint8)
    np.testing.assert_array_equal(merge_backward(cur, back, (2,)), [[1, 2, 0], [2, 0, 4]])
    np.testing.assert_array_equal(merge_backward(a, back, ()), a)


@pytest.mark.parametrize("overlay", [False, True])
def test_segment_video_runs_the_rule_with_and_without_a_second_decode(overlay, tmp_path):
    from PIL import Image

    from vidprop.io.masks import read_mask, write_indexed_png
    from vidprop.tasks.segment import segment_video

    frames, masks = _scene(n=10, enter=4)
    (tmp_path / "f").mkdir()
    for t, f in enumerate(frames):
        Image.fromarray(f).save(tmp_path / "f" / f"{t:05d}.png")
    anns = {2: _only(masks[2], 3), 6: _only(masks[6], 8)}
    for k, m in anns.items():
        write_indexed_png(tmp_path / f"a{k}.png", m)
    seg = _segmenter("dino")
    res = segment_video(tmp_path / "f", None, tmp_path / "out", segmenter=seg, progress=False, overlay=overlay,
                        annotations={k: tmp_path / f"a{k}.png" for k in anns}, direction="both")
    want = list(seg.run(frames, annotations=anns, direction="both"))
    got = [read_mask(res.output_dir / f"{t:05d}.png", allow_empty=True)[0] for t in range(10)]
    np.testing.assert_array_equal(np.stack(got), np.stack(want))
    assert (got[4] == 8).any() and (got[5] == 8).any() and (got[1] == 3).any()
