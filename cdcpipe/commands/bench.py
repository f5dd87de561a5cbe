"""`cdcpipe bench`: measure the Spark job's sustained events/s (not a test: prints figures)."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from .. import settings
from ..bench import end_to_end, job, latency, null_cells, soak


def cmd_bench(args: argparse.Namespace) -> int:
    if args.from_postgres:
        report = end_to_end.run(
            settings.load(),
            n=args.from_postgres,
            transaction_size=args.transaction_size,
            seed=args.seed,
            plot=Path(args.plot) if args.plot else None,
            ceiling=not args.no_ceiling,
            progress=lambda m: print(m, file=sys.stderr, flush=True),
        )
        print(json.dumps(report, indent=2) if args.json else end_to_end.summary(report))
        return 0
    if args.soak:
        report = soak.run(
            settings.load(),
            seconds=args.soak,
            load=args.load,
            window=args.window,
            plot=Path(args.plot) if args.plot else None,
            progress=lambda m: print(m, file=sys.stderr, flush=True),
        )
        print(json.dumps(report, indent=2) if args.json else soak.summary(report))
        return 0
    if args.null_cells:
        results = null_cells.run(settings.load(), args.keys, rewrites=5, rounds=2, say=lambda m: print(m, file=sys.stderr))
        print(json.dumps(results, indent=2) if args.json else null_cells.summary(results))
        return 0
    if args.latency:
        report = latency.measure(
            settings.load(),
            probes=args.latency,
            load=args.load,
            plot=Path(args.plot) if args.plot else None,
            progress=lambda m: print(m, file=sys.stderr),
        )
        print(json.dumps(report, indent=2) if args.json else latency.summary(report))
        return 0
    report = job.run(
        settings.load(),
        n=args.events,
        keys=args.keys,
        partitions=args.partitions,
        warmup=args.warmup,
        progress=lambda m: print(m, file=sys.stderr),
    )
    _print(report, args.json)
    return 0 if report["correct"] else 1


def _print(report: dict, as_json: bool) -> None:
    if as_json:
        print(json.dumps(report, indent=2))
    else:
        for key, value in report.items():
            print(f"{key:<26} {value}")


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("bench", help="throughput of the Spark job on synthetic change events (prints figures)")
    p.add_argument("--events", type=int, default=200_000, help="change events to measure on (default 200000)")
    p.add_argument("--keys", type=int, default=50_000, help="distinct users they touch (default 50000)")
    p.add_argument("--warmup", type=int, default=20_000, help="events applied before measuring (default 20000)")
    p.add_argument("--partitions", type=int, default=2, help="partitions of the bench topic (default 2)")
    p.add_argument(
        "--latency",
        type=int,
        metavar="N",
        default=0,
        help="instead: N single inserts at idle, then N under --load, through the running connector and job; "
        "p50/p90/p99/max of commit -> readable in cdc.users, split at Kafka",
    )
    p.add_argument(
        "--load",
        type=int,
        default=2000,
        metavar="CHANGES_PER_S",
        help="with --latency: background writes to PostgreSQL during the second round; with --soak: during the whole soak "
        "(default 2000; 0: none)",
    )
    p.add_argument(
        "--soak",
        type=float,
        metavar="SECONDS",
        default=0,
        help="instead: --load changes/s for SECONDS through the running connector and job, a probe insert about every second; "
        "per --window: latency p50/p99/max, slot and topic lag, memory and CPU of every process (core-ms per 1,000 changes), "
        "Cassandra's pending compactions and GC time, the job's batch sizes",
    )
    p.add_argument("--window", type=float, default=60.0, metavar="SECONDS", help="with --soak: seconds per report (default 60)")
    p.add_argument(
        "--from-postgres",
        type=int,
        metavar="N",
        default=0,
        help="instead: write N changes (40%% inserts, 50%% updates, 10%% deletes) into public.users as fast as PostgreSQL "
        "takes them, through the running connector and job; captured changes/s, applied rows/s, when cdc.users was exact, "
        "the sink's ceiling on the same rows (a scratch table) as a ratio, and CPU: core-ms per 1,000 changes per stage and "
        "the floor it sets (the pipeline's core-seconds over this machine's cores)",
    )
    p.add_argument("--transaction-size", type=int, default=1000, help="with --from-postgres: changes per transaction (default 1000)")
    p.add_argument("--seed", type=int, help="with --from-postgres: the change mix's seed (default: the time)")
    p.add_argument("--no-ceiling", action="store_true", help="with --from-postgres: skip the sink-ceiling measurement")
    p.add_argument(
        "--plot",
        metavar="PNG",
        help="with --latency: each probe's latency over the run; with --from-postgres: throughput per stage and each change's latency; "
        "with --soak: latency and each process's memory over the soak",
    )
    p.add_argument(
        "--null-cells",
        action="store_true",
        help="instead: --keys rows written 5 times each with mostly null columns, once with each null as a null cell (the old "
        "write) and once as a row replacement (the sink's), into two scratch tables, twice alternated; write and scan seconds, "
        "tombstone cells per live row",
    )
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_bench)
