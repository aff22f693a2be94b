"""`vidprop bench propagate`: the FLOP count of the limit GEMM and the printed comparison lines."""

from __future__ import annotations

import re

import torch

from vidprop.bench.propagation import main, plain_gemm, window_flops


def test_window_flops_by_hand():
    # square radius 1 on a 3x4 grid, C=2, one windowed frame: 9 offsets x 12 queries x 2C = 432;
    # inside the frame: rows give 3+2+2... pairs |dy| <= 1 on 3 rows: 3 + 2 + 2 = 7, columns on 4: 4 + 3 + 3 = 10
    full, inside = window_flops(3, 4, 2, 1, 0, 1, "square")
    assert full == 2 * 2 * 9 * 12
    assert inside == 2 * 2 * 7 * 10
    # a global frame adds every (query, key) pair: 12 x 12
    full_g, inside_g = window_flops(3, 4, 2, 1, 1, 1, "square")
    assert full_g - full == inside_g - inside == 2 * 2 * 144
    # DAVIS scale, as the issue counts it: 6240 queries x 961 offsets x 29 frames x 2 x 640
    assert window_flops(60, 104, 640, 29, 0, 15, "square")[0] == 6240 * 961 * 29 * 2 * 640


def test_plain_gemm_runs_the_flop_count(monkeypatch):
    calls = []
    real_mm = torch.mm

    def mm(a, b, out=None):
        calls.append(2 * a.shape[0] * a.shape[1] * b.shape[1])
        return real_mm(a, b, out=out)

    monkeypatch.setattr(torch, "mm", mm)
    flops = 3 * 2 * 2048 * 2048 * 8 + 2 * 2048 * 8 * 100
    plain_gemm(flops, 8, torch.device("cpu"))()
    assert sum(calls) == flops


def test_bench_prints_vs_dense_and_vs_limit(capsys):
    rc = main(["--grid", "9x11", "--channels", "8", "--context", "3", "--radius", "2", "--topk", "5",
               "--repeat", "1", "--threads", "1"])
    out = capsys.readouterr().out.strip().splitlines()
    assert rc == 0
    assert re.fullmatch(r"vs dense: \d+\.\dx \(.*\), max \|diff\| \S+, argmax flips 0   vs limit: \d+\.\d\dx", out[-1])
    diff = float(re.search(r"max \|diff\| (\S+),", out[-1]).group(1))
    assert diff <= 1e-6
