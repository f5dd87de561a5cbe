"""`cdcpipe demo`: what `make demo` runs."""

from __future__ import annotations

import argparse

from .. import demo, settings


def cmd_demo(args: argparse.Namespace) -> int:
    demo.run(settings.load(), results=args.results, api_url=args.api_url, say=lambda m: print(m, flush=True))
    return 0


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("demo", help="the whole journey: up, connector, Spark job, ingest, churn, verify")
    p.add_argument("--results", type=int, default=500, help="users to ingest (default 500)")
    p.add_argument("--api-url", help="randomuser API (default: the public one if reachable, else the local stand-in)")
    p.set_defaults(func=cmd_demo)
