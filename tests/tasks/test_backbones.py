"""The tasks fit the frames to the backbone they load and keep its effective settings.

(`segment` and `match` run end to end with every backbone in tests/cli/test_backbones_cli.py;
each backbone's features are tested in tests/features/.)
"""

from __future__ import annotations

from dataclasses import replace
from types import SimpleNamespace

import pytest

from vidprop.config import load_preset
from vidprop.tasks.base import fit_to_extractor


@pytest.mark.parametrize("multiple,expected", [(8, (832, 480)), (32, (832, 480)), (14, (840, 476)), (64, (768, 448)), (4, (832, 480))])
def test_frames_are_fitted_to_the_backbone(multiple, expected):
    cfg = load_preset("davis-fast")
    ext_cfg = replace(cfg.extractor, t=264)  # e.g. CleanDIFT's learned timestep read from its checkpoint
    fitted = fit_to_extractor(cfg, SimpleNamespace(multiple=multiple, config=ext_cfg))
    assert fitted.frames.target_size(854, 480) == expected
    assert fitted.extractor.t == 264 and fitted.propagation == cfg.propagation
    # an extractor that says nothing keeps the config as it is
    assert fit_to_extractor(cfg, SimpleNamespace()) == cfg
