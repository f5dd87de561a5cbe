"""`cdcpipe spark start|stop|status`: the streaming job on the local runtime."""

from __future__ import annotations

import argparse
import json
import sys

from .. import settings
from ..runtime import streaming_job


def cmd_start(args: argparse.Namespace) -> int:
    conf = settings.load()
    streaming_job.start(
        conf,
        master=args.master,
        progress=lambda m: print(m, file=sys.stderr),
        max_offsets_per_trigger=args.max_offsets_per_trigger,
        trigger_seconds=args.trigger_seconds,
    )
    return 0


def cmd_stop(args: argparse.Namespace) -> int:
    stopped = streaming_job.stop(settings.load(), timeout=args.timeout)
    print("spark job stopped" if stopped else "spark job was not running", file=sys.stderr)
    return 0


def cmd_status(args: argparse.Namespace) -> int:
    report = streaming_job.status(settings.load())
    if args.json:
        print(json.dumps(report, indent=2, default=str))
    else:
        for key, value in report.items():
            print(f"{key:<26} {value}")
    return 0 if report["state"] == "running" else 1


def register(sub: argparse._SubParsersAction) -> None:
    parser = sub.add_parser("spark", help="the streaming job that applies change events to Cassandra")
    actions = parser.add_subparsers(dest="action", required=True, metavar="ACTION")
    p = actions.add_parser("start", help="submit the job (detached) and wait until its query runs")
    p.add_argument("--master", help="Spark master (default CDCPIPE_SPARK_MASTER or local[2]; e.g. spark://127.0.0.1:7077)")
    p.add_argument("--max-offsets-per-trigger", type=int, help="cap on records per micro-batch")
    p.add_argument("--trigger-seconds", type=float, help="micro-batch interval (default 0.1)")
    p.set_defaults(func=cmd_start)
    p = actions.add_parser("stop", help="stop the job gracefully (after its current batch)")
    p.add_argument("--timeout", type=float, default=90.0, help="seconds before it is killed (default 90)")
    p.set_defaults(func=cmd_stop)
    p = actions.add_parser("status", help="query progress: rows/s, batch duration, offsets, dead letters")
    p.add_argument("--json", action="store_true", help="machine-readable output")
    p.set_defaults(func=cmd_status)
