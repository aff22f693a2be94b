"""`eval youtube-vos` on a synthetic YouTube-VOS folder: objects first annotated later, the submission layout."""

from __future__ import annotations

import json
import zipfile

import numpy as np
import pytest
import yaml
from PIL import Image

from tests.tasks.test_segment import ColourStats
from vidprop.cli import main
from vidprop.config import load_preset
from vidprop.errors import ConfigError, InputError
from vidprop.eval import ytvos
from vidprop.io.masks import read_mask, write_indexed_png
from vidprop.io.synthetic import SyntheticScene
from vidprop.tasks.segment import Segmenter

N = 16  # frames at "30 fps"; every 5th is scored


def make_ytvos(root, videos=("vid_a", "vid_b")):
    """root/valid/{JPEGImages,Annotations,meta.json} and root/valid_all_frames/JPEGImages; object 2 enters at 00005."""
    meta = {"videos": {}}
    for k, name in enumerate(videos):
        scene = SyntheticScene(width=128, height=96, num_frames=N, num_objects=2, seed=10 + k, object_ids=(1, 2))
        for t in range(N):
            img, mask = scene.frame(t)
            for sub in (["valid_all_frames"] + (["valid"] if t % 5 == 0 else [])):
                d = root / sub / "JPEGImages" / name
                d.mkdir(parents=True, exist_ok=True)
                Image.fromarray(img).save(d / f"{t:05d}.jpg", quality=95)
            ann = root / "valid" / "Annotations" / name
            ann.mkdir(parents=True, exist_ok=True)
            if t == 0:
                write_indexed_png(ann / "00000.png", np.where(mask == 1, 1, 0).astype(np.uint8))
            if t == 5:
                write_indexed_png(ann / "00005.png", np.where(mask == 2, 2, 0).astype(np.uint8))
        scored = [f"{t:05d}" for t in range(0, N, 5)]
        meta["videos"][name] = {"objects": {"1": {"category": "ape", "frames": scored},
                                            "2": {"category": "bee", "frames": scored[1:]}}}
    (root / "valid" / "meta.json").write_text(json.dumps(meta))
    return root


def _seg(**prop):
    cfg = load_preset("davis-fast").override(frames={"short_side": 96},
                                             propagation={"n_last_frames": 4, "radius": 5, "topk": 8, **prop})
    return Segmenter(ColourStats(), cfg)


def test_layout_and_scored_frames(tmp_path):
    root = make_ytvos(tmp_path / "YTVOS")
    vids = ytvos.find_videos(root, "valid")
    assert [v.name for v in vids] == ["vid_a", "vid_b"]
    assert vids[0].scored == ("00000", "00005", "00010", "00015") and vids[0].all_frames
    assert vids[0].frames_dir == root / "valid_all_frames" / "JPEGImages" / "vid_a"
    assert ytvos.find_videos(root, "valid", all_frames=False)[0].frames_dir == root / "valid" / "JPEGImages" / "vid_a"
    with pytest.raises(InputError, match="no video named vid_z"):
        ytvos.find_videos(root, "valid", videos=["vid_z"])
    with pytest.raises(InputError, match="not a YouTube-VOS folder"):
        ytvos.find_videos(tmp_path, "valid")


def test_run_writes_the_submission_and_resumes(tmp_path, monkeypatch):
    root = make_ytvos(tmp_path / "YTVOS")
    out = tmp_path / "run"
    res = ytvos.run_ytvos(root, out, segmenter=_seg(), progress=False)
    assert res.propagated == ("vid_a", "vid_b") and res.skipped == ()
    for name in ("vid_a", "vid_b"):
        folder = out / "Annotations" / name
        assert sorted(p.stem for p in folder.glob("*.png")) == ["00000", "00005", "00010", "00015"]
        m0 = read_mask(folder / "00000.png", allow_empty=True)[0]
        m5 = read_mask(folder / "00005.png", allow_empty=True)[0]
        assert set(np.unique(m0)) == {0, 1}  # object 2 is absent before its first annotation
        ann5 = read_mask(root / "valid" / "Annotations" / name / "00005.png")[0]
        np.testing.assert_array_equal(m5 == 2, ann5 == 2)  # exact on the frame that introduces it
        assert (read_mask(folder / "00015.png", allow_empty=True)[0] == 2).any()  # followed afterwards
    with zipfile.ZipFile(res.zip) as z:
        names = sorted(z.namelist())
    assert names[0] == "Annotations/vid_a/00000.png" and len(names) == 8
    record = yaml.safe_load((out / "config.yaml").read_text())
    assert record["split"] == "valid" and record["all_frames"] and record["config"]["propagation"]["topk"] == 8
    # resume: nothing to do, no model needed; other settings are refused
    monkeypatch.setattr(Segmenter, "from_pretrained", classmethod(lambda *a, **k: pytest.fail("model loaded")))
    again = ytvos.run_ytvos(root, out, config=_seg().config, progress=False)
    assert again.propagated == () and again.skipped == ("vid_a", "vid_b")
    (out / "Annotations" / "vid_b" / "00010.png").unlink()
    with pytest.raises(ConfigError, match="other settings"):
        ytvos.run_ytvos(root, out, segmenter=_seg(topk=5), progress=False)
    again = ytvos.run_ytvos(root, out, segmenter=_seg(), progress=False)
    assert again.propagated == ("vid_b",)


def test_cli_end_to_end(tmp_path, tiny_sd_path, capsys):
    root = make_ytvos(tmp_path / "YTVOS", videos=("vid_a",))
    out = tmp_path / "run"
    rc = main(["eval", "youtube-vos", "--root", str(root), "--out", str(out), "--scored-frames-only",
               "--model", str(tiny_sd_path), "--short-side", "64", "--ensemble", "1", "--no-progress"])
    assert rc == 0
    assert "1 videos: 1 propagated" in capsys.readouterr().out
    assert (out / "submission.zip").is_file()
    assert sorted(p.stem for p in (out / "Annotations" / "vid_a").glob("*.png")) == ["00000", "00005", "00010",
                                                                                     "00015"]


@pytest.mark.ray
def test_ray_engine_writes_the_same_masks(ray_local, tmp_path, torch_threads):
    from vidprop.engine import EngineOptions

    root = make_ytvos(tmp_path / "YTVOS")
    with torch_threads(1):  # as each Ray worker (1 CPU): CPU float sums depend on the thread count
        ytvos.run_ytvos(root, tmp_path / "seq", segmenter=_seg(), progress=False, make_zip=False)
    res = ytvos.run_ytvos(root, tmp_path / "ray", segmenter=_seg, progress=False, make_zip=False,
                          engine=EngineOptions(kind="ray", workers=2, cpus_per_worker=1))
    assert res.propagated == ("vid_a", "vid_b")
    pngs = sorted(p.relative_to(tmp_path / "seq") for p in (tmp_path / "seq").rglob("*.png"))
    assert len(pngs) == 8 and sorted(p.relative_to(tmp_path / "ray") for p in (tmp_path / "ray").rglob("*.png")) == pngs
    for p in pngs:
        assert (tmp_path / "ray" / p).read_bytes() == (tmp_path / "seq" / p).read_bytes(), p
