"""A batch worker that loads no model: ``segment_video`` runs for real on features made of pixel colours.

Importable by the Ray workers (``tests.batch.cheap_runner.CheapRunner``), so the
Ray tests of ``vidprop batch`` take seconds: a row is the real row (state files,
atomic output folder, masks, ``source.json``), only the backbone is a stand-in.
"""

from __future__ import annotations

import time

import torch
import torch.nn.functional as F

from vidprop.batch import RowRunner


class ColourCells:
    """Per 8x8 cell the mean and spread of R, G, B, centred over channels: (B, 6, H/8, W/8)."""

    stride = 8
    channels = 6
    device = torch.device("cpu")
    dtype = torch.float32

    def extract(self, images, *, indices=None):
        x = images.float() / 255
        mean = F.avg_pool2d(x, 8)
        spread = (F.avg_pool2d(x * x, 8) - mean * mean).clamp_min(0).sqrt()
        f = torch.cat([mean, spread], 1)
        return f - f.mean(1, keepdim=True)


class CheapRunner(RowRunner):
    """``RowRunner`` with :class:`ColourCells` for the model; every row takes at least ``row_seconds``."""

    row_seconds = 0.0

    def load(self, config):
        from vidprop.tasks.segment import Segmenter

        return Segmenter(ColourCells(), config)

    def _run(self, task, job, replace):
        t0 = time.perf_counter()
        frames = super()._run(task, job, replace)
        time.sleep(max(0.0, self.row_seconds - (time.perf_counter() - t0)))
        return frames


class SlowCheapRunner(CheapRunner):
    """Rows of about a second: long enough to lose a machine while rows are in flight."""

    row_seconds = 1.0
