"""The flags and the run loop every local page command shares (``vidprop view``, ``vidprop annotate``, ...).

A page command adds the flags in one line and serves its app in one call::

    from vidprop.cli.serving import SERVER_HELP, add_server_args, run_page

    add_server_args(parser)                  # --host --port --token --no-token --allow-host --open
    ...
    def run(args):
        return run_page(args, "vidprop annotate", lambda: build_app(args))

:func:`run_page` checks the flags and binds the port before ``make_app`` runs
(so a bad flag or a taken port fails before a model loads), warns about a
host other than loopback and about ``--no-token``, prints one line with the
URL to open (the token in it), opens it with ``--open`` and serves until
Ctrl+C (:meth:`vidprop.view.server.PageServer.run`; a library caller uses
:func:`vidprop.view.server.serve`).  :data:`SERVER_HELP` is a paragraph for the command's epilog.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
from typing import Any, Callable

from vidprop.view.server import PageServer

__all__ = ["add_server_args", "open_server", "run_page", "SERVER_HELP", "TOKEN_ENV"]

log = logging.getLogger("vidprop")

TOKEN_ENV = "VIDPROP_TOKEN"

SERVER_HELP = """\
who can open the page: it listens on 127.0.0.1 (this machine) and answers only
requests that carry its token: the printed URL has it (?token=...); opening
it once sets a cookie and drops the token from the address.  Requests with
another Host name (DNS rebinding), without the token or cookie, and changes
sent from another site get 403.  From another machine, use an SSH tunnel
to the same port, then open the printed URL there:
  ssh -N -L PORT:127.0.0.1:PORT user@this-machine
"""


def add_server_args(parser: argparse.ArgumentParser) -> None:
    """``--host --port --token --no-token --allow-host --open`` in a "server" group."""
    g = parser.add_argument_group("server")
    g.add_argument("--host", default="127.0.0.1",
                   help="address to listen on (default 127.0.0.1: this machine only; anything else is reachable "
                        "by others, is warned about and always needs the token)")
    g.add_argument("--port", type=int, default=0, help="port (default: a free one)")
    g.add_argument("--token", default=None,
                   help=f"the token the page asks for (default: ${TOKEN_ENV} if set, else a new random one each "
                        "run); 16 or more URL-safe characters. A token on the command line is visible to other "
                        f"users of this machine (ps): prefer {TOKEN_ENV}")
    g.add_argument("--no-token", action="store_true",
                   help="ask for no token (only with a loopback --host; every program and user on this machine "
                        "can then open the page)")
    g.add_argument("--allow-host", action="append", default=[], metavar="NAME",
                   help="also answer requests for this Host name (NAME or NAME:PORT; repeat for more), e.g. the "
                        "machine's name when --host 0.0.0.0")
    g.add_argument("--open", action="store_true", help="open the page (the URL with its token) in the default browser")


def open_server(args: argparse.Namespace) -> PageServer:
    """The bound server for the parsed flags (ConfigError for a bad flag or a taken port)."""
    token = args.token
    if token is None and not args.no_token:
        token = os.environ.get(TOKEN_ENV) or None
    server = PageServer(args.host, args.port, token=token, no_token=args.no_token, allow_hosts=args.allow_host)
    if not server.loopback:
        log.warning("serving on %s: anyone who can reach this machine on port %d can reach the page; the token "
                    "keeps them out (an SSH tunnel to 127.0.0.1 is safer: see --help)", args.host, server.port)
        if args.host in ("0.0.0.0", "::") and not args.allow_host:
            log.warning("the page answers the names 127.0.0.1, localhost and [::1] only: add the name or address "
                        "others open it by with --allow-host NAME")
    if args.no_token:
        log.warning("--no-token: every program and user on this machine can open %s", server.url)
    return server


def run_page(args: argparse.Namespace, name: str, make_app: Callable[[], Any]) -> int:
    """Bind (flags checked) before ``make_app`` runs, print the URL line, serve until Ctrl+C; 0."""
    with open_server(args) as server:
        app = make_app()
        server.run(app, name=name, open_browser=args.open, announce=_say,
                   access_log=getattr(args, "verbose", 0) > 1)  # -vv: uvicorn's access log (without the token)
    print(f"{name}: stopped", file=sys.stderr)
    return 0


def _say(line: str) -> None:
    print(line, flush=True)
