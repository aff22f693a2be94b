"""Interruptions: SIGTERM unwinds like Ctrl-C (no partial folder left, exit 143)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from vidprop.cli import Terminated, _sigterm_unwinds
from vidprop.io.masks import write_indexed_png
from vidprop.io.synthetic import SyntheticScene, write_video

REPO = Path(__file__).resolve().parents[2]


def test_sigterm_handler_raises_and_is_restored():
    before = signal.getsignal(signal.SIGTERM)
    with pytest.raises(Terminated):
        with _sigterm_unwinds():
            os.kill(os.getpid(), signal.SIGTERM)
            time.sleep(5)  # the handler interrupts this
    assert signal.getsignal(signal.SIGTERM) == before
    assert issubclass(Terminated, KeyboardInterrupt)  # code that cleans up on Ctrl-C cleans up on SIGTERM


@pytest.mark.skipif(os.name != "posix", reason="POSIX signals")
def test_sigterm_midway_leaves_no_partial_folder_and_exits_143(tiny_sd_path, tmp_path):
    scene = SyntheticScene(width=96, height=64, num_frames=400, num_objects=1, seed=3)
    write_video(scene, tmp_path / "clip.mp4")
    write_indexed_png(tmp_path / "mask.png", scene.frame(0)[1])
    out = tmp_path / "out"
    env = {**os.environ, "PYTHONPATH": str(REPO), "HF_HUB_OFFLINE": "1"}
    proc = subprocess.Popen(
        [sys.executable, "-m", "vidprop", "segment", str(tmp_path / "clip.mp4"), "--mask", str(tmp_path / "mask.png"),
         "--out", str(out), "--model", str(tiny_sd_path), "--short-side", "64", "--ensemble", "1", "--no-progress"],
        env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )
    try:
        deadline = time.monotonic() + 120
        partial: list[Path] = []
        while time.monotonic() < deadline and proc.poll() is None:
            partial = [p for p in out.glob(".clip.partial-*") if list(p.glob("*.png"))]
            if partial:
                break
            time.sleep(0.05)
        assert partial, f"the run never started writing (rc={proc.poll()}): {proc.stderr.read() if proc.poll() is not None else ''}"
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 143, err
    assert err.strip().splitlines()[-1] == "vidprop: terminated (SIGTERM)"
    assert "Traceback" not in err
    assert list(out.iterdir()) == []  # neither a partial folder nor a half result
