"""The ``vidprop`` command line: a thin layer over the Python API.

Each sub-command lives in its own module of this package and exposes
``register(subparsers)``, which adds its parser and sets ``func`` to a
function ``(args) -> int``.  ``eval`` sub-commands register on the ``eval``
group through ``register_eval(eval_subparsers)``.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib
import logging
import os
import signal
import sys
import threading
import warnings
from typing import Iterator, Sequence

from vidprop import __version__
from vidprop.errors import VidpropError

__all__ = ["main", "build_parser", "Terminated"]

#: Modules providing ``register(subparsers)``.
COMMANDS = [
    "vidprop.cli.segment",
    "vidprop.cli.bench",
    "vidprop.cli.track",
    "vidprop.cli.match",
    "vidprop.cli.batch",
    "vidprop.cli.extract",
    "vidprop.cli.export",
    "vidprop.cli.score",
    "vidprop.cli.view",
    "vidprop.cli.annotate",
]
#: Modules providing ``register_eval(eval_subparsers)``.
EVAL_COMMANDS: list[str] = [
    "vidprop.cli.eval_jhmdb",
    "vidprop.cli.eval_davis",
    "vidprop.cli.eval_pairs",
    "vidprop.cli.eval_semantic",
    "vidprop.cli.eval_ytvos",
]

log = logging.getLogger("vidprop")


def build_parser() -> argparse.ArgumentParser:
    from vidprop.cli.common import VidpropParser

    parser = VidpropParser(
        prog="vidprop",
        description=(
            "Video label propagation with diffusion features (DIFT).\n\n"
            "Propagate a first-frame mask (`segment`) or keypoints (`track`) through a video,\n"
            "match image pairs (`match`, `edit`), save the features of images and videos (`extract`),\n"
            "and score the standard benchmarks (`eval`)."
        ),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"vidprop {__version__}")
    parser.add_argument("-v", "--verbose", action="count", default=0, help="more log output (-vv for debug)")
    parser.add_argument("-q", "--quiet", action="store_true", help="only warnings and errors")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in COMMANDS:
        importlib.import_module(name).register(sub)
    if EVAL_COMMANDS:
        ev = sub.add_parser("eval", help="run and score a standard benchmark",
                            description="Run and score a standard benchmark.")
        ev_sub = ev.add_subparsers(dest="benchmark", metavar="BENCHMARK")
        ev.set_defaults(func=lambda args: (ev.print_help(), 2)[1])
        for name in EVAL_COMMANDS:
            importlib.import_module(name).register_eval(ev_sub)
    _accept_log_flags_anywhere(parser)
    return parser


def _accept_log_flags_anywhere(parser: argparse.ArgumentParser) -> None:
    """``vidprop segment ... -q`` works as ``vidprop -q segment ...``: every command also takes -v / -q
    (their default leaves what was given before the command in place)."""
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for sub in set(action.choices.values()):
                g = sub.add_argument_group("log output")
                g.add_argument("-v", "--verbose", action="count", default=argparse.SUPPRESS,
                               help="more log output (-vv for debug)")
                g.add_argument("-q", "--quiet", action="store_true", default=argparse.SUPPRESS,
                               help="only warnings and errors")
                _accept_log_flags_anywhere(sub)


def _setup_logging(verbose: int, quiet: bool) -> None:
    level = logging.WARNING if quiet else (logging.DEBUG if verbose > 1 else logging.INFO)
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("%(levelname)s: %(message)s"))
    root = logging.getLogger("vidprop")
    root.handlers[:] = [handler]
    root.setLevel(level)
    root.propagate = False
    if verbose < 2:
        # Third-party libraries: errors only, no download/loading bars (the CLI shows its own).
        for noisy in ("diffusers", "transformers", "huggingface_hub", "PIL"):
            logging.getLogger(noisy).setLevel(logging.ERROR)
        os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
        try:
            import diffusers.utils.logging as dlog
            import transformers.utils.logging as tlog

            dlog.set_verbosity_error()
            dlog.disable_progress_bar()
            tlog.set_verbosity_error()
            tlog.disable_progress_bar()
        except Exception:  # noqa: BLE001 - optional quieting only
            pass


class Terminated(KeyboardInterrupt):
    """Raised in the main thread on SIGTERM, so a run unwinds (and cleans up) as on Ctrl-C."""


def _raise_terminated(signum: int, frame: object) -> None:
    signal.signal(signal.SIGTERM, signal.SIG_IGN)  # a second SIGTERM must not interrupt the cleanup
    raise Terminated()


@contextlib.contextmanager
def _sigterm_unwinds() -> Iterator[None]:
    """While running a command, SIGTERM (timeout, batch schedulers, docker stop) raises :class:`Terminated`.

    Temporary result folders are removed on the way out, as for Ctrl-C.  The
    previous handler comes back afterwards (in-process calls); outside the
    main thread signals cannot be handled, and nothing changes.
    """
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = signal.signal(signal.SIGTERM, _raise_terminated)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    root = logging.getLogger("vidprop")
    saved = (list(root.handlers), root.level, root.propagate)
    _setup_logging(args.verbose, args.quiet)
    try:
        if not getattr(args, "func", None):
            parser.print_help(sys.stderr)
            return 2
        try:
            with warnings.catch_warnings(), _sigterm_unwinds():
                if args.verbose < 2:  # a library-internal deprecation (diffusers -> huggingface_hub), not the user's
                    warnings.filterwarnings("ignore", message=".*local_dir_use_symlinks", category=UserWarning)
                return int(args.func(args) or 0)
        except VidpropError as exc:
            from vidprop.cli.common import cli_message

            print(f"vidprop: error: {cli_message(str(exc), args)}", file=sys.stderr)
            return exc.exit_code
        except Terminated:
            print("vidprop: terminated (SIGTERM)", file=sys.stderr)
            return 128 + signal.SIGTERM
        except KeyboardInterrupt:
            print("vidprop: interrupted", file=sys.stderr)
            return 130
    finally:
        # Called in-process (a notebook, the tests): leave logging as it was.
        root.handlers[:], root.level, root.propagate = saved


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
