"""Headless Chromium (Debian's, driven by Playwright) for the page tests: the browser, a served page, pixels.

:class:`Page` serves an app the way ``vidprop view`` does (a PageServer: the
guard, a token), opens the URL the command prints, as its user would, and on
close checks that the page logged no error, requested nothing outside the
local server, and that the token appears in no later request, address or
page content.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import numpy as np
import pytest

from vidprop.view.server import BackgroundServer

sync_api = pytest.importorskip("playwright.sync_api", reason="Playwright is not installed (pip install -e '.[test]')")

CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--no-first-run"]


def find_chromium() -> str | None:
    for c in (os.environ.get("VIDPROP_CHROMIUM"), "/usr/bin/chromium", shutil.which("chromium"),
              shutil.which("chromium-browser"), shutil.which("google-chrome")):
        if c and os.path.isfile(c) and os.access(c, os.X_OK):
            return c
    return None


CHROMIUM = find_chromium()
needs_chromium = pytest.mark.skipif(CHROMIUM is None, reason="no Chromium found: install Debian's chromium package "
                                    "(apt-get install chromium) or set VIDPROP_CHROMIUM to a Chromium binary")


def launch(playwright, *extra_args: str):
    return playwright.chromium.launch(executable_path=CHROMIUM, args=[*CHROMIUM_ARGS, *extra_args])


@pytest.fixture(scope="module")
def browser():
    with sync_api.sync_playwright() as p:
        b = launch(p)
        yield b
        b.close()


@pytest.fixture(scope="module")
def shots(tmp_path_factory) -> list[Path]:
    folders = [tmp_path_factory.mktemp("screenshots")]
    if os.environ.get("VIDPROP_SCREENSHOTS"):
        folders.append(Path(os.environ["VIDPROP_SCREENSHOTS"]))
        folders[-1].mkdir(parents=True, exist_ok=True)
    return folders


def screenshot(page, shots: list[Path], name: str) -> None:
    png = page.screenshot(full_page=True)
    for folder in shots:
        (folder / name).write_bytes(png)


class Page:
    """A served app opened through its printed URL (``?token=``) in a fresh browser context.

    Records console errors and every request; ``url`` is the clean address (no token).
    """

    def __init__(self, browser, app, **server_options):
        self.background = BackgroundServer(app, **server_options)
        self.server = self.background.__enter__()
        self.url, self.token = self.server.url, self.server.guard.token
        self.context = browser.new_context(viewport={"width": 1280, "height": 760}, accept_downloads=True)
        self.page = self.context.new_page()
        self.errors: list[str] = []
        self.requests: list[str] = []
        self.page.on("console", lambda m: self.errors.append(m.text) if m.type == "error" else None)
        self.page.on("pageerror", lambda e: self.errors.append(str(e)))
        self.page.on("request", lambda r: self.requests.append(r.url))
        # the user opens the printed URL: the token sets a cookie and the address loses the token
        self.page.goto(self.server.open_url)
        assert self.page.url == self.url, self.page.url
        # (selectors, not wait_for_function: that evaluates a string, which the page's CSP rightly refuses)
        self.page.wait_for_selector("#main p.muted:has-text('loading')", state="detached")

    def close(self) -> None:
        try:
            if self.token:
                assert self.token not in self.page.url and self.token not in self.page.content()
                later = [u for u in self.requests[1:] if self.token in u]
                assert not later, f"the token was sent again: {later}"
            assert not self.errors, self.errors
            outside = [u for u in self.requests if not (u.startswith(self.url) or u.startswith("data:"))]
            assert not outside, f"requests outside the local server: {outside}"
        finally:
            self.context.close()
            self.background.__exit__(None, None, None)


def canvas(page, selector: str) -> np.ndarray:
    """(H, W, 3) uint8 pixels of a canvas."""
    data = page.evaluate("""sel => { const c = document.querySelector(sel);
        return [c.width, c.height, Array.from(c.getContext('2d').getImageData(0, 0, c.width, c.height).data)]; }""", selector)
    w, h, px = data
    return np.asarray(px, np.uint8).reshape(h, w, 4)[..., :3]
