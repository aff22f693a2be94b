"""`vidprop annotate` on the command line: bad input is one line and exit 2, before any model loads."""

from __future__ import annotations

import pytest

from vidprop.cli import main
from vidprop.io.masks import write_indexed_png
from vidprop.io.synthetic import SyntheticScene, write_frame_folder


@pytest.fixture(scope="module")
def clip(tmp_path_factory):
    d = tmp_path_factory.mktemp("annotatecli")
    scene = SyntheticScene(width=64, height=48, num_frames=3, num_objects=1, seed=0)
    write_frame_folder(scene, d / "clip")
    write_indexed_png(d / "m.png", scene.frame(0)[1])
    return d


def _err(capsys, args):
    rc = main(args)
    err = capsys.readouterr().err.strip().splitlines()
    return rc, err


def test_bad_input_is_one_line_before_the_model_loads(clip, tmp_path, capsys):
    nomodel = ["--model", str(tmp_path / "no-model"), "--prompt-model", str(tmp_path / "no-sam"),
               "--feature-cache", str(tmp_path / "cache")]
    other = tmp_path / "out" / "clip"
    other.mkdir(parents=True)
    (other / "00000.png").write_bytes(b"someone's result")
    afile = tmp_path / "afile"
    afile.write_text("x")
    cases = [
        (["annotate", str(tmp_path / "missing.mp4"), *nomodel], "missing.mp4: no such"),
        (["annotate", str(clip / "clip"), "--mask", str(tmp_path / "nomask.png"), *nomodel], "nomask.png"),
        (["annotate", str(clip / "clip"), "--out", str(tmp_path / "out"), *nomodel],
         "holds results that vidprop annotate did not make"),
        (["annotate", str(clip / "clip"), "--out", str(tmp_path / "o2"), "--model", str(tmp_path / "no-model"),
          "--feature-cache", str(afile / "sub")], "--feature-cache"),
        (["annotate", str(clip / "clip"), "--port", "70000", *nomodel], "--port must be in 0..65535"),
    ]
    for args, msg in cases:
        rc, err = _err(capsys, args)
        assert rc == 2 and len(err) == 1 and msg in err[0], (args, err)
    assert (other / "00000.png").read_bytes() == b"someone's result"
    assert not (tmp_path / "o2").exists()
