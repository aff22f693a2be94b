"""The page guard with Starlette's test client and raw ASGI calls: Host allowlist, token and cookie, Origin on writes,
headers on every answer, the token in no answer and no log line.

``notes_app`` (conftest) stands for a page with write endpoints (as ``vidprop annotate``): it
keeps a file on disk that POST / PUT / DELETE change, so "changes nothing" is
checked on the disk itself.
"""

from __future__ import annotations

import asyncio
import json
import logging

import pytest
from starlette.testclient import TestClient
from starlette.websockets import WebSocketDisconnect

from tests.view.conftest import TEST_ORIGIN, TEST_PORT, guarded_client, notes_app
from vidprop.errors import ConfigError
from vidprop.view.app import create_app
from vidprop.view.security import (CONTENT_SECURITY_POLICY, PageGuard, allowed_hosts, check_token, host_entry,
                                   new_token)

HEADERS = {"x-content-type-options": "nosniff", "content-security-policy": CONTENT_SECURITY_POLICY,
           "referrer-policy": "no-referrer", "cross-origin-resource-policy": "same-origin"}


@pytest.fixture()
def notes(tmp_path):
    return tmp_path / "notes.txt"


@pytest.fixture()
def client(notes):
    return guarded_client(notes_app(notes))


def assert_headers(r) -> None:
    for k, v in HEADERS.items():
        assert r.headers.get_list(k) == [v], (k, r.headers)


def assert_refused(r, needle: str, token: str | None = None) -> str:
    assert r.status_code == 403, (r.status_code, r.text)
    assert_headers(r)
    assert r.text.count("\n") == 1 and "Traceback" not in r.text
    msg = json.loads(r.text)["error"]
    assert needle in msg, msg
    if token:
        assert token not in r.text
    return msg


# ------------------------------------------------------------------ opening the page
def test_the_printed_url_sets_a_cookie_and_drops_the_token(notes):
    guard = PageGuard.for_server("127.0.0.1", TEST_PORT)
    c = TestClient(guard.wrap(notes_app(notes)), base_url=TEST_ORIGIN)
    assert guard.open_url(f"{TEST_ORIGIN}/") == f"{TEST_ORIGIN}/?token={guard.token}"
    r = c.get(f"/notes?a=1&token={guard.token}&b=x%20y", follow_redirects=False)
    assert r.status_code == 303 and r.headers["location"] == "/notes?a=1&b=x+y"  # the same address, no token
    assert_headers(r)
    cookie = r.headers["set-cookie"]
    assert cookie == f"vidprop-{TEST_PORT}={guard.cookie_value}; Path=/; HttpOnly; SameSite=Strict"
    assert guard.token not in cookie and guard.cookie_value != guard.token  # the cookie is not the token
    r = c.get("/notes")  # the cookie alone from now on
    assert r.status_code == 200 and r.text == "original"
    assert_headers(r)
    page = c.get("/")
    assert page.status_code == 200 and guard.token not in page.text
    assert TestClient(guard.wrap(notes_app(notes)), base_url=TEST_ORIGIN).get("/notes").status_code == 403


def test_a_link_followed_from_another_site_gets_a_page_that_moves_on(notes):
    """A SameSite=Strict cookie is not sent along a redirect that a cross-site click started: answer with a
    page that navigates itself (checked in Chromium by test_security_browser)."""
    guard = PageGuard.for_server("127.0.0.1", TEST_PORT)
    c = TestClient(guard.wrap(notes_app(notes)), base_url=TEST_ORIGIN)
    r = c.get(f"/?token={guard.token}", headers={"sec-fetch-site": "cross-site"}, follow_redirects=False)
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/html")
    assert '<meta http-equiv="refresh" content="0; url=/">' in r.text and guard.token not in r.text
    assert r.headers["set-cookie"].startswith(f"vidprop-{TEST_PORT}={guard.cookie_value};")
    assert_headers(r)
    assert c.get("/notes").text == "original"


def test_scripts_may_send_the_token_in_a_header(notes):
    guard = PageGuard.for_server("127.0.0.1", TEST_PORT)
    c = TestClient(guard.wrap(notes_app(notes)), base_url=TEST_ORIGIN)
    assert c.get("/notes", headers={"Authorization": f"token {guard.token}"}).text == "original"
    assert c.get("/notes", headers={"Authorization": f"Bearer {guard.token}"}).text == "original"
    assert_refused(c.get("/notes", headers={"Authorization": f"token {guard.token}x"}), "no token")
    assert_refused(c.get("/notes", headers={"Authorization": f"Basic {guard.token}"}), "no token")


# ------------------------------------------------------------------ refusals: 403, nothing changed on disk
def _refusals(token: str, cookie: str):
    own = {"origin": TEST_ORIGIN}
    return [
        ("GET", "/notes", {"host": "evil.example.com"}, "not one this page answers to"),  # DNS rebinding
        ("POST", "/notes", {"host": "evil.example.com", "origin": "http://evil.example.com"}, "not one this page answers to"),
        ("POST", "/notes", {"host": f"127.0.0.1:{TEST_PORT + 1}", **own}, "not one this page answers to"),
        ("POST", "/notes", {"host": "127.0.0.1", **own}, "not one this page answers to"),
        ("GET", "/notes", {"cookie": ""}, "no token"),
        ("POST", "/notes", {"cookie": "", **own}, "no token"),
        ("POST", "/notes", {"cookie": f"vidprop-{TEST_PORT}={cookie}x", **own}, "no token"),
        ("POST", "/notes", {"cookie": f"vidprop-{TEST_PORT + 1}={cookie}", **own}, "no token"),  # another port's name
        ("POST", "/notes", {"cookie": f"vidprop-{TEST_PORT}={token}", **own}, "no token"),  # the token is not the cookie
        ("GET", f"/notes?token={token}x", {"cookie": ""}, "wrong token"),
        ("GET", f"/notes?token={token}&token={token}", {"cookie": ""}, "wrong token"),
        ("POST", "/notes", {}, "no Origin or Referer"),  # the cookie, but not from the page
        ("POST", "/notes", {"origin": "http://evil.example.com"}, 'not from "http://evil.example.com"'),
        ("POST", "/notes", {"origin": f"http://127.0.0.1:{TEST_PORT + 1}"}, "must come from the page itself"),
        ("POST", "/notes", {"origin": f"http://localhost:{TEST_PORT}"}, "must come from the page itself"),
        ("POST", "/notes", {"origin": f"https://127.0.0.1:{TEST_PORT}"}, "must come from the page itself"),
        ("POST", "/notes", {"origin": "null"}, "must come from the page itself"),
        ("POST", "/notes", {"referer": "http://evil.example.com/x"}, "must come from the page itself"),
        ("POST", f"/notes?token={token}", {"cookie": "", "origin": "http://evil.example.com"}, "must come from"),
        ("PUT", "/notes", {"origin": "http://evil.example.com"}, "must come from the page itself"),
        ("DELETE", "/notes", {"origin": "http://evil.example.com"}, "must come from the page itself"),
        ("PATCH", "/notes", {}, "no Origin or Referer"),
    ]


def test_refusals_change_nothing(client, notes, caplog):
    token, cookie = client.guard.token, client.guard.cookie_value
    before = (notes.read_bytes(), notes.stat().st_mtime_ns)
    with caplog.at_level(logging.DEBUG):
        for method, url, headers, needle in _refusals(token, cookie):
            r = client.request(method, url, headers=headers, content=b"overwritten")
            assert_refused(r, needle, token)
            assert (notes.read_bytes(), notes.stat().st_mtime_ns) == before, (method, url, headers)
    ours = "\n".join(r.getMessage() for r in caplog.records if r.name.startswith("vidprop"))  # (httpx logs its URLs)
    assert 'refused POST "/notes"' in ours and "refused GET" in ours
    assert token not in ours and cookie not in ours


def test_writes_from_the_page_itself(client, notes):
    r = client.post("/notes", content=b"first", headers={"origin": TEST_ORIGIN})
    assert r.status_code == 200 and notes.read_text() == "first"
    assert_headers(r)  # the app's own Content-Security-Policy is replaced by the guard's, not doubled
    r = client.put("/notes", content=b"second", headers={"referer": f"{TEST_ORIGIN}/?f=3"})  # no Origin: the Referer
    assert r.status_code == 200 and notes.read_text() == "second"
    r = client.post("/notes", content=b"third", headers={"host": f"localhost:{TEST_PORT}", "origin": f"http://localhost:{TEST_PORT}"})
    assert r.status_code == 200 and notes.read_text() == "third"
    assert client.delete("/notes", headers={"origin": TEST_ORIGIN}).status_code == 200 and notes.read_text() == ""


def test_headers_on_every_answer(client):
    for r in (client.get("/"), client.get("/notes"), client.get("/nope"), client.post("/", headers={"origin": TEST_ORIGIN}),
              client.get("/", headers={"host": "evil.example.com"}),
              client.get(f"/?token={client.guard.token}", follow_redirects=False)):
        assert_headers(r)


def test_no_token_still_checks_host_and_origin(notes):
    c = guarded_client(notes_app(notes), no_token=True)
    assert c.get("/notes").text == "original"  # no cookie needed
    assert_refused(c.get("/notes", headers={"host": "evil.example.com"}), "not one this page answers to")
    assert_refused(c.post("/notes", content=b"x", headers={"origin": "http://evil.example.com"}), "must come from")
    assert notes.read_text() == "original"
    assert c.post("/notes", content=b"x", headers={"origin": TEST_ORIGIN}).status_code == 200


WS = f"ws://127.0.0.1:{TEST_PORT}/ws"


def test_websockets_need_the_cookie_and_the_origin(client):
    with client.websocket_connect(WS, headers={"origin": TEST_ORIGIN}) as ws:
        ws.send_text("hi")
        assert ws.receive_text() == "hi"
    for headers in ({"origin": "http://evil.example.com"}, {}, {"origin": TEST_ORIGIN, "cookie": ""},
                    {"origin": "http://evil.example.com", "host": "evil.example.com"}):
        with pytest.raises(WebSocketDisconnect) as e:
            with client.websocket_connect(WS, headers=headers):
                pass
        assert e.value.code == 1008


# ------------------------------------------------------------------ raw ASGI: what a test client cannot send
def raw(guard: PageGuard, app, path: bytes, query: bytes, headers: list[tuple[bytes, bytes]],
        scope_seen: list | None = None) -> tuple[int, dict, bytes]:
    """One request through the guarded app; ``scope_seen`` gets the scope afterwards (what a server logs)."""
    sent: list[dict] = []
    calls = []

    async def receive() -> dict:
        calls.append(1)
        if len(calls) > 1:  # then the client stays connected (a response that listens for a disconnect waits)
            await asyncio.Event().wait()
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message: dict) -> None:
        sent.append(message)

    scope = {"type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1", "method": "GET", "scheme": "http",
             "path": path.decode("latin-1"), "raw_path": path, "query_string": query, "root_path": "", "headers": headers,
             "client": ("127.0.0.1", 1), "server": ("127.0.0.1", TEST_PORT)}
    asyncio.run(guard.wrap(app)(scope, receive, send))
    if scope_seen is not None:
        scope_seen.append(scope)
    start = next(m for m in sent if m["type"] == "http.response.start")
    return start["status"], {k.decode(): v.decode() for k, v in start["headers"]}, b"".join(m.get("body", b"") for m in sent[1:])


@pytest.mark.parametrize("path,location", [
    (b"//evil.example/x", "/evil.example/x"),  # not a protocol-relative address: no open redirect
    (b"/\\evil.example/x", "/%5Cevil.example/x"),  # a browser reads "/\" as "//"
    (b"/a b\r\nSet-Cookie: x=1", "/a%20b%0D%0ASet-Cookie:%20x=1"),  # no header injection
    (b"/api/results/clip", "/api/results/clip"),
])
def test_the_redirect_stays_on_this_page(notes, path, location):
    guard = PageGuard.for_server("127.0.0.1", TEST_PORT)
    status, headers, _ = raw(guard, notes_app(notes), path, f"token={guard.token}".encode(),
                             [(b"host", f"127.0.0.1:{TEST_PORT}".encode())])
    assert status == 303 and headers["location"] == location


def test_a_request_without_or_with_two_host_headers(notes):
    guard = PageGuard.for_server("127.0.0.1", TEST_PORT)
    cookie = (b"cookie", f"{guard.cookie_name}={guard.cookie_value}".encode())
    host = (b"host", f"127.0.0.1:{TEST_PORT}".encode())
    assert raw(guard, notes_app(notes), b"/notes", b"", [host, cookie])[0] == 200
    status, _, body = raw(guard, notes_app(notes), b"/notes", b"", [cookie])
    assert status == 403 and json.loads(body)["error"] == "no Host header"
    status, _, body = raw(guard, notes_app(notes), b"/notes", b"", [host, (b"host", b"evil.example.com"), cookie])
    assert status == 403 and json.loads(body)["error"] == "more than one host header"


# ------------------------------------------------------------------ the view page behind the guard
def test_the_view_page_refuses_foreign_hosts_and_strangers(tree):
    c = guarded_client(create_app(results=tree.root))
    frame = c.get("/api/results/clip/frame/0")
    assert frame.status_code == 200 and frame.headers["content-type"] == "image/jpeg"
    assert_headers(frame)
    for path in ("/api/results", "/api/results/clip/frame/0", "/api/results/clip/mask/0", "/", "/static/app.js"):
        r = c.get(path, headers={"host": "evil.example.com"})
        assert_refused(r, "not one this page answers to")
        assert frame.content not in r.content
        assert_refused(TestClient(c.app, base_url=TEST_ORIGIN).get(path), "no token")


# ------------------------------------------------------------------ the guard's options
def test_allowed_hosts():
    assert allowed_hosts("127.0.0.1", 8000) == {"127.0.0.1:8000", "localhost:8000", "[::1]:8000"}
    assert allowed_hosts("0.0.0.0", 8000, ["MyHost", "box.lan:9000", "fd00::1", "[fd00::2]:9001", "10.0.0.5"]) == {
        "127.0.0.1:8000", "localhost:8000", "[::1]:8000", "0.0.0.0:8000", "myhost:8000", "box.lan:9000",
        "[fd00::1]:8000", "[fd00::2]:9001", "10.0.0.5:8000"}
    assert allowed_hosts("::", 80) == {"127.0.0.1:80", "localhost:80", "[::1]:80", "[::]:80",
                                       "127.0.0.1", "localhost", "[::1]", "[::]"}  # a browser leaves out :80
    assert host_entry("::1", 5) == "[::1]:5" and host_entry("[::1]", 5) == "[::1]:5" and host_entry("Box", 5) == "box:5"
    for bad in ("http://x", "x/y", "user@x", "x:0", "x:65536", "a..b", "-x", "[nothex]:1", ""):
        with pytest.raises(ConfigError, match="--allow-host expects"):
            PageGuard.for_server("127.0.0.1", 8000, allow_hosts=[bad])


def test_tokens():
    a, b = new_token(), new_token()
    assert a != b and len(a) == 43 and check_token(a) == a
    assert check_token("a" * 16) == "a" * 16
    with pytest.raises(ConfigError, match="at least 16 characters long, got 15"):
        check_token("a" * 15)
    for bad in ("a" * 20 + "&x=1", "a" * 20 + " ", "a" * 20 + "#", ""):
        with pytest.raises(ConfigError, match="--token may use only"):
            check_token(bad)
    with pytest.raises(ConfigError, match="--no-token is only allowed on a loopback --host"):
        PageGuard.for_server("192.168.1.5", 8000, no_token=True)
    with pytest.raises(ConfigError, match="exclude each other"):
        PageGuard.for_server("127.0.0.1", 8000, no_token=True, token=a)
    for host in ("127.0.0.1", "localhost", "::1", "127.0.0.2"):
        assert PageGuard.for_server(host, 8000, no_token=True).token is None
    g = PageGuard.for_server("0.0.0.0", 8000)  # not loopback: a token, always
    assert g.token and g.open_url("http://127.0.0.1:8000/") == f"http://127.0.0.1:8000/?token={g.token}"
    assert g.token not in repr(g) and g.cookie_value not in repr(g)
    assert PageGuard.for_server("127.0.0.1", 8000, token=a).token == a
    # two pages on two ports of one host: two cookies (a browser sends both to either port), two secrets
    g2 = PageGuard.for_server("127.0.0.1", 8001)
    assert (g.cookie_name, g2.cookie_name) == ("vidprop-8000", "vidprop-8001") and g.cookie_value != g2.cookie_value


def test_the_view_page_only_reads(tree):
    """No state change on GET, and the view page has nothing else: every route is GET (HEAD) only."""
    app = create_app(results=tree.root)
    methods = set().union(*(getattr(r, "methods", None) or set() for r in app.routes))
    assert methods == {"GET", "HEAD"}


@pytest.mark.parametrize("host,status", [(f"127.0.0.1:{TEST_PORT}", 303), ("evil.example.com", 403), (None, 403)])
def test_the_token_leaves_the_query_string_whatever_the_answer(notes, host, status):
    """uvicorn's access log writes the scope's query string after the answer: it must have lost the token."""
    guard = PageGuard.for_server("127.0.0.1", TEST_PORT)
    seen: list = []
    headers = [(b"host", host.encode())] if host else []
    for query in (f"a=1&token={guard.token}", f"token={guard.token}x&b=2"):
        got, _, _ = raw(guard, notes_app(notes), b"/notes", query.encode(), headers, seen)
        assert got == (status if "x&" not in query else 403)
        assert seen[-1]["query_string"] in (b"a=1", b"b=2") and guard.token.encode() not in seen[-1]["query_string"]
