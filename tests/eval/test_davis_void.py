"""DAVIS first annotations with the void value 255: the published presets keep it as a label of its own.

DIFT's eval_davis.py (read_seg + to_one_hot) and DINO's eval_video_segmentation.py one-hot EVERY value
of the first annotation (``n_dims = max + 1``), 255 included; the reference below is that one-hot,
written plainly.
"""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest
import torch
from PIL import Image

from vidprop.config import load_preset
from vidprop.eval.davis import find_sequences
from vidprop.eval.davis.runner import propagate_sequence
from vidprop.io.masks import read_mask, write_indexed_png


def reference_labels(annotation: np.ndarray) -> list[int]:
    """The labels DIFT's script propagates: the non-empty channels of its one-hot of the first annotation."""
    y = torch.from_numpy(annotation.astype(np.int64)).view(-1, 1)
    n_dims = int(y.max()) + 1
    one_hot = torch.zeros(y.shape[0], n_dims).scatter_(1, y, 1)
    return [c for c in range(n_dims) if one_hot[:, c].any()]


@pytest.fixture
def void_davis(tmp_path):
    root = tmp_path / "DAVIS"
    img_dir, ann_dir = root / "JPEGImages" / "480p" / "seq", root / "Annotations" / "480p" / "seq"
    img_dir.mkdir(parents=True)
    ann_dir.mkdir(parents=True)
    rng = np.random.default_rng(0)
    first = np.zeros((64, 96), np.uint8)
    first[10:30, 10:40] = 1
    first[40:60, 50:90] = 2
    first[28:44, 36:56] = 255  # void around the contact of the two objects
    for t in range(4):
        Image.fromarray((rng.random((64, 96, 3)) * 255).astype(np.uint8)).save(img_dir / f"{t:05d}.jpg")
        write_indexed_png(ann_dir / f"{t:05d}.png", first)
    return find_sequences(root, ["seq"], need="first")[0], first


@pytest.mark.parametrize("preset,keeps_void", [("davis", True), ("davis-adm", True), ("davis-dino", True),
                                               ("davis-fast", False), ("davis-dinov2", False)])
def test_first_annotation_labels_follow_the_published_run(void_davis, tmp_path, monkeypatch, preset, keeps_void):
    import vidprop.tasks.segment as segment

    seq, first = void_davis
    got = {}

    def fake_segment_video(frames_dir, mask, out, **kw):
        got["ids"] = sorted(int(v) for v in np.unique(mask))
        return SimpleNamespace(num_frames=len(seq.images), profile="")

    monkeypatch.setattr(segment, "segment_video", fake_segment_video)
    propagate_sequence(tmp_path / "out", seq, SimpleNamespace(config=load_preset(preset)), overwrite=False)
    ref = reference_labels(first)
    assert ref == [0, 1, 2, 255]
    assert got["ids"] == (ref if keeps_void else [0, 1, 2])


def test_void_is_propagated_and_written_as_255_end_to_end(void_davis, tiny_sd_path, tmp_path):
    from vidprop.tasks.segment import Segmenter

    seq, first = void_davis
    cfg = load_preset("davis").override(frames={"short_side": 64}, extractor={"ensemble": 1})
    assert cfg.propagation.void_label == "object"
    seg = Segmenter.from_pretrained(str(tiny_sd_path), config=cfg)
    n, _ = propagate_sequence(tmp_path / "out", seq, seg, overwrite=False)
    assert n == 4
    masks = [read_mask(p)[0] for p in sorted((tmp_path / "out" / "seq").glob("*.png"))]
    np.testing.assert_array_equal(masks[0], first)  # the first annotation written back as it is
    assert all((m == 255).any() for m in masks[1:])  # the void label propagates like an object
    # scoring takes a propagated 255 as background (the toolkit would stop on an id above K)
    from vidprop.eval.davis.scoring import score_sequence

    score = score_sequence(seq, tmp_path / "out")
    assert score.num_objects == 2 and score.j.shape == (2, 2)
