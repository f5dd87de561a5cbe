"""`cdcpipe ingest`: run the ingest_users DAG in the running Airflow and report the result;
`cdcpipe churn`: run user_churn."""

from __future__ import annotations

import argparse
import json
import sys

from .. import runtime, settings
from ..clients.airflow import DagRunFailed, run_dag


def _run(dag_id: str, run_conf: dict, timeout: float, result_task: str, as_json: bool) -> int:
    try:
        run = run_dag(
            runtime.service(settings.load(), "airflow").client(),
            dag_id,
            run_conf,
            result_task,
            timeout,
            progress=lambda m: print(m, file=sys.stderr),
        )
    except DagRunFailed as exc:
        if as_json and exc.run is not None:  # scripts read the outcome on stdout either way
            print(json.dumps(exc.run.as_dict()))
        raise
    print(
        json.dumps(run.as_dict())
        if as_json
        else f"{dag_id} {run.run_id}: {run.state} in {run.seconds}s (trigger to end) {json.dumps(run.result)}"
    )
    return 0


def cmd_ingest(args: argparse.Namespace) -> int:
    run_conf = {"results": args.results}
    for key in ("seed", "nat", "api_url"):
        if getattr(args, key):
            run_conf[key] = getattr(args, key)
    return _run("ingest_users", run_conf, args.timeout, "upsert", args.json)


def cmd_churn(args: argparse.Namespace) -> int:
    run_conf = {"update_fraction": args.update_fraction, "delete_fraction": args.delete_fraction}
    for key in ("seed", "api_url"):
        if getattr(args, key):
            run_conf[key] = getattr(args, key)
    return _run("user_churn", run_conf, args.timeout, "apply", args.json)


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("ingest", help="run the ingest_users DAG in Airflow, wait, print rows written (exit 8 if it fails)")
    p.add_argument("--results", type=int, default=100, help="users to fetch, 1-5000 (default 100)")
    p.add_argument("--seed", help="randomuser seed (same seed, same users)")
    p.add_argument("--nat", help="nationalities, e.g. gb,fr")
    p.add_argument("--api-url", help="randomuser.me-compatible API (default: the DAG's: env RANDOMUSER_URL, else the public API)")
    p.add_argument("--timeout", type=float, default=600.0, help="seconds to wait for the run (default 600)")
    p.add_argument("--json", action="store_true", help="print the result as JSON")
    p.set_defaults(func=cmd_ingest)

    p = sub.add_parser("churn", help="run the user_churn DAG (updates and deletes), wait, print counts")
    p.add_argument("--update-fraction", type=float, default=0.2)
    p.add_argument("--delete-fraction", type=float, default=0.05)
    p.add_argument("--seed")
    p.add_argument("--api-url")
    p.add_argument("--timeout", type=float, default=600.0)
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_churn)
