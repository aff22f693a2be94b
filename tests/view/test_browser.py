"""End to end in a real headless Chromium (Debian's, driven by Playwright): the pages as a user works them,
each opened through the URL with the token that the command prints (tests/view/chromium.py).

Screenshots of every view are written to a folder under pytest's temporary
directory and, when the environment variable VIDPROP_SCREENSHOTS names a
folder, there too.  Skipped (with the reason) when no Chromium is installed.
"""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

from tests.view.chromium import Page, browser, canvas, needs_chromium, screenshot, shots  # noqa: F401 (fixtures)
from tests.view.conftest import T, same_feature
from vidprop.io.masks import davis_palette
from vidprop.tasks.match import semantic_argmax
from vidprop.view.app import create_app
from vidprop.view.clicks import MatchSession

pytestmark = needs_chromium


@pytest.fixture()
def results_page(browser, tree):
    p = Page(browser, create_app(results=tree.root))
    yield p
    p.close()


def interior(mask: np.ndarray) -> np.ndarray:
    """Pixels whose 3x3 neighbourhood is all the same id (not a drawn border)."""
    k = np.ones((3, 3), np.uint8)
    same = (cv2.erode(mask, k, borderType=cv2.BORDER_REPLICATE) == mask) & (cv2.dilate(mask, k, borderType=cv2.BORDER_REPLICATE) == mask)
    return same


def test_segment_view(results_page, tree, shots):
    page, url = results_page.page, results_page.url
    pal = davis_palette().astype(int)
    page.goto(url + "#/v/clip")
    page.wait_for_selector("#over[data-frame='0']")
    first = canvas(page, "#over")

    # the slider moves to frame 5: new frame, new masks
    page.locator("#slider").fill("5")
    page.wait_for_selector("#over[data-frame='5']")
    assert page.inner_text("#framelabel") == f"6 / {T} · 00005"
    orig, over = canvas(page, "#orig").astype(int), canvas(page, "#over").astype(int)
    assert np.abs(over - first).mean() > 5
    served = cv2.imdecode(np.frombuffer(page.request.get(url + "api/results/clip/frame/5").body(), np.uint8), cv2.IMREAD_COLOR)
    assert np.abs(orig - served[..., ::-1].astype(int)).mean() < 1.5  # the original is frame 5 of the video
    mask = tree.scene.frame(5)[1]
    inner = interior(mask)
    for oid in (1, 3):  # objects blended at opacity 0.5 (rounded half to even), background untouched
        sel = inner & (mask == oid)
        assert sel.sum() > 50
        assert np.array_equal(over[sel], np.rint(0.5 * orig[sel] + 0.5 * pal[oid]))
    assert np.array_equal(over[inner & (mask == 0)], orig[inner & (mask == 0)])
    edge = (mask == 1) & ~inner
    assert np.array_equal(over[edge], np.broadcast_to(pal[1], over[edge].shape))  # object borders drawn solid

    # object 3 toggled off: its pixels show the frame, object 1 stays
    page.click("#objects input[data-id='3']")
    page.wait_for_selector("#over[data-hidden='3']")
    over_off = canvas(page, "#over").astype(int)
    assert np.array_equal(over_off[mask == 3], orig[mask == 3])
    assert np.array_equal(over_off[mask == 1], over[mask == 1])
    assert np.abs(over_off - over).sum() > 0

    # opacity 100%: object 1 is its colour
    page.locator("#opacity").fill("100")
    page.wait_for_selector("#over[data-alpha='1']")
    full = canvas(page, "#over").astype(int)
    assert np.array_equal(full[mask == 1], np.broadcast_to(pal[1], full[mask == 1].shape))
    page.locator("#opacity").fill("50")
    page.wait_for_selector("#over[data-alpha='0.5']")

    # keys: arrows step, space plays to the end
    page.evaluate("document.activeElement.blur()")  # keys go to the page, not to a slider
    page.keyboard.press("ArrowRight")
    page.wait_for_selector("#over[data-frame='6']")
    page.keyboard.press("ArrowLeft")
    page.keyboard.press("ArrowLeft")
    page.wait_for_selector("#over[data-frame='4']")
    assert page.get_attribute("#download", "download") == "00004.png"
    with page.expect_download() as dl:
        page.click("#download")
    assert Path(dl.value.path()).read_bytes() == (tree.root / "clip" / "00004.png").read_bytes()
    screenshot(page, shots, "segment.png")
    page.keyboard.press(" ")
    page.wait_for_selector(f"#over[data-frame='{T - 1}']", timeout=20000)
    page.wait_for_selector("#play:has-text('play')")
    assert page.url.endswith(f"#/v/clip?f={T - 1}")  # the address follows the frame


def test_track_view(results_page, tree, shots):
    page, url = results_page.page, results_page.url
    page.goto(url + "#/v/dance?f=2")
    page.wait_for_selector("#over[data-frame='2'][data-visible='3']")
    orig, over = canvas(page, "#orig").astype(int), canvas(page, "#over").astype(int)
    for j, colour in [(0, (255, 0, 0)), (1, (0, 255, 0)), (2, (0, 0, 255))]:  # the HSV wheel of joint_colours
        x, y = (int(round(v)) for v in tree.joints[2, j])
        assert np.abs(over[y, x] - colour).max() <= 2, (j, over[y, x])
        assert np.abs(orig[y, x] - colour).max() > 30
    # a limb a-b is drawn in white halfway between them
    mid = ((tree.joints[2, 0] + tree.joints[2, 1]) / 2).round().astype(int)
    assert over[mid[1], mid[0]].min() > 200
    page.click("#objects input[data-joint='0']")
    page.wait_for_selector("#over[data-visible='2']")
    page.click("#objects input[data-joint='0']")
    page.check("#labels")
    page.wait_for_selector("#over[data-visible='3']")
    screenshot(page, shots, "track.png")


def test_results_list(results_page, shots):
    page, url = results_page.page, results_page.url
    page.goto(url)
    page.wait_for_selector("#results tbody tr")
    rows = page.locator("#results tbody tr")
    assert rows.count() == 6
    assert "0.750" in page.inner_text("#results tbody tr[data-name='clip']")
    assert "0.625" in page.inner_text(".summary")  # the global J&F
    screenshot(page, shots, "list.png")
    page.click("#results th[data-key='jf']")  # sort by J&F, best first
    assert page.locator("#results tbody tr").first.get_attribute("data-name") == "clip"
    page.click("#results tbody tr[data-name='walk'] a")
    page.wait_for_selector("#over[data-frame='0']")
    assert "J&F 0.375" in page.inner_text(".toolbar")
    page.go_back()
    page.wait_for_selector("#results tbody tr")


def test_match_view(browser, tree, shots):
    src, _ = tree.scene.frame(0)
    tgt, _ = tree.scene.frame(6)
    g = torch.Generator().manual_seed(0)
    fs, ft = torch.randn(32, 6, 10, generator=g), torch.randn(32, 6, 10, generator=g)  # stride 16 on 160x96
    session = MatchSession(src, tgt, fs, ft, {"source": "frame0.png", "target": "frame6.png", "prompt": "",
                                              "model": "random features"})
    p = Page(browser, create_app(match=session))
    try:
        page = p.page
        page.goto(p.url)
        page.wait_for_selector("#src")
        plain = canvas(page, "#tgt").astype(int)
        box = page.locator("#src").bounding_box()
        page.mouse.click(box["x"] + box["width"] * 0.33, box["y"] + box["height"] * 0.45)
        page.wait_for_selector("#match-result[data-target]")
        sx, sy = (int(v) for v in page.get_attribute("#match-result", "data-source").split(","))
        tx, ty = (int(v) for v in page.get_attribute("#match-result", "data-target").split(","))
        assert abs(sx - 0.33 * 160) <= 1 and abs(sy - 0.45 * 96) <= 1  # the clicked pixel
        ref_pt, ref_score, _ = semantic_argmax(fs, ft, (96, 160), (96, 160), [[sx, sy]])
        assert (tx, ty) == tuple(int(v) for v in ref_pt[0]) or same_feature((tx, ty), tuple(ref_pt[0]), (6, 10), (96, 160))
        assert float(page.get_attribute("#match-result", "data-score")) == pytest.approx(ref_score[0], abs=1e-5)
        assert f"→ ({tx}, {ty})" in page.inner_text("#match-result")
        assert np.abs(canvas(page, "#tgt").astype(int) - plain).mean() > 10  # the heatmap is drawn
        screenshot(page, shots, "match.png")
    finally:
        p.close()
