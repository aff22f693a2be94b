"""The ``vidprop view`` web application (Starlette): one page, a small JSON API, files from disk.

    from vidprop.view.app import create_app
    app = create_app(results="results/")              # review segment / track / eval davis results
    app = create_app(match=session)                   # a vidprop.view.clicks.MatchSession

Routes (``{name}`` is a listed result's name, ``{index}`` a 0-based frame number):

=====================================  ==============================================================
``GET /``                              the page (``static/index.html``); ``/static/*`` its JS and CSS
``GET /api/info``                      ``{"mode": "results" | "match", ...}``
``GET /api/results``                   the results with kind, frame count and J&F where scored
``GET /api/results/{name}``            frame names, size, object ids / joints, where the frames come from
``GET /api/results/{name}/frame/{i}``  the original frame ``i`` (an image; decoded on demand from a video)
``GET /api/results/{name}/mask/{i}``   the mask PNG of frame ``i``, the file as written (``?download=1``: as an attachment)
``GET /api/results/{name}/keypoints``  a track result's ``keypoints.json``
``GET /api/match``                     the image pair: sizes, model, prompt, feature shape
``GET /api/match/image/{which}``       ``source`` or ``target`` (JPEG)
``GET /api/match/click?x=X&y=Y``       best match of source pixel (X, Y): target point, cosine, heatmap
=====================================  ==============================================================

Only files of the listed results are served, found by the server from its
own listing; anything else (``..``, absolute paths, symlinks leading out of
the folder, unknown names, frame numbers out of range) is a 404.  Errors are
``{"error": "short message"}`` with a 4xx status (5xx when a result file on
disk cannot be read), never a traceback.
"""

from __future__ import annotations

import logging
import math
from pathlib import Path
from typing import Any

from vidprop.errors import ConfigError, VidpropError

__all__ = ["create_app", "STATIC_DIR"]

log = logging.getLogger(__name__)

STATIC_DIR = Path(__file__).resolve().parent / "static"


def _starlette():
    try:
        import starlette  # noqa: F401
    except ImportError:  # pragma: no cover - the extra is part of the test install
        raise ConfigError("vidprop view needs Starlette and uvicorn: pip install 'vidprop[view]'") from None


def create_app(results: str | Path | None = None, match: Any = None):
    """The ASGI app for a results folder (``results``) or an image pair (``match``, a MatchSession).

    Raises InputError when ``results`` holds no vidprop result.
    """
    _starlette()
    from starlette.applications import Starlette
    from starlette.exceptions import HTTPException
    from starlette.requests import Request
    from starlette.responses import FileResponse, JSONResponse, Response
    from starlette.routing import Mount, Route
    from starlette.staticfiles import StaticFiles

    from vidprop.view.results import ResultsIndex, SegmentDetail, TrackDetail

    if (results is None) == (match is None):
        raise ValueError("give either a results folder or a match session")
    index = ResultsIndex(results) if results is not None else None
    nocache = {"Cache-Control": "no-store"}

    def error(status: int, message: str) -> JSONResponse:
        return JSONResponse({"error": message}, status_code=status, headers=nocache)

    # ------------------------------------------------------------------ helpers
    def need_index() -> ResultsIndex:
        if index is None:
            raise HTTPException(404, "no results folder is served (this is the match view)")
        return index

    def detail_of(request: Request) -> SegmentDetail | TrackDetail:
        d = need_index().detail(request.path_params["name"])
        if d is None:
            raise HTTPException(404, "unknown result")
        return d

    def frame_index(request: Request, n: int) -> int:
        i = request.path_params["index"]
        if not 0 <= i < n:
            raise HTTPException(404, f"no frame {i} (frames 0..{n - 1})")
        return i

    # ------------------------------------------------------------------ pages
    def page(request: Request) -> Response:
        return FileResponse(STATIC_DIR / "index.html", headers=nocache)

    def info(request: Request) -> Response:
        if index is not None:
            return JSONResponse({"mode": "results", "root": index.root.name, "single": index.single}, headers=nocache)
        return JSONResponse({"mode": "match", **match.describe()}, headers=nocache)

    # ------------------------------------------------------------------ results
    def results_list(request: Request) -> Response:
        return JSONResponse(_finite(need_index().listing()), headers=nocache)

    def result_detail(request: Request) -> Response:
        d = detail_of(request)
        body = d.describe()
        scores = _scores_of(need_index(), d.name)
        if scores:
            body["scores"] = scores
        return JSONResponse(_finite(body), headers=nocache)

    def result_frame(request: Request) -> Response:
        d = detail_of(request)
        names = [p.stem for p in d.masks] if isinstance(d, SegmentDetail) else d.frames
        i = frame_index(request, len(names))
        if d.source.frames is None:
            raise HTTPException(404, d.source.note)
        try:
            data, media = d.source.frames.get(i + d.source.offset, names[i])
        except IndexError as exc:
            raise HTTPException(404, str(exc)) from None
        return Response(data, media_type=media, headers={"Cache-Control": "no-cache"})

    def result_mask(request: Request) -> Response:
        d = detail_of(request)
        if not isinstance(d, SegmentDetail):
            raise HTTPException(404, "a track result has no masks")
        i = frame_index(request, len(d.masks))
        path = d.masks[i]
        if not path.is_file():
            raise HTTPException(404, f"mask {path.name} is gone")
        download = request.query_params.get("download") not in (None, "", "0", "false")
        return FileResponse(path, media_type="image/png", headers={"Cache-Control": "no-cache"},
                            filename=path.name if download else None,
                            content_disposition_type="attachment" if download else "inline")

    def result_keypoints(request: Request) -> Response:
        d = detail_of(request)
        if not isinstance(d, TrackDetail):
            raise HTTPException(404, "a segment result has no keypoints")
        return JSONResponse(_finite(d.data), headers=nocache)

    # ------------------------------------------------------------------ match
    def need_match():
        if match is None:
            raise HTTPException(404, "no image pair is served (start with vidprop view --match SRC TGT)")
        return match

    def match_info(request: Request) -> Response:
        return JSONResponse(need_match().describe(), headers=nocache)

    def match_image(request: Request) -> Response:
        which = request.path_params["which"]
        images = need_match().images
        if which not in images:
            raise HTTPException(404, "image must be source or target")
        return Response(images[which], media_type="image/jpeg", headers={"Cache-Control": "no-cache"})

    def match_click(request: Request) -> Response:
        m = need_match()
        w, h = m.source.shape[1], m.source.shape[0]
        try:
            x, y = float(request.query_params["x"]), float(request.query_params["y"])
        except KeyError:
            raise HTTPException(400, "give the source pixel as ?x=X&y=Y") from None
        except ValueError:
            raise HTTPException(400, "x and y must be numbers") from None
        if not (math.isfinite(x) and math.isfinite(y)):
            raise HTTPException(400, "x and y must be finite numbers")
        if not (0 <= round(x) < w and 0 <= round(y) < h):
            raise HTTPException(400, f"({x:g}, {y:g}) is outside the {w}x{h} source image")
        return JSONResponse(m.click(x, y), headers=nocache)

    # ------------------------------------------------------------------ errors
    async def http_error(request: Request, exc: Exception) -> Response:
        status = getattr(exc, "status_code", 500)
        detail = getattr(exc, "detail", "") or "error"
        if status == 404 and detail == "Not Found":
            detail = "not found"
        return error(status, str(detail))

    async def vidprop_error(request: Request, exc: Exception) -> Response:
        log.warning("%s: %s", request.url.path, exc)
        return error(500, str(exc))

    async def internal_error(request: Request, exc: Exception) -> Response:
        log.error("%s: %s: %s", request.url.path, type(exc).__name__, exc, exc_info=exc)
        return error(500, f"internal error ({type(exc).__name__})")

    routes = [
        Route("/", page),
        Route("/api/info", info),
        Route("/api/results", results_list),
        Route("/api/results/{name}", result_detail),
        Route("/api/results/{name}/frame/{index:int}", result_frame),
        Route("/api/results/{name}/mask/{index:int}", result_mask),
        Route("/api/results/{name}/keypoints", result_keypoints),
        Route("/api/match", match_info),
        Route("/api/match/image/{which}", match_image),
        Route("/api/match/click", match_click),
        Mount("/static", StaticFiles(directory=str(STATIC_DIR)), name="static"),
    ]
    app = Starlette(routes=routes, exception_handlers={
        HTTPException: http_error,
        VidpropError: vidprop_error,
        Exception: internal_error,
    })
    app.state.index = index
    app.state.match = match
    return app


def _scores_of(index: Any, name: str) -> dict[str, Any] | None:
    from vidprop.view.results import read_sequence_scores

    return read_sequence_scores(index.scores_folder()).get(name)


def _finite(obj: Any) -> Any:
    """JSON has no NaN/inf: replace them by null (recursively)."""
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    if isinstance(obj, dict):
        return {k: _finite(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_finite(v) for v in obj]
    return obj
