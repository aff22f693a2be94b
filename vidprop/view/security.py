"""The guard in front of every local page (``vidprop view``, ``vidprop annotate``, any later one).

A page served on ``127.0.0.1`` is still reachable by more than its user:
another user of the same machine (plain ``curl`` to the port), and any web
site the user visits, either through DNS rebinding (the site's own name
re-pointed to 127.0.0.1, so the browser treats the answers as same-origin)
or with cross-site requests that need no answer to do harm (a form or a
``fetch`` that POSTs to the port).  The guard answers these threats as
Jupyter does, before any route runs:

* **Host allowlist:** the ``Host`` header must be ``127.0.0.1:PORT``,
  ``localhost:PORT``, ``[::1]:PORT``, the host the server was bound to, or a
  name added with ``allow_hosts`` (``name`` means ``name:PORT``; ``name:N``
  is taken as it is).  Anything else: 403.  This defeats DNS rebinding.
* **A token per run** (:func:`new_token`, the ``secrets`` module): the URL to
  open is ``http://127.0.0.1:PORT/?token=TOKEN``.  A GET with the right token
  sets an HttpOnly, SameSite=Strict cookie (its value is a second random
  secret, not the token) and answers 303 to the same address without the
  token, so the token stays out of the address bar, the history and every
  later request.  Every request without the cookie (or the token, or an
  ``Authorization: token TOKEN`` header for scripts) gets 403.  ``token=None``
  (``--no-token``) is refused unless the server is bound to a loopback host.
* **Writes:** a POST, PUT, PATCH or DELETE (and a websocket) also needs an
  ``Origin`` header (or, when absent, a ``Referer``) equal to the page's own
  origin ``http://HOST`` (HOST: the allowlisted Host header); else 403.  A
  page must therefore change state only in such requests, never on GET, and
  send them with ``fetch`` (which always sends ``Origin``; an HTML form post
  under ``Referrer-Policy: no-referrer`` sends ``Origin: null`` and is refused).
* **Headers on every answer** (the refusals and redirects included):
  ``X-Content-Type-Options: nosniff``, a ``Content-Security-Policy`` that allows
  the page's own origin only (:data:`CONTENT_SECURITY_POLICY`),
  ``Referrer-Policy: no-referrer``, ``Cross-Origin-Resource-Policy: same-origin``
  (other origins, even another port of 127.0.0.1, cannot embed the frames)
  and ``Cross-Origin-Opener-Policy: same-origin``.

The token is taken out of the request's query string before anything else
sees it (so uvicorn's access log, which logs the query string, never shows
it), refusals are logged without query strings, and no answer body carries
it.  Refusals are ``{"error": "one line"}`` with status 403, like the pages'
own errors.

API::

    from vidprop.view.security import PageGuard, new_token

    guard = PageGuard.for_server("127.0.0.1", 8765, token=new_token(), allow_hosts=("myhost",))
    asgi_app = guard.wrap(app)                 # any ASGI app (a Starlette app)
    guard.open_url("http://127.0.0.1:8765/")   # 'http://127.0.0.1:8765/?token=...'

:class:`vidprop.view.server.PageServer` builds the guard from its bound socket
and wraps every app it serves; :mod:`vidprop.cli.serving` holds the shared
flags (``--host --port --token --no-token --allow-host --open``).
"""

from __future__ import annotations

import hmac
import html
import ipaddress
import json
import logging
import re
import secrets
from dataclasses import dataclass, field
from typing import Any, Awaitable, Callable, Iterable
from urllib.parse import parse_qsl, urlencode, urlsplit

from vidprop.errors import ConfigError

__all__ = [
    "PageGuard",
    "GuardedApp",
    "new_token",
    "check_token",
    "is_loopback",
    "host_entry",
    "allowed_hosts",
    "TOKEN_PARAM",
    "WRITE_METHODS",
    "CONTENT_SECURITY_POLICY",
    "SECURITY_HEADERS",
]

log = logging.getLogger(__name__)

TOKEN_PARAM = "token"
MIN_TOKEN_LENGTH = 16
WRITE_METHODS = frozenset({"POST", "PUT", "PATCH", "DELETE"})
#: only this server: scripts, styles, images, fetches, fonts, frames (and data: images: the favicon is "data:,",
#: no request at all); no plugins, no <base>, no framing by other pages
CONTENT_SECURITY_POLICY = ("default-src 'self'; img-src 'self' data:; object-src 'none'; base-uri 'none'; "
                           "form-action 'self'; frame-ancestors 'none'")
SECURITY_HEADERS: tuple[tuple[str, str], ...] = (
    ("x-content-type-options", "nosniff"),
    ("content-security-policy", CONTENT_SECURITY_POLICY),
    ("referrer-policy", "no-referrer"),
    ("cross-origin-resource-policy", "same-origin"),
    ("cross-origin-opener-policy", "same-origin"),
)
_TOKEN_CHARS = re.compile(r"[A-Za-z0-9_.~-]+")
_HOST_NAME = re.compile(r"[a-z0-9]([a-z0-9.-]*[a-z0-9])?")

Scope = dict[str, Any]
Receive = Callable[[], Awaitable[dict[str, Any]]]
Send = Callable[[dict[str, Any]], Awaitable[None]]


def new_token() -> str:
    """A fresh random token (43 URL-safe characters, 256 bits)."""
    return secrets.token_urlsafe(32)


def check_token(token: str) -> str:
    """``token`` if it fits in a URL and is too long to guess; ConfigError naming --token otherwise."""
    if not _TOKEN_CHARS.fullmatch(token or ""):
        raise ConfigError("--token may use only letters, digits and - _ . ~ (it goes into a URL); "
                          "make one with: python -c 'import secrets; print(secrets.token_urlsafe())'")
    if len(token) < MIN_TOKEN_LENGTH:
        raise ConfigError(f"--token must be at least {MIN_TOKEN_LENGTH} characters long, got {len(token)}; "
                          "make one with: python -c 'import secrets; print(secrets.token_urlsafe())'")
    return token


def is_loopback(host: str) -> bool:
    """True for localhost, 127.0.0.0/8 and ::1 (with or without brackets)."""
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def host_entry(name: str, port: int) -> str:
    """The ``Host`` header a browser sends for ``name`` (a host name or an address) on ``port``."""
    name = name.strip().lower()
    try:
        if ipaddress.ip_address(name.strip("[]")).version == 6:
            name = f"[{name.strip('[]')}]"
    except ValueError:
        pass
    return f"{name}:{port}"


def _parse_allowed(value: str, port: int) -> list[str]:
    """``--allow-host`` entries: ``name``, ``name:N``, an address, ``[v6]`` or ``[v6]:N`` (lower case)."""
    v = value.strip().lower()
    bad = ConfigError(f"--allow-host expects a host name or address, optionally with :PORT (like myhost or "
                      f"myhost.lan:8080), got {value!r}")
    m = re.fullmatch(r"\[([0-9a-f:.]+)\](?::(\d+))?", v) or re.fullmatch(r"([^:\[\]]+)(?::(\d+))?", v)
    if m is None:
        try:  # a bare IPv6 address
            ipaddress.IPv6Address(v)
        except ValueError:
            raise bad from None
        m = re.fullmatch(r"(.*)()", v)
    name, p = m.group(1), m.group(2)
    try:
        ipaddress.ip_address(name)
    except ValueError:
        if not _HOST_NAME.fullmatch(name) or ".." in name:
            raise bad from None
    if p and not 0 < int(p) < 65536:
        raise bad
    entries = [host_entry(name, int(p) if p else port)]
    if (int(p) if p else port) == 80:
        entries.append(entries[0].rsplit(":", 1)[0])  # a browser leaves out the default port
    return entries


def allowed_hosts(host: str, port: int, extra: Iterable[str] = ()) -> frozenset[str]:
    """Every ``Host`` header answered: the loopback names, the bound ``host`` and ``extra`` (see ``--allow-host``)."""
    out = [host_entry(name, port) for name in ("127.0.0.1", "localhost", "::1", host)]
    if port == 80:  # a browser leaves out the default port
        out += [e.rsplit(":", 1)[0] for e in out]
    for name in extra:
        out += _parse_allowed(name, port)
    return frozenset(out)


@dataclass(frozen=True)
class PageGuard:
    """What a page answers: the Host names, the token (None: none asked) and the cookie that stands for it.

    Build it with :meth:`for_server` (which checks the options); ``wrap`` puts it in front of an ASGI app.
    """

    port: int
    hosts: frozenset[str]
    token: str | None = field(repr=False)
    cookie_value: str = field(default_factory=new_token, repr=False)

    @classmethod
    def for_server(cls, host: str, port: int, *, token: str | None = None, no_token: bool = False,
                   allow_hosts: Iterable[str] = ()) -> "PageGuard":
        """The guard of a server bound to ``host:port``: a new token unless ``token`` (checked) or ``no_token``.

        ConfigError: ``no_token`` with a token, ``no_token`` on a host that is not loopback, a bad token or
        ``--allow-host`` value.
        """
        resolved = check_options(host, token=token, no_token=no_token, allow_hosts=allow_hosts)
        return cls(port=int(port), hosts=allowed_hosts(host, int(port), allow_hosts), token=resolved)

    @property
    def cookie_name(self) -> str:
        """One cookie per port: cookies are shared by every port of a host, two pages must not overwrite each other."""
        return f"vidprop-{self.port}"

    def open_url(self, url: str) -> str:
        """``url`` with the token (what the user opens); ``url`` itself when no token is asked."""
        if self.token is None:
            return url
        return f"{url}{'&' if '?' in url else '?'}{TOKEN_PARAM}={self.token}"

    def wrap(self, app: Any) -> "GuardedApp":
        return GuardedApp(app, self)


def check_options(host: str, *, token: str | None, no_token: bool, allow_hosts: Iterable[str] = ()) -> str | None:
    """The token to ask for (a new one unless given; None for ``no_token``) after checking every option."""
    for value in allow_hosts:
        _parse_allowed(value, 1)
    if no_token:
        if token is not None:
            raise ConfigError("--token and --no-token exclude each other: give one")
        if not is_loopback(host):
            raise ConfigError(f"--no-token is only allowed on a loopback --host (127.0.0.1, localhost, ::1), "
                              f"not {host}: others can reach this address")
        return None
    return new_token() if token is None else check_token(token)


class _Refused(Exception):
    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


def _header(headers: list[tuple[bytes, bytes]], name: bytes) -> str | None:
    values = [v for k, v in headers if k.lower() == name]
    if len(values) > 1:
        raise _Refused(f"more than one {name.decode()} header")
    return values[0].decode("latin-1") if values else None


def _cookie(headers: list[tuple[bytes, bytes]], name: str) -> list[str]:
    found = []
    for k, v in headers:
        if k.lower() == b"cookie":
            for part in v.decode("latin-1").split(";"):
                key, _, value = part.strip().partition("=")
                if key == name:
                    found.append(value)
    return found


def _same(a: str, b: str) -> bool:
    return hmac.compare_digest(a.encode("utf-8", "surrogateescape"), b.encode("utf-8", "surrogateescape"))


def _printable(value: str, limit: int = 80) -> str:
    v = value if len(value) <= limit else value[:limit] + "..."
    return json.dumps(v)  # quoted, control characters escaped: one line in a log or an answer


class GuardedApp:
    """ASGI middleware: the checks of :class:`PageGuard`, then ``app``; security headers on every answer."""

    def __init__(self, app: Any, guard: PageGuard) -> None:
        self.app = app
        self.guard = guard

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] not in ("http", "websocket"):
            await self.app(scope, receive, send)  # lifespan
            return
        try:
            redirect = self._check(scope)
        except _Refused as exc:
            log.info("refused %s %s: %s", scope.get("method", "WEBSOCKET"), _printable(scope.get("path", "")),
                     exc.reason)
            await self._refuse(scope, send, exc.reason)
            return
        if redirect is not None:
            await self._redirect(scope, send, redirect)
            return

        async def send_with_headers(message: dict[str, Any]) -> None:
            if message["type"] == "http.response.start":
                message = {**message, "headers": _with_security_headers(message.get("headers", []))}
            await send(message)

        await self.app(scope, receive, send_with_headers)

    # ------------------------------------------------------------------ the checks
    def _check(self, scope: Scope) -> str | None:
        """None to go on, a location to redirect to (the token was right); _Refused otherwise."""
        g = self.guard
        query = scope.get("query_string", b"").decode("latin-1")
        pairs = parse_qsl(query, keep_blank_values=True)
        given = [v for k, v in pairs if k == TOKEN_PARAM]
        if given:  # out of the scope before anything else sees (or logs) it, whatever the answer
            scope["query_string"] = urlencode([(k, v) for k, v in pairs if k != TOKEN_PARAM]).encode("latin-1")
        headers = list(scope.get("headers", []))
        host = _header(headers, b"host")
        if host is None:
            raise _Refused("no Host header")
        if host.lower() not in g.hosts:
            raise _Refused(f"Host {_printable(host)} is not one this page answers to (start it with "
                           f"--allow-host NAME to add a name)")
        method = scope.get("method", "GET") if scope["type"] == "http" else "WEBSOCKET"
        if g.token is not None:
            if given:
                if len(given) > 1 or not _same(given[0], g.token):
                    raise _Refused("wrong token: open the URL that was printed when the page started")
                if method in ("GET", "HEAD"):
                    return _clean_location(scope)
            elif not self._authorized(headers):
                raise _Refused("no token: open the URL with ?token=... that was printed when the page started")
        if method in WRITE_METHODS or method == "WEBSOCKET":
            self._check_origin(headers, host)
        return None

    def _authorized(self, headers: list[tuple[bytes, bytes]]) -> bool:
        g = self.guard
        assert g.token is not None
        if any(_same(v, g.cookie_value) for v in _cookie(headers, g.cookie_name)):
            return True
        auth = _header(headers, b"authorization")
        if auth:
            kind, _, value = auth.strip().partition(" ")
            return kind.lower() in ("token", "bearer") and _same(value.strip(), g.token)
        return False

    @staticmethod
    def _check_origin(headers: list[tuple[bytes, bytes]], host: str) -> None:
        own = f"http://{host.lower()}"
        origin = _header(headers, b"origin")
        if origin is None:
            referer = _header(headers, b"referer")
            if referer is None:
                raise _Refused("a change must come from the page itself (no Origin or Referer header)")
            parts = urlsplit(referer)
            origin = f"{parts.scheme}://{parts.netloc}"
        if origin.lower() != own:
            raise _Refused(f"a change must come from the page itself ({own}), not from {_printable(origin)}")

    # ------------------------------------------------------------------ answers
    async def _refuse(self, scope: Scope, send: Send, reason: str) -> None:
        if scope["type"] == "websocket":
            await send({"type": "websocket.close", "code": 1008, "reason": reason[:120]})
            return
        body = json.dumps({"error": reason}).encode() + b"\n"
        await self._answer(send, 403, body, [(b"content-type", b"application/json"), (b"cache-control", b"no-store")])

    async def _redirect(self, scope: Scope, send: Send, location: str) -> None:
        """The cookie, and the way to the clean address: a 303, or a page that moves on when the link was
        followed from another site (a SameSite=Strict cookie is not sent along a redirect that a cross-site
        click started, but is along a navigation that this page starts itself)."""
        cookie = (f"{self.guard.cookie_name}={self.guard.cookie_value}; Path=/; HttpOnly; SameSite=Strict"
                  .encode("latin-1"))
        headers = [(b"set-cookie", cookie), (b"cache-control", b"no-store")]
        site = _header(list(scope.get("headers", [])), b"sec-fetch-site")
        if site in (None, "none", "same-origin"):  # typed, opened by --open, a script, or this page
            await self._answer(send, 303, b"", [(b"location", location.encode("latin-1")), *headers])
            return
        target = html.escape(location, quote=True)
        body = (f'<!doctype html><meta charset="utf-8"><meta http-equiv="refresh" content="0; url={target}">'
                f'<title>opening the page</title><p><a href="{target}">open the page</a></p>\n').encode()
        await self._answer(send, 200, body, [(b"content-type", b"text/html; charset=utf-8"), *headers])

    @staticmethod
    async def _answer(send: Send, status: int, body: bytes, headers: list[tuple[bytes, bytes]]) -> None:
        headers = _with_security_headers([*headers, (b"content-length", str(len(body)).encode())])
        await send({"type": "http.response.start", "status": status, "headers": headers})
        await send({"type": "http.response.body", "body": body})


def _with_security_headers(headers: Iterable[tuple[bytes, bytes]]) -> list[tuple[bytes, bytes]]:
    ours = {k.encode() for k, _ in SECURITY_HEADERS}
    kept = [(k, v) for k, v in headers if k.lower() not in ours]
    return kept + [(k.encode(), v.encode()) for k, v in SECURITY_HEADERS]


def _clean_location(scope: Scope) -> str:
    """The request's own path and (token-free) query: never ``//host`` (an open redirect), never absolute."""
    raw = scope.get("raw_path") or scope.get("path", "/").encode("utf-8")
    path = raw.decode("latin-1") if isinstance(raw, bytes) else str(raw)
    path = "/" + path.lstrip("/")
    # no spaces or CR/LF; no backslash (a browser reads "/\evil.example" as "//evil.example")
    path = re.sub(r"[^\x21-\x7e]|\\", lambda m: "%{:02X}".format(ord(m.group())), path)
    query = scope.get("query_string", b"").decode("latin-1")
    return f"{path}?{query}" if query else path
