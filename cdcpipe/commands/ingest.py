"""`cdcpipe ingest`: run the ingest_users DAG in the running Airflow and report the result;
`cdcpipe churn`: run user_churn."""

from __future__ import annotations

import argparse
import json
import sys
import time

from .. import runtime, settings
from ..airflow_client import AirflowClient, DagRunFailed


def client(conf: settings.Settings) -> AirflowClient:
    airflow = runtime.services(conf, ["airflow"], with_dependencies=False)[0]
    return AirflowClient(airflow.url, "admin", airflow.secrets["airflow_admin"])


def run_dag(dag_id: str, run_conf: dict, timeout: float, result_task: str, as_json: bool) -> int:
    api = client(settings.load())
    api.wait_for_dag(dag_id)
    api.unpause(dag_id)  # a run of a paused DAG would stay queued
    run = api.trigger(dag_id, run_conf)
    run_id = run["dag_run_id"]
    print(f"triggered {dag_id} run {run_id} with {json.dumps(run_conf)}", file=sys.stderr)
    started = time.monotonic()
    final = api.wait(dag_id, run_id, timeout, on_change=lambda s: print(f"  {time.monotonic() - started:5.0f}s {s}", file=sys.stderr))
    seconds = round(time.monotonic() - started, 1)
    result = api.xcom(dag_id, run_id, result_task) if final["state"] == "success" else None
    report = {"dag_id": dag_id, "run_id": run_id, "state": final["state"], "seconds": seconds, "result": result}
    print(
        json.dumps(report)
        if as_json
        else f"{dag_id} {run_id}: {final['state']} in {seconds}s (trigger to end) {json.dumps(result) if result else ''}"
    )
    if final["state"] != "success":
        failed = [t["task_id"] for t in api.task_instances(dag_id, run_id) if t.get("state") == "failed"]
        raise DagRunFailed(f"{dag_id} run {run_id} failed (tasks: {', '.join(failed) or '?'}); see the task logs in the Airflow UI")
    return 0


def cmd_ingest(args: argparse.Namespace) -> int:
    run_conf = {"results": args.results}
    for key in ("seed", "nat", "api_url"):
        if getattr(args, key):
            run_conf[key] = getattr(args, key)
    return run_dag("ingest_users", run_conf, args.timeout, "upsert", args.json)


def cmd_churn(args: argparse.Namespace) -> int:
    run_conf = {"update_fraction": args.update_fraction, "delete_fraction": args.delete_fraction}
    for key in ("seed", "api_url"):
        if getattr(args, key):
            run_conf[key] = getattr(args, key)
    return run_dag("user_churn", run_conf, args.timeout, "apply", args.json)


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
