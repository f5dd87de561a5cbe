"""
### user_churn

Makes the pipeline show updates and deletes: picks a random sample of existing users in
**PostgreSQL** `public.users`, gives a fraction of them fresh contact and location data from
the randomuser.me API, and deletes another fraction. It writes to PostgreSQL only.

**Params**: `update_fraction` (0–1, default 0.2), `delete_fraction` (0–1, default 0.05),
`seed`, `api_url` (default: env `RANDOMUSER_URL`, else the public API).
"""

from __future__ import annotations

from datetime import timedelta

from airflow.sdk import CronTriggerTimetable, Param, dag, get_current_context, task

#: Columns churn refreshes: contact and location, never identity.
REFRESHED = (
    "email",
    "phone",
    "cell",
    "street_number",
    "street_name",
    "city",
    "state",
    "country",
    "postcode",
    "latitude",
    "longitude",
    "timezone_offset",
    "timezone_description",
)


@dag(
    dag_id="user_churn",
    # daily at 03:30 UTC, from the next tick on: no start_date and run_immediately=timedelta(0), so unpausing
    # the DAG does not start a run for the tick just past (which, with max_active_runs=1,
    # made a triggered run wait behind it: 50 s of "queued" for a 5 s run). Not
    # run_immediately=False: Airflow 3.3 treats False like None, and still runs the tick just
    # past when it is within 10% of the period (seen: a daily run at 03:30, unpaused at 03:48).
    schedule=CronTriggerTimetable("30 3 * * *", timezone="UTC", run_immediately=timedelta(0)),
    catchup=False,
    max_active_runs=1,
    doc_md=__doc__,
    tags=["cdcpipe", "churn"],
    default_args={"retries": 2, "retry_delay": timedelta(seconds=10)},
    params={
        "update_fraction": Param(0.2, type="number", minimum=0, maximum=1),
        "delete_fraction": Param(0.05, type="number", minimum=0, maximum=1),
        "seed": Param(None, type=["null", "string"]),
        "api_url": Param(None, type=["null", "string"]),
    },
)
def user_churn():
    @task
    def pick() -> dict:
        """Choose which users to refresh (`update_fraction`) and which to delete
        (`delete_fraction`), reproducibly for a given `seed`."""
        import random

        from airflow.providers.postgres.hooks.postgres import PostgresHook

        params = get_current_context()["params"]
        ids = [str(r[0]) for r in PostgresHook(postgres_conn_id="users_db").get_records("SELECT id FROM public.users ORDER BY id")]
        rng = random.Random(params.get("seed"))
        rng.shuffle(ids)
        n_update = round(len(ids) * float(params["update_fraction"]))
        n_delete = min(round(len(ids) * float(params["delete_fraction"])), len(ids) - n_update)
        return {"update": ids[:n_update], "delete": ids[n_update : n_update + n_delete]}

    @task
    def fresh_data(picked: dict) -> list[dict]:
        """Fetch new contact and location data for the users picked for an update."""
        from users_etl.api import api_key_for, default_api_url, fetch_users
        from users_etl.transform import to_rows

        params = get_current_context()["params"]
        if not picked["update"]:
            return []
        api_url = params.get("api_url") or default_api_url()
        payload = fetch_users(api_url, min(len(picked["update"]), 5000), params.get("seed"), api_key=api_key_for(api_url))
        rows = to_rows(payload)
        return [{**{c: row[c] for c in REFRESHED}, "id": user_id} for user_id, row in zip(picked["update"], rows)]

    @task
    def apply(picked: dict, updates: list[dict]) -> dict:
        """Update and delete the picked users in one transaction; Debezium captures both."""
        from airflow.providers.postgres.hooks.postgres import PostgresHook

        conn = PostgresHook(postgres_conn_id="users_db").get_conn()
        try:
            with conn, conn.cursor() as cur:
                for row in updates:
                    cur.execute(
                        f"UPDATE public.users SET {', '.join(f'{c} = %s' for c in REFRESHED)} WHERE id = %s",
                        [row[c] for c in REFRESHED] + [row["id"]],
                    )
                if picked["delete"]:
                    cur.execute("DELETE FROM public.users WHERE id = ANY(%s::uuid[])", (picked["delete"],))
        finally:
            conn.close()
        counts = {"updated": len(updates), "deleted": len(picked["delete"])}
        print(f"public.users: {counts}")
        return counts

    picked = pick()
    apply(picked, fresh_data(picked))


user_churn()
