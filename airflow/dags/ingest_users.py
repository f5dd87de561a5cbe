"""
### ingest_users

Fetches users from the [randomuser.me](https://randomuser.me/documentation) API and upserts
them into **PostgreSQL** `public.users` — and nowhere else: Debezium captures every change
from the WAL, and the Spark job applies it to Cassandra.

| task | does |
|---|---|
| `fetch` | `GET {api_url}?results=&seed=&nat=`, with the key of connection `randomuser_api` if `api_url` is on its host; retries with backoff on connection errors, 429 and 5xx; the API's `{"error": …}` fails the task |
| `transform` | validates every user and maps it to a `public.users` row; one bad user fails the batch, naming the user and the field |
| `upsert` | one transaction through `PostgresHook` (`users_db`): `INSERT … ON CONFLICT (id) DO UPDATE … WHERE … IS DISTINCT FROM …`, so identical data writes nothing |

**Params**: `results` (1–5000), `seed`, `nat` (e.g. `gb,fr`), `api_url` (default: env
`RANDOMUSER_URL`, else the public API). Trigger with params from the UI, or
`cdcpipe ingest --results 500`.
"""

from __future__ import annotations

from datetime import timedelta

from airflow.sdk import CronTriggerTimetable, Param, dag, get_current_context, task


@dag(
    dag_id="ingest_users",
    # every hour, from the next tick on: no start_date and run_immediately=timedelta(0), so unpausing
    # the DAG does not start a run for the tick just past (which, with max_active_runs=1,
    # made a triggered run wait behind it: 50 s of "queued" for a 5 s run). Not
    # run_immediately=False: Airflow 3.3 treats False like None, and still runs the tick just
    # past when it is within 10% of the period (seen: a daily run at 03:30, unpaused at 03:48).
    schedule=CronTriggerTimetable("0 * * * *", timezone="UTC", run_immediately=timedelta(0)),
    catchup=False,
    max_active_runs=1,
    doc_md=__doc__,
    tags=["cdcpipe", "ingest"],
    default_args={"retries": 2, "retry_delay": timedelta(seconds=10)},
    params={
        "results": Param(100, type="integer", minimum=1, maximum=5000, description="users to fetch (1-5000)"),
        "seed": Param(None, type=["null", "string"], description="same seed, same users"),
        "nat": Param(None, type=["null", "string"], description="nationalities, e.g. gb,fr"),
        "api_url": Param(None, type=["null", "string"], description="default: env RANDOMUSER_URL, else https://randomuser.me/api/"),
    },
)
def ingest_users():
    @task
    def fetch() -> dict:
        """Fetch `results` users from the randomuser.me API (`api_url`), retrying connection
        errors, 429 and 5xx with backoff; the API's own `{"error": …}` fails the task."""
        from users_etl.api import api_key_for, default_api_url, fetch_users

        params = get_current_context()["params"]
        api_url = params.get("api_url") or default_api_url()
        payload = fetch_users(api_url, int(params["results"]), params.get("seed"), params.get("nat"), api_key=api_key_for(api_url))
        print(f"fetched {len(payload['results'])} users from {api_url}")
        return payload

    @task(retries=0)  # a payload that does not validate will not validate on a retry either
    def transform(payload: dict) -> list[dict]:
        """Validate every user and map it to a `public.users` row; one invalid user fails the
        batch with a message naming the user and the field, before anything is written."""
        from users_etl.transform import to_rows

        return to_rows(payload)

    @task
    def upsert(rows: list[dict]) -> dict:
        """Upsert the rows into `public.users` in one transaction; rows whose values did not
        change are skipped, so a rerun writes no WAL and makes no change events."""
        from airflow.providers.postgres.hooks.postgres import PostgresHook
        from users_etl.store import upsert_rows

        conn = PostgresHook(postgres_conn_id="users_db").get_conn()
        try:
            with conn:  # one transaction: all rows or none
                counts = upsert_rows(conn, rows)
        finally:
            conn.close()
        print(f"public.users: {counts}")
        return {**counts, "rows": len(rows)}

    upsert(transform(fetch()))


ingest_users()
