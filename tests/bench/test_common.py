"""The benchmarks' shared set-up: the random-SD extractor, the memory runs' folder and model."""

from __future__ import annotations

import torch

from vidprop.bench.common import memory_runs, random_sd_extractor, torch_device
from vidprop.config import ExtractorConfig


def test_memory_runs_parse_the_flags_and_clean_up():
    with memory_runs("64x48", "4,10", "my/model") as runs:
        assert (runs.width, runs.height, runs.lengths) == (64, 48, [4, 10])
        assert runs.model == runs.model_label == "my/model" and runs.tmp.is_dir()
        tmp = runs.tmp
    assert not tmp.exists()


def test_random_tiny_extractor_has_no_decoder_and_a_zero_prompt():
    device, dtype = torch_device(None, "cpu", None)
    assert device.type == "cpu" and dtype == torch.float32
    ext = random_sd_extractor("tiny", ExtractorConfig(device="cpu", ensemble=1), seed=0)
    assert ext.vae.decoder is None
    feats = ext.extract(torch.zeros(1, 3, 64, 64, dtype=torch.uint8), indices=[0])
    assert feats.shape[0] == 1 and torch.isfinite(feats).all()
