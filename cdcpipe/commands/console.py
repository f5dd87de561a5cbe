"""`cdcpipe console`: the browser console in the foreground (``cdcpipe up`` runs it as a service)."""

from __future__ import annotations

import argparse


def cmd_console(args: argparse.Namespace) -> int:
    from ..console import serve

    serve(args.port)
    return 0


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("console", help="serve the browser console on 127.0.0.1 in the foreground")
    p.add_argument("--port", type=int, help="port (default: CDCPIPE_PORT_CONSOLE, else 8070)")
    p.set_defaults(func=cmd_console)
