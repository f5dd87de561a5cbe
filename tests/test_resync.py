"""Re-sync and schema changes on a running pipeline: `cdcpipe resync` after a lost slot, a
replaced source, and the policy for each DDL (PROPOSED_README_RESYNC.md: the table).

Columns made by these tests get a fresh suffix each run: Cassandra keeps a column's type
after the source drops it, so a rerun on the same stack must not meet last run's columns.
"""

from __future__ import annotations

import time
import uuid
from decimal import Decimal

from cdc_helpers import wait_until_read_model_matches
from test_capture import ROW

from cdcpipe import resync, verify
from cdcpipe.connect_client import DEFAULT_FILE, ConnectClient, ConnectorFile
from cdcpipe.latency import Load
from cdcpipe.pipeline import sync_state


def run_resync(stack, conf, pg, cassandra, rebuild: bool = False) -> dict:
    return resync.run(
        pg=pg,
        session=cassandra,
        connect=ConnectClient(stack["connect"].url),
        connector=ConnectorFile.load(DEFAULT_FILE),
        bootstrap=stack["kafka"].bootstrap,
        registry_url=stack["schema_registry"].url,
        settings=conf,
        timeout=300,
        rebuild=rebuild,
        say=lambda m: print(m, flush=True),
    )


def insert(pg, row: dict) -> str:
    """test_capture.insert with quoted column names (some here need quotes)."""
    from psycopg import sql

    user_id = uuid.uuid4()
    columns = ["id", *row]
    pg.execute(
        sql.SQL("INSERT INTO public.users ({}) VALUES ({})").format(
            sql.SQL(", ").join(map(sql.Identifier, columns)), sql.SQL(", ").join(sql.Placeholder() * len(columns))
        ),
        [user_id, *row.values()],
    )
    return str(user_id)


def admin(stack):
    """The table owner's DDL needs the superuser here (the application role only writes rows)."""
    return stack["postgres"].connect(dbname="users", autocommit=True)


def fresh(name: str) -> str:
    return f"{name}_{uuid.uuid4().hex[:6]}"


def wait_for_job_reason(spark_job, conf, needle: str, timeout: float = 180.0) -> tuple[str, dict]:
    """The job's failure reason once it mentions ``needle`` (the job keeps retrying meanwhile)."""
    deadline = time.monotonic() + timeout
    while True:
        status = spark_job.status(conf)
        reason = str((status.get("failure") or {}).get("reason") or status.get("reason") or "")
        if needle in reason:
            return reason, status
        assert time.monotonic() < deadline, f"the job did not stop on {needle!r}: {status}"
        time.sleep(1)


def drop_columns(stack, conf, pg, cassandra, *columns: str) -> None:
    """A test's own columns. Cassandra keeps a dropped column's values until a resync clears
    them (the DROP COLUMN policy); the next test's verify would report them, so resync then.
    Never ALTER TABLE cdc.users DROP: see cassandra_sink.REBUILD_STEP."""
    with admin(stack) as su:
        for column in columns:
            su.execute(f'ALTER TABLE public.users DROP COLUMN IF EXISTS "{column}"')
    _, diff = verify.compare(pg, cassandra)
    if any("columns only in Cassandra still hold values" in d for d in diff):
        run_resync(stack, conf, pg, cassandra)


def test_slot_loss_gap_is_repaired_by_resync_while_streaming(stack, conf, pg, cassandra, spark_job, connector):
    ids = [insert(pg, {**ROW, "username": f"gap-{i}"}) for i in range(40)]
    wait_until_read_model_matches(pg, cassandra)
    load = Load(stack["postgres"].dsn(), rate=20, seed=13)  # inserts, updates, deletes the whole time
    load.start()
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
        status = client.reset_offsets(connector.name, timeout=180, on_wait=lambda m: print("reset-offsets:", m, flush=True))
        assert status["connector"]["state"] == "RUNNING" and all(t["state"] == "RUNNING" for t in status["tasks"])
        summary = run_resync(stack, conf, pg, cassandra)
        assert summary["stale_rows_deleted"] >= len(deleted)
    finally:
        load.stop.set()
        load.join(10)
    assert load.error is None and load.done > 20
    model = wait_until_read_model_matches(pg, cassandra)
    assert not set(deleted) & set(model)
    assert {model[i]["city"] for i in updated} == {"changed-in-gap"}


def test_a_replaced_source_stops_the_job_naming_resync(stack, conf, pg, cassandra, spark_job, connector):
    """A new cluster is seen as LSNs below the floor the newest epoch recorded for its records,
    and as another system identifier. Made here by recording an epoch as another cluster would
    have left it: its floor far above today's WAL, another identifier."""
    wait_until_read_model_matches(pg, cassandra)
    epochs = sync_state.load(cassandra, "cdc.public.users")
    number = (epochs[-1].number if epochs else 0) + 1
    current_lsn = pg.execute("SELECT pg_current_wal_lsn() - '0/0'::pg_lsn AS lsn").fetchone()["lsn"]
    starts = resync.end_offsets(stack["kafka"].bootstrap, "cdc.public.users")
    sync_state.record(cassandra, "cdc.public.users", number, starts, int(current_lsn) + 10**12, "1234567890", "cdc_users", None)
    user_id = insert(pg, {**ROW, "username": "after-the-replacement"})
    reason, _ = wait_for_job_reason(spark_job, conf, "changed identity")
    assert "cdcpipe resync" in reason
    _, diff = verify.compare(pg, cassandra)
    assert any("system identifier" in d and "cdcpipe resync" in d for d in diff), diff
    summary = run_resync(stack, conf, pg, cassandra)  # the documented step
    assert summary["epoch"] == number + 1
    model = wait_until_read_model_matches(pg, cassandra)
    assert model[user_id]["username"] == "after-the-replacement"


def test_truncate_is_reported_then_repaired_by_resync_keeping_newer_rows(stack, conf, pg, cassandra, spark_job, connector):
    """Debezium's TRUNCATE event has no key and the compacted topic refuses keyless records, so
    the connector skips TRUNCATE (its default); verify reports the rows, resync deletes them."""
    for _ in range(5):
        insert(pg, ROW)
    wait_until_read_model_matches(pg, cassandra)
    with admin(stack) as su:
        su.execute("TRUNCATE public.users")
    after = insert(pg, {**ROW, "username": "after-truncate"})
    deadline = time.monotonic() + 60
    while after not in verify.read_model_rows(cassandra, ["id"]):  # streaming goes on past it
        assert time.monotonic() < deadline, "the insert after TRUNCATE did not arrive"
        time.sleep(0.5)
    assert ConnectClient(stack["connect"].url).status(connector.name)["tasks"][0]["state"] == "RUNNING"
    _, diff = verify.compare(pg, cassandra)
    assert diff, "rows deleted by TRUNCATE should be reported"
    run_resync(stack, conf, pg, cassandra)
    model = wait_until_read_model_matches(pg, cassandra)
    assert list(model) == [after]


def test_columns_that_need_quoting_in_cql(stack, conf, pg, cassandra, spark_job):
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
        drop_columns(stack, conf, pg, cassandra, "NickName", "token")


def test_add_column_without_default_arrives_with_the_first_value(stack, conf, pg, cassandra, spark_job):
    column = fresh("nickname")
    with admin(stack) as su:
        su.execute(f"ALTER TABLE public.users ADD COLUMN {column} text")
    try:
        wait_until_read_model_matches(pg, cassandra)  # NULL everywhere: equal before any event
        user_id = insert(pg, {**ROW, column: "first"})
        model = wait_until_read_model_matches(pg, cassandra)
        assert model[user_id][column] == "first"
    finally:
        drop_columns(stack, conf, pg, cassandra, column)


def test_add_column_with_default_is_reported_then_filled_by_resync(stack, conf, pg, cassandra, spark_job):
    insert(pg, ROW)
    wait_until_read_model_matches(pg, cassandra)
    column = fresh("tier")
    with admin(stack) as su:
        su.execute(f"ALTER TABLE public.users ADD COLUMN {column} text DEFAULT 'basic'")  # no row events
    try:
        _, diff = verify.compare(pg, cassandra)
        assert any("columns only in PostgreSQL hold values" in d and column in d for d in diff), diff
        run_resync(stack, conf, pg, cassandra)
        model = wait_until_read_model_matches(pg, cassandra)
        assert model and {row[column] for row in model.values()} == {"basic"}
    finally:
        drop_columns(stack, conf, pg, cassandra, column)


def test_drop_and_rename_column_are_reported_then_cleared_by_resync(stack, conf, pg, cassandra, spark_job):
    dropped, renamed, new_name = fresh("shoe_size"), fresh("nick"), fresh("nickname")
    with admin(stack) as su:
        su.execute(f"ALTER TABLE public.users ADD COLUMN {dropped} integer, ADD COLUMN {renamed} text")
    user_id = insert(pg, {**ROW, dropped: 42, renamed: "zz"})
    wait_until_read_model_matches(pg, cassandra)
    with admin(stack) as su:
        su.execute(f"ALTER TABLE public.users DROP COLUMN {dropped}")
        su.execute(f"ALTER TABLE public.users RENAME COLUMN {renamed} TO {new_name}")
    try:
        _, diff = verify.compare(pg, cassandra)
        held = [d for d in diff if "columns only in Cassandra still hold values" in d]
        assert held and dropped in held[0] and renamed in held[0], diff
        run_resync(stack, conf, pg, cassandra)
        model = wait_until_read_model_matches(pg, cassandra)
        assert model[user_id][new_name] == "zz"
        row = cassandra.execute(f"SELECT {dropped}, {renamed} FROM cdc.users WHERE id = %s", (uuid.UUID(user_id),)).one()
        assert tuple(row) == (None, None)
    finally:
        pg.execute("DELETE FROM public.users WHERE id = %s", (user_id,))
        drop_columns(stack, conf, pg, cassandra, new_name, dropped, renamed)


def test_compatible_type_changes_keep_flowing_until_a_value_does_not_fit(stack, conf, pg, cassandra, spark_job):
    number, label = fresh("visits"), fresh("label")
    with admin(stack) as su:
        su.execute(f"ALTER TABLE public.users ADD COLUMN {number} integer, ADD COLUMN {label} varchar(8)")
    try:
        user_id = insert(pg, {**ROW, number: 1, label: "short"})
        wait_until_read_model_matches(pg, cassandra)
        with admin(stack) as su:
            su.execute(f"ALTER TABLE public.users ALTER COLUMN {number} TYPE bigint, ALTER COLUMN {label} TYPE text")
        pg.execute(f"UPDATE public.users SET {number} = 2, {label} = 'longer than eight' WHERE id = %s", (user_id,))
        model = wait_until_read_model_matches(pg, cassandra)  # int <- bigint while values fit; text is text
        assert (model[user_id][number], model[user_id][label]) == (2, "longer than eight")
        pg.execute(f"UPDATE public.users SET {number} = %s WHERE id = %s", (2**40, user_id))
        reason, _ = wait_for_job_reason(spark_job, conf, f"{number} is int")
        assert "cdcpipe resync --rebuild" in reason
        run_resync(stack, conf, pg, cassandra, rebuild=True)  # the documented step
        model = wait_until_read_model_matches(pg, cassandra)
        assert model[user_id][number] == 2**40
    finally:
        drop_columns(stack, conf, pg, cassandra, number, label)


def test_an_incompatible_type_change_stops_with_the_step_to_take(stack, conf, pg, cassandra, spark_job):
    column = fresh("grade")
    with admin(stack) as su:
        su.execute(f"ALTER TABLE public.users ADD COLUMN {column} integer")
    try:
        user_id = insert(pg, {**ROW, column: 3})
        wait_until_read_model_matches(pg, cassandra)
        dead_before = spark_job.dead_letter_count(conf)
        with admin(stack) as su:
            su.execute(f"ALTER TABLE public.users ALTER COLUMN {column} TYPE text USING {column}::text")
        pg.execute(f"UPDATE public.users SET {column} = 'A+' WHERE id = %s", (user_id,))
        reason, _ = wait_for_job_reason(spark_job, conf, column)
        assert "cdcpipe resync --rebuild" in reason
        assert spark_job.dead_letter_count(conf) == dead_before  # not per-row dead letters
        run_resync(stack, conf, pg, cassandra, rebuild=True)  # the documented step
        model = wait_until_read_model_matches(pg, cassandra)
        assert model[user_id][column] == "A+"
        pg.execute("DELETE FROM public.users WHERE id = %s", (user_id,))
    finally:
        drop_columns(stack, conf, pg, cassandra, column)


def test_types_beyond_the_contract_are_mapped_without_loss(stack, conf, pg, cassandra, spark_job):
    names = {kind: fresh(kind) for kind in ("amount", "active", "scores", "tags", "doc")}
    with admin(stack) as su:
        su.execute(
            "ALTER TABLE public.users "
            f"ADD COLUMN {names['amount']} numeric, ADD COLUMN {names['active']} boolean, "
            f"ADD COLUMN {names['scores']} integer[], ADD COLUMN {names['tags']} text[], ADD COLUMN {names['doc']} jsonb"
        )
    try:
        values = {
            names["amount"]: Decimal("12345678901234567890.0001"),
            names["active"]: False,
            names["scores"]: [3, 1, 2],
            names["tags"]: ["a", "b c"],
            names["doc"]: '{"k": [1, 2], "n": null}',
        }
        user_id = insert(pg, {**ROW, **values})
        model = wait_until_read_model_matches(pg, cassandra)
        row = model[user_id]
        assert row[names["amount"]] == values[names["amount"]] and row[names["active"]] is False
        assert row[names["scores"]] == [3, 1, 2] and row[names["tags"]] == ["a", "b c"]
        assert row[names["doc"]] == '{"k": [1, 2], "n": null}'
        cassandra.cluster.refresh_table_metadata("cdc", "users")
        types = {n: c.cql_type for n, c in cassandra.cluster.metadata.keyspaces["cdc"].tables["users"].columns.items()}
        assert [types[names[k]] for k in ("amount", "active", "scores", "tags", "doc")] == [
            "decimal",
            "boolean",
            "list<int>",
            "list<text>",
            "text",
        ]
        pg.execute("DELETE FROM public.users WHERE id = %s", (user_id,))
    finally:
        drop_columns(stack, conf, pg, cassandra, *names.values())
