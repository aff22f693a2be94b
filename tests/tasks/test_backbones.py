"""Every backbone behind the one switch: the tasks build it from the config and fit the frames to it.

(`segment` and `match` run end to end with every backbone in tests/cli/test_backbones_cli.py.)
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from vidprop.config import BACKBONES, load_preset
from vidprop.errors import ConfigError
from vidprop.tasks.match import PairMatcher
from vidprop.tasks.segment import Segmenter

STRIDES = {"sd": 8, "adm": 4, "dino": 8, "clip": 14, "dinov2": 14, "sd+dinov2": 16, "cleandift": 16}
MULTIPLES = {"sd": 32, "adm": 4, "dino": 8, "clip": 14, "dinov2": 14, "sd+dinov2": 64, "cleandift": 32}
DAVIS_SIZES = {14: (840, 476), 64: (768, 448)}  # 854x480 for the frame-size multiple; (832, 480) otherwise


@pytest.mark.parametrize("backbone", BACKBONES)
def test_tasks_build_every_backbone_and_fit_the_frames(backbone, tiny_backbones):
    seg = Segmenter.from_pretrained(config=load_preset("davis-fast").override(extractor=tiny_backbones[backbone]))
    ext = seg.extractor
    assert (ext.stride, ext.multiple, seg.config.extractor.backbone) == (STRIDES[backbone], MULTIPLES[backbone], backbone)
    assert seg.config.extractor is ext.config
    assert seg.config.frames.target_size(854, 480) == DAVIS_SIZES.get(ext.multiple, (832, 480))
    side = ext.multiple * (64 // ext.multiple)  # the largest multiple up to 64
    feats = ext.extract(torch.zeros(1, 3, side, side, dtype=torch.uint8))
    assert feats.shape == (1, ext.channels, side // ext.stride, side // ext.stride)


def test_pair_matcher_gives_a_joint_backbone_both_images(tiny_backbones):
    cfg = load_preset("semantic").override(frames={"width": 64, "height": 64}, extractor=tiny_backbones["sd+dinov2"])
    m = PairMatcher.from_pretrained(config=cfg)
    assert m.joint
    rng = np.random.default_rng(0)
    a = (rng.random((48, 80, 3)) * 255).astype(np.uint8)
    b = np.ascontiguousarray(a[:, ::-1])
    fs, ft = m.pair_features(a, b)
    both = m.extractor.extract(torch.cat([m._model_input(a), m._model_input(b)]), prompt="")  # one call: one joint PCA
    torch.testing.assert_close(fs, both[0]) and torch.testing.assert_close(ft, both[1])
    with pytest.raises(ConfigError, match="features of a pair together"):
        m.features(a)
