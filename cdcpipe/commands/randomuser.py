"""`cdcpipe randomuser serve`: the local randomuser.me-compatible API."""

from __future__ import annotations

import argparse
import errno
import signal
import sys
import threading

from .. import settings
from ..errors import CdcpipeError, PortInUse
from ..runtime import credentials
from ..runtime.randomuser import make_server


def cmd_serve(args: argparse.Namespace) -> int:
    # The key is the runtime's secret (cdcpipe secret randomuser), never an argument (ps).
    key = credentials.load(settings.load())["randomuser"]
    try:
        server = make_server(args.host, args.port, api_key=key)
    except OSError as exc:
        if exc.errno == errno.EADDRINUSE:
            raise PortInUse("randomuser", args.port, args.host) from None
        raise CdcpipeError(f"cannot listen on {args.host}:{args.port}: {exc.strerror}") from None
    print(f"randomuser.me stand-in on http://{args.host}:{server.server_port}/api/", file=sys.stderr, flush=True)
    signal.signal(signal.SIGTERM, lambda *_: threading.Thread(target=server.shutdown).start())
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()
    return 0


def register(sub: argparse._SubParsersAction) -> None:
    parser = sub.add_parser("randomuser", help="the local randomuser.me-compatible API (tests, offline demos)")
    actions = parser.add_subparsers(dest="action", required=True, metavar="ACTION")
    p = actions.add_parser(
        "serve",
        help="serve GET /api/ like randomuser.me (foreground); every request wants 'Authorization: Bearer KEY', "
        "KEY from 'cdcpipe secret randomuser'",
    )
    p.add_argument("--host", default=settings.HOST)
    p.add_argument("--port", type=int, default=settings.DEFAULT_PORTS["randomuser"])
    p.set_defaults(func=cmd_serve)
