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
from typing import Any, Iterator, NoReturn

import numpy as np

from vidprop.errors import InputError, VidpropError
from vidprop.view.frames import FolderFrames, VideoFrames
from vidprop.view.responses import NO_STORE, exception_handlers, frame_response

__all__ = ["create_annotate_app", "AnnotateApi", "STATIC_DIR"]

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
    from starlette.routing import Route

    api = AnnotateApi(session)
    routes = [
        Route("/", api.page),
        Route("/static/{name}", api.static),
        Route("/api/session", api.describe),
        Route("/api/frame/{index:int}", api.frame),
        Route("/api/mask/{index:int}", api.mask),
        Route("/api/points", api.points, methods=["POST"]),
        Route("/api/mask", api.paint, methods=["POST"]),
        Route("/api/remove", api.remove, methods=["POST"]),
        Route("/api/undo", api.undo, methods=["POST"]),
        Route("/api/redo", api.redo, methods=["POST"]),
        Route("/api/propagate", api.propagate, methods=["POST"]),
        Route("/api/export", api.export, methods=["POST"]),
    ]
    app = Starlette(routes=routes, exception_handlers=exception_handlers(400))
    app.state.session = session
    return app


def _abort(status: int, message: str) -> NoReturn:
    from starlette.exceptions import HTTPException

    raise HTTPException(status, message)


async def _body_of(request: Any) -> dict[str, Any]:
    """The JSON object a POST sends (415 unless ``application/json``: a cross-site form cannot send that)."""
    if request.headers.get("content-type", "").split(";")[0].strip() != "application/json":
        _abort(415, "send JSON (Content-Type: application/json)")
    try:
        data = json.loads(await request.body() or b"{}")
    except json.JSONDecodeError:
        _abort(400, "the body is not valid JSON")
    if not isinstance(data, dict):
        _abort(400, "the body must be a JSON object")
    return data


def _integer(data: dict[str, Any], key: str) -> int:
    v = data.get(key)
    if isinstance(v, bool) or not isinstance(v, int):
        raise InputError(f"{key} must be an integer, got {v!r}")
    return v


def _event(name: str, body: dict[str, Any]) -> str:
    return f"event: {name}\ndata: {json.dumps(body)}\n\n"


class AnnotateApi:
    """The route handlers of ``vidprop annotate`` over one session (see the module docstring for the routes)."""

    def __init__(self, session: Any) -> None:
        from vidprop.io.masks import davis_palette

        self.session = session
        self.ann = session.annotator
        video = self.ann.video
        self.frames = FolderFrames.open(video) if video.is_dir() else VideoFrames(video)
        self.palette = davis_palette().reshape(-1).tolist()

    def index_of(self, request: Any) -> int:
        i = request.path_params["index"]
        n = self.ann.num_frames
        if not 0 <= i < n:
            _abort(404, f"no frame {i} (frames 0..{n - 1})")
        return i

    def state(self) -> Any:
        from starlette.responses import JSONResponse

        return JSONResponse({**self.session.describe(), "palette": self.palette}, headers=NO_STORE)

    # ------------------------------------------------------------------ pages and reads
    def page(self, request: Any) -> Any:
        from starlette.responses import FileResponse

        return FileResponse(STATIC_DIR / "annotate.html", headers=NO_STORE)

    def static(self, request: Any) -> Any:
        from starlette.responses import FileResponse

        name = request.path_params["name"]
        if name not in _PAGES:  # only the page's own files, by name: nothing else on disk is reachable
            _abort(404, "not found")
        return FileResponse(STATIC_DIR / name, headers=NO_STORE)

    def describe(self, request: Any) -> Any:
        return self.state()

    def frame(self, request: Any) -> Any:
        i = self.index_of(request)
        return frame_response(self.frames, i, self.ann.frame_name(i))

    def mask(self, request: Any) -> Any:
        from PIL import Image
        from starlette.responses import Response

        i = self.index_of(request)
        im = Image.fromarray(self.session.display_mask(i), mode="P")
        im.putpalette(self.palette)
        buf = io.BytesIO()
        im.save(buf, format="PNG")
        return Response(buf.getvalue(), media_type="image/png", headers=NO_STORE)

    # ------------------------------------------------------------------ changes (POST, JSON)
    async def points(self, request: Any) -> Any:
        data = await _body_of(request)
        self.session.change("points", frame=_integer(data, "frame"), obj_id=_integer(data, "obj_id"),
                            points=data.get("points") or None, labels=data.get("labels") or None, box=data.get("box"))
        return self.state()

    async def paint(self, request: Any) -> Any:
        data = await _body_of(request)
        m = _decode_png_mask(data.get("png"), self.ann.size)
        self.session.change("mask", frame=_integer(data, "frame"), obj_id=_integer(data, "obj_id"), mask=m)
        return self.state()

    async def remove(self, request: Any) -> Any:
        data = await _body_of(request)
        self.session.change("remove", obj_id=_integer(data, "obj_id"))
        return self.state()

    async def undo(self, request: Any) -> Any:
        await _body_of(request)
        self.session.change("undo")
        return self.state()

    async def redo(self, request: Any) -> Any:
        await _body_of(request)
        self.session.change("redo")
        return self.state()

    async def propagate(self, request: Any) -> Any:
        from starlette.responses import StreamingResponse

        data = await _body_of(request)
        start = _integer(data, "frame")
        direction = data.get("direction", "forward")
        if direction not in ("forward", "backward", "both"):
            raise InputError(f"direction must be forward, backward or both, got {direction!r}")
        if not 0 <= start < self.ann.num_frames:
            raise InputError(f"no frame {start}")
        return StreamingResponse(self._events(start, direction), media_type="text/event-stream", headers=NO_STORE)

    def _events(self, start: int, direction: str) -> Iterator[str]:
        """The propagation's server-sent events; an error ends them with an ``error`` event."""
        try:
            for ev in self.session.propagate(start, direction):
                yield _event(ev["event"], ev)
        except VidpropError as exc:
            yield _event("error", {"error": str(exc)})
        except Exception as exc:  # noqa: BLE001 - reported to the page, logged in full
            log.error("propagation failed: %s", exc, exc_info=exc)
            yield _event("error", {"error": f"internal error ({type(exc).__name__})"})

    async def export(self, request: Any) -> Any:
        from starlette.responses import JSONResponse

        data = await _body_of(request)
        formats = data.get("formats") or "png"
        if not self.session.lock.acquire(blocking=False):
            raise InputError("a propagation is running; export when it has finished")
        try:
            files = self.session.save_results(formats)
        finally:
            self.session.lock.release()
        return JSONResponse({"out": str(self.session.out_dir), "files": files}, headers=NO_STORE)
