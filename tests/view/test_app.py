"""The view API with Starlette's test client, raw ASGI calls and a real server: files served, traversal refused."""

from __future__ import annotations

import asyncio
import json
import socket

import cv2
import numpy as np
import pytest
import torch

from tests.view.conftest import TEST_PORT, T, guarded_client
from vidprop.io.masks import read_mask
from vidprop.io.video import _iter_pyav
from vidprop.view.app import create_app
from vidprop.view.clicks import MatchSession
from vidprop.view.frames import encode_jpeg
from vidprop.view.server import BackgroundServer


@pytest.fixture(scope="module")
def app(tree):
    return create_app(results=tree.root)


@pytest.fixture(scope="module")
def client(app):
    return guarded_client(app)


def asgi_get(client, path: str, query: bytes = b"") -> tuple[int, bytes]:
    """Call the client's (guarded) app with ``path`` exactly as a server hands it over (percent-decoded, dot
    segments kept), with the client's cookie."""
    app, guard = client.app, client.guard
    sent: list[dict] = []

    async def receive() -> dict:
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message: dict) -> None:
        sent.append(message)

    scope = {"type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1", "method": "GET", "scheme": "http",
             "path": path, "raw_path": path.encode("utf-8", "surrogateescape"), "query_string": query, "root_path": "",
             "headers": [(b"host", f"127.0.0.1:{TEST_PORT}".encode()),
                         (b"cookie", f"{guard.cookie_name}={guard.cookie_value}".encode())],
             "client": ("127.0.0.1", 1234), "server": ("127.0.0.1", TEST_PORT)}
    asyncio.run(app(scope, receive, send))
    status = next(m["status"] for m in sent if m["type"] == "http.response.start")
    return status, b"".join(m.get("body", b"") for m in sent if m["type"] == "http.response.body")


def decode(data: bytes) -> np.ndarray:
    return cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR)[..., ::-1]


def assert_short_error(status: int, body: bytes, expected: int = 404) -> str:
    assert status == expected, (status, body[:200])
    msg = json.loads(body)["error"]
    assert "Traceback" not in msg and "File \"" not in msg and len(msg) < 200
    return msg


# ------------------------------------------------------------------ pages and listing
def test_page_and_assets_are_local(client):
    r = client.get("/")
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/html")
    html = r.text
    assert 'src="static/app.js"' in html and 'href="static/app.css"' in html
    for asset in ("/static/app.js", "/static/app.css"):
        a = client.get(asset)
        assert a.status_code == 200 and len(a.content) > 1000
        # nothing outside this server: no absolute URL to anywhere (the SVG/XML namespace aside)
        assert "http://" not in a.text.replace("http://www.w3.org", "") and "https://" not in a.text
        assert "@import" not in a.text and "url(" not in a.text
    assert "http" not in html


def test_info_and_listing(client):
    assert client.get("/api/info").json() == {"mode": "results", "root": "results", "single": False}
    listing = client.get("/api/results").json()
    assert [v["name"] for v in listing["videos"]] == ["bare", "clip", "dance", "linked", "nosource", "walk"]
    clip = listing["videos"][1]
    assert clip == {"name": "clip", "kind": "segment", "frames": T, "jf": pytest.approx(0.75), "j": pytest.approx(0.7),
                    "f": pytest.approx(0.8), "objects": 2, "set": "val"}
    assert listing["videos"][0]["jf"] is None  # no NaN in the JSON
    assert listing["global"]["val"]["J&F-Mean"] == pytest.approx(0.625)


def test_segment_detail_frames_and_masks(client, tree):
    d = client.get("/api/results/clip").json()
    assert d["frames"] == [f"{t:05d}" for t in range(T)]
    assert (d["kind"], d["width"], d["height"], d["ids"], d["fps"], d["source"]) == ("segment", 160, 96, [1, 3], 10.0, "source")
    assert d["scores"]["jf"] == pytest.approx(0.75)
    ref = list(_iter_pyav(tree.video))
    for i in (5, 2, 6):
        r = client.get(f"/api/results/clip/frame/{i}")
        assert r.status_code == 200 and r.headers["content-type"] == "image/jpeg"
        assert r.content == encode_jpeg(ref[i])  # frame i of the source video
    # a frame folder's images are served as they are
    r = client.get("/api/results/walk/frame/3")
    assert r.headers["content-type"] == "image/png"
    assert r.content == (tree.src / "walk" / "frames" / "00003.png").read_bytes()
    # masks: the file as written; as an attachment named like the frame, readable as a first-frame mask
    r = client.get("/api/results/clip/mask/4")
    assert r.status_code == 200 and r.headers["content-type"] == "image/png"
    assert r.content == (tree.root / "clip" / "00004.png").read_bytes()
    assert "attachment" not in r.headers.get("content-disposition", "")
    r = client.get("/api/results/clip/mask/4?download=1")
    assert r.headers["content-disposition"].startswith("attachment") and 'filename="00004.png"' in r.headers["content-disposition"]


def test_mask_download_is_a_usable_first_frame_mask(client, tree, tmp_path):
    (tmp_path / "m.png").write_bytes(client.get("/api/results/clip/mask/3?download=1").content)
    mask, info = read_mask(tmp_path / "m.png")
    assert info.kind == "indexed" and info.ids == (1, 3)
    assert np.array_equal(mask, tree.scene.frame(3)[1])


def test_frames_without_a_source(client, tree):
    d = client.get("/api/results/nosource").json()
    assert d["source"] == "overlay" and "overlay.mp4" in d["source_note"]
    ref = list(_iter_pyav(tree.root / "nosource" / "overlay.mp4"))
    assert client.get("/api/results/nosource/frame/1").content == encode_jpeg(ref[1])
    d = client.get("/api/results/bare").json()
    assert d["source"] == "none" and len(d["frames"]) == 3
    msg = assert_short_error(*_resp(client.get("/api/results/bare/frame/0")))
    assert "no overlay.mp4" in msg
    assert client.get("/api/results/bare/mask/2").status_code == 200


def test_track_detail_and_keypoints(client, tree):
    d = client.get("/api/results/dance").json()
    assert (d["kind"], d["joints"], d["skeleton"], d["source"]) == ("track", ["a", "b", "c"], [["a", "b"], ["a", "c"]], "source")
    kp = client.get("/api/results/dance/keypoints").json()
    assert kp == json.loads((tree.root / "dance" / "keypoints.json").read_text())
    assert np.allclose(kp["frames"][2]["keypoints"]["b"], tree.joints[2, 1], atol=1e-3)
    ref = list(_iter_pyav(tree.video))
    assert client.get("/api/results/dance/frame/7").content == encode_jpeg(ref[7])
    assert_short_error(*_resp(client.get("/api/results/dance/mask/0")))
    assert_short_error(*_resp(client.get("/api/results/clip/keypoints")))


def _resp(r) -> tuple[int, bytes]:
    return r.status_code, r.content


# ------------------------------------------------------------------ what must not be served
TRAVERSALS = [
    "/api/results/..",
    "/api/results/../clip/mask/0",
    "/api/results/clip/../../outside/secret/00000.png",
    "/api/results/../../outside/secret/mask/0",
    "/api/results/..%2f..%2foutside",
    "/api/results/%2e%2e",
    "/api/results/%2e%2e/mask/0",
    "/api/results//etc/passwd",
    "/api/results/%2Fetc%2Fpasswd/mask/0",
    "/api/results/evil",  # a symlink to a folder outside
    "/api/results/evil/mask/0",
    "/api/results/linked/mask/1",  # a symlink to a file outside
    "/api/results/.clip.partial-x/mask/0",  # hidden: a run in progress
    "/api/results/nope",
    "/api/results/nope/frame/0",
    "/api/results/clip/frame/8",  # out of range
    "/api/results/clip/frame/-1",
    "/api/results/clip/frame/abc",
    "/api/results/clip/mask/99999999999999999999",
    "/api/results/clip/00000.png",
    "/api/results/clip/source.json",
    "/static/../app.py",
    "/static/../../results.py",
    "/static/%2e%2e/app.py",
    "/static/..%2f..%2fapp.py",
    "/static//etc/passwd",
    "/etc/passwd",
    "/api/match",
    "/api/match/image/source",
]


@pytest.mark.parametrize("path", TRAVERSALS)
def test_nothing_else_is_served(client, path):
    assert_short_error(*_resp(client.get(path)))  # as a browser would send it (dot segments removed)
    assert_short_error(*asgi_get(client, path.replace("%2f", "/").replace("%2e", ".").replace("%2F", "/")))  # raw


def test_real_server_refuses_raw_dot_segments(app, tree):
    """A client that sends ``..`` as is (curl --path-as-is) against the real uvicorn server."""
    secret = (tree.outside / "secret" / "00000.png").read_bytes()
    with BackgroundServer(app) as server:
        host, port = "127.0.0.1", server.port
        cookie = f"{server.guard.cookie_name}={server.guard.cookie_value}"
        for path in ["/api/results/../../outside/secret/00000.png", "/static/../../../outside/secret/00000.png",
                     "/api/results/evil/mask/0", "/api/results/%2e%2e%2f%2e%2e%2foutside/mask/0"]:
            with socket.create_connection((host, int(port)), timeout=10) as s:
                s.sendall(f"GET {path} HTTP/1.1\r\nHost: {host}:{port}\r\nCookie: {cookie}\r\n"
                          "Connection: close\r\n\r\n".encode())
                data = b""
                while chunk := s.recv(65536):
                    data += chunk
            head, _, body = data.partition(b"\r\n\r\n")
            assert head.startswith(b"HTTP/1.1 404"), (path, head)
            assert secret not in data and b"Traceback" not in data
            assert json.loads(body)["error"]


def test_broken_result_files_get_a_short_500(tmp_path):
    (tmp_path / "r" / "dance").mkdir(parents=True)
    (tmp_path / "r" / "dance" / "keypoints.json").write_text("{broken")
    c = guarded_client(create_app(results=tmp_path / "r"))
    msg = assert_short_error(*_resp(c.get("/api/results/dance")), expected=500)
    assert "keypoints.json: not a readable keypoints file" in msg


# ------------------------------------------------------------------ the match view's API
@pytest.fixture(scope="module")
def match_client():
    rng = np.random.default_rng(1)
    src = rng.integers(0, 255, (64, 80, 3), dtype=np.uint8)
    tgt = rng.integers(0, 255, (48, 64, 3), dtype=np.uint8)
    g = torch.Generator().manual_seed(1)
    s = MatchSession(src, tgt, torch.randn(16, 4, 5, generator=g), torch.randn(16, 3, 4, generator=g),
                     {"source": "s.png", "target": "t.png", "prompt": "", "model": "random"})
    return guarded_client(create_app(match=s)), s


def test_match_api(match_client):
    c, s = match_client
    info = c.get("/api/info").json()
    assert info["mode"] == "match" and info["source_size"] == [80, 64] and info["target_size"] == [64, 48]
    r = c.get("/api/match/image/target")
    assert r.headers["content-type"] == "image/jpeg" and decode(r.content).shape == (48, 64, 3)
    a = c.get("/api/match/click?x=12&y=30").json()
    b = s.matcher.query(12, 30)
    assert a["target"] == list(b.target) and a["score"] == pytest.approx(b.score)
    assert c.get("/api/match/click?x=79.4&y=63.4").json()["source"] == [79, 63]
    assert_short_error(*_resp(c.get("/api/results")))
    assert_short_error(*_resp(c.get("/api/match/image/secret")))


@pytest.mark.parametrize("query,needle", [
    ("", "?x=X&y=Y"), ("x=1", "?x=X&y=Y"), ("x=a&y=2", "must be numbers"), ("x=nan&y=2", "finite"),
    ("x=inf&y=2", "finite"), ("x=80&y=0", "outside the 80x64 source"), ("x=-1&y=0", "outside"), ("x=0&y=64", "outside"),
])
def test_bad_clicks_are_400(match_client, query, needle):
    c, _ = match_client
    msg = assert_short_error(*_resp(c.get(f"/api/match/click?{query}")), expected=400)
    assert needle in msg


def test_a_part_of_a_video_shows_its_own_frames(tree, tmp_path):
    """A result of `--frames 3:7` on a video file: its first mask is frame 3 of the video (source.json's first_frame)."""
    from vidprop.io.masks import write_indexed_png
    from vidprop.io.source import write_source_record
    from vidprop.io.video import open_video

    root = tmp_path / "results"
    (root / "part").mkdir(parents=True)
    frames = list(tree.scene.frames())
    for t in range(3, 7):
        write_indexed_png(root / "part" / f"{t:05d}.png", frames[t][1])
    write_source_record(root / "part", open_video(tree.video).info, frames=4, task="segment", first_frame=3)
    c = guarded_client(create_app(results=root))
    assert c.get("/api/results/part").json()["frames"] == ["00003", "00004", "00005", "00006"]
    ref = list(_iter_pyav(tree.video))
    for i in range(4):
        assert c.get(f"/api/results/part/frame/{i}").content == encode_jpeg(ref[3 + i])
