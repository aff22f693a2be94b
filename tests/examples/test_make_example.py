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
