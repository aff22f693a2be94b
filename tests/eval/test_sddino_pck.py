"""Zhang et al.'s SPair-71k PCK (Junyi42/sd-dino pck_spair_pascal.py), against a plain re-implementation of their script."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest
import torch

from vidprop.eval.pck import protocol_correct, resolve_protocols
from vidprop.eval.sddino_pck import category_mean, sample_pairs, sd_dino_correct


def their_preprocess_kps_pad(kps, img_width, img_height, size):
    """pck_spair_pascal.py preprocess_kps_pad (COUNT_INVIS off), plainly: (N, 3) x, y, visible -> letterboxed."""
    kps = kps.clone()
    scale = size / max(img_width, img_height)
    kps[:, [0, 1]] *= scale
    if img_height < img_width:
        new_h = int(np.around(size * img_height / img_width))
        kps[:, 1] += int((size - new_h) / 2)
    elif img_width < img_height:
        new_w = int(np.around(size * img_width / img_height))
        kps[:, 0] += int((size - new_w) / 2)
    kps *= kps[:, 2:3].clone()
    return kps, scale


def their_pck(pred_patch_idx, trg_kps, bbox, scale, alphas=(0.1, 0.05, 0.01), img_size=840, patch=14, stride=14):
    """Their prediction from the nearest patch's index and their strict threshold on the target box."""
    num_patches = int(patch / stride * (img_size // patch - 1) + 1)
    nn_y_patch, nn_x_patch = pred_patch_idx // num_patches, pred_patch_idx % num_patches
    nn_x = (nn_x_patch - 1) * stride + stride + patch // 2 - .5
    nn_y = (nn_y_patch - 1) * stride + stride + patch // 2 - .5
    pred = torch.stack([nn_x, nn_y]).permute(1, 0).float()
    err = (pred - trg_kps[:, :2]).norm(dim=-1)
    threshold = torch.tensor(alphas).unsqueeze(-1) * (max(bbox[3] - bbox[1], bbox[2] - bbox[0]) * scale)
    return err.unsqueeze(0) < threshold


@pytest.mark.parametrize("size", [(500, 333), (333, 500), (640, 640)])
def test_pair_score_equals_their_script(size):
    W, H = size
    rng = np.random.default_rng(1)
    gt = np.stack([rng.uniform(0, W - 1, 30), rng.uniform(0, H - 1, 30)], 1)
    pred = np.clip(gt + rng.normal(0, 25, gt.shape), 0, [W - 1, H - 1])
    box = (40.0, 30.0, W - 60.0, H - 20.0)
    alphas = (0.1, 0.05, 0.01)
    got = sd_dino_correct(pred, gt, box, (W, H), alphas)
    # their side: both point sets letterboxed; the prediction is the patch holding vidprop's (letterboxed) match
    trg, scale = their_preprocess_kps_pad(torch.tensor(np.c_[gt, np.ones(30)], dtype=torch.float32), W, H, 840)
    pl, _ = their_preprocess_kps_pad(torch.tensor(np.c_[pred, np.ones(30)], dtype=torch.float64), W, H, 840)
    idx = torch.from_numpy((60 / 840 * pl[:, 1].numpy()).astype(np.int32) * 60 + (60 / 840 * pl[:, 0].numpy()).astype(np.int32))
    ref = their_pck(idx.long(), trg, box, scale)
    for k, a in enumerate(alphas):
        np.testing.assert_array_equal(got[a], ref[k].numpy())
    assert 0 < got[0.1].sum() < 30  # a real mix of right and wrong


def test_the_threshold_is_strict_and_in_the_letterboxed_space():
    # an 840 x 420 target: scale 1, offset y 210; the box 112 wide -> threshold 11.2 at 0.1, exactly 14 at 0.125
    gt = np.array([[6.5 + 14 * 3, 6.5 + 14 * 5 - 210.0]])  # letterboxed (48.5, 76.5): a patch centre
    box = (0.0, 0.0, 112.0, 50.0)
    assert sd_dino_correct(gt + 3.0, gt, box, (840, 420), (0.1,))[0.1].all()  # snapped back onto the centre
    far = gt + [[14.0, 0.0]]  # the next patch: 14 px away
    assert not sd_dino_correct(far, gt, box, (840, 420), (0.1,))[0.1].any()
    assert not sd_dino_correct(far, gt, box, (840, 420), (0.125,))[0.125].any()  # 14 < 14 is false: strict
    assert sd_dino_correct(far, gt, box, (840, 420), (0.126,))[0.126].all()
    # protocol_correct routes the name to it
    got = protocol_correct("sd-dino", far, gt, src_box=None, trg_box=box, src_size=(1, 1), trg_size=(840, 420),
                           alphas=(0.125, 0.126))
    assert not got[0.125].any() and got[0.126].all()


def test_pairs_are_drawn_as_their_script_draws_them():
    pairs = [SimpleNamespace(name=f"{i:06d}-a-b:{cat}", category=cat) for cat in ("dog", "cat") for i in range(7)]
    got = sample_pairs(pairs, 20, seed=42)
    expected = []
    for cat in ("cat", "dog"):  # their loop: per category, files sorted, np.random.seed(SEED) then choice
        files = sorted(p.name for p in pairs if p.category == cat)
        np.random.seed(42)
        expected += [files[ix] for ix in np.random.choice(len(files), 20)]
    assert [p.name for p in got] == expected and len(got) == 40
    assert len({p.name for p in got if p.category == "cat"}) < 20  # with replacement: repeats


def test_category_mean_is_the_mean_of_the_categories_per_point_pck():
    per_cat = {"cat": {"per_point": {"0.1": 50.0}}, "dog": {"per_point": {"0.1": 80.0}}}
    assert category_mean(per_cat) == {"0.1": 65.0}
    assert resolve_protocols("dift", "sd-dino") == ["sd-dino"]
    assert resolve_protocols("dift", "both") == ["dift", "hedlin"]


def test_eval_spair_help_lists_the_protocol(capsys):
    from vidprop.cli import main

    with pytest.raises(SystemExit):
        main(["eval", "spair", "--help"])
    out = capsys.readouterr().out
    assert "sd-dino" in out and "--sample N" in out and "59.9" in out
