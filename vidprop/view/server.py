"""Serving a local page with uvicorn, always behind its guard (:mod:`vidprop.view.security`).

Every page (``vidprop view``, ``vidprop annotate``, ...) is served through a
:class:`PageServer`: it checks the options, binds the socket first (so a taken
port fails before a model loads, and "a free port" is known), builds the
:class:`~vidprop.view.security.PageGuard` for that port and wraps every app it
serves with it.  There is no way to serve an app through this module without
the guard::

    from vidprop.view.server import PageServer, serve
    serve(app, "127.0.0.1", 0, open_browser=True)  # one call: bind, announce the URL, open it, serve until Ctrl+C

    server = PageServer("127.0.0.1", 0)            # bound first (port 0: a free one; a new token) ...
    server.url, server.open_url                    # 'http://127.0.0.1:PORT/', '...?token=...' (what to open)
    app = ...                                      # ... then the slow part (a model) ...
    server.run(app, name="vidprop view", announce=print)  # ... then "vidprop view: URL  (Ctrl+C to stop)", serve

    with PageServer().start(app) as server:        # on a thread (notebooks, tests)
        ...                                        # server.open_url
    with BackgroundServer(app) as server: ...      # the same in one line

Options (ConfigError, before anything is bound, when they do not fit):
``token`` (a chosen token; default a new one), ``no_token`` (loopback hosts
only), ``allow_hosts`` (more ``Host`` names, like ``myhost`` or
``myhost.lan:8080``).  uvicorn's access log is off unless ``access_log``; it
never shows the token (the guard takes it out of the query string first).
"""

from __future__ import annotations

import logging
import socket
import threading
import time
from typing import Any, Callable, Iterable

from vidprop.errors import ConfigError
from vidprop.view.security import PageGuard, check_options, is_loopback

__all__ = ["bind", "url_of", "is_loopback", "PageServer", "serve", "BackgroundServer"]

log = logging.getLogger(__name__)


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
    """The page's address (a wildcard bind is opened through the loopback address)."""
    host, port = sock.getsockname()[:2]
    if ":" in host:
        host = f"[{host}]"
    if host in ("0.0.0.0", "[::]"):
        host = "127.0.0.1" if host == "0.0.0.0" else "[::1]"
    return f"http://{host}:{port}/"


def _uvicorn(app: Any, access_log: bool) -> Any:
    try:
        import uvicorn
    except ImportError:  # pragma: no cover
        raise ConfigError("serving a page needs uvicorn: pip install 'vidprop[view]'") from None
    config = uvicorn.Config(app, log_level="info" if access_log else "warning", access_log=access_log, lifespan="off",
                            timeout_graceful_shutdown=1)
    return uvicorn.Server(config)


class PageServer:
    """A bound socket and the guard in front of every app served on it.

    ``token``: the token to ask for (default: a new random one); ``no_token``: ask for none (loopback only);
    ``allow_hosts``: more ``Host`` names to answer.  ConfigError for a bad option or a port that cannot be bound.
    """

    def __init__(self, host: str = "127.0.0.1", port: int = 0, *, token: str | None = None, no_token: bool = False,
                 allow_hosts: Iterable[str] = ()) -> None:
        allow_hosts = tuple(allow_hosts)
        token = check_options(host, token=token, no_token=no_token, allow_hosts=allow_hosts)
        self.host = host
        self.sock = bind(host, port)
        self.port: int = self.sock.getsockname()[1]
        self.guard = PageGuard.for_server(host, self.port, token=token, no_token=no_token, allow_hosts=allow_hosts)
        self.url = url_of(self.sock)  # the clean address
        self.open_url = self.guard.open_url(self.url)  # with the token: what the user opens
        self._server: Any = None
        self._thread: threading.Thread | None = None

    @property
    def loopback(self) -> bool:
        return is_loopback(self.host)

    def wrap(self, app: Any) -> Any:
        """``app`` behind this server's guard."""
        return self.guard.wrap(app)

    def serve(self, app: Any, *, access_log: bool = False) -> None:
        """Serve ``app`` (guarded) until interrupted; Ctrl+C ends it with KeyboardInterrupt."""
        self._server = _uvicorn(self.wrap(app), access_log)
        self._server.run(sockets=[self.sock])

    def run(self, app: Any, *, name: str = "vidprop", open_browser: bool = False,
            announce: Callable[[str], None] | None = None, access_log: bool = False) -> None:
        """Announce ``NAME: URL  (Ctrl+C to stop)`` (the URL with the token), open it in the browser if asked,
        serve ``app`` until Ctrl+C (which ends it quietly).  ``announce`` gets that one line (the CLI prints
        it; by default it is logged as a warning, so that a notebook shows it)."""
        (announce or log.warning)(f"{name}: {self.open_url}  (Ctrl+C to stop)")
        if open_browser:
            import webbrowser

            threading.Timer(0.5, webbrowser.open, args=(self.open_url,)).start()
        try:
            self.serve(app, access_log=access_log)
        except KeyboardInterrupt:  # Ctrl+C is how a server is stopped: not an error
            pass

    def start(self, app: Any, *, access_log: bool = False) -> "PageServer":
        """Serve ``app`` (guarded) on a thread; returns once it answers.  ``stop()`` (or ``with``) ends it."""
        self._server = _uvicorn(self.wrap(app), access_log)
        self._thread = threading.Thread(target=self._server.run, kwargs={"sockets": [self.sock]},
                                        name="vidprop-page", daemon=True)
        self._thread.start()
        deadline = time.monotonic() + 10
        while not self._server.started:
            if not self._thread.is_alive() or time.monotonic() > deadline:
                self.stop()
                raise RuntimeError("the page server did not start")
            time.sleep(0.01)
        return self

    def stop(self) -> None:
        if self._thread is not None:
            self._server.should_exit = True
            self._thread.join(timeout=10)
            self._thread = None
        self.close()

    def close(self) -> None:
        self.sock.close()

    def __enter__(self) -> "PageServer":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.stop()


def serve(app: Any, host: str = "127.0.0.1", port: int = 0, *, token: str | None = None, no_token: bool = False,
          allow_hosts: Iterable[str] = (), open_browser: bool = False, name: str = "vidprop",
          announce: Callable[[str], None] | None = None, access_log: bool = False) -> None:
    """Bind, guard and serve ``app`` until Ctrl+C, in one call (:class:`PageServer`, then :meth:`PageServer.run`).

    A command that loads a model first binds with ``PageServer(...)`` (a taken port fails at once), then
    calls ``server.run(app, ...)``: :func:`vidprop.cli.serving.run_page` does both.
    """
    with PageServer(host, port, token=token, no_token=no_token, allow_hosts=allow_hosts) as server:
        server.run(app, name=name, open_browser=open_browser, announce=announce, access_log=access_log)


class BackgroundServer:
    """``with BackgroundServer(app) as server: ...``: a :class:`PageServer` serving ``app`` on a thread."""

    def __init__(self, app: Any, host: str = "127.0.0.1", port: int = 0, **options: Any) -> None:
        self.app = app
        self.server = PageServer(host, port, **options)

    def __enter__(self) -> PageServer:
        return self.server.start(self.app, access_log=False)

    def __exit__(self, *exc: Any) -> None:
        self.server.stop()
