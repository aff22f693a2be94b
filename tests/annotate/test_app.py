"""The annotate web app through Starlette's test client: reads, changes (POST only), streaming, autosave, resume."""

from __future__ import annotations

import json

import numpy as np
import pytest
from PIL import Image

from vidprop.annotate import Annotator
from vidprop.annotate.app import create_annotate_app
from vidprop.annotate.session import AnnotateSession
from vidprop.cli import build_parser
from vidprop.errors import InputError
from vidprop.io.synthetic import SyntheticScene, write_frame_folder

starlette_testclient = pytest.importorskip("starlette.testclient")

N = 6


@pytest.fixture(scope="module")
def clip(tmp_path_factory):
    d = tmp_path_factory.mktemp("appclip")
    scene = SyntheticScene(width=96, height=64, num_frames=N, num_objects=2, seed=4, object_ids=(1, 2))
    write_frame_folder(scene, d / "clip")
    return d / "clip", scene


def _session(clip, seg, sam, tmp_path):
    ann = Annotator(clip, seg, cache=tmp_path / "cache", prompter=sam)
    s = AnnotateSession(ann, tmp_path / "out")
    s.load()
    return s


def _events(resp):
    return [json.loads(line[6:]) for line in resp.text.splitlines() if line.startswith("data: ")]


def test_reads_changes_stream_and_resume(clip, colour_segmenter, sam, tmp_path):
    folder, scene = clip
    session = _session(folder, colour_segmenter, sam, tmp_path)
    c = starlette_testclient.TestClient(create_annotate_app(session))
    info = c.get("/api/session").json()
    assert (info["width"], info["height"], info["frames"], info["objects"]) == (96, 64, N, [])
    assert c.get("/").status_code == 200 and "annotate.js" in c.get("/").text
    assert c.get("/static/annotate.js").status_code == 200
    assert c.get("/api/frame/0").headers["content-type"].startswith("image/")
    # clicks -> SAM 2 -> object 1 on frame 0
    r = c.post("/api/points", json={"frame": 0, "obj_id": 1, "points": [[30, 20]], "labels": [1]})
    assert r.status_code == 200 and r.json()["objects"] == [1] and r.json()["annotated"] == [0]
    m0 = np.asarray(Image.open(__import__("io").BytesIO(c.get("/api/mask/0").content)))
    np.testing.assert_array_equal(m0, session.annotator.annotations[0])
    # a brush stroke: object 2 painted on frame 0 (a PNG whose opaque pixels are the object)
    paint = np.zeros((64, 96, 4), np.uint8)
    paint[40:60, 60:90] = 255
    buf = __import__("io").BytesIO()
    Image.fromarray(paint, "RGBA").save(buf, format="PNG")
    png = "data:image/png;base64," + __import__("base64").b64encode(buf.getvalue()).decode()
    assert c.post("/api/mask", json={"frame": 0, "obj_id": 2, "png": png}).json()["objects"] == [1, 2]
    assert (session.annotator.annotations[0] == 2).sum() == 20 * 30
    # propagation streams one event per frame, then done; the results are saved in segment's layout
    r = c.post("/api/propagate", json={"frame": 0, "direction": "forward"})
    assert r.headers["content-type"].startswith("text/event-stream")
    ev = _events(r)
    assert ev[0]["event"] == "extracting" and ev[-1]["event"] == "done"
    assert [e["frame"] for e in ev if e["event"] == "frame"] == list(range(N))
    out = tmp_path / "out" / "clip"
    assert sorted(p.name for p in out.glob("*.png")) == [f"{i:05d}.png" for i in range(N)]
    assert (out / "annotations.json").is_file() and (out / "source.json").is_file()
    want = session.annotator.masks()
    # export: COCO and YouTube-VOS beside the PNGs
    r = c.post("/api/export", json={"formats": "png,coco,youtube-vos"}).json()
    assert "coco.json" in r["files"] and "youtube-vos/Annotations/clip/00003.png" in r["files"]
    # `vidprop view` and `vidprop export` read OUT as a segment result
    view = starlette_testclient.TestClient(__import__("vidprop.view.app", fromlist=["create_app"]).create_app(
        results=tmp_path / "out"))
    listed = view.get("/api/results").json()
    assert [(r["name"], r["kind"], r["frames"]) for r in listed["videos"]] == [("clip", "segment", N)]
    from vidprop.cli import main

    assert main(["export", str(out), "--format", "youtube-vos", "--overwrite"]) == 0
    assert (out / "youtube-vos" / "Annotations" / "clip" / "00005.png").is_file()
    # a new server on the same OUT resumes: annotations, results, confidence
    again = _session(folder, colour_segmenter, sam, tmp_path)
    assert again.resumed and sorted(again.annotator.annotations) == [0] and again.annotator.objects == [1, 2]
    for t in range(N):
        np.testing.assert_array_equal(again.annotator.masks()[t], want[t])
    assert again.annotator.scores() == session.annotator.scores()
    # undo (POST) steps back the brush stroke, and is saved
    c.post("/api/undo", json={})
    assert session.annotator.objects == [1]
    assert _session(folder, colour_segmenter, sam, tmp_path).annotator.objects == [1]


def test_bad_requests_and_what_is_not_served(clip, colour_segmenter, sam, tmp_path):
    folder, _ = clip
    session = _session(folder, colour_segmenter, sam, tmp_path)
    c = starlette_testclient.TestClient(create_annotate_app(session), raise_server_exceptions=False)
    for path in ["/static/../app.py", "/static/%2e%2e/app.py", "/static/..%2fapp.py", "/static/app.py",
                 "/static/annotate.html/x", "/api/frame/6", "/api/mask/99", "/api/frame/-1", "/api/nothing",
                 "/..%2f..%2fetc/passwd", "/api/results/clip"]:
        r = c.get(path)
        assert r.status_code == 404, path
        assert "error" in r.json()
    # changes are POST only: a GET changes nothing
    for path in ["/api/points", "/api/undo", "/api/propagate", "/api/export", "/api/remove"]:
        assert c.get(path).status_code == 405
    assert not (tmp_path / "out" / "clip").exists()
    # a POST must be JSON (a cross-site form cannot send it)
    r = c.post("/api/undo", content=b"x=1", headers={"Content-Type": "application/x-www-form-urlencoded"})
    assert r.status_code == 415
    # bad input: one line for the page
    r = c.post("/api/points", json={"frame": 0, "obj_id": 1, "points": [[500, 20]], "labels": [1]})
    assert r.status_code == 400 and r.json()["error"] == "frame 0: the click (500, 20) is outside the 96x64 frame"
    r = c.post("/api/points", json={"frame": 0, "obj_id": 1, "box": [50, 5, 10, 30]})
    assert r.status_code == 400 and "needs x1 > x0" in r.json()["error"]
    r = c.post("/api/remove", json={"obj_id": 9})
    assert r.status_code == 400 and r.json()["error"] == "no object 9 (objects: none)"
    r = c.post("/api/points", json={"frame": 0, "obj_id": 1000, "points": [[5, 5]]})
    assert r.status_code == 400 and "1..255" in r.json()["error"]
    ev = _events(c.post("/api/propagate", json={"frame": 0, "direction": "forward"}))
    assert ev == [{"error": "nothing to propagate: add an object first (clicks, a box or the brush)"}]


def test_an_out_folder_with_other_results_is_refused(clip, colour_segmenter, tmp_path):
    folder, _ = clip
    (tmp_path / "out" / "clip").mkdir(parents=True)
    (tmp_path / "out" / "clip" / "00000.png").write_bytes(b"mine")
    with pytest.raises(InputError, match="holds results that vidprop annotate did not make"):
        AnnotateSession(Annotator(folder, colour_segmenter, cache=tmp_path / "cache"), tmp_path / "out")
    assert (tmp_path / "out" / "clip" / "00000.png").read_bytes() == b"mine"


def test_loopback_by_default_and_behind_the_guard(clip, colour_segmenter, sam, tmp_path):
    """`vidprop annotate` serves through the same PageServer as `vidprop view`: 127.0.0.1, a token, Origin on writes."""
    from vidprop.cli.serving import open_server

    args = build_parser().parse_args(["annotate", "clip.mp4"])
    assert args.host == "127.0.0.1" and args.port == 0 and not args.no_token
    with open_server(args) as server:
        assert server.loopback and server.url.startswith("http://127.0.0.1:")
        assert "?token=" in server.open_url
        folder, _ = clip
        app = server.wrap(create_annotate_app(_session(folder, colour_segmenter, sam, tmp_path)))
        origin = server.url.rstrip("/")
        c = starlette_testclient.TestClient(app, base_url=origin)
        assert c.get("/api/session").status_code == 403  # no token, no cookie
        auth = {"Authorization": f"token {server.guard.token}"}
        assert c.get("/api/session", headers=auth).status_code == 200
        body = {"frame": 0, "obj_id": 1, "points": [[30, 20]], "labels": [1]}
        assert c.post("/api/points", json=body, headers=auth).status_code == 403  # a write without Origin
        assert c.post("/api/points", json=body, headers={**auth, "Origin": "http://evil.example"}).status_code == 403
        assert not (tmp_path / "out" / "clip").exists()  # refused writes changed nothing
        r = c.post("/api/points", json=body, headers={**auth, "Origin": origin})
        assert r.status_code == 200 and r.json()["objects"] == [1]
