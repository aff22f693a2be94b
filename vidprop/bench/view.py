"""Benchmark: one click of ``vidprop view --match``, answered from cached features.

    vidprop bench view                          # 768x768 images, 1280 channels at stride 16 (SD 2.1, up_ft_index 1)
    vidprop bench view --size 512 --clicks 100 --reference 0

Random features of the real shape stand in for DIFT's (the time of a click
does not depend on the values).  Printed: the one-off set-up (the target's
per-pixel feature norm map, both ways), then per click the answer alone (the
source feature, a dot product at feature resolution, one upsampled scalar
map, the argmax), the answer plus the heatmap JPEG, and the whole HTTP
request through the app behind its guard, as served (Starlette's in-process
test client, the cookie of the printed URL), as median /
90th percentile / max; and, for ``--reference`` clicks, the time of
:func:`vidprop.tasks.match.semantic_argmax` (the full-resolution computation
``vidprop match`` does) and whether both pick the same pixel.
"""

from __future__ import annotations

import argparse
import statistics
import time

import numpy as np

__all__ = ["main"]


def _stats(seconds: list[float]) -> str:
    ms = sorted(1000 * s for s in seconds)
    p90 = ms[min(len(ms) - 1, int(round(0.9 * (len(ms) - 1))))]
    return f"median {statistics.median(ms):7.2f} ms   p90 {p90:7.2f} ms   max {ms[-1]:7.2f} ms"


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="vidprop bench view", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--size", type=int, default=768, help="source and target side in pixels (default 768)")
    p.add_argument("--channels", type=int, default=1280, help="feature channels (default 1280)")
    p.add_argument("--stride", type=int, default=16, help="feature stride (default 16)")
    p.add_argument("--clicks", type=int, default=50, help="timed clicks (default 50)")
    p.add_argument("--reference", type=int, default=1, help="clicks also timed with semantic_argmax (default 1; slow)")
    p.add_argument("--bands", action="store_true", help="also time the band-by-band norm map (as semantic_argmax)")
    p.add_argument("--threads", type=int, help="torch CPU threads (default: torch's)")
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args(argv)

    import torch
    from starlette.testclient import TestClient

    from vidprop.tasks.match import semantic_argmax
    from vidprop.view.app import create_app
    from vidprop.view.clicks import ClickMatcher, MatchSession, heatmap_jpeg, target_norm_map
    from vidprop.view.security import PageGuard

    if args.threads:
        torch.set_num_threads(args.threads)
    s, c, g = args.size, args.channels, args.size // args.stride
    gen = torch.Generator().manual_seed(args.seed)
    fs, ft = torch.randn(c, g, g, generator=gen), torch.randn(c, g, g, generator=gen)
    rng = np.random.default_rng(args.seed)
    src = rng.integers(0, 256, (s, s, 3), dtype=np.uint8)
    tgt = rng.integers(0, 256, (s, s, 3), dtype=np.uint8)
    pts = np.stack([rng.integers(0, s, args.clicks), rng.integers(0, s, args.clicks)], axis=1)
    print(f"vidprop bench view: {s}x{s} source and target, features {c}x{g}x{g} (stride {args.stride}), "
          f"{torch.get_num_threads()} torch threads; {args.clicks} clicks")

    t0 = time.perf_counter()
    norm = target_norm_map(ft, (s, s), method="gram")
    print(f"set-up  norm map of the target ({s}x{s}) from neighbour dot products: {time.perf_counter() - t0:8.3f} s")
    if args.bands:
        t0 = time.perf_counter()
        bands = target_norm_map(ft, (s, s), method="bands")
        print(f"        the same band by band (as semantic_argmax):          {time.perf_counter() - t0:8.3f} s  "
              f"(max relative difference {float(np.abs(norm - bands).max() / bands.max()):.1e})")

    matcher = ClickMatcher(fs, ft, (s, s), (s, s))
    matcher.query(*pts[0])  # warm-up
    answer, with_pic = [], []
    for x, y in pts:
        t0 = time.perf_counter()
        a = matcher.query(x, y)
        answer.append(time.perf_counter() - t0)
        heatmap_jpeg(a.cosine)
        with_pic.append(time.perf_counter() - t0)
    session = MatchSession(src, tgt, fs, ft, {"source": "src", "target": "tgt"})
    guard = PageGuard.for_server("127.0.0.1", 8765)
    client = TestClient(guard.wrap(create_app(match=session)), base_url="http://127.0.0.1:8765")
    client.get(guard.open_url("/"))  # as the user opens the printed URL: the cookie
    client.get(f"/api/match/click?x={pts[0][0]}&y={pts[0][1]}")
    http = []
    for x, y in pts:
        t0 = time.perf_counter()
        r = client.get(f"/api/match/click?x={x}&y={y}")
        http.append(time.perf_counter() - t0)
        assert r.status_code == 200
    print(f"click   answer (match + cosine map):          {_stats(answer)}")
    print(f"        answer + heatmap JPEG:                {_stats(with_pic)}")
    print(f"        HTTP request through the app:         {_stats(http)}")

    if args.reference:
        ref_t, same = [], 0
        for x, y in pts[: args.reference]:
            t0 = time.perf_counter()
            rp, _, _ = semantic_argmax(fs, ft, (s, s), (s, s), [[x, y]])
            ref_t.append(time.perf_counter() - t0)
            same += tuple(int(v) for v in rp[0]) == matcher.query(x, y).target
        print(f"reference  semantic_argmax per click:         {_stats(ref_t)}   "
              f"({statistics.median(ref_t) / statistics.median(with_pic):.0f}x the click with its heatmap); "
              f"same pixel {same}/{len(ref_t)}")
    return 0


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main())
