"""`vidprop annotate`'s page in a real headless Chromium (Debian's, driven by Playwright), as a user works it:
add an object by clicks, propagate, correct a frame with the brush, propagate again, export; the files on disk.

The page's screenshot goes to pytest's temporary folder and, when VIDPROP_SCREENSHOTS names a folder, there
too (the README's docs/annotate.png is taken this way).
"""

from __future__ import annotations

import json

import numpy as np
import pytest
from PIL import Image

from tests.view.chromium import Page, browser, needs_chromium, screenshot, shots  # noqa: F401 - fixtures
from vidprop.annotate import Annotator
from vidprop.annotate.app import create_annotate_app
from vidprop.annotate.session import AnnotateSession
from vidprop.io.images import read_image
from vidprop.io.synthetic import SyntheticScene, write_frame_folder
from vidprop.io.video import list_frames

pytestmark = needs_chromium

N = 8


@pytest.fixture(scope="module")
def clip(tmp_path_factory):
    d = tmp_path_factory.mktemp("browserclip")
    scene = SyntheticScene(width=320, height=192, num_frames=N, num_objects=2, seed=11, object_ids=(1, 2))
    write_frame_folder(scene, d / "clip")
    return d / "clip", scene


def _centre(mask: np.ndarray) -> tuple[float, float]:
    ys, xs = np.nonzero(mask)
    i = np.argmin((xs - xs.mean()) ** 2 + (ys - ys.mean()) ** 2)  # a pixel of the object near its centre
    return float(xs[i]), float(ys[i])


def test_click_propagate_correct_export(browser, clip, colour_segmenter, sam, tmp_path, shots):  # noqa: F811
    """Served as `vidprop annotate` serves it (the guard, a token; the page opened through the printed URL)."""
    folder, scene = clip
    ann = Annotator(folder, colour_segmenter, cache=tmp_path / "cache", prompter=sam)
    session = AnnotateSession(ann, tmp_path / "out")
    p = Page(browser, create_annotate_app(session))
    page = p.page
    try:
        # (selectors, not wait_for_function: that evaluates a string, which the page's CSP refuses)
        page.wait_for_selector("#message:has-text('click on an object')")
        box = page.locator("#view").bounding_box()
        sx, sy = box["width"] / 320, box["height"] / 192

        def click(x, y, **kw):
            page.mouse.click(box["x"] + x * sx, box["y"] + y * sy, **kw)

        # 1. object 1 by a click (SAM 2 makes its mask)
        x, y = _centre(scene.frame(0)[1] == 1)
        click(x, y)
        page.wait_for_selector(".objchip[data-id='1']")
        assert 0 in ann.annotations and (ann.annotations[0] == 1).any()
        clicked = ann.annotations[0].copy()
        # 2. propagate forward: frames stream in, the progress bar fills
        page.click("#fwd")
        page.wait_for_selector("#message:has-text('propagated')", timeout=120_000)
        assert page.eval_on_selector("#progress", "e => e.style.width") == "100%"
        out = tmp_path / "out" / "clip"
        assert sorted(q.name for q in out.glob("*.png")) == [f"{i:05d}.png" for i in range(N)]
        # 3. frame 3: paint object 2 with the brush (a correction / a new object)
        for _ in range(3):
            page.keyboard.press("ArrowRight")
        page.wait_for_selector("#label:has-text('frame 3 (')")
        page.fill("#obj", "2")
        page.dispatch_event("#obj", "change")
        page.check("input[value=brush]")
        page.fill("#brush-size", "10")
        x2, y2 = _centre(scene.frame(3)[1] == 2)
        page.mouse.move(box["x"] + (x2 - 12) * sx, box["y"] + y2 * sy)
        page.mouse.down()
        page.mouse.move(box["x"] + (x2 + 12) * sx, box["y"] + y2 * sy, steps=6)
        page.mouse.up()
        page.wait_for_selector(".objchip[data-id='2']")
        painted = ann.annotations[3] == 2
        assert 400 < painted.sum() < 3000 and painted[int(y2), int(x2)]
        # 4. propagate again from frame 3 (features from the cache)
        page.click("#fwd")
        page.wait_for_selector("#message:has-text('propagated')", timeout=120_000)
        # 5. export COCO too
        page.check(".fmt[value=coco]")
        page.click("#export")
        page.wait_for_selector("#message:has-text('exported')")
        screenshot(page, shots, "annotate.png")
    finally:
        p.close()  # also asserts: no console errors, no request outside the local server
    # the files on disk: segment's layout, the masks of a fresh run with the same annotations
    rec = json.loads((out / "annotations.json").read_text())
    assert [(a["frame"], a["ids"]) for a in rec["annotations"]] == [(0, [1]), (3, [2])]
    np.testing.assert_array_equal(ann.annotations[0], clicked)
    frames = [read_image(q, exif_transpose=False) for q in list_frames(folder)]
    want = list(colour_segmenter.run(frames, annotations=dict(ann.annotations)))
    for t in range(N):
        np.testing.assert_array_equal(np.asarray(Image.open(out / f"{t:05d}.png")), want[t])
    coco = json.loads((out / "coco.json").read_text())
    assert {a["category_id"] for a in coco["annotations"]} == {1, 2}
    assert (out / ".annotate" / "session.json").is_file()
