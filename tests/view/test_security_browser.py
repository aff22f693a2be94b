"""The guard in a real headless Chromium: what other sites can and cannot do to a local page.

* DNS rebinding: Chromium resolves ``rebind.example`` to 127.0.0.1 (as the
  attacker's DNS would), so a page of that name is "same-origin" with the
  local port: the Host check refuses it.
* A page on another port of 127.0.0.1 is same-site, so the browser sends the
  SameSite=Strict cookie along: only the Origin check stops its writes, and
  Cross-Origin-Resource-Policy keeps it from embedding the frames.
* The printed URL followed from another site's link still opens the page.
"""

from __future__ import annotations

import threading

import pytest
from starlette.applications import Starlette
from starlette.responses import HTMLResponse
from starlette.routing import Route

from tests.view.chromium import browser, launch, needs_chromium, sync_api  # noqa: F401 (fixtures)
from tests.view.conftest import notes_app
from vidprop.view.app import create_app
from vidprop.view.server import BackgroundServer, bind

pytestmark = needs_chromium


class PlainServer:
    """An unguarded app on 127.0.0.1 (another site's page) on a thread."""

    def __init__(self, app):
        import uvicorn

        self.sock = bind("127.0.0.1", 0)
        self.port = self.sock.getsockname()[1]
        self.server = uvicorn.Server(uvicorn.Config(app, log_level="warning", lifespan="off"))
        self.thread = threading.Thread(target=self.server.run, kwargs={"sockets": [self.sock]}, daemon=True)

    def __enter__(self):
        self.thread.start()
        while not self.server.started:
            self.thread.join(0.01)
        return self

    def __exit__(self, *exc):
        self.server.should_exit = True
        self.thread.join(10)
        self.sock.close()


def other_site(html: str) -> Starlette:
    async def page(request):
        return HTMLResponse(f"<!doctype html><title>elsewhere</title>{html}")

    return Starlette(routes=[Route("/", page)])


def test_dns_rebinding_gets_nothing(tree):
    app = create_app(results=tree.root)
    with BackgroundServer(app) as server, sync_api.sync_playwright() as p:
        b = launch(p, "--host-resolver-rules=MAP rebind.example 127.0.0.1")
        try:
            page = b.new_page()
            page.goto(server.open_url)  # the user has the page open: a cookie for 127.0.0.1
            page.wait_for_selector("#results tbody tr")
            evil = f"http://rebind.example:{server.port}/"
            r = page.goto(evil + "api/results")
            assert r.status == 403 and "not one this page answers to" in r.json()["error"]
            r = page.goto(evil + f"?token={server.guard.token}")  # even a stolen token does not help this name
            assert r.status == 403
            assert page.evaluate("fetch('/api/results/clip/frame/0').then(r => r.status)") == 403
        finally:
            b.close()


def test_writes_only_from_the_page_itself(browser, tmp_path):
    notes = tmp_path / "notes.txt"
    with BackgroundServer(notes_app(notes)) as server:
        ctx = browser.new_context()
        try:
            page = ctx.new_page()
            page.goto(server.open_url)
            assert page.url == server.url and page.inner_text("p") == "notes"
            # fetch from the page: the browser sends its Origin, the write is done
            status = page.evaluate("fetch('/notes', {method: 'POST', body: 'from the page'}).then(r => r.status)")
            assert status == 200 and notes.read_text() == "from the page"
            # an HTML form post under Referrer-Policy: no-referrer carries "Origin: null": refused (pages use fetch)
            with page.expect_navigation():
                page.evaluate("""() => { const f = document.createElement('form'); f.method = 'post';
                    f.action = '/notes'; document.body.append(f); f.submit(); }""")
            assert "must come from the page itself" in page.inner_text("body") and notes.read_text() == "from the page"

            page2 = ctx.new_page()  # another port of 127.0.0.1: same site, so the cookie goes along
            with PlainServer(other_site("<p>hello</p>")) as other:
                page2.goto(f"http://127.0.0.1:{other.port}/")
                target = f"{server.url}notes"
                js = """async (u) => {
                    const out = {};
                    // sent, with the cookie; the answer is refused to this page either way (CORP)
                    await fetch(u, {method: 'POST', mode: 'no-cors', body: 'evil', credentials: 'include'}).catch(() => 0);
                    await fetch(u, {method: 'DELETE', mode: 'no-cors', credentials: 'include'}).catch(() => 0);
                    try { await (await fetch(u, {credentials: 'include'})).text(); out.read = 'read' }
                    catch (e) { out.read = 'blocked' }
                    out.img = await new Promise(res => { const i = new Image(); i.onload = () => res('loaded');
                        i.onerror = () => res('blocked'); i.src = u; });
                    return out; }"""
                assert page2.evaluate(js, target) == {"read": "blocked", "img": "blocked"}
                with page2.expect_navigation():
                    page2.evaluate("""u => { const f = document.createElement('form'); f.method = 'post';
                        f.action = u; document.body.append(f); f.submit(); }""", target)
                assert "must come from the page itself" in page2.inner_text("body")
            assert notes.read_text() == "from the page"  # nothing another page sent changed it
        finally:
            ctx.close()


def test_the_printed_url_followed_from_another_site(browser, tree):
    """A SameSite=Strict cookie is not sent along a redirect that a cross-site click started: the guard answers
    such a click with a page that moves on by itself, and the page opens."""
    app = create_app(results=tree.root)
    with BackgroundServer(app) as server:
        for host in ("localhost", "127.0.0.1"):  # another site; the same site on another port
            with PlainServer(other_site(f'<a id="go" href="{server.open_url}">the page</a>')) as other:
                ctx = browser.new_context()
                try:
                    page = ctx.new_page()
                    requests = []
                    page.on("request", lambda r: requests.append(r.url))
                    page.goto(f"http://{host}:{other.port}/")
                    page.click("#go")
                    page.wait_for_selector("#results tbody tr")
                    assert page.url == server.url and server.guard.token not in page.content()
                    later = requests[requests.index(server.open_url) + 1:]
                    assert later and not [u for u in later if server.guard.token in u]
                finally:
                    ctx.close()


@pytest.mark.parametrize("path", ["api/results", "static/app.js", ""])
def test_without_the_token_a_browser_gets_403(browser, tree, path):
    with BackgroundServer(create_app(results=tree.root)) as server:
        ctx = browser.new_context()
        try:
            r = ctx.new_page().goto(server.url + path)
            assert r.status == 403 and "no token" in r.json()["error"]
            assert r.headers["x-content-type-options"] == "nosniff" and r.headers["referrer-policy"] == "no-referrer"
        finally:
            ctx.close()
