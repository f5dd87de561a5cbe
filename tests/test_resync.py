"""Re-sync and schema changes on a running pipeline: `cdcpipe resync` after a lost slot, and
the policy for each DDL (README: 'Re-sync and schema changes')."""

from __future__ import annotations

import threading
import time
import uuid

import pytest

from cdc_helpers import wait_until_read_model_matches
from cdcpipe import resync, spark_job, verify
from cdcpipe.commands.connector import DEFAULT_FILE
from cdcpipe.connect_client import ConnectClient, ConnectorFile
from test_capture import ROW, insert


def run_resync(stack, conf, pg, cassandra):
    return resync.run(
        pg=pg, session=cassandra, connect=ConnectClient(stack["connect"].url), connector=ConnectorFile.load(DEFAULT_FILE),
        bootstrap=stack["kafka"].bootstrap, registry_url=stack["schema_registry"].url, settings=conf, timeout=300,
        say=lambda m: print(m, flush=True),
    )


def admin(stack):
    return stack["postgres"].connect(dbname="users", autocommit=True)


class Writer(threading.Thread):
    """New rows arriving the whole time (its own connection)."""

    def __init__(self, dsn: str):
        super().__init__(daemon=True)
        self.dsn, self.stop, self.ids = dsn, threading.Event(), []

    def run(self) -> None:
        import psycopg

        with psycopg.connect(self.dsn, autocommit=True) as conn:
            while not self.stop.is_set():
                self.ids.append(insert(conn, {**ROW, "username": f"live-{len(self.ids)}"}))
                time.sleep(0.2)


def test_slot_loss_gap_is_repaired_by_resync_while_streaming(stack, conf, pg, cassandra, spark_job, connector):
    ids = [insert(pg, {**ROW, "username": f"gap-{i}"}) for i in range(40)]
    wait_until_read_model_matches(pg, cassandra)
    writer = Writer(stack["postgres"].dsn())
    writer.start()
    try:
        client = ConnectClient(stack["connect"].url)
        client.delete(connector.name)
        with admin(stack) as su:
            deadline = time.monotonic() + 60
            while su.execute("SELECT active FROM pg_replication_slots WHERE slot_name = 'cdc_users'").fetchone() == (True,):
                assert time.monotonic() < deadline, "slot still active"
                time.sleep(0.5)
            su.execute("SELECT pg_drop_replication_slot('cdc_users')")
        # The gap: nothing streams these.
        updated, deleted = ids[:10], ids[10:20]
        pg.execute("UPDATE public.users SET city = 'changed-in-gap' WHERE id = ANY(%s)", (updated,))
        pg.execute("DELETE FROM public.users WHERE id = ANY(%s)", (deleted,))
        client.put_config(connector)
        # Debezium refuses to stream from offsets the new slot cannot serve; the documented
        # step: forget the offsets (a new initial snapshot), then resync.
        client.reset_offsets(connector.name)
        client.wait_for_state(connector.name, "RUNNING", timeout=120)
        summary = run_resync(stack, conf, pg, cassandra)
        assert summary["stale_rows_deleted"] >= len(deleted)
    finally:
        writer.stop.set()
        writer.join(10)
    model = wait_until_read_model_matches(pg, cassandra)
    assert not set(deleted) & set(model)
    assert {model[i]["city"] for i in updated} == {"changed-in-gap"}
    assert set(writer.ids) <= set(model) and len(writer.ids) > 5


def test_truncate_empties_the_read_model_in_order(stack, pg, cassandra, spark_job):
    for i in range(5):
        insert(pg, ROW)
    wait_until_read_model_matches(pg, cassandra)
    with admin(stack) as su:
        su.execute("TRUNCATE public.users")
    after = insert(pg, {**ROW, "username": "after-truncate"})
    model = wait_until_read_model_matches(pg, cassandra)
    assert list(model) == [after]


def test_columns_that_need_quoting_in_cql(stack, pg, cassandra, spark_job):
    with admin(stack) as su:
        su.execute('ALTER TABLE public.users ADD COLUMN IF NOT EXISTS "NickName" text, ADD COLUMN IF NOT EXISTS token text')
    user_id = None
    try:
        user_id = insert(pg, {**ROW, "NickName": "Zo", "token": "t-1"})
        model = wait_until_read_model_matches(pg, cassandra)
        assert model[user_id]["NickName"] == "Zo" and model[user_id]["token"] == "t-1"
    finally:
        if user_id:
            pg.execute("DELETE FROM public.users WHERE id = %s", (user_id,))
        with admin(stack) as su:
            su.execute('ALTER TABLE public.users DROP COLUMN IF EXISTS "NickName", DROP COLUMN IF EXISTS token')


def test_drop_and_rename_column_are_reported_then_cleared_by_resync(stack, conf, pg, cassandra, spark_job):
    with admin(stack) as su:
        su.execute("ALTER TABLE public.users ADD COLUMN IF NOT EXISTS shoe_size integer, ADD COLUMN IF NOT EXISTS nick text")
    user_id = insert(pg, {**ROW, "shoe_size": 42, "nick": "zz"})
    wait_until_read_model_matches(pg, cassandra)
    with admin(stack) as su:
        su.execute("ALTER TABLE public.users DROP COLUMN shoe_size")
        su.execute("ALTER TABLE public.users RENAME COLUMN nick TO nickname")
    _, diff = verify.compare(pg, cassandra)
    assert any("columns only in Cassandra still hold values" in d and "shoe_size" in d for d in diff), diff
    run_resync(stack, conf, pg, cassandra)
    model = wait_until_read_model_matches(pg, cassandra)
    assert model[user_id]["nickname"] == "zz"
    assert cassandra.execute("SELECT shoe_size, nick FROM cdc.users WHERE id = %s", (uuid.UUID(user_id),)).one() == (None, None)
    with admin(stack) as su:
        su.execute("ALTER TABLE public.users DROP COLUMN IF EXISTS nickname")
    pg.execute("DELETE FROM public.users WHERE id = %s", (user_id,))


def test_an_incompatible_type_change_stops_with_the_step_to_take(stack, conf, pg, cassandra, spark_job):
    with admin(stack) as su:
        su.execute("ALTER TABLE public.users ADD COLUMN IF NOT EXISTS grade integer")
    user_id = insert(pg, {**ROW, "grade": 3})
    wait_until_read_model_matches(pg, cassandra)
    with admin(stack) as su:
        su.execute("ALTER TABLE public.users ALTER COLUMN grade TYPE text USING grade::text")
    pg.execute("UPDATE public.users SET grade = 'A+' WHERE id = %s", (user_id,))
    deadline = time.monotonic() + 120
    while True:
        status = spark_job.status(conf)
        reason = str((status.get("failure") or {}).get("reason") or status.get("reason") or "")
        if "grade" in reason:
            break
        assert time.monotonic() < deadline, f"the job did not stop on the type change: {status}"
        time.sleep(1)
    assert "cdcpipe resync" in reason and "DROP" in reason
    assert spark_job.dead_letter_count(conf) == status["dead_letters"]  # not per-row dead letters
    cassandra.execute('ALTER TABLE cdc.users DROP "grade"')  # the documented step
    run_resync(stack, conf, pg, cassandra)
    model = wait_until_read_model_matches(pg, cassandra)
    assert model[user_id]["grade"] == "A+"
    pg.execute("DELETE FROM public.users WHERE id = %s", (user_id,))
    with admin(stack) as su:
        su.execute("ALTER TABLE public.users DROP COLUMN IF EXISTS grade")
