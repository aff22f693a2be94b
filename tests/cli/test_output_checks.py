"""Every command checks its output before loading the model: one line naming the path, exit 2."""

from __future__ import annotations

import json
import re

import numpy as np
import pytest
from PIL import Image

from tests.eval.test_davis import hand_dataset, make_davis
from tests.eval.test_jhmdb import blank, make_jhmdb
from tests.eval.pair_data import hpatches_root, spair_root  # noqa: F401 - fixtures
from vidprop.cli import main
from vidprop.io.masks import write_indexed_png
from vidprop.io.synthetic import SyntheticScene, write_video


@pytest.fixture
def no_model(monkeypatch):
    """Loading a model fails the test: every check must come first."""
    import vidprop.features.dift as dift

    def load(*args, **kwargs):
        raise AssertionError("the model was loaded before the output was checked")

    monkeypatch.setattr(dift, "load_sd_components", load)


@pytest.fixture
def inputs(tmp_path, spair_root, hpatches_root):  # noqa: F811 - fixtures
    d = tmp_path / "in"
    d.mkdir()
    scene = SyntheticScene(width=96, height=64, num_frames=3, num_objects=1, seed=2)
    write_video(scene, d / "clip.mp4")
    write_indexed_png(d / "mask.png", scene.frame(0)[1])
    (d / "kp.json").write_text(json.dumps({"keypoints": [[20, 20], [50, 30]]}))
    img = (np.random.default_rng(0).random((64, 96, 3)) * 255).astype(np.uint8)
    Image.fromarray(img).save(d / "src.png")
    Image.fromarray(img[:, ::-1]).save(d / "tgt.png")
    layer = np.zeros((64, 96, 4), np.uint8)
    layer[10:40, 20:60] = (255, 0, 0, 255)
    Image.fromarray(layer).save(d / "layer.png")
    make_davis(d / "DAVIS", d / "res", hand_dataset())
    make_jhmdb(d / "JHMDB", {"walk/v1": (blank(3, 64, 64), np.full((3, 15, 2), 20.0))})
    (d / "split.txt").write_text("walk/v1\n")
    (d / "afile").write_text("not a folder")
    return {"d": str(d), "spair": str(spair_root), "hpatches": str(hpatches_root)}


COMMANDS = {
    "segment": ["segment", "{d}/clip.mp4", "--mask", "{d}/mask.png", "--out", "{out}"],
    "track": ["track", "{d}/clip.mp4", "--keypoints", "{d}/kp.json", "--out", "{out}"],
    "match": ["match", "{d}/src.png", "{d}/tgt.png", "--points", "10,10", "--out", "{out}/m.png"],
    "match-attention": ["match", "{d}/src.png", "{d}/tgt.png", "--points", "10,10", "--method", "attention",
                        "--out", "{out}/m.png"],
    "edit": ["edit", "{d}/src.png", "{d}/tgt.png", "--sticker", "{d}/layer.png", "--out", "{out}/e.png"],
    "eval davis": ["eval", "davis", "--root", "{d}/DAVIS", "--out", "{out}"],
    "eval davis score-only": ["eval", "davis", "--root", "{d}/DAVIS", "--results", "{d}/res", "--out", "{out}"],
    "eval jhmdb": ["eval", "jhmdb", "--root", "{d}/JHMDB", "--split", "{d}/split.txt", "--out", "{out}"],
    "eval spair": ["eval", "spair", "--root", "{spair}", "--out", "{out}"],
    "eval hpatches": ["eval", "hpatches", "--root", "{hpatches}", "--out", "{out}"],
}


@pytest.mark.parametrize("command", list(COMMANDS))
@pytest.mark.parametrize("out, message", [
    ("{d}/afile", r"{d}/afile: (is a file, not a folder, so |exists and is not a folder)"),
    ("/proc/vidprop-test", r"/proc/vidprop-test\S*: cannot write in /proc \("),
])
def test_unwritable_out_is_one_line_before_the_model_loads(inputs, no_model, capsys, command, out, message):
    out = out.format(**inputs)
    args = [a.format(out=out, **inputs) for a in COMMANDS[command]]
    rc = main([*args, "--model", "unused/model", "--no-progress"])
    err = [line for line in capsys.readouterr().err.splitlines() if not line.startswith(("INFO: ", "WARNING: "))]
    assert rc == 2
    assert len(err) == 1 and err[0].startswith("vidprop: error: "), err
    assert re.search(message.format(**inputs), err[0]), err[0]
