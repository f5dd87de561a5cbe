"""`cdcpipe demo` (what `make demo` runs) and `cdcpipe verify`."""

from __future__ import annotations

import argparse
import json

from .. import demo, runtime, settings, verify
from ..errors import Mismatch


def cmd_demo(args: argparse.Namespace) -> int:
    demo.run(settings.load(), results=args.results, api_url=args.api_url, say=lambda m: print(m, flush=True))
    return 0


def cmd_verify(args: argparse.Namespace) -> int:
    import psycopg

    conf = settings.load()
    with runtime.service(conf, "cassandra").connected() as session, psycopg.connect(runtime.service(conf, "postgres").dsn()) as pg:
        if args.wait:
            rows = verify.wait_until_equal(pg, session, timeout=args.wait)
            diff: list[str] = []
        else:
            rows, diff = verify.compare(pg, session)
        extra = verify.extra_columns(pg, session)
    report = {"equal": not diff, "rows": len(rows), "differences": diff, "columns_only_in_cassandra": extra}
    note = f" (columns only in Cassandra, all empty: {', '.join(extra)})" if extra and not diff else ""
    print(
        json.dumps(report)
        if args.json
        else ("equal: " + str(len(rows)) + " rows" + note if not diff else "DIFFERENT:\n  " + "\n  ".join(diff))
    )
    if diff:
        raise Mismatch(f"cdc.users differs from public.users in {len(diff)} place(s) (listed above)")
    return 0


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("demo", help="the whole journey: up, connector, Spark job, ingest, churn, verify")
    p.add_argument("--results", type=int, default=500, help="users to ingest (default 500)")
    p.add_argument("--api-url", help="randomuser API (default: the public one if reachable, else the local stand-in)")
    p.set_defaults(func=cmd_demo)
    p = sub.add_parser("verify", help="compare cdc.users with public.users column by column (exit 9 if different)")
    p.add_argument("--wait", type=float, default=0, help="poll up to S seconds for them to converge")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_verify)
