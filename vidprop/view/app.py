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
from typing import TYPE_CHECKING, Any, NoReturn

from vidprop.errors import ConfigError
from vidprop.view.responses import NO_STORE, exception_handlers, frame_response

if TYPE_CHECKING:
    from vidprop.view.results import ResultsIndex, SegmentDetail, TrackDetail

__all__ = ["create_app", "ViewApi", "STATIC_DIR"]

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
    from starlette.routing import Mount, Route
    from starlette.staticfiles import StaticFiles

    from vidprop.view.results import ResultsIndex

    if (results is None) == (match is None):
        raise ValueError("give either a results folder or a match session")
    index = ResultsIndex(results) if results is not None else None
    api = ViewApi(index, match)
    routes = [
        Route("/", api.page),
        Route("/api/info", api.info),
        Route("/api/results", api.results_list),
        Route("/api/results/{name}", api.result_detail),
        Route("/api/results/{name}/frame/{index:int}", api.result_frame),
        Route("/api/results/{name}/mask/{index:int}", api.result_mask),
        Route("/api/results/{name}/keypoints", api.result_keypoints),
        Route("/api/match", api.match_info),
        Route("/api/match/image/{which}", api.match_image),
        Route("/api/match/click", api.match_click),
        Mount("/static", StaticFiles(directory=str(STATIC_DIR)), name="static"),
    ]
    app = Starlette(routes=routes, exception_handlers=exception_handlers(500))
    app.state.index = index
    app.state.match = match
    return app


def _abort(status: int, message: str) -> NoReturn:
    from starlette.exceptions import HTTPException

    raise HTTPException(status, message)


def _json(body: Any) -> Any:
    from starlette.responses import JSONResponse

    return JSONResponse(body, headers=NO_STORE)


def _frame_index(request: Any, n: int) -> int:
    i = request.path_params["index"]
    if not 0 <= i < n:
        _abort(404, f"no frame {i} (frames 0..{n - 1})")
    return i


class ViewApi:
    """The route handlers of ``vidprop view``: a results folder's (``index``) or an image pair's (``match``).

    Each handler takes a Starlette request; see the module docstring for the routes.
    """

    def __init__(self, index: "ResultsIndex | None", match: Any) -> None:
        self.index = index
        self.match = match

    # ------------------------------------------------------------------ helpers
    def need_index(self) -> "ResultsIndex":
        if self.index is None:
            _abort(404, "no results folder is served (this is the match view)")
        return self.index

    def detail_of(self, request: Any) -> "SegmentDetail | TrackDetail":
        d = self.need_index().detail(request.path_params["name"])
        if d is None:
            _abort(404, "unknown result")
        return d

    def need_match(self) -> Any:
        if self.match is None:
            _abort(404, "no image pair is served (start with vidprop view --match SRC TGT)")
        return self.match

    # ------------------------------------------------------------------ pages
    def page(self, request: Any) -> Any:
        from starlette.responses import FileResponse

        return FileResponse(STATIC_DIR / "index.html", headers=NO_STORE)

    def info(self, request: Any) -> Any:
        if self.index is not None:
            return _json({"mode": "results", "root": self.index.root.name, "single": self.index.single})
        return _json({"mode": "match", **self.match.describe()})

    # ------------------------------------------------------------------ results
    def results_list(self, request: Any) -> Any:
        return _json(_finite(self.need_index().listing()))

    def result_detail(self, request: Any) -> Any:
        d = self.detail_of(request)
        body = d.describe()
        scores = _scores_of(self.need_index(), d.name)
        if scores:
            body["scores"] = scores
        return _json(_finite(body))

    def result_frame(self, request: Any) -> Any:
        from vidprop.view.results import SegmentDetail

        d = self.detail_of(request)
        names = [p.stem for p in d.masks] if isinstance(d, SegmentDetail) else d.frames
        i = _frame_index(request, len(names))
        if d.source.frames is None:
            _abort(404, d.source.note)
        try:
            return frame_response(d.source.frames, i + d.source.offset, names[i])
        except IndexError as exc:
            _abort(404, str(exc))

    def result_mask(self, request: Any) -> Any:
        from starlette.responses import FileResponse

        from vidprop.view.results import SegmentDetail

        d = self.detail_of(request)
        if not isinstance(d, SegmentDetail):
            _abort(404, "a track result has no masks")
        i = _frame_index(request, len(d.masks))
        path = d.masks[i]
        if not path.is_file():
            _abort(404, f"mask {path.name} is gone")
        download = request.query_params.get("download") not in (None, "", "0", "false")
        return FileResponse(path, media_type="image/png", headers={"Cache-Control": "no-cache"},
                            filename=path.name if download else None,
                            content_disposition_type="attachment" if download else "inline")

    def result_keypoints(self, request: Any) -> Any:
        from vidprop.view.results import TrackDetail

        d = self.detail_of(request)
        if not isinstance(d, TrackDetail):
            _abort(404, "a segment result has no keypoints")
        return _json(_finite(d.data))

    # ------------------------------------------------------------------ match
    def match_info(self, request: Any) -> Any:
        return _json(self.need_match().describe())

    def match_image(self, request: Any) -> Any:
        from starlette.responses import Response

        which = request.path_params["which"]
        images = self.need_match().images
        if which not in images:
            _abort(404, "image must be source or target")
        return Response(images[which], media_type="image/jpeg", headers={"Cache-Control": "no-cache"})

    def match_click(self, request: Any) -> Any:
        m = self.need_match()
        w, h = m.source.shape[1], m.source.shape[0]
        try:
            x, y = float(request.query_params["x"]), float(request.query_params["y"])
        except KeyError:
            _abort(400, "give the source pixel as ?x=X&y=Y")
        except ValueError:
            _abort(400, "x and y must be numbers")
        if not (math.isfinite(x) and math.isfinite(y)):
            _abort(400, "x and y must be finite numbers")
        if not (0 <= round(x) < w and 0 <= round(y) < h):
            _abort(400, f"({x:g}, {y:g}) is outside the {w}x{h} source image")
        return _json(m.click(x, y))


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
