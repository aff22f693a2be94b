"""Model input sizes checked against the frames and a memory estimate before any model loads."""

from __future__ import annotations

import pytest

from vidprop.config import load_preset
from vidprop.errors import ConfigError
from vidprop.tasks.budget import check_model_input, device_memory, estimate_input_bytes


def test_the_estimate_hand_computed():
    cfg = load_preset("davis-fast")  # sd, ensemble 8, batch 1, dtype auto
    ext = cfg.extractor
    # 832x480 on the CPU (float32): per pixel 3 + 12 bytes of frame, 256 values x 4 bytes x 8 samples
    assert estimate_input_bytes(ext, 832, 480, "cpu") == 832 * 480 * (15 + 256 * 4 * 8)
    # on CUDA, auto = float16
    assert estimate_input_bytes(ext, 832, 480, "cuda") == 832 * 480 * (15 + 256 * 2 * 8)
    one = cfg.override(extractor={"ensemble": 1, "batch_size": 4, "dtype": "bfloat16"}).extractor
    assert estimate_input_bytes(one, 64, 32, "cpu") == 64 * 32 * 4 * (15 + 256 * 2)
    vit = load_preset("davis-dino").extractor  # a ViT: 16 values per pixel, no ensemble
    assert estimate_input_bytes(vit, 448, 448, "cpu") == 448 * 448 * (15 + 16 * 4)


def test_a_size_that_cannot_fit_is_refused_with_one_line():
    cfg = load_preset("davis-fast").override(frames={"short_side": 100000}, extractor={"device": "cpu"})
    with pytest.raises(ConfigError) as info:
        check_model_input(cfg, 854, 480, source="clip.mp4", memory=64 * 10**9)
    need = 177888 * 100000 * (15 + 256 * 4 * 8)
    assert str(info.value) == (f"frames.short_side 100000: the model input would be 177888x100000 (from clip.mp4, "
                               f"854x480), which needs at least {need / 1e12:,.1f} TB for one batch; the device has "
                               "64.0 GB; choose a smaller size")
    # what fits passes and gives the model input size
    ok = load_preset("davis-fast").override(extractor={"device": "cpu"})
    assert check_model_input(ok, 854, 480, memory=64 * 10**9) == (832, 480)
    # the boundary: exactly the estimate fits, a byte less does not
    need = estimate_input_bytes(ok.extractor, 832, 480)
    assert check_model_input(ok, 854, 480, memory=need) == (832, 480)
    with pytest.raises(ConfigError, match="frames.short_side 480: the model input would be 832x480"):
        check_model_input(ok, 854, 480, memory=need - 1)
    square = load_preset("jhmdb").override(frames={"size": 50016}, extractor={"device": "cpu"})
    with pytest.raises(ConfigError, match="^frames.size 50016: the model input would be 50016x50016"):
        check_model_input(square, 320, 240, memory=10**9)


def test_device_memory_of_the_cpu_is_this_machines_ram():
    import os

    n, what = device_memory("cpu")
    assert n == os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") and what == "this machine's RAM"
