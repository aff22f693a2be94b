"""The ``vidprop annotate`` web application (Starlette), served like ``vidprop view`` (vidprop.view.server).

Routes (``{index}`` is a 0-based frame number; every change is a POST with a
JSON body, nothing changes on a GET):

=====================================  ==============================================================
``GET /``                              the page (``static/annotate.html``); ``/static/*`` its JS and CSS
``GET /api/session``                   size, frames, objects, annotated / propagated frames, confidence
``GET /api/frame/{index}``             the original frame (JPEG, or the folder's image)
``GET /api/mask/{index}``              the frame's mask as shown (result + annotation; indexed PNG)
``POST /api/points``                   {frame, obj_id, points: [[x, y]...], labels: [1|0...], box: [x0,y0,x1,y1]}
``POST /api/mask``                     {frame, obj_id, png: "data:image/png;base64,..."} (opaque pixels = the object)
``POST /api/remove``                   {obj_id}
``POST /api/undo``, ``/api/redo``      step the annotations back / forward
``POST /api/propagate``                {frame, direction}: server-sent events, one per frame, then ``done``
``POST /api/export``                   {formats: "png,coco,youtube-vos"}: written into OUT/NAME
=====================================  ==============================================================

A POST must be ``application/json`` (a cross-site form cannot send that
without the browser asking first).  Anything else (unknown names, ``..``,
frame numbers out of range) is a 404 ``{"error": ...}``; bad input a 400 with
one line the page shows.
"""

from __future__ import annotations

import base64
import io
import json
import logging
from pathlib import Path
from typing import Any

import numpy as np

from vidprop.errors import InputError, VidpropError

__all__ = ["create_annotate_app", "STATIC_DIR"]

log = logging.getLogger(__name__)

STATIC_DIR = Path(__file__).resolve().parent / "static"
_PAGES = {"annotate.html", "annotate.js", "annotate.css"}


def _decode_png_mask(data: str, size: tuple[int, int]) -> np.ndarray:
    """A data URL / base64 PNG -> (H, W) bool (alpha > 127, or any non-zero channel without alpha)."""
    from PIL import Image

    if not isinstance(data, str):
        raise InputError("png must be a data URL of a PNG")
    raw = data.split(",", 1)[1] if data.startswith("data:") else data
    try:
        im = Image.open(io.BytesIO(base64.b64decode(raw, validate=True)))
        im.load()
    except Exception:  # noqa: BLE001 - base64 or image errors of many kinds
        raise InputError("the painted mask is not a PNG image") from None
    if im.size != size:
        raise InputError(f"the painted mask is {im.size[0]}x{im.size[1]} but the frames are {size[0]}x{size[1]}")
    arr = np.asarray(im.convert("RGBA"))
    return arr[..., 3] > 127 if "A" in im.getbands() else arr[..., :3].any(axis=2)


def create_annotate_app(session: Any):
    """The ASGI app of an :class:`~vidprop.annotate.session.AnnotateSession`."""
    from starlette.applications import Starlette
    from starlette.exceptions import HTTPException
    from starlette.requests import Request
    from starlette.responses import FileResponse, JSONResponse, Response, StreamingResponse
    from starlette.routing import Route

    from vidprop.io.masks import davis_palette
    from vidprop.view.frames import FolderFrames, VideoFrames

    ann = session.annotator
    nocache = {"Cache-Control": "no-store"}
    frames = FolderFrames.open(ann.video) if ann.video.is_dir() else VideoFrames(ann.video)
    palette = davis_palette().reshape(-1).tolist()

    def error(status: int, message: str) -> JSONResponse:
        return JSONResponse({"error": message}, status_code=status, headers=nocache)

    def index_of(request: Request) -> int:
        i = request.path_params["index"]
        n = ann.num_frames
        if not 0 <= i < n:
            raise HTTPException(404, f"no frame {i} (frames 0..{n - 1})")
        return i

    async def body_of(request: Request) -> dict[str, Any]:
        if request.headers.get("content-type", "").split(";")[0].strip() != "application/json":
            raise HTTPException(415, "send JSON (Content-Type: application/json)")
        try:
            data = json.loads(await request.body() or b"{}")
        except json.JSONDecodeError:
            raise HTTPException(400, "the body is not valid JSON") from None
        if not isinstance(data, dict):
            raise HTTPException(400, "the body must be a JSON object")
        return data

    def integer(data: dict[str, Any], key: str) -> int:
        v = data.get(key)
        if isinstance(v, bool) or not isinstance(v, int):
            raise InputError(f"{key} must be an integer, got {v!r}")
        return v

    def state() -> JSONResponse:
        return JSONResponse({**session.describe(), "palette": palette}, headers=nocache)

    # ------------------------------------------------------------------ pages and reads
    def page(request: Request) -> Response:
        return FileResponse(STATIC_DIR / "annotate.html", headers=nocache)

    def static(request: Request) -> Response:
        name = request.path_params["name"]
        if name not in _PAGES:  # only the page's own files, by name: nothing else on disk is reachable
            raise HTTPException(404, "not found")
        return FileResponse(STATIC_DIR / name, headers=nocache)

    def describe(request: Request) -> Response:
        return state()

    def frame(request: Request) -> Response:
        i = index_of(request)
        data, media = frames.get(i, ann.frame_name(i))
        return Response(data, media_type=media, headers={"Cache-Control": "no-cache"})

    def mask(request: Request) -> Response:
        from PIL import Image

        i = index_of(request)
        im = Image.fromarray(session.display_mask(i), mode="P")
        im.putpalette(palette)
        buf = io.BytesIO()
        im.save(buf, format="PNG")
        return Response(buf.getvalue(), media_type="image/png", headers=nocache)

    # ------------------------------------------------------------------ changes (POST, JSON)
    async def points(request: Request) -> Response:
        data = await body_of(request)
        session.change("points", frame=integer(data, "frame"), obj_id=integer(data, "obj_id"),
                       points=data.get("points") or None, labels=data.get("labels") or None, box=data.get("box"))
        return state()

    async def paint(request: Request) -> Response:
        data = await body_of(request)
        m = _decode_png_mask(data.get("png"), ann.size)
        session.change("mask", frame=integer(data, "frame"), obj_id=integer(data, "obj_id"), mask=m)
        return state()

    async def remove(request: Request) -> Response:
        data = await body_of(request)
        session.change("remove", obj_id=integer(data, "obj_id"))
        return state()

    async def undo(request: Request) -> Response:
        await body_of(request)
        session.change("undo")
        return state()

    async def redo(request: Request) -> Response:
        await body_of(request)
        session.change("redo")
        return state()

    async def propagate(request: Request) -> Response:
        data = await body_of(request)
        start = integer(data, "frame")
        direction = data.get("direction", "forward")
        if direction not in ("forward", "backward", "both"):
            raise InputError(f"direction must be forward, backward or both, got {direction!r}")
        if not 0 <= start < ann.num_frames:
            raise InputError(f"no frame {start}")

        def events():
            try:
                for ev in session.propagate(start, direction):
                    yield f"event: {ev['event']}\ndata: {json.dumps(ev)}\n\n"
            except VidpropError as exc:
                yield f"event: error\ndata: {json.dumps({'error': str(exc)})}\n\n"
            except Exception as exc:  # noqa: BLE001 - reported to the page, logged in full
                log.error("propagation failed: %s", exc, exc_info=exc)
                yield f"event: error\ndata: {json.dumps({'error': f'internal error ({type(exc).__name__})'})}\n\n"

        return StreamingResponse(events(), media_type="text/event-stream", headers=nocache)

    async def export(request: Request) -> Response:
        data = await body_of(request)
        formats = data.get("formats") or "png"
        if not session.lock.acquire(blocking=False):
            raise InputError("a propagation is running; export when it has finished")
        try:
            files = session.save_results(formats)
        finally:
            session.lock.release()
        return JSONResponse({"out": str(session.out_dir), "files": files}, headers=nocache)

    # ------------------------------------------------------------------ errors
    async def http_error(request: Request, exc: Exception) -> Response:
        status = getattr(exc, "status_code", 500)
        detail = getattr(exc, "detail", "") or "error"
        return error(status, "not found" if detail == "Not Found" else str(detail))

    async def user_error(request: Request, exc: Exception) -> Response:
        log.warning("%s: %s", request.url.path, exc)
        return error(400, str(exc))

    async def internal_error(request: Request, exc: Exception) -> Response:
        log.error("%s: %s: %s", request.url.path, type(exc).__name__, exc, exc_info=exc)
        return error(500, f"internal error ({type(exc).__name__})")

    routes = [
        Route("/", page),
        Route("/static/{name}", static),
        Route("/api/session", describe),
        Route("/api/frame/{index:int}", frame),
        Route("/api/mask/{index:int}", mask),
        Route("/api/points", points, methods=["POST"]),
        Route("/api/mask", paint, methods=["POST"]),
        Route("/api/remove", remove, methods=["POST"]),
        Route("/api/undo", undo, methods=["POST"]),
        Route("/api/redo", redo, methods=["POST"]),
        Route("/api/propagate", propagate, methods=["POST"]),
        Route("/api/export", export, methods=["POST"]),
    ]
    app = Starlette(routes=routes, exception_handlers={
        HTTPException: http_error,
        VidpropError: user_error,
        Exception: internal_error,
    })
    app.state.session = session
    return app
