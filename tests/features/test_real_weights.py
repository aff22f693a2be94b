"""With real Stable Diffusion 2.1 weights (VIDPROP_TEST_MODEL=/path/to/folder; skipped otherwise).

Random weights check the computation; these check that the loaded model gives
DIFT features that mean something: SD 2.1's up_blocks[2] has 640 channels at
stride 8, and a shifted copy of a frame is matched to the shifted cells.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from vidprop.config import ExtractorConfig
from vidprop.features.dift import DiftExtractor
from vidprop.io.synthetic import SyntheticScene

pytestmark = pytest.mark.weights


@pytest.fixture(scope="module")
def real(real_model_path):
    return DiftExtractor.from_pretrained(real_model_path, config=ExtractorConfig(ensemble=2, t=51, up_ft_index=2))


def test_sd21_up_block_2_has_640_channels_at_stride_8(real):
    img = torch.from_numpy(SyntheticScene(width=256, height=192, seed=0).frame(0)[0]).permute(2, 0, 1)[None]
    f = real.extract(img, indices=[0])
    assert real.stride == 8
    assert tuple(f.shape) == (1, 640, 24, 32)
    assert torch.isfinite(f).all()


def test_a_shifted_copy_is_matched_to_the_shifted_cells(real):
    scene = SyntheticScene(width=320, height=256, seed=2)
    img = scene.frame(0)[0]
    shift = 32  # pixels = 4 cells of stride 8
    moved = np.roll(img, shift, axis=1)
    batch = torch.from_numpy(np.stack([img, moved])).permute(0, 3, 1, 2)
    f = real.extract(batch, indices=[0, 1]).float()  # (2, C, 32, 40)
    C, h, w = f.shape[1:]
    a = torch.nn.functional.normalize(f[0].reshape(C, -1), dim=0)
    b = torch.nn.functional.normalize(f[1].reshape(C, -1), dim=0)
    best = (a.T @ b).argmax(1)  # for each cell of the frame, its best cell in the shifted copy
    ys, xs = best // w, best % w
    gy, gx = torch.meshgrid(torch.arange(h), torch.arange(w), indexing="ij")
    inner = (gx >= 2) & (gx < w - 2 - shift // 8) & (gy >= 2) & (gy < h - 2)  # away from borders and the wrap
    hit = ((ys.reshape(h, w) - gy).abs() <= 1) & ((xs.reshape(h, w) - (gx + shift // 8)).abs() <= 1)
    assert hit[inner].float().mean() > 0.8
