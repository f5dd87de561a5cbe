"""CDC capture: every write to public.users becomes the right Avro change event on Kafka."""

from __future__ import annotations

import datetime as dt
import json
import time
import uuid

import requests
from cdc_helpers import ROW, TOPIC, TopicReader, for_ids, insert, pg_row_as_event, replay, run_cli, wait_for

from cdcpipe import runtime
from cdcpipe.clients.connect import DEFAULT_FILE, ConnectorFile
from cdcpipe.pipeline.avro_reader import HEADER, schema_id_of


def select(pg, user_id: str) -> dict | None:
    return pg.execute("SELECT * FROM public.users WHERE id = %s", (user_id,)).fetchone()


def test_insert_update_delete_produce_exact_events(pg, topic_reader):
    user_id = insert(pg, ROW)
    created = select(pg, user_id)
    pg.execute(
        "UPDATE public.users SET email = %s, city = %s, street_number = %s, latitude = %s WHERE id = %s",
        ("new@example.com", "Dublin", 1, 53.35, user_id),
    )
    updated = select(pg, user_id)
    pg.execute("DELETE FROM public.users WHERE id = %s", (user_id,))

    events = topic_reader.read_until(lambda evs: len(for_ids(evs, {user_id})) >= 4)
    mine = for_ids(events, {user_id})
    assert [e["value"]["op"] if e["value"] else None for e in mine] == ["c", "u", "d", None]
    assert all(e["key"] == {"id": user_id} for e in mine)

    create, update, delete, tombstone = (e["value"] for e in mine)
    assert create["before"] is None and create["after"] == pg_row_as_event(created)
    assert update["before"] == pg_row_as_event(created) and update["after"] == pg_row_as_event(updated)
    assert delete["before"] == pg_row_as_event(updated) and delete["after"] is None
    assert tombstone is None
    # Source position and commit time travel with every event, in order.
    lsns = [e["value"]["source"]["lsn"] for e in mine[:3]]
    assert lsns == sorted(lsns) and len(set(lsns)) == 3
    for event in (create, update, delete):
        assert event["source"]["table"] == "users" and event["source"]["db"] == "users"
        commit = dt.datetime.fromtimestamp(event["source"]["ts_ms"] / 1000, dt.UTC)
        assert abs((dt.datetime.now(dt.UTC) - commit).total_seconds()) < 120


def test_pk_update_txn_and_twenty_updates_replay_to_final_state(pg, topic_reader):
    old_id, new_id = str(uuid.uuid4()), str(uuid.uuid4())
    insert(pg, ROW, uuid.UUID(old_id))
    pg.execute("UPDATE public.users SET id = %s WHERE id = %s", (new_id, old_id))  # primary-key update

    ephemeral = str(uuid.uuid4())
    with pg.transaction():  # insert and delete in one transaction
        insert(pg, ROW, uuid.UUID(ephemeral))
        pg.execute("DELETE FROM public.users WHERE id = %s", (ephemeral,))

    counter = insert(pg, ROW)
    for i in range(20):  # twenty updates in twenty transactions
        pg.execute("UPDATE public.users SET street_number = %s, email = %s WHERE id = %s", (i, f"v{i}@x", counter))

    ids = {old_id, new_id, ephemeral, counter}
    final_counter = select(pg, counter)

    def complete(evs):
        mine = for_ids(evs, {counter})
        return bool(mine) and mine[-1]["value"] and mine[-1]["value"]["after"]["street_number"] == 19

    events = for_ids(topic_reader.read_until(complete), ids)
    state = replay(events)
    assert set(state) == {new_id, counter}
    assert state[new_id] == pg_row_as_event(select(pg, new_id))
    assert state[counter] == pg_row_as_event(final_counter)
    # The primary-key change is a delete of the old key (+ tombstone) and a create of the new.
    old_events = for_ids(events, {old_id})
    assert [e["value"]["op"] if e["value"] else None for e in old_events] == ["c", "d", None]
    assert [e["value"]["op"] for e in for_ids(events, {ephemeral}) if e["value"]] == ["c", "d"]
    assert len([e for e in for_ids(events, {counter}) if e["value"] and e["value"]["op"] == "u"]) == 20


def test_wire_format_and_registry_subjects(stack, pg, topic_reader):
    user_id = insert(pg, ROW)
    pg.execute("DELETE FROM public.users WHERE id = %s", (user_id,))
    topic_reader.read_until(lambda evs: len(for_ids(evs, {user_id})) >= 3)
    registry_url, auth = stack["schema_registry"].url, stack["schema_registry"].auth
    checked = 0
    for key, value, _ in topic_reader.raw:
        for data in (key, value):
            if data is None:
                continue
            assert data[0] == 0, f"magic byte {data[0]}"
            assert len(data) > HEADER.size
            schema_id = schema_id_of(data)
            fetched = requests.get(f"{registry_url}/schemas/ids/{schema_id}", timeout=10, auth=auth)
            assert fetched.status_code == 200, fetched.text
            checked += 1
    assert checked >= 5
    subjects = requests.get(f"{registry_url}/subjects", timeout=10, auth=auth).json()
    assert {f"{TOPIC}-key", f"{TOPIC}-value"} <= set(subjects)
    # The value subject's latest schema is the Debezium envelope.
    latest = requests.get(f"{registry_url}/subjects/{TOPIC}-value/versions/latest", timeout=10, auth=auth).json()
    field_names = {f["name"] for f in json.loads(latest["schema"])["fields"]}
    assert {"before", "after", "source", "op"} <= field_names


def test_hard_values_survive_exactly(pg, topic_reader):
    hard = {
        **ROW,
        "username": "🐘𝔘ñí©ødé 漢字",  # 4-byte characters included
        "email": "",  # empty string, distinct from NULL
        "title": None,
        "first_name": "quote \" and ' and `",
        "last_name": "back\\slash \\n not a newline",
        "street_name": "line one\nline two\r\n\ttabbed",
        "city": "'; DROP TABLE users; --",
        "street_number": 2147483647,
        "postcode": "00000",
        "latitude": -90.0,
        "longitude": 180.0,
        "dob": dt.datetime(1901, 12, 13, 20, 45, 52, 123456, tzinfo=dt.UTC),
        "registered_at": dt.datetime(2100, 1, 1, 0, 0, 0, 1, tzinfo=dt.UTC),
    }
    first = insert(pg, hard)
    second = insert(pg, {**hard, "street_number": -2147483648, "latitude": 90.0, "longitude": -180.0, "email": None})
    events = topic_reader.read_until(lambda evs: len(for_ids(evs, {first, second})) >= 2)
    after = {e["value"]["after"]["id"]: e["value"]["after"] for e in for_ids(events, {first, second})}
    assert after[first] == pg_row_as_event(select(pg, first))
    assert after[second] == pg_row_as_event(select(pg, second))
    assert after[first]["username"] == hard["username"]
    assert after[first]["email"] == "" and after[second]["email"] is None
    assert after[first]["street_name"] == "line one\nline two\r\n\ttabbed"
    assert after[first]["dob"] == "1901-12-13T20:45:52.123456Z"
    assert after[first]["registered_at"] == "2100-01-01T00:00:00.000001Z"
    assert (after[second]["street_number"], after[second]["latitude"], after[second]["longitude"]) == (-2147483648, 90.0, -180.0)


def test_the_worker_converts_with_its_schema_work_once_and_the_same_bytes(conf, pg, topic_reader):
    """The worker's converter (cdcpipe/jvm/connect) writes a schema's first records through
    Apicurio's converter and compares its own bytes with Apicurio's for the next three; any
    difference sends that schema back to Apicurio's path and is logged, and agreement is logged
    too. Past those, every record is its own: twelve rows of hard values each decode to the row
    PostgreSQL holds, nothing was logged as different since the worker started, and the users
    topic's schema was logged as written by the wrapper."""
    from cdcpipe.runtime import processes

    log = processes.log_since_start(conf, "connect", limit=64 << 20)
    assert "Set up the value converter class cdcpipe.connect.SchemaOnceAvroConverter" in log, "the worker runs another converter"
    ids = [
        insert(pg, {**ROW, "username": f"ñ-{i}-漢字", "email": None if i % 2 else "", "street_number": -(2**31) + i, "latitude": -90.0 + i})
        for i in range(12)
    ]
    events = topic_reader.read_until(lambda evs: len(for_ids(evs, set(ids))) >= len(ids))
    after = {e["value"]["after"]["id"]: e["value"]["after"] for e in for_ids(events, set(ids))}
    assert [after[i] for i in ids] == [pg_row_as_event(select(pg, i)) for i in ids]
    log = processes.log_since_start(conf, "connect", limit=64 << 20)
    assert "came out differently from Apicurio's converter" not in log
    # ... and the records past the compared ones were the wrapper's own (not Apicurio's, always)
    assert f"on topic {TOPIC}: 3 records written as Apicurio writes them; writing it here from now on" in log


def test_register_twice_is_harmless(stack, connector):
    client = stack["connect"].client()
    for _ in range(2):
        out = run_cli("connector", "register", "--json")
        assert out.returncode == 0, out.stderr
        assert json.loads(out.stdout)["connector"]["state"] == "RUNNING"
    assert "unchanged" in out.stderr
    assert client.list().count(connector.name) == 1
    status = client.status(connector.name)
    assert len(status["tasks"]) == 1 and status["tasks"][0]["state"] == "RUNNING"


def test_a_wrong_field_is_rejected_by_name(stack, tmp_path):
    definition = json.loads(DEFAULT_FILE.read_text())
    definition["name"] = "users-cdc-invalid"
    definition["config"]["snapshot.mode"] = "sometimes"
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps(definition))
    out = run_cli("connector", "register", str(bad))
    assert out.returncode == 2, out.stderr
    assert "snapshot.mode" in out.stderr
    assert "users-cdc-invalid" not in stack["connect"].client().list()


def test_connect_unreachable_is_a_clear_error():
    out = run_cli("connector", "--connect-url", "http://127.0.0.1:1", "status")
    assert out.returncode == 6
    assert "not reachable at http://127.0.0.1:1" in out.stderr


def test_existing_rows_arrive_as_snapshot_reads(stack, pg):
    """A second connector (own slot and topic prefix) snapshots rows that predate it as op r."""
    existing = insert(pg, ROW)
    definition = ConnectorFile.load(DEFAULT_FILE)
    run = uuid.uuid4().hex[:8]  # Connect keeps source offsets per topic prefix: a fresh one per run
    slot = f"snapshot_test_{run}"
    config = {**definition.config, "slot.name": slot, "topic.prefix": f"snaptest{run}"}
    probe = ConnectorFile(name=f"users-cdc-snapshot-test-{run}", config=config)
    client = stack["connect"].client()
    reader = TopicReader(stack["kafka"], stack["schema_registry"], topic=f"snaptest{run}.public.users")
    try:
        client.validate(probe)
        client.put_config(probe)
        client.wait_for_state(probe.name, "RUNNING", timeout=120)
        events = reader.read_until(lambda evs: bool(for_ids(evs, {existing})), timeout=90)
        event = for_ids(events, {existing})[0]["value"]
        assert event["op"] == "r"
        assert event["source"]["snapshot"] in ("true", "first", "last", "first_in_data_collection", "last_in_data_collection")
        assert event["after"] == pg_row_as_event(select(pg, existing))
    finally:
        reader.close()
        client.delete(probe.name)
        with stack["postgres"].connect(dbname="users", autocommit=True) as admin:
            for _ in range(60):
                active = admin.execute("SELECT active FROM pg_replication_slots WHERE slot_name = %s", (slot,)).fetchone()
                if active is None:
                    break
                if not active[0]:
                    admin.execute("SELECT pg_drop_replication_slot(%s)", (slot,))
                    break
                time.sleep(1)


def test_changes_made_while_connect_is_down_arrive_after_restart(stack, conf, pg, topic_reader, connector):
    runtime.down(conf, ["connect"], progress=lambda _m: None)
    assert not stack["connect"].any_running()
    assert stack["kafka"].running() and stack["postgres"].running()  # only what was named stops
    try:
        ids = {insert(pg, {**ROW, "username": f"offline-{i}"}) for i in range(5)}
        pg.execute("UPDATE public.users SET city = 'Cork' WHERE id = ANY(%s)", (list(ids),))
    finally:
        runtime.up(conf, ["connect"], progress=lambda _m: None)
    stack["connect"].client().wait_for_state(connector.name, "RUNNING", timeout=120)
    events = topic_reader.read_until(
        lambda evs: len([e for e in for_ids(evs, ids) if e["value"] and e["value"]["op"] == "u"]) >= 5, timeout=120
    )
    mine = for_ids(events, ids)
    assert {e["key"]["id"] for e in mine if e["value"]["op"] == "c"} == ids
    assert all(e["value"]["after"]["city"] == "Cork" for e in mine if e["value"]["op"] == "u")


def test_an_idle_table_does_not_pin_wal(stack, connector):
    """Heartbeats let the slot advance while public.users sees no writes."""
    with stack["postgres"].connect(dbname="users", autocommit=True) as admin:

        def flushed() -> int:
            return admin.execute(
                "SELECT confirmed_flush_lsn - '0/0'::pg_lsn FROM pg_replication_slots WHERE slot_name = 'cdc_users'"
            ).fetchone()[0]

        start = admin.execute("SELECT pg_current_wal_lsn() - '0/0'::pg_lsn").fetchone()[0]
        # WAL from elsewhere in the cluster, none of it in the publication.
        admin.execute("CREATE TABLE IF NOT EXISTS public.wal_filler (n int)")
        admin.execute("INSERT INTO public.wal_filler SELECT generate_series(1, 20000)")
        admin.execute("DROP TABLE public.wal_filler")
        wait_for(
            lambda: flushed() > start,
            60,
            lambda: f"the replication slot past WAL written while the table was idle (confirmed flush {flushed()}, WAL was at {start})",
            interval=2,
        )


def test_pause_holds_changes_and_resume_delivers_them(pg, topic_reader, connector):
    assert run_cli("connector", "pause").returncode == 0
    try:
        held = insert(pg, {**ROW, "username": "while-paused"})
        time.sleep(5)
        polled = topic_reader.read_until(lambda evs: True, timeout=5)  # whatever arrived meanwhile
        assert for_ids(polled, {held}) == []
    finally:
        out = run_cli("connector", "resume")
    assert out.returncode == 0, out.stderr
    events = topic_reader.read_until(lambda evs: bool(for_ids(evs, {held})), timeout=60)
    assert for_ids(events, {held})[0]["value"]["op"] == "c"
