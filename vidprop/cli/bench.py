"""``vidprop bench``: benchmarks that print figures (never timed tests).

Each benchmark is a module of :mod:`vidprop.bench` with ``main(argv) -> int``;
``vidprop bench NAME --help`` shows its options.
"""

from __future__ import annotations

import argparse
import importlib

#: name -> (module, one-line description)
BENCHMARKS: dict[str, tuple[str, str]] = {
    "propagate": ("vidprop.bench.propagation", "protocol A/B propagation step at DAVIS/JHMDB scale vs the dense computation"),
    "extract": ("vidprop.bench.extract", "DIFT extraction fps, FLOPs and peak memory: published featurizer's way vs DiftExtractor (SD 2.1 arch)"),
    "segment": ("vidprop.bench.segment", "`segment` end to end on a synthetic 854x480 video (SD 2.1 arch): frames/s and the time split"),
    "davis-scoring": ("vidprop.bench.davis_scoring", "DAVIS J&F scoring time on a synthetic 30 x 70-frame 480p set, 1 and 2 workers vs plain NumPy"),
    "segment-memory": ("vidprop.bench.segment_memory", "peak RSS of `segment` on 100- and 1,000-frame synthetic videos, and with 10 annotations (tiny model)"),
    "extract-memory": ("vidprop.bench.extract_memory", "peak RSS of `extract` on 20- and 200-frame synthetic videos (tiny model, upsampled features)"),
    "match": ("vidprop.bench.match", "one semantic match and the attention matcher per point (tiny model, CPU), U-Net calls"),
    "batch": ("vidprop.bench.batch", "`batch` on the sequential engine and Ray with 1 and 2 workers: rows/s, frames/s, Ray start-up"),
    "track": ("vidprop.bench.track", "`track` per frame (tiny model) and protocol B keypoint propagation at JHMDB scale vs dense"),
    "annotate": ("vidprop.bench.annotate", "`annotate`: first propagation vs a correction from cached features vs a full re-run, click-to-mask latency"),
    "view": ("vidprop.bench.view", "`view --match`: one click at 768x768 with 1280-channel stride-16 features vs semantic_argmax"),
}


def register(sub: argparse._SubParsersAction) -> None:
    lines = "\n".join(f"  {name:<16} {desc}" for name, (_, desc) in BENCHMARKS.items())
    p = sub.add_parser(
        "bench",
        help="print speed and memory figures",
        description="Benchmarks that print speed and memory figures.\n\nbenchmarks:\n" + lines,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("name", choices=sorted(BENCHMARKS), metavar="NAME", help="which benchmark (see above)")
    p.add_argument("args", nargs=argparse.REMAINDER, help="options passed to the benchmark (NAME --help lists them)")
    p.set_defaults(func=_run)


def _run(args: argparse.Namespace) -> int:
    module = importlib.import_module(BENCHMARKS[args.name][0])
    return int(module.main(list(args.args)) or 0)
