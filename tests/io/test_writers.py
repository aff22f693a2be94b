"""Writers: the background job thread, the H.264 overlay writer, the mask overlay."""

from __future__ import annotations

import threading
import time

import numpy as np
import pytest

from vidprop.io.masks import davis_palette
from vidprop.io.writers import BackgroundWriter, VideoWriter, overlay_mask


def test_background_writer_runs_jobs_in_order_off_the_calling_thread():
    done, threads = [], set()

    def job(i):
        threads.add(threading.current_thread().name)
        time.sleep(0.01)
        done.append(i)

    w = BackgroundWriter(max_pending=2)
    for i in range(6):
        w.submit(job, i)
    w.close()
    assert done == list(range(6))
    assert threads == {"vidprop-writer"}
    # busy time covers the six sleeps; with a queue of 2 the caller had to wait for some of them
    assert w.busy_seconds >= 0.06
    assert 0 < w.wait_seconds <= w.busy_seconds + 0.05


def test_background_writer_reraises_the_first_error_and_drains():
    ran = []

    def bad():
        raise OSError("disk full")

    w = BackgroundWriter()
    w.submit(bad)
    w.submit(ran.append, 1)  # skipped: a job failed before it
    with pytest.raises(OSError, match="disk full"):
        w.close()
    assert ran == []


def _reference_overlay(frame, mask, alpha):
    """Plain per-pixel loops: blend object pixels; those with a different id in their 3x3 neighbourhood (the
    contour) white on a dark frame pixel (grey 0.299 R + 0.587 G + 0.114 B, rounded, <= 127), black on a bright one."""
    pal = davis_palette().astype(np.float64)
    out = frame.copy()
    H, W = mask.shape
    for y in range(H):
        for x in range(W):
            k = mask[y, x]
            if k == 0:
                continue
            nb = mask[max(0, y - 1) : y + 2, max(0, x - 1) : x + 2]
            if (nb != k).any():
                r, g, b = frame[y, x].astype(np.float64)
                out[y, x] = 255 if round(0.299 * r + 0.587 * g + 0.114 * b) <= 127 else 0
            else:
                out[y, x] = np.rint((1 - alpha) * frame[y, x] + alpha * pal[k])
    return out


def test_overlay_contour_stays_visible_on_an_object_of_the_masks_colour():
    """An id-1 (red) mask on a red object: the contour is white on the dark red, black on a bright frame."""
    red_frame = np.zeros((9, 9, 3), np.uint8)
    red_frame[..., 0] = 128  # the object is the palette's own id-1 red
    mask = np.zeros((9, 9), np.uint8)
    mask[2:7, 2:7] = 1
    out = overlay_mask(red_frame, mask)
    np.testing.assert_array_equal(out[2, 4], [255, 255, 255])  # contour: white on a dark frame pixel
    np.testing.assert_array_equal(out[4, 4], [128, 0, 0])  # interior: red on red, as blended
    bright = np.full((9, 9, 3), 230, np.uint8)
    np.testing.assert_array_equal(overlay_mask(bright, mask)[6, 2], [0, 0, 0])  # black on a bright one


def test_overlay_blends_objects_and_draws_contrasting_contours():
    frame = np.full((9, 9, 3), 100, np.uint8)
    mask = np.zeros((9, 9), np.uint8)
    mask[2:7, 2:7] = 1
    out = overlay_mask(frame, mask, alpha=0.5)
    red = davis_palette()[1]  # (128, 0, 0)
    assert (out[0, 0] == 100).all()  # background untouched
    np.testing.assert_array_equal(out[4, 4], [114, 50, 50])  # interior: (100 + colour) / 2
    np.testing.assert_array_equal(out[2, 4], [255, 255, 255])  # contour on a dark (100) frame: white
    assert (out[4, 4] != red).any()
    np.testing.assert_array_equal(out[1, 4], [100, 100, 100])  # just outside: untouched
    np.testing.assert_array_equal(overlay_mask(frame, np.zeros_like(mask)), frame)
    with pytest.raises(ValueError, match="differ in size"):
        overlay_mask(frame, mask[:8])


@pytest.mark.parametrize("alpha", [0.5, 0.3])
def test_overlay_equals_plain_reference_on_random_masks(alpha):
    rng = np.random.default_rng(3)
    frame = rng.integers(0, 256, (24, 31, 3), dtype=np.uint8)
    mask = np.zeros((24, 31), np.uint8)
    mask[3:15, 4:20] = 2
    mask[10:22, 12:29] = 7
    mask[rng.random(mask.shape) < 0.05] = 1  # speckle: many borders
    out = overlay_mask(frame, mask, alpha=alpha)
    ref = _reference_overlay(frame, mask, alpha)
    assert np.abs(out.astype(int) - ref.astype(int)).max() <= (0 if alpha == 0.5 else 1)  # float32 rounding at .5


def test_video_writer_pads_odd_sizes_for_yuv420p(tmp_path):
    import av

    rng = np.random.default_rng(0)
    frames = [rng.integers(0, 255, (33, 47, 3), dtype=np.uint8) for _ in range(3)]
    vw = VideoWriter(tmp_path / "o.mp4", 30000 / 1001, 47, 33)
    for f in frames:
        vw.write(f)
    vw.close()
    with av.open(str(tmp_path / "o.mp4")) as c:
        s = c.streams.video[0]
        assert (s.codec_context.name, s.codec_context.pix_fmt) == ("h264", "yuv420p")
        assert (s.width, s.height) == (48, 34)
        assert abs(float(s.average_rate) - 30000 / 1001) < 1e-3
        assert len(list(c.decode(s))) == 3
    with pytest.raises(ValueError, match="frame must be"):
        VideoWriter(tmp_path / "p.mp4", 10, 47, 33).write(frames[0][:32])
