"""Synthetic results on disk, as segment / track / eval davis write them, plus traps for the server.

``results/``:
  clip/      segment result of a video file (masks, overlay.mp4, source.json -> src/clip.mp4)
  walk/      segment result of a frame folder (source.json -> src/walk/frames)
  dance/     track result (keypoints.json, source.json -> src/clip.mp4)
  nosource/  masks + overlay.mp4, no record of the source (overlay frames stand in)
  bare/      masks only (no frames at all)
  linked/    one real mask and one symlink to a PNG outside results/ (must not be served)
  evil       a symlink to a folder of masks outside results/ (must not be listed or served)
  .clip.partial-x/  a run in progress (hidden: not listed)
  per-sequence_results-val.csv, global_results-val.csv

:func:`guarded_client` is a test client behind the page guard that has opened the page with its token;
:func:`notes_app` a small page with write endpoints (as ``vidprop annotate`` has) for the guard's tests.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import FileResponse, HTMLResponse, JSONResponse
from starlette.routing import Route, WebSocketRoute
from starlette.testclient import TestClient

from vidprop.io.keypoints import write_tracks_json
from vidprop.io.masks import write_indexed_png
from vidprop.io.source import write_source_record
from vidprop.io.synthetic import SyntheticScene, write_frame_folder, write_video
from vidprop.io.video import open_video
from vidprop.io.writers import VideoWriter, overlay_mask
from vidprop.view.security import PageGuard

T = 8
IDS = (1, 3)
#: per-sequence CSV rows (object J, F) of "clip" and "walk"; J&F per sequence = mean of (J + F) / 2
CSV_ROWS = {"clip": [(0.8, 0.9), (0.6, 0.7)], "walk": [(0.5, 0.25)]}


@dataclass(frozen=True)
class Tree:
    root: Path  # the results folder
    src: Path  # the original inputs
    outside: Path  # a folder outside the results
    scene: SyntheticScene
    video: Path
    joints: np.ndarray  # (T, J, 2) keypoints of "dance"


def _masks(folder: Path, scene: SyntheticScene, names: list[str]) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    for name, (_, mask) in zip(names, scene.frames()):
        write_indexed_png(folder / f"{name}.png", mask)


@pytest.fixture(scope="session")
def tree(tmp_path_factory: pytest.TempPathFactory) -> Tree:
    base = tmp_path_factory.mktemp("view")
    scene = SyntheticScene(width=160, height=96, num_frames=T, num_objects=2, seed=3, object_ids=IDS)
    src, root, outside = base / "src", base / "results", base / "outside"
    video = write_video(scene, src / "clip.mp4", fps=10)
    frames = write_frame_folder(scene, src / "walk" / "frames")
    names = [f"{t:05d}" for t in range(T)]

    _masks(root / "clip", scene, names)
    write_source_record(root / "clip", open_video(video).info, frames=T, task="segment")
    vw = VideoWriter(root / "clip" / "overlay.mp4", 10, scene.width, scene.height)
    for img, mask in scene.frames():
        vw.write(overlay_mask(img, mask))
    vw.close()

    _masks(root / "walk", scene, names)
    write_source_record(root / "walk", open_video(frames).info, frames=T, task="segment")

    (root / "nosource").mkdir()
    _masks(root / "nosource", scene, names)
    os.link(root / "clip" / "overlay.mp4", root / "nosource" / "overlay.mp4")

    _masks(root / "bare", scene, names[:3])

    centres = np.array([scene.positions(t) for t in range(T)])[..., ::-1]  # (T, 2, 2) (x, y) of both objects
    joints = np.concatenate([centres, centres[:, :1] + [12.0, 6.0]], axis=1)  # a third joint beside object 1
    (root / "dance").mkdir()
    write_tracks_json(root / "dance" / "keypoints.json", ["a", "b", "c"], joints, np.ones((T, 3), bool),
                      skeleton=[["a", "b"], ["a", "c"]], frame_names=names,
                      meta={"video": str(video), "width": scene.width, "height": scene.height, "fps": 10.0})
    write_source_record(root / "dance", open_video(video).info, frames=T, task="track")

    _masks(outside / "secret", scene, names[:2])
    (root / "linked").mkdir()
    write_indexed_png(root / "linked" / "00000.png", scene.frame(0)[1])
    os.symlink(outside / "secret" / "00001.png", root / "linked" / "00001.png")
    os.symlink(outside / "secret", root / "evil", target_is_directory=True)
    _masks(root / ".clip.partial-x", scene, names[:2])

    rows = ["Sequence,J-Mean,F-Mean"] + [f"{seq}_{k + 1},{j:.3f},{f:.3f}" for seq, objs in CSV_ROWS.items()
                                         for k, (j, f) in enumerate(objs)]
    (root / "per-sequence_results-val.csv").write_text("\n".join(rows) + "\n")
    (root / "global_results-val.csv").write_text(
        "J&F-Mean,J-Mean,J-Recall,J-Decay,F-Mean,F-Recall,F-Decay\n0.625,0.633,0.667,0.100,0.617,0.667,0.050\n")
    return Tree(root, src, outside, scene, video, joints)


#: the address the test clients use: a real loopback Host header, as a browser sends it
TEST_PORT = 8765
TEST_ORIGIN = f"http://127.0.0.1:{TEST_PORT}"


def guarded_client(app, **options) -> TestClient:
    """A test client on ``app`` behind a page guard (as every served page is), that has opened the page as its
    user does: the URL with the token first (303 to the clean address, a cookie), then the cookie alone.
    ``client.guard`` is the guard."""
    guard = PageGuard.for_server("127.0.0.1", TEST_PORT, **options)
    client = TestClient(guard.wrap(app), base_url=TEST_ORIGIN)
    if guard.token is not None:
        r = client.get(guard.open_url("/"), follow_redirects=False)
        assert r.status_code == 303 and r.headers["location"] == "/", r.headers
        assert client.cookies.get(guard.cookie_name) == guard.cookie_value
    client.guard = guard
    return client


def notes_app(path: Path):
    """GET / a page, GET /notes the file, POST / PUT /notes write it, DELETE /notes empties it, /ws echoes."""
    path.write_text("original")

    async def page(request: Request):
        return HTMLResponse('<!doctype html><title>notes</title><p>notes</p>')

    async def read(request: Request):
        return FileResponse(path, media_type="text/plain")

    async def write(request: Request):
        if request.method == "DELETE":
            path.write_text("")
        else:
            path.write_bytes(await request.body())
        return JSONResponse({"ok": True}, headers={"Content-Security-Policy": "default-src *"})  # ours replaces it

    async def echo(ws):
        await ws.accept()
        await ws.send_text(await ws.receive_text())
        await ws.close()

    return Starlette(routes=[Route("/", page), Route("/notes", read), Route("/notes", write, methods=["POST", "PUT", "DELETE"]),
                             WebSocketRoute("/ws", echo)])


def same_feature(p: tuple[int, int], q: tuple[int, int], grid: tuple[int, int], size: tuple[int, int]) -> bool:
    """True when pixels p and q (x, y) of an image of ``size`` (H, W) get the same upsampled feature from a
    ``grid`` (h, w) map: equal bilinear neighbours and weights, or both in the band where the border clamps
    (there every pixel repeats the edge feature).  Such pixels tie exactly; which one an argmax returns is
    decided by rounding."""
    from vidprop.tasks.match import bilinear_weights

    def key(n_in: int, n_out: int, o: int) -> tuple:
        i0, i1, _, w1 = (t[o].item() for t in bilinear_weights(n_in, n_out))
        return ("edge", i0) if i0 == i1 or w1 == 0 else (i0, i1, round(w1, 6))

    return (key(grid[1], size[1], p[0]) == key(grid[1], size[1], q[0])
            and key(grid[0], size[0], p[1]) == key(grid[0], size[0], q[1]))
