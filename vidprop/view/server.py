"""Serving the view app with uvicorn: a socket bound first (so "a free port" is known), then the server.

    from vidprop.view.server import bind, serve, BackgroundServer
    sock = bind("127.0.0.1", 0)                      # port 0: a free one
    serve(app, sock)                                 # blocks until Ctrl+C

    with BackgroundServer(app) as url:               # a thread (notebooks, tests)
        ...
"""

from __future__ import annotations

import ipaddress
import logging
import socket
import threading
import time
from typing import Any

from vidprop.errors import ConfigError

__all__ = ["bind", "url_of", "is_loopback", "serve", "BackgroundServer"]

log = logging.getLogger(__name__)


def is_loopback(host: str) -> bool:
    """True for localhost, 127.0.0.0/8 and ::1."""
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def bind(host: str = "127.0.0.1", port: int = 0) -> socket.socket:
    """A listening TCP socket on ``host:port`` (port 0: a free port); ConfigError when it cannot be bound."""
    if not 0 <= int(port) <= 65535:
        raise ConfigError(f"--port must be in 0..65535, got {port}")
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    except socket.gaierror as exc:
        raise ConfigError(f"cannot serve on host {host!r}: {exc.strerror}") from None
    family, _, _, _, addr = infos[0]
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind(addr)
    except OSError as exc:
        sock.close()
        raise ConfigError(f"cannot listen on {host}:{port}: {exc.strerror or exc}"
                          + (" (choose another --port, or leave it out for a free one)" if port else "")) from None
    sock.listen(128)
    sock.set_inheritable(True)
    return sock


def url_of(sock: socket.socket) -> str:
    host, port = sock.getsockname()[:2]
    if ":" in host:
        host = f"[{host}]"
    if host in ("0.0.0.0", "[::]"):
        host = "127.0.0.1" if host == "0.0.0.0" else "[::1]"
    return f"http://{host}:{port}/"


def _server(app: Any) -> Any:
    try:
        import uvicorn
    except ImportError:  # pragma: no cover
        raise ConfigError("vidprop view needs uvicorn: pip install 'vidprop[view]'") from None
    config = uvicorn.Config(app, log_level="warning", access_log=False, lifespan="off", timeout_graceful_shutdown=1)
    return uvicorn.Server(config)


def serve(app: Any, sock: socket.socket) -> None:
    """Serve ``app`` on the bound socket until interrupted (Ctrl+C)."""
    server = _server(app)
    server.run(sockets=[sock])


class BackgroundServer:
    """Serve an app on a thread: ``with BackgroundServer(app) as url: ...`` (127.0.0.1, a free port)."""

    def __init__(self, app: Any, host: str = "127.0.0.1", port: int = 0) -> None:
        self.sock = bind(host, port)
        self.url = url_of(self.sock)
        self._server = _server(app)
        self._thread = threading.Thread(target=self._server.run, kwargs={"sockets": [self.sock]},
                                        name="vidprop-view", daemon=True)

    def __enter__(self) -> str:
        self._thread.start()
        deadline = time.monotonic() + 10
        while not self._server.started:
            if not self._thread.is_alive() or time.monotonic() > deadline:
                raise RuntimeError("the view server did not start")
            time.sleep(0.01)
        return self.url

    def __exit__(self, *exc: Any) -> None:
        self._server.should_exit = True
        self._thread.join(timeout=10)
        self.sock.close()
