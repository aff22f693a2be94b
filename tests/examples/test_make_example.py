"""examples/make_example.py writes outside the checkout by default and never touches the tracked copy."""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
from PIL import Image

REPO = Path(__file__).resolve().parents[2]
SCRIPT = REPO / "examples" / "make_example.py"


def _digest(folder: Path) -> dict[str, str]:
    return {str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file()}


def _git_status() -> str | None:
    if not (REPO / ".git").exists():
        return None
    res = subprocess.run(["git", "status", "--porcelain", "--untracked-files=all"], cwd=REPO, capture_output=True,
                         text=True)
    return res.stdout if res.returncode == 0 else None


def test_make_example_writes_to_a_user_folder_and_leaves_the_checkout_clean(tmp_path):
    tracked = _digest(REPO / "examples")
    status = _git_status()
    for _ in range(2):  # twice: the second run replaces its own files
        res = subprocess.run([sys.executable, str(SCRIPT), "--frames", "3", "--width", "96", "--height", "64"],
                             cwd=tmp_path, capture_output=True, text=True, timeout=120,
                             env={**os.environ, "PYTHONPATH": str(REPO)})
        assert res.returncode == 0, res.stderr
    out = tmp_path / "vidprop-example"
    assert sorted(p.name for p in out.iterdir()) == ["shapes.mp4", "shapes_gt", "shapes_mask.png"]
    assert len(list((out / "shapes_gt").glob("*.png"))) == 3
    mask = np.asarray(Image.open(out / "shapes_mask.png"))
    assert set(np.unique(mask)) == {0, 1, 2}
    assert f"vidprop segment {Path('vidprop-example') / 'shapes.mp4'}" in res.stdout
    assert _digest(REPO / "examples") == tracked  # examples/data/ untouched
    assert _git_status() == status  # nothing changed in the checkout


def test_the_quickstart_ground_truth_is_a_real_check(tmp_path):
    """`vidprop score` of a segmentation of the example against shapes_gt/ (a backbone-free extractor that
    follows the shapes scores high; a result that loses an object scores low)."""
    from tests.tasks.test_segment import ColourStats
    from vidprop.config import load_preset
    from vidprop.eval.score import score_result
    from vidprop.io.masks import write_indexed_png
    from vidprop.tasks.segment import Segmenter, segment_video

    res = subprocess.run([sys.executable, str(SCRIPT), "--frames", "6", "--width", "192", "--height", "128",
                          "--out", str(tmp_path / "ex")], capture_output=True, text=True, timeout=120,
                         env={**os.environ, "PYTHONPATH": str(REPO)})
    assert res.returncode == 0, res.stderr
    ex = tmp_path / "ex"
    assert f"vidprop score results/shapes --gt {ex / 'shapes_gt'}" in res.stdout
    seg = Segmenter(ColourStats(), load_preset("davis").override(frames={"short_side": 128}))
    out = segment_video(ex / "shapes.mp4", ex / "shapes_mask.png", tmp_path / "results", segmenter=seg,
                        progress=False, overlay=False)
    good = score_result(out.output_dir, ex / "shapes_gt")
    assert good.ids == (1, 2) and len(good.frames) == 5  # the first frame (the given mask) is not scored
    assert good.jf_mean > 0.6
    for p in out.output_dir.glob("*.png"):  # a result that lost object 2
        m = np.asarray(Image.open(p)).copy()
        m[m == 2] = 0
        write_indexed_png(p, m)
    bad = score_result(out.output_dir, ex / "shapes_gt")
    assert bad.objects[1].j_mean == 0.0 and bad.jf_mean < good.jf_mean - 0.25


def test_the_next_commands_are_quick_and_the_davis_layout_runs_in_eval_davis(tmp_path):
    """The printed next command has --config quick (minutes on a CPU, not hours); --davis writes a layout that
    eval davis propagates on and scores."""
    from tests.eval.test_davis_cli import colour_segmenter
    from vidprop.config import load_preset
    from vidprop.eval.davis import run_davis

    res = subprocess.run([sys.executable, str(SCRIPT), "--frames", "4", "--width", "96", "--height", "64", "--davis"],
                         cwd=tmp_path, capture_output=True, text=True, timeout=120,
                         env={**os.environ, "PYTHONPATH": str(REPO)})
    assert res.returncode == 0, res.stderr
    nexts = [ln for ln in res.stdout.splitlines() if ln.startswith("next: ")]
    davis = Path("vidprop-example") / "DAVIS"
    assert nexts == [
        f"next: vidprop segment {Path('vidprop-example') / 'shapes.mp4'} --mask "
        f"{Path('vidprop-example') / 'shapes_mask.png'} --out results/ --config quick",
        f"next: vidprop eval davis --root {davis} --set val --out runs/example --config quick",
    ]
    cfg = load_preset("quick").override(frames={"short_side": 64})
    scores = run_davis(tmp_path / davis, tmp_path / "runs", config=cfg, segmenter=colour_segmenter(cfg),
                       progress=False, workers=1)
    assert sorted(p.name for p in (tmp_path / "runs").iterdir() if p.is_dir()) == ["shapes", "shapes3"]
    assert 0.0 <= scores.jf_mean <= 1.0 and len(scores.objects) == 2 + 3
