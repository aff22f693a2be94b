"""Click-to-mask with a tiny random SAM 2 saved in transformers' format and loaded through the real path."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image

from vidprop.annotate import Annotator
from vidprop.annotate.clicks import object_prompts
from vidprop.annotate.prompts import ClickToMask, check_prompt, parse_box, parse_points
from vidprop.cli import main
from vidprop.config import load_preset
from vidprop.errors import InputError, ModelLoadError
from vidprop.io.images import read_image
from vidprop.io.synthetic import SyntheticScene, write_frame_folder
from vidprop.io.video import list_frames
from vidprop.tasks.segment import Segmenter

from tests.tasks.test_segment import ColourStats


@pytest.fixture(scope="module")
def clip(tmp_path_factory):
    d = tmp_path_factory.mktemp("promptclip")
    scene = SyntheticScene(width=96, height=64, num_frames=5, num_objects=2, seed=2, object_ids=(1, 2))
    write_frame_folder(scene, d / "clip")
    return d / "clip"


def reference_mask(sam_path, image, points, labels, box=None):
    """Plain SAM 2 on one image: the processor's steps written out, one full forward (no cached embedding)."""
    from transformers import Sam2Model

    model = Sam2Model.from_pretrained(str(sam_path)).eval()
    pre = json.loads((sam_path / "preprocessor_config.json").read_text())
    s = pre["size"]["height"]
    h, w = image.shape[:2]
    x = torch.from_numpy(image).permute(2, 0, 1)[None].float()
    x = F.interpolate(x, size=(s, s), mode="bilinear", align_corners=False) / 255
    x = (x - torch.tensor(pre["image_mean"]).view(1, 3, 1, 1)) / torch.tensor(pre["image_std"]).view(1, 3, 1, 1)
    kw = {}
    if points is not None:
        kw["input_points"] = torch.tensor([[[[px * s / w, py * s / h] for px, py in points]]], dtype=torch.float32)
        kw["input_labels"] = torch.tensor([[labels]])
    if box is not None:
        x0, y0, x1, y1 = box
        kw["input_boxes"] = torch.tensor([[[x0 * s / w, y0 * s / h, x1 * s / w, y1 * s / h]]], dtype=torch.float32)
    with torch.no_grad():
        out = model(pixel_values=x, multimask_output=False, **kw)
    up = F.interpolate(out.pred_masks[0, 0, :1][None].float(), size=(h, w), mode="bilinear", align_corners=False)
    return (up[0, 0] > 0).numpy()


def test_click_to_mask_matches_a_plain_sam2_forward(sam, sam_path, clip):
    image = read_image(list_frames(clip)[0], exif_transpose=False)
    for points, labels, box in [([(30, 20), (50, 30)], [1, 0], None), (None, None, (10, 5, 60, 40)),
                                ([(30, 20)], [1], (10, 5, 60, 40))]:
        got = sam(image, points, labels, box)
        assert got.shape == (64, 96) and got.dtype == bool
        np.testing.assert_array_equal(got, reference_mask(sam_path, image, points, labels, box))
    # the second click on the same frame reuses the image embedding
    assert sam._last is not None


def test_points_to_mask_then_propagated(sam, clip, tmp_path):
    seg = Segmenter(ColourStats(), load_preset("davis-fast").override(frames={"short_side": 64}))
    ann = Annotator(clip, seg, cache=tmp_path / "cache", prompter=sam)
    mask = ann.add_points(1, [(30, 20), (60, 40)], [1, 0], obj_id=3)
    image = read_image(list_frames(clip)[1], exif_transpose=False)
    np.testing.assert_array_equal(mask, sam(image, [(30, 20), (60, 40)], [1, 0]))
    assert mask.any() and ann.objects == [3]
    out = {t: m for t, m, _ in ann.propagate(1)}
    assert sorted(out) == [1, 2, 3, 4]
    np.testing.assert_array_equal(out[1], np.where(mask, 3, 0))
    frames = [read_image(p, exif_transpose=False) for p in list_frames(clip)]
    want = list(seg.run(frames, annotations={1: np.where(mask, 3, 0).astype(np.uint8)}))
    for t in range(1, 5):
        np.testing.assert_array_equal(out[t], want[t])


def test_prompt_parsing_and_checks_are_one_line():
    assert parse_points("12:5,6,7.5,8") == ("12", [(5.0, 6.0), (7.5, 8.0)])
    assert parse_points("5,6") == (None, [(5.0, 6.0)])
    assert parse_box("00003:1,2,30,40") == ("00003", (1.0, 2.0, 30.0, 40.0))
    with pytest.raises(InputError, match=r"--points '5,6,7': expected \[FRAME:\]X,Y"):
        parse_points("5,6,7")
    with pytest.raises(InputError, match="--box '1,2,3': expected"):
        parse_box("1,2,3")
    with pytest.raises(InputError, match=r"the click \(96, 10\) is outside the 96x64 frame"):
        check_prompt([(96, 10)], [1], None, (96, 64))
    with pytest.raises(InputError, match=r"the box \(50,5,10,30\) needs x1 > x0"):
        check_prompt(None, None, (50, 5, 10, 30), (96, 64))
    with pytest.raises(InputError, match="is outside the 96x64 frame"):
        check_prompt(None, None, (0, 0, 97, 30), (96, 64))
    with pytest.raises(InputError, match="at least one click must be on the object"):
        check_prompt([(5, 5)], [0], None, (96, 64))
    with pytest.raises(InputError, match="the i-th --neg-points belongs"):
        object_prompts([], ["1,2"])
    objs = object_prompts(["3:10,10"], ["3:20,20"], ["0,0,5,5"])
    assert [(o.frame, o.labels, o.box) for o in objs] == [("3", (1, 0), None), (None, (), (0.0, 0.0, 5.0, 5.0))]


def test_a_missing_prompt_model_is_one_line(tmp_path):
    with pytest.raises(ModelLoadError, match=r"--prompt-model .*nowhere: cannot load a SAM 2 model"):
        ClickToMask.load(tmp_path / "nowhere")


def test_segment_points_and_box_on_the_command_line(clip, tiny_sd_path, sam_path, sam, tmp_path, capsys):
    common = ["--out", str(tmp_path), "--model", str(tiny_sd_path), "--short-side", "64", "--ensemble", "1",
              "--no-progress", "--no-overlay", "--prompt-model", str(sam_path)]
    rc = main(["segment", str(clip), "--points", "1:30,20", "--neg-points", "1:60,40", "--box", "1:5,5,40,40",
               *common])
    assert rc == 0
    capsys.readouterr()
    out = tmp_path / "clip"
    rec = json.loads((out / "annotations.json").read_text())
    assert [(a["frame"], a["ids"]) for a in rec["annotations"]] == [(1, [1, 2])]
    image = read_image(list_frames(clip)[1], exif_transpose=False)
    want = np.zeros((64, 96), np.uint8)
    want[sam(image, [(30, 20), (60, 40)], [1, 0])] = 1
    want[sam(image, None, None, (5, 5, 40, 40))] = 2
    np.testing.assert_array_equal(np.asarray(Image.open(out / f"{list_frames(clip)[1].stem}.png")), want)
    # bad prompts: one line, exit 2, before any model loads (the models named here do not exist)
    for args, msg in [(["--points", "1:200,20"], "--points 1:200,20: the click (200, 20) is outside the 96x64 frame"),
                      (["--box", "50,5,10,30"], "needs x1 > x0 and y1 > y0"),
                      (["--points", "99:5,5"], "frame 99 is not part of this run")]:
        rc = main(["segment", str(clip), *args, "--out", str(tmp_path / "bad"), "--model", str(tmp_path / "x"),
                   "--prompt-model", str(tmp_path / "y"), "--no-progress"])
        err = capsys.readouterr().err.strip().splitlines()
        assert rc == 2 and len(err) == 1 and msg in err[0], err
    assert not (tmp_path / "bad").exists()
