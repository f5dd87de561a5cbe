"""`cdcpipe resync`: re-synchronise cdc.users from a fresh incremental snapshot, online."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from .. import runtime, settings, verify
from ..clients.connect import DEFAULT_FILE, ConnectorFile
from ..errors import Mismatch


def cmd_resync(args: argparse.Namespace) -> int:
    """Raises ResyncFailed, Mismatch (verify did not converge) or the clients' errors; main maps them."""
    import psycopg

    from .. import resync

    conf = settings.load()
    connector = ConnectorFile.load(Path(args.file))

    def say(message: str) -> None:
        print(message, file=sys.stderr, flush=True)

    with (
        runtime.service(conf, "cassandra").connected() as session,
        psycopg.connect(runtime.service(conf, "postgres").dsn(), autocommit=True) as pg,
    ):
        summary = resync.run(
            pg=pg,
            session=session,
            connect=runtime.service(conf, "connect").client(),
            connector=connector,
            kafka=runtime.service(conf, "kafka").client_config(),
            registry=runtime.service(conf, "schema_registry").cache(),
            settings=conf,
            timeout=args.timeout,
            rebuild=args.rebuild,
            say=say,
        )
        say(f"verifying (re-checks up to {args.verify_wait:.0f}s) ...")
        report = verify.judge_live(pg, session, conf, runtime.service(conf, "kafka").client_config(), timeout=args.verify_wait)
    summary["verify"] = report.to_json()
    summary["verified_rows"] = report.source_rows
    if not report.equal:
        if args.json:
            print(json.dumps(summary))
        raise Mismatch(f"resync epoch {summary['epoch']} done, but cdc.users differs from public.users: {report.summary()}")
    print(json.dumps(summary) if args.json else f"resync epoch {summary['epoch']} done: cdc.users equals public.users ({report.summary()})")
    return 0


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("resync", help="re-synchronise cdc.users from a fresh snapshot while streaming goes on, then verify")
    p.add_argument("--file", default=str(DEFAULT_FILE), help="the connector's JSON (slot, signal table, notification topic)")
    p.add_argument(
        "--timeout",
        type=float,
        default=900.0,
        help="seconds for the whole resync: Debezium publishing what came before it, the snapshot, the job (default 900)",
    )
    p.add_argument("--verify-wait", type=float, default=120.0, help="seconds verify's re-checks of differing keys may take (default 120)")
    p.add_argument(
        "--rebuild",
        action="store_true",
        help="first drop and re-create cdc.users (the step after a column's type changed at the source)",
    )
    p.add_argument("--json", action="store_true", help="print the summary as JSON")
    p.set_defaults(func=cmd_resync)
