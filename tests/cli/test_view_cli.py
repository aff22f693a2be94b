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
import urllib.error
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
    assert "ssh -N -L PORT:127.0.0.1:PORT" in out and "--allow-host" in out and "--no-token" in out


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


def _serve_nothing(monkeypatch) -> list:
    """PageServer.serve records its server and app instead of blocking."""
    from vidprop.view.server import PageServer

    served: list = []
    monkeypatch.setattr(PageServer, "serve", lambda self, app, access_log=False: served.append(
        (self, app, access_log, self.sock.getsockname()[:2])))
    return served


def test_url_printed_warning_off_loopback_and_open(results, capsys, monkeypatch):
    import webbrowser

    served, opened = _serve_nothing(monkeypatch), []
    monkeypatch.setattr(webbrowser, "open", lambda url: opened.append(url))
    monkeypatch.delenv("VIDPROP_TOKEN", raising=False)
    assert main(["view", str(results), "--host", "0.0.0.0", "--open"]) == 0
    cap = capsys.readouterr()
    server = served[0][0]
    port, token = server.port, server.guard.token
    assert served[0][3] == ("0.0.0.0", port) and port > 0 and len(token) >= 40
    # one line: the address to open, with the token (as Jupyter prints it)
    assert cap.out.splitlines() == [f"vidprop view: http://127.0.0.1:{port}/?token={token}  (Ctrl+C to stop)"]
    assert "serving on 0.0.0.0: anyone who can reach this machine" in cap.err
    assert "add the name or address others open it by with --allow-host NAME" in cap.err
    deadline = time.monotonic() + 5
    while not opened and time.monotonic() < deadline:
        time.sleep(0.05)
    assert opened == [f"http://127.0.0.1:{port}/?token={token}"]  # --open opens the URL with the token
    assert main(["view", str(results)]) == 0  # loopback by default: no warning, a new token each run
    cap = capsys.readouterr()
    assert "anyone" not in cap.err and served[1][3][0] == "127.0.0.1"
    assert served[1][0].guard.token != token and served[1][0].guard.token in cap.out


def test_token_flags(results, capsys, monkeypatch):
    served = _serve_nothing(monkeypatch)
    chosen = "my-tunnel-token-0123456789"
    monkeypatch.setenv("VIDPROP_TOKEN", "from-the-environment-0123")
    assert main(["view", str(results), "--token", chosen]) == 0  # the flag wins over the environment
    assert served[-1][0].guard.token == chosen and f"?token={chosen}  (Ctrl+C" in capsys.readouterr().out
    assert main(["view", str(results)]) == 0  # $VIDPROP_TOKEN: kept out of `ps`
    assert served[-1][0].guard.token == "from-the-environment-0123"
    capsys.readouterr()
    assert main(["view", str(results), "--no-token", "--allow-host", "myhost", "--allow-host", "[fd00::1]:8080"]) == 0
    server = served[-1][0]
    cap = capsys.readouterr()
    assert server.guard.token is None and f"vidprop view: http://127.0.0.1:{server.port}/  (Ctrl+C" in cap.out
    assert f"--no-token: every program and user on this machine can open http://127.0.0.1:{server.port}/" in cap.err
    assert {f"myhost:{server.port}", "[fd00::1]:8080", f"localhost:{server.port}"} <= server.guard.hosts


@pytest.mark.parametrize("args,needle", [
    (["--host", "0.0.0.0", "--no-token"], "--no-token is only allowed on a loopback --host"),
    (["--no-token", "--token", "0123456789abcdefgh"], "--token and --no-token exclude each other"),
    (["--token", "short"], "--token must be at least 16 characters long, got 5"),
    (["--token", "spaces are not ok in a url"], "--token may use only letters, digits"),
    (["--allow-host", "http://evil.example/"], "--allow-host expects a host name or address"),
    (["--allow-host", "myhost:99999"], "--allow-host expects a host name or address"),
])
def test_bad_server_flags_one_line_before_anything_loads(results, capsys, monkeypatch, args, needle):
    served = _serve_nothing(monkeypatch)
    for target in ([str(results)], ["--match", str(results / "no.png"), str(results / "no.png")]):
        rc, lines = _err(capsys, ["view", *target, *args])
        assert rc == 2 and len(lines) == 1 and needle in lines[0], lines  # before the images are even read
    assert not served


def _opener():
    """urllib with a cookie jar: it follows the 303 of the URL with the token and keeps the cookie, as a browser."""
    import http.cookiejar

    return urllib.request.build_opener(urllib.request.HTTPCookieProcessor(http.cookiejar.CookieJar()))


def test_a_real_server_process(results):
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[2]), "PYTHONUNBUFFERED": "1"}
    env.pop("VIDPROP_TOKEN", None)
    # -vv: uvicorn's access log on (it logs each request's query string)
    proc = subprocess.Popen([sys.executable, "-m", "vidprop", "view", str(results / "clip"), "-vv"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    try:
        line = proc.stdout.readline()
        assert line.startswith("vidprop view: http://127.0.0.1:") and "?token=" in line, line + proc.stderr.read()
        printed = line.split()[2]
        url, token = printed.split("?token=")
        with pytest.raises(urllib.error.HTTPError) as e:  # no token, no cookie
            urllib.request.urlopen(url + "api/results", timeout=30)
        assert e.value.code == 403 and "no token" in json.loads(e.value.read())["error"]
        opener = _opener()
        with opener.open(printed, timeout=30) as r:  # the printed URL: 303 to the page, a cookie
            assert r.url == url and b"<title>vidprop view</title>" in r.read()
        with opener.open(url + "api/results", timeout=30) as r:
            listing = json.loads(r.read())
        assert listing["single"] and [v["name"] for v in listing["videos"]] == ["clip"]
        with opener.open(url + "api/results/clip/mask/2", timeout=30) as r:
            assert r.read() == (results / "clip" / "00002.png").read_bytes()
            assert r.headers["X-Content-Type-Options"] == "nosniff"
        evil = urllib.request.Request(url + "api/results", headers={"Host": "evil.example.com"})
        with pytest.raises(urllib.error.HTTPError) as e:  # DNS rebinding: the cookie would not even help
            opener.open(evil, timeout=30)
        assert e.value.code == 403 and "not one this page answers to" in json.loads(e.value.read())["error"]
    finally:
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=30)
    assert proc.returncode == 0, err
    assert "stopped" in err and "Traceback" not in err
    assert "GET /api/results/clip/mask/2" in out + err  # the access log was on ...
    assert token not in out + err  # ... and never showed the token, not even for the first request


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
