"""The ingest DAGs: import cleanly, transform exactly, and write through Airflow to PostgreSQL."""

from __future__ import annotations

import json
import socket
import sys
import threading

import pytest
import requests
from cdc_helpers import run_cli

from cdcpipe.runtime.randomuser import generate, make_server
from cdcpipe.settings import REPO

sys.path.insert(0, str(REPO / "airflow" / "dags"))
from users_etl.transform import COLUMNS, ValidationError, to_row, to_rows  # noqa: E402

DAGS = REPO / "airflow" / "dags"


@pytest.fixture(scope="module")
def api():
    server = make_server("127.0.0.1", 0)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    url = f"http://127.0.0.1:{server.server_port}/api/"

    def faults(**spec):
        requests.post(f"http://127.0.0.1:{server.server_port}/__faults", json=spec, timeout=5).raise_for_status()

    yield url, faults
    server.shutdown()


# --- the stand-in's key ------------------------------------------------------------------------
def test_the_standin_refuses_every_request_without_its_key():
    from users_etl.api import ApiError, fetch_users

    server = make_server("127.0.0.1", 0, api_key="the-right-key-0123")
    threading.Thread(target=server.serve_forever, daemon=True).start()
    base = f"http://127.0.0.1:{server.server_port}"
    try:
        for headers in ({}, {"Authorization": "Bearer wrong"}, {"Authorization": "Basic dGhlLXJpZ2h0LWtleS0wMTIz"}):
            answer = requests.get(base + "/api/", params={"results": 1}, headers=headers, timeout=5)
            assert answer.status_code == 401 and "API key" in answer.json()["error"], headers
            assert "the-right-key" not in answer.text
            faults = requests.post(base + "/__faults", json={"status": [500]}, headers=headers, timeout=5)
            assert faults.status_code == 401, headers
        with pytest.raises(ApiError, match="HTTP 401"):
            fetch_users(base + "/api/", 1)
        assert len(fetch_users(base + "/api/", 3, api_key="the-right-key-0123")["results"]) == 3
    finally:
        server.shutdown()


def test_the_dags_send_the_key_to_its_origin_only(monkeypatch):
    from users_etl.api import api_key_for

    assert api_key_for("http://127.0.0.1:8089/api/") is None  # no connection: the public API
    monkeypatch.setenv(
        "AIRFLOW_CONN_RANDOMUSER_API", json.dumps({"conn_type": "http", "host": "http://127.0.0.1:8089", "password": "k3y-0123456"})
    )
    assert api_key_for("http://127.0.0.1:8089/api/") == "k3y-0123456"
    assert api_key_for("HTTP://127.0.0.1:8089/api/1.4/?results=5") == "k3y-0123456"
    for elsewhere in (
        "https://randomuser.me/api/",
        "http://127.0.0.1:8088/api/",
        "https://127.0.0.1:8089/api/",
        "http://localhost:8089/api/",
    ):
        assert api_key_for(elsewhere) is None, elsewhere


# --- DAG files -------------------------------------------------------------------------------
def test_dagbag_imports_both_dags_without_io(monkeypatch):
    from airflow.dag_processing.dagbag import DagBag

    def no_network(*args, **kwargs):
        raise AssertionError("network or database I/O at DAG import time")

    monkeypatch.setattr(socket.socket, "connect", no_network)
    monkeypatch.setattr(socket, "getaddrinfo", no_network)
    bag = DagBag(dag_folder=str(DAGS))
    assert bag.import_errors == {}
    assert set(bag.dag_ids) == {"ingest_users", "user_churn"}
    for dag_id in bag.dag_ids:
        dag = bag.dags[dag_id]
        assert dag.catchup is False and dag.max_active_runs == 1
        assert dag.doc_md and dag.schedule
    ingest = bag.dags["ingest_users"]
    assert ingest.params["results"] == 100
    assert list(ingest.task_dict) == ["fetch", "transform", "upsert"]
    for dag_id in bag.dag_ids:  # every task documents itself in the UI
        assert all(task.doc_md or task.doc for task in bag.dags[dag_id].tasks), dag_id


def test_unpausing_a_dag_never_starts_a_run_for_a_tick_just_past(monkeypatch):
    """`cdcpipe ingest` unpauses the DAG before triggering it. A scheduled run for the tick
    just past would run first (max_active_runs=1) against the default API and hold the
    triggered run in 'queued' (seen: 50 s). Checked on the timetables as the scheduler sees
    them, for an unpause 1 minute after each DAG's tick."""
    import datetime as dt

    from airflow.dag_processing.dagbag import DagBag
    from airflow.serialization.serialized_objects import DagSerialization
    from airflow.timetables import trigger
    from airflow.timetables.base import TimeRestriction

    bag = DagBag(dag_folder=str(DAGS))
    for dag_id, tick in (
        ("ingest_users", dt.datetime(2026, 5, 1, 7, 0, tzinfo=dt.UTC)),
        ("user_churn", dt.datetime(2026, 5, 1, 3, 30, tzinfo=dt.UTC)),
    ):
        dag = DagSerialization.from_dict(DagSerialization.to_dict(bag.dags[dag_id]))
        # No start_date: with one, Airflow 3.3's CronTriggerTimetable ignores run_immediately
        # ("no effect if there is restriction on earliest") and runs the tick just past.
        assert dag.start_date is None, (dag_id, dag.start_date)
        monkeypatch.setattr(trigger, "utcnow", lambda at=tick + dt.timedelta(minutes=1): at)
        restriction = TimeRestriction(earliest=dag.start_date, latest=None, catchup=dag.catchup)  # as the scheduler asks
        first = dag.timetable.next_dagrun_info_v2(last_dagrun_info=None, restriction=restriction)
        assert first.run_after > tick, (dag_id, first.run_after)


# --- transform -------------------------------------------------------------------------------
def test_transform_maps_every_column_exactly():
    payload = generate({"results": "50", "seed": "exact", "nat": "us,gb,ie,fr,de"})
    rows = to_rows(payload)
    assert len(rows) == 50
    for user, row in zip(payload["results"], rows):
        assert set(row) == set(COLUMNS)
        assert row["id"] == user["login"]["uuid"]
        assert row["postcode"] == str(user["location"]["postcode"])
        assert row["latitude"] == float(user["location"]["coordinates"]["latitude"])
        assert row["first_name"] == user["name"]["first"]
        assert row["dob"] == user["dob"]["date"] and row["registered_at"] == user["registered"]["date"]
        assert row["nationality"] == user["nat"]
    postcode_types = {type(u["location"]["postcode"]) for u in payload["results"]}
    assert postcode_types == {int, str}  # both shapes the API sends were exercised


def test_transform_keeps_text_exactly_and_handles_integer_postcodes():
    user = generate({"results": "1", "seed": "t", "nat": "us"})["results"][0]
    user["name"]["first"] = "Zoë 🐘 \"quoted\" 'single' \\ back"
    user["location"]["city"] = ""
    user["location"]["postcode"] = 90210
    user["location"]["street"]["name"] = "line\nbreak"
    row = to_row(user, 0)
    assert row["first_name"] == "Zoë 🐘 \"quoted\" 'single' \\ back"
    assert row["city"] == "" and row["postcode"] == "90210" and row["street_name"] == "line\nbreak"


@pytest.mark.parametrize(
    "mutate, field",
    [
        (lambda u: u.pop("email"), "email"),
        (lambda u: u["location"]["street"].update(number="12"), "location.street.number"),
        (lambda u: u["location"]["coordinates"].update(latitude="north"), "location.coordinates.latitude"),
        (lambda u: u["dob"].update(date="yesterday"), "dob.date"),
        (lambda u: u["login"].update(uuid="not-a-uuid"), "login.uuid"),
        (lambda u: u["location"].update(postcode=None), "location.postcode"),
    ],
)
def test_an_invalid_user_fails_the_batch_naming_user_and_field(mutate, field):
    payload = generate({"results": "5", "seed": "bad"})
    mutate(payload["results"][3])
    with pytest.raises(ValidationError, match=rf"user #3 .*'{field}'"):
        to_rows(payload)


def test_5000_results_transform():
    payload = generate({"results": "5000", "seed": "big"})
    rows = to_rows(payload)
    assert len(rows) == 5000 and len({r["id"] for r in rows}) == 5000
    assert payload["info"] == {"seed": "big", "results": 5000, "page": 1, "version": "1.4"}


# --- through Airflow -------------------------------------------------------------------------
def ingest(*args):
    return run_cli("ingest", "--json", *args, timeout=900)


def rows_for(pg, ids):
    return {str(r["id"]): r for r in pg.execute("SELECT *, xmin::text AS xmin FROM public.users WHERE id = ANY(%s::uuid[])", (ids,))}


def test_ingest_lands_exact_rows_and_a_rerun_writes_nothing(stack, pg, api, connector):
    url, _ = api
    expected = to_rows(generate({"results": "40", "seed": "airflow-exact", "page": "1"}))
    ids = [r["id"] for r in expected]
    first = ingest("--results", "40", "--seed", "airflow-exact", "--api-url", url)
    assert first.returncode == 0, first.stderr
    assert json.loads(first.stdout)["result"]["rows"] == 40
    stored = rows_for(pg, ids)
    assert set(stored) == set(ids)
    for row in expected:
        got = stored[row["id"]]
        for column in COLUMNS:
            value = got[column]
            if column in ("dob", "registered_at"):
                value = value.strftime("%Y-%m-%dT%H:%M:%S.") + f"{value.microsecond // 1000:03d}Z"
            assert (str(value) if column == "id" else value) == row[column], column

    from cdc_helpers import ROW, TopicReader, for_ids, insert

    reader = TopicReader(stack["kafka"], stack["schema_registry"])
    try:
        # The first run's events may still be on their way when the reader starts: a marker
        # committed after them comes after them in the topic, so what follows it is the rerun's.
        before = insert(pg, ROW)
        cut = for_ids(reader.read_until(lambda evs: bool(for_ids(evs, {before}))), {before})[-1]["offset"]
        again = ingest("--results", "40", "--seed", "airflow-exact", "--api-url", url)
        assert again.returncode == 0, again.stderr
        assert json.loads(again.stdout)["result"] == {"rows": 40, "inserted": 0, "updated": 0, "unchanged": 40}
        assert {k: v["xmin"] for k, v in rows_for(pg, ids).items()} == {k: v["xmin"] for k, v in stored.items()}
        # No row version changed, so no change event: a marker write shows the topic is live.
        marker = insert(pg, ROW)
        events = reader.read_until(lambda evs: bool(for_ids(evs, {marker})))
        assert [e for e in for_ids(events, set(ids)) if e["offset"] > cut] == []
    finally:
        reader.close()


def test_http_500_then_success_is_retried_and_lands(pg, api, stack):
    url, faults = api
    faults(status=[500, 503])
    out = ingest("--results", "7", "--seed", "after-500", "--api-url", url)
    assert out.returncode == 0, out.stderr
    ids = [r["id"] for r in to_rows(generate({"results": "7", "seed": "after-500"}))]
    assert len(rows_for(pg, ids)) == 7


def test_a_missing_field_fails_the_run_and_writes_nothing(pg, api, stack):
    url, faults = api
    faults(drop_field="location")
    out = ingest("--results", "9", "--seed", "missing-field", "--api-url", url)
    assert out.returncode == 8, out.stdout + out.stderr
    assert json.loads(out.stdout)["state"] == "failed"
    assert "transform" in out.stderr
    ids = [r["id"] for r in to_rows(generate({"results": "9", "seed": "missing-field"}))]
    assert rows_for(pg, ids) == {}


def test_the_api_error_answer_fails_the_run_and_writes_nothing(pg, api, stack):
    url, faults = api
    faults(error=10)  # more than the task's retries
    out = ingest("--results", "6", "--seed", "api-error", "--api-url", url)
    assert out.returncode == 8, out.stdout + out.stderr
    assert "fetch" in out.stderr
    ids = [r["id"] for r in to_rows(generate({"results": "6", "seed": "api-error"}))]
    assert rows_for(pg, ids) == {}
    faults(error=-10)  # clear what is left


def test_churn_updates_and_deletes_through_airflow(pg, api, stack):
    url, _ = api
    before = {str(r["id"]) for r in pg.execute("SELECT id FROM public.users")}
    out = run_cli(
        "churn", "--json", "--update-fraction", "0.1", "--delete-fraction", "0.05", "--seed", "churn", "--api-url", url, timeout=900
    )
    assert out.returncode == 0, out.stderr
    result = json.loads(out.stdout)["result"]
    after = {str(r["id"]) for r in pg.execute("SELECT id FROM public.users")}
    assert result["deleted"] == round(len(before) * 0.05) and len(before - after) >= result["deleted"]
    assert result["updated"] == round(len(before) * 0.1)
