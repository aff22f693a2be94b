"""What the local pages' apps (``vidprop view``, ``vidprop annotate``) answer alike: errors as JSON, frames.

Starlette is imported inside the functions: it is an optional extra, checked
by the apps before they use this module.
"""

from __future__ import annotations

import logging
from typing import Any, Callable

from vidprop.errors import VidpropError
from vidprop.view.frames import FrameSource

__all__ = ["NO_STORE", "error_response", "exception_handlers", "frame_response"]

log = logging.getLogger(__name__)

#: Headers of answers that change as the session or the folder does.
NO_STORE = {"Cache-Control": "no-store"}


def error_response(status: int, message: str) -> Any:
    """``{"error": message}`` with ``status`` (never cached)."""
    from starlette.responses import JSONResponse

    return JSONResponse({"error": message}, status_code=status, headers=NO_STORE)


async def _http_error(request: Any, exc: Exception) -> Any:
    status = getattr(exc, "status_code", 500)
    detail = getattr(exc, "detail", "") or "error"
    if status == 404 and detail == "Not Found":
        detail = "not found"
    return error_response(status, str(detail))


async def _internal_error(request: Any, exc: Exception) -> Any:
    log.error("%s: %s: %s", request.url.path, type(exc).__name__, exc, exc_info=exc)
    return error_response(500, f"internal error ({type(exc).__name__})")


def exception_handlers(vidprop_error_status: int) -> dict[Any, Callable]:
    """Starlette's ``exception_handlers``: HTTP errors as they are, a :class:`VidpropError` as
    ``vidprop_error_status`` (400: the user's input; 500: a file on disk), anything else a logged 500."""
    from starlette.exceptions import HTTPException

    async def vidprop_error(request: Any, exc: Exception) -> Any:
        log.warning("%s: %s", request.url.path, exc)
        return error_response(vidprop_error_status, str(exc))

    return {HTTPException: _http_error, VidpropError: vidprop_error, Exception: _internal_error}


def frame_response(frames: FrameSource, index: int, name: str | None) -> Any:
    """Frame ``index`` (named ``name`` in a folder) of ``frames``, as the image the browser shows."""
    from starlette.responses import Response

    data, media = frames.get(index, name)
    return Response(data, media_type=media, headers={"Cache-Control": "no-cache"})
