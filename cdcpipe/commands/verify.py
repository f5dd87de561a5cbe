"""`cdcpipe verify`: is the read model equal to the source? Live by default (see :mod:`cdcpipe.verify`)."""

from __future__ import annotations

import argparse
import json
import sys

from .. import runtime, settings, verify
from ..errors import Mismatch


def cmd_verify(args: argparse.Namespace) -> int:
    """Exit 0 equal, 9 different (Mismatch), 10 could not judge (Inconclusive)."""
    import psycopg

    conf = settings.load()
    with (
        runtime.service(conf, "cassandra").connected() as session,
        psycopg.connect(runtime.service(conf, "postgres").dsn(), autocommit=True) as pg,
    ):
        if args.wait:
            report = verify.wait_until_equal_streamed(pg, session, timeout=args.wait)
        elif args.instant:
            report = verify.judge_streamed(pg, session)
        else:

            def progress(r: verify.Report) -> None:
                if not args.json:
                    print(
                        f"  round {r.rounds}: {len(r.keys()):,} confirmed so far, judged at WAL {r.position}", file=sys.stderr, flush=True
                    )

            kafka = runtime.service(conf, "kafka").client_config()
            report = verify.judge_live(pg, session, conf, kafka, timeout=args.recheck_timeout, on_round=progress)
        extra = verify.extra_columns(pg, session)
    if args.json:
        print(json.dumps({**report.to_json(), "columns_only_in_cassandra": extra}))
    else:
        note = f" (columns only in Cassandra, all empty: {', '.join(extra)})" if extra and report.equal else ""
        print(report.summary() + note)
        lines = report.lines(limit=None if args.all else 5)
        if lines:
            shown = (
                "" if args.all or len(report.keys()) <= 5 else f" (first 5 of {len(report.keys()):,} keys; --all or --json for every one)"
            )
            print(f"  sample{shown}:\n    " + "\n    ".join(lines))
        if report.unsettled:
            print(
                f"  changed at the source in every re-check: {', '.join(report.unsettled[:5])}{' …' if len(report.unsettled) > 5 else ''}"
            )
    if not report.equal:
        raise Mismatch(f"cdc.users differs from public.users: {report.summary().removeprefix('DIFFERENT: ')}")
    return 0


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "verify",
        help="compare cdc.users with public.users column by column, live: differing keys are judged again once the "
        "pipeline has passed them (exit 9 if different, 10 if it could not judge)",
    )
    p.add_argument("--wait", type=float, default=0, help="instead: poll up to S seconds for them to be equal at one instant")
    p.add_argument("--instant", action="store_true", help="compare once, without re-checking (changes in flight count as differences)")
    p.add_argument("--recheck-timeout", type=float, default=120.0, help="seconds the re-checks may take (default 120)")
    p.add_argument("--all", action="store_true", help="list every differing key, not a sample of five")
    p.add_argument("--json", action="store_true", help="counts, and every missing, extra and differing key")
    p.set_defaults(func=cmd_verify)
