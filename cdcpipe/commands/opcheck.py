"""`cdcpipe opcheck`: the generative operations checker (see :mod:`cdcpipe.opcheck`)."""

from __future__ import annotations

import argparse
import json
import random
import sys

from .. import opcheck, settings
from ..errors import ConfigError


def cmd_opcheck(args: argparse.Namespace) -> int:
    if not args.yes:
        raise ConfigError(
            "opcheck adds, renames and drops columns of public.users, truncates it and kills services: "
            "run it on a stack whose data may go, with --yes"
        )
    seed = args.seed if args.seed is not None else random.randrange(10**6)
    only = [n.strip() for n in args.only.split(",")] if args.only else None
    unknown = sorted(set(only or ()) - set(opcheck.OPERATIONS))
    if unknown:
        raise ConfigError(f"--only: no operation {', '.join(unknown)} (there are: {', '.join(opcheck.OPERATIONS)})")
    checker = opcheck.Checker(settings.load(), seed, say=lambda m: print(m, file=sys.stderr, flush=True), settle_seconds=args.settle)
    try:
        checker.run(args.ops, args.budget, only)
        if not args.keep:
            checker.tidy()
    except Exception:  # a divergence, or an operation that failed: the log and the seed either way
        print(json.dumps(checker.to_json(), indent=1, default=str), file=sys.stderr)
        print(f"opcheck FAILED with seed {seed}; replay: cdcpipe opcheck --seed {seed} --ops {args.ops} --yes", file=sys.stderr)
        raise
    print(json.dumps(checker.to_json(), default=str) if args.json else f"opcheck seed {seed}: {opcheck.summary(checker.log)}")
    return 0


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "opcheck",
        help="random operations (DML, DDL, kills, resyncs, slot loss) against the running pipeline, each judged: "
        "equal, or a named step that makes it equal (exit 9 otherwise)",
    )
    p.add_argument("--seed", type=int, help="the generator's seed (default: random, printed); the same seed replays the same operations")
    p.add_argument("--ops", type=int, default=40, help="operations at most (default 40)")
    p.add_argument("--budget", type=float, default=600.0, help="seconds after which no new operation starts (default 600)")
    p.add_argument("--only", help="comma-separated operations to draw from (default: all)")
    p.add_argument("--settle", type=float, default=240.0, help="seconds each quiet point may take to judge (default 240)")
    p.add_argument("--keep", action="store_true", help="keep the checker's columns and rows after the run (default: dropped, then judged)")
    p.add_argument("--json", action="store_true", help="the seed, a summary and the operation log as JSON")
    p.add_argument("--yes", action="store_true", help="yes: public.users' columns and rows may be changed and services killed")
    p.set_defaults(func=cmd_opcheck)
