"""The whole user journey, one step after the other: what `make demo` runs.

up -> register the connector -> start the Spark job -> ingest_users (the real API when
reachable, else the local stand-in, saying so) -> user_churn -> wait until cdc.users equals
public.users -> show a cqlsh query and where to look next. The stack keeps running.
"""

from __future__ import annotations

import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import requests

from . import resync, runtime, verify
from .clients.airflow import run_dag
from .clients.connect import DEFAULT_FILE, ConnectorFile
from .errors import CdcpipeError, StepFailed
from .runtime import credentials, processes, streaming_job
from .settings import Settings

PUBLIC_API = "https://randomuser.me/api/"
STANDIN_PROCESS = "randomuser"


def public_api_reachable(timeout: float = 5.0) -> bool:
    try:
        return requests.get(PUBLIC_API, params={"results": 1}, timeout=timeout).ok
    except requests.RequestException:
        return False


def ensure_standin(settings: Settings) -> str:
    """Run the local randomuser.me stand-in as a background process; its API URL."""
    port = settings.port("randomuser")
    url = f"http://{settings.host}:{port}/api/"
    if processes.pid_of(settings, STANDIN_PROCESS) is None:
        processes.spawn(settings, STANDIN_PROCESS, [sys.executable, "-m", "cdcpipe", "randomuser", "serve", "--port", str(port)])
    key = {"Authorization": f"Bearer {credentials.load(settings)['randomuser']}"}
    for _ in range(50):
        try:
            if requests.get(url, params={"results": 1}, headers=key, timeout=2).ok:
                return url
        except requests.RequestException:
            time.sleep(0.2)
    raise CdcpipeError(f"the local randomuser stand-in did not answer on {url}:\n{processes.log_tail(settings.log_file(STANDIN_PROCESS))}")


def run(settings: Settings, results: int = 500, api_url: str | None = None, say: Callable[[str], None] = print) -> dict:
    def step(name: str, action: Callable[[], object]) -> object:
        say(f"\n==> {name}")
        started = time.monotonic()
        try:
            outcome = action()
        except CdcpipeError as exc:
            raise StepFailed(name, exc) from None
        say(f"    done in {time.monotonic() - started:.0f}s")
        return outcome

    stack = step("start the local runtime (cdcpipe up)", lambda: {s.name: s for s in runtime.up(settings, progress=say)})

    def register() -> None:
        definition = ConnectorFile.load(DEFAULT_FILE)
        resync.register(settings, definition, timeout=120, progress=lambda m: say(f"    {m}"))
        say(f"    connector {definition.name} RUNNING (Connect {stack['connect'].url})")

    step("register the Debezium connector (connectors/users-cdc.json)", register)
    step("start the Spark job", lambda: streaming_job.start(settings, progress=say))

    def pick_api() -> str:
        if api_url:
            return api_url
        if public_api_reachable():
            say(f"    using the public API {PUBLIC_API}")
            return PUBLIC_API
        url = ensure_standin(settings)
        say(f"    {PUBLIC_API} is not reachable from here: using the local stand-in at {url}")
        return url

    url = step("choose the randomuser API", pick_api)
    airflow = stack["airflow"].client()

    def dag(dag_id: str, conf: dict, result_task: str) -> None:
        run = run_dag(airflow, dag_id, conf, result_task, progress=lambda m: say(f"    {m}"))
        say(f"    {dag_id} {run.run_id}: {run.state} in {run.seconds}s (trigger to end) {run.result}")

    step(f"ingest {results} users with Airflow (ingest_users)", lambda: dag("ingest_users", {"results": results, "api_url": url}, "upsert"))
    step(
        "updates and deletes with Airflow (user_churn)",
        lambda: dag("user_churn", {"api_url": url}, "apply"),  # the DAG's default fractions
    )

    def converge() -> int:
        import psycopg

        with stack["cassandra"].connected() as session, psycopg.connect(stack["postgres"].dsn()) as pg:
            polls = [0]

            def note(diff: list[str]) -> None:  # every 5th poll, about every 5 s
                polls[0] += 1
                if polls[0] % 5 == 1:
                    say(f"    waiting: {len(diff)}+ difference(s), e.g. {diff[0][:100]}")

            rows = verify.wait_until_equal(pg, session, timeout=300, on_wait=note)
        say(f"    cdc.users equals public.users: {len(rows)} rows")
        return len(rows)

    count = step("wait until Cassandra matches PostgreSQL", converge)

    cass = stack["cassandra"]
    cqlsh = Path(sys.executable).parent / "cqlsh"
    query = "SELECT id, first_name, last_name, email, city, country FROM cdc.users LIMIT 5"
    login = ["--credentials", str(cass.credentials_file())]  # a 0600 file: no password on the command line
    say(f'\n==> {cqlsh} {" ".join(login)} {cass.host} {cass.port()} -e "{query}"')
    subprocess.run([str(cqlsh), *login, cass.host, str(cass.port()), "-e", query])
    airflow, console = stack["airflow"], stack["console"]
    say(
        "\nWhere to look next (the stack keeps running; 'make down' stops it):\n"
        f"  Airflow UI        {airflow.url}  (login {airflow.info()['login']})\n"
        f"  Connect REST      {stack['connect'].url}/connectors/users-cdc/status\n"
        "                    (login cdcpipe, password: cdcpipe secret connect)\n"
        "  Read model        .venv/bin/cdcpipe cqlsh -e 'SELECT * FROM cdc.users LIMIT 5'\n"
        f"  Schema registry   {stack['schema_registry'].url}/subjects\n"
        "                    (login cdcpipe, password: cdcpipe secret registry_api)\n"
        "  Change events     .venv/bin/cdcpipe topic tail --from-beginning\n"
        "  Spark job         .venv/bin/cdcpipe spark status\n"
        "  Everything        .venv/bin/cdcpipe status\n"
        f"\nWatch the pipeline in the console: {console.url}  (login {console.info()['login']})\n"
    )
    return {"rows": count, "api_url": url}
