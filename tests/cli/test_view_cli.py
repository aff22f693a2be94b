"""`vidprop view`: arguments, errors on one line, the printed URL, a real server process, the match view."""

from __future__ import annotations

import json
import logging
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import cv2
import numpy as np
import pytest
from PIL import Image
from starlette.testclient import TestClient

from tests.view.conftest import same_feature
from vidprop.cli import build_parser, main
from vidprop.io.masks import write_indexed_png

FAST = ["--size", "64", "--ensemble", "1", "--no-progress"]


@pytest.fixture(scope="module")
def results(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("viewcli") / "results"
    (root / "clip").mkdir(parents=True)
    for t in range(3):
        m = np.zeros((32, 48), np.uint8)
        m[5 + t : 15 + t, 10:20] = 2
        write_indexed_png(root / "clip" / f"{t:05d}.png", m)
    return root


def _err(capsys, args):
    rc = main(["-q", *args])
    return rc, capsys.readouterr().err.strip().splitlines()


def test_help_teaches(capsys):
    with pytest.raises(SystemExit) as e:
        main(["view", "--help"])
    assert e.value.code == 0
    out = capsys.readouterr().out
    assert "vidprop view results/" in out and "--match SRC TGT" in out and "127.0.0.1" in out


@pytest.mark.parametrize("args,needle", [
    ([], "give a results folder (vidprop view RESULTS) or two images"),
    (["RESULTS", "--match", "a.png", "b.png"], "give a results folder (vidprop view RESULTS) or two images"),
    (["MISSING"], "no such results folder"),
    (["RESULTS", "--port", "70000"], "--port must be in 0..65535"),
    (["RESULTS", "--host", "no.such.host.invalid"], "cannot serve on host 'no.such.host.invalid'"),
    (["--match", "MISSING", "MISSING"], "no such image file"),
])
def test_bad_arguments_one_line(results, capsys, args, needle):
    args = [str(results) if a == "RESULTS" else str(results / "nope") if a == "MISSING" else a for a in args]
    rc, lines = _err(capsys, ["view", *args])
    assert rc == 2 and len(lines) == 1 and needle in lines[0], lines


def test_taken_port_is_an_error(results, capsys):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen(1)
        port = s.getsockname()[1]
        rc, lines = _err(capsys, ["view", str(results), "--port", str(port)])
    assert rc == 2 and len(lines) == 1 and f"cannot listen on 127.0.0.1:{port}" in lines[0]


def test_url_printed_warning_off_loopback_and_open(results, capsys, monkeypatch):
    import webbrowser

    import vidprop.view.server as server

    served, opened = [], []
    monkeypatch.setattr(server, "serve", lambda app, sock: served.append((app, sock.getsockname())))
    monkeypatch.setattr(webbrowser, "open", lambda url: opened.append(url))
    assert main(["view", str(results), "--host", "0.0.0.0", "--open"]) == 0
    cap = capsys.readouterr()
    port = served[0][1][1]
    assert served[0][1][0] == "0.0.0.0" and port > 0
    assert f"vidprop view: http://127.0.0.1:{port}/" in cap.out
    assert "serving on 0.0.0.0: anyone who can reach this machine" in cap.err
    deadline = time.monotonic() + 5
    while not opened and time.monotonic() < deadline:
        time.sleep(0.05)
    assert opened == [f"http://127.0.0.1:{port}/"]
    assert main(["view", str(results)]) == 0  # loopback by default: no warning
    cap = capsys.readouterr()
    assert "anyone" not in cap.err and served[1][1][0] == "127.0.0.1"


def test_a_real_server_process(results):
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[2]), "PYTHONUNBUFFERED": "1"}
    proc = subprocess.Popen([sys.executable, "-m", "vidprop", "view", str(results / "clip")], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, env=env)
    try:
        line = proc.stdout.readline()
        assert line.startswith("vidprop view: http://127.0.0.1:"), line + proc.stderr.read()
        url = line.split()[2]
        with urllib.request.urlopen(url + "api/results", timeout=30) as r:
            listing = json.loads(r.read())
        assert listing["single"] and [v["name"] for v in listing["videos"]] == ["clip"]
        with urllib.request.urlopen(url + "api/results/clip/mask/2", timeout=30) as r:
            assert r.read() == (results / "clip" / "00002.png").read_bytes()
    finally:
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=30)
    assert proc.returncode == 0, err
    assert "stopped" in err and "Traceback" not in err


def test_match_view_answers_like_vidprop_match(tiny_sd_path, tmp_path, capsys, caplog):
    rng = np.random.default_rng(3)
    img = (cv2.resize(rng.random((12, 16, 3)), (96, 64), interpolation=cv2.INTER_CUBIC).clip(0, 1) * 255).astype(np.uint8)
    Image.fromarray(img).save(tmp_path / "src.png")
    Image.fromarray(np.roll(img, (2, 3), axis=(0, 1))).save(tmp_path / "tgt.png")
    pair = [str(tmp_path / "src.png"), str(tmp_path / "tgt.png")]
    points = [(10, 20), (40, 30), (95, 63)]
    # the library's answer: vidprop match, same images and settings
    assert main(["-q", "match", *pair, "--points", *(f"{x},{y}" for x, y in points), "--category", "cat",
                 "--out", str(tmp_path / "m.png"), "--model", str(tiny_sd_path), *FAST]) == 0
    ref = json.loads((tmp_path / "m.json").read_text())["matches"]
    capsys.readouterr()

    from vidprop.cli.view import build_app

    args = build_parser().parse_args(["view", "--match", *pair, "--category", "cat", "--model", str(tiny_sd_path),
                                      "--size", "64", "--ensemble", "1"])  # progress on
    with caplog.at_level(logging.INFO, logger="vidprop"):
        app = build_app(args)
    assert "features 2/2: tgt.png done" in caplog.text  # the progress lines
    c = TestClient(app)
    info = c.get("/api/info").json()
    assert (info["mode"], info["prompt"], info["source"], info["target"]) == ("match", "a photo of a cat", "src.png", "tgt.png")
    grid = tuple(info["features"][1:])  # (h, w) of the feature maps
    exact = 0
    for (x, y), m in zip(points, ref):
        a = c.get(f"/api/match/click?x={x}&y={y}").json()
        assert a["score"] == pytest.approx(m["score"], abs=1e-5)
        # the same pixel, or one of an exact tie (the clamped border repeats a feature; rounding picks among them)
        assert a["target"] == m["target"] or same_feature(tuple(a["target"]), tuple(int(v) for v in m["target"]), grid, (64, 96))
        exact += a["target"] == m["target"]
    assert exact >= 2
