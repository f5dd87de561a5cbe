"""Re-sync and schema changes on a running pipeline: `cdcpipe resync` after a lost slot, a
replaced source, and the policy for each DDL (docs/operations.md: the table).

Columns made by these tests get a fresh suffix each run: Cassandra keeps a column's type
after the source drops it, so a rerun on the same stack must not meet last run's columns.
"""

from __future__ import annotations

import datetime as dt
import threading
import time
import uuid
from decimal import Decimal

import pytest
from cdc_helpers import ROW, wait_for, wait_until_read_model_matches

from cdcpipe import resync, verify
from cdcpipe.bench.latency import Load
from cdcpipe.clients import kafka_io
from cdcpipe.clients.connect import DEFAULT_FILE, ConnectorFile
from cdcpipe.pipeline import sync_state


def run_resync(stack, conf, pg, cassandra, rebuild: bool = False) -> dict:
    return resync.run(
        pg=pg,
        session=cassandra,
        connect=stack["connect"].client(),
        connector=ConnectorFile.load(DEFAULT_FILE),
        kafka=stack["kafka"].client_config(),
        registry=stack["schema_registry"].cache(),
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


def free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_for_job_reason(spark_job, conf, needle: str, timeout: float = 180.0) -> tuple[str, dict]:
    """The job's failure reason once it mentions ``needle`` (the job keeps retrying meanwhile)."""
    last: list[dict] = [{}]

    def stopped_on_needle() -> tuple[str, dict] | None:
        status = last[0] = spark_job.status(conf)
        reason = str((status.get("failure") or {}).get("reason") or status.get("reason") or "")
        return (reason, status) if needle in reason else None

    return wait_for(stopped_on_needle, timeout, lambda: f"the job stopping on {needle!r}; its last status: {last[0]}", interval=1)


def drop_columns(stack, conf, pg, cassandra, *columns: str) -> None:
    """A test's own columns. The job clears a dropped column's values at the DROP's position
    (the column stays in cdc.users, empty); wait for that, so the next test starts equal.
    Never ALTER TABLE cdc.users DROP: see cassandra_sink.REBUILD_STEP."""
    with admin(stack) as su:
        for column in columns:
            su.execute(f'ALTER TABLE public.users DROP COLUMN IF EXISTS "{column}"')
    wait_until_read_model_matches(pg, cassandra)


def journal(pg, after_id: int = 0) -> list[tuple]:
    """public.cdc_schema_changes rows after ``after_id``: (kind, column, new name, backfill)."""
    rows = pg.execute(
        "SELECT kind, column_name, new_name, backfill FROM public.cdc_schema_changes WHERE id > %s ORDER BY id", (after_id,)
    ).fetchall()
    return [tuple(r.values()) for r in rows]


def last_journal_id(pg) -> int:
    return pg.execute("SELECT coalesce(max(id), 0) AS id FROM public.cdc_schema_changes").fetchone()["id"]


def test_slot_loss_gap_is_repaired_by_resync_while_streaming(stack, conf, pg, cassandra, spark_job, connector):
    ids = [insert(pg, {**ROW, "username": f"gap-{i}"}) for i in range(40)]
    wait_until_read_model_matches(pg, cassandra)
    load = Load(stack["postgres"].dsn(), rate=20, seed=13)  # inserts, updates, deletes the whole time
    load.start()
    try:
        client = stack["connect"].client()
        client.delete(connector.name)
        with admin(stack) as su:
            wait_for(
                lambda: su.execute("SELECT active FROM pg_replication_slots WHERE slot_name = 'cdc_users'").fetchone() != (True,),
                60,
                "the slot cdc_users inactive (it is still active)",
            )
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


def test_a_replaced_source_stops_the_job_naming_resync(stack, conf, pg, cassandra, spark_job, connector, tmp_path):
    """A failover to another PostgreSQL cluster: a second real cluster (its own initdb, the
    same migrations) takes the place of the first behind a connector with the same topic
    prefix. Its LSNs restart low, below the floor the newest epoch recorded, and its system
    identifier differs: the job stops naming resync, verify says so, and resync against the
    new source makes the read model equal to it. Then the same back to the first cluster."""
    import dataclasses

    import psycopg
    from psycopg.rows import dict_row

    from cdcpipe import runtime

    wait_until_read_model_matches(pg, cassandra)
    other = dataclasses.replace(conf, home=tmp_path / "other", ports={**conf.ports, "postgres": free_port()})
    other.home.mkdir(mode=0o700)
    client = stack["connect"].client()
    failover = fresh("users-cdc-failover")  # a new name: no offsets from an earlier run
    runtime.up(other, ["postgres"], progress=lambda m: print(m, flush=True))
    second = runtime.service(other, "postgres")
    try:
        with psycopg.connect(second.dsn(), autocommit=True, row_factory=dict_row) as pg2:
            # The same table, other rows: a restore would bring old ones, this keeps the test short.
            user_id = insert(pg2, {**ROW, "username": "on-the-new-cluster"})
            floor = max(e.floor_lsn or 0 for e in sync_state.load(cassandra, "cdc.public.users"))
            lsn = pg2.execute("SELECT pg_current_wal_lsn() - '0/0'::pg_lsn AS lsn").fetchone()["lsn"]
            assert lsn < floor, f"the new cluster's WAL ({lsn}) should start below the old floor ({floor})"
            client.delete(connector.name)  # the old source is gone
            # Connect's environment holds the pipeline's own source's password; this test's
            # connector names the new cluster's port and password itself (Connect hides it).
            config = {**connector.config, "database.port": str(other.port("postgres")), "database.password": second.secrets["debezium"]}
            replaced = ConnectorFile(failover, config)
            client.put_config(replaced)
            reason, _ = wait_for_job_reason(spark_job, conf, "changed identity")
            assert "cdcpipe resync" in reason and "has LSN" in reason
            _, diff = verify.compare(pg2, cassandra)
            assert any("system identifier" in d and "cdcpipe resync" in d for d in diff), diff
            summary = resync.run(
                pg=pg2,
                session=cassandra,
                connect=client,
                connector=replaced,
                kafka=stack["kafka"].client_config(),
                registry=stack["schema_registry"].cache(),
                settings=conf,
                timeout=300,
                say=lambda m: print(m, flush=True),
            )
            model = wait_until_read_model_matches(pg2, cassandra)
            assert list(model) == [user_id] and summary["stale_rows_deleted"] >= 1
    finally:
        if failover in client.list():
            client.delete(failover)
        runtime.down(other, purge=True, progress=lambda m: print(m, flush=True))
    # Back to the first cluster: its connector resumes from its own offsets, and a resync
    # re-reads the rows the failover's resync deleted.
    client.put_config(connector)
    client.wait_for_state(connector.name, "RUNNING", timeout=120)
    run_resync(stack, conf, pg, cassandra)
    wait_until_read_model_matches(pg, cassandra)


def test_truncate_deletes_the_rows_before_it_and_keeps_those_after_it(stack, conf, pg, cassandra, spark_job, connector):
    """TRUNCATE is journaled in its own transaction; the job deletes every row at its position:
    a row inserted before it in the same transaction goes, one inserted after it stays."""
    for _ in range(5):
        insert(pg, ROW)
    wait_until_read_model_matches(pg, cassandra)
    since = last_journal_id(pg)
    with admin(stack) as su, su.transaction():
        su.execute("INSERT INTO public.users (id, username) VALUES (%s, 'before-truncate')", (uuid.uuid4(),))
        su.execute("TRUNCATE public.users")
        after = str(uuid.uuid4())
        su.execute("INSERT INTO public.users (id, username) VALUES (%s, 'after-truncate')", (after,))
    assert journal(pg, since) == [("truncate", None, None, False)]
    model = wait_until_read_model_matches(pg, cassandra)
    assert list(model) == [after]
    assert stack["connect"].client().status(connector.name)["tasks"][0]["state"] == "RUNNING"
    applied = [r for r in cassandra.execute("SELECT kind, lsn FROM cdc.schema_changes WHERE table_name = 'users'") if r.kind == "truncate"]
    assert applied, "the job records the truncate it applied (its floor for late records)"


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


def test_add_column_with_default_stops_the_job_naming_resync_which_fills_it(stack, conf, pg, cassandra, spark_job):
    insert(pg, ROW)
    wait_until_read_model_matches(pg, cassandra)
    column = fresh("tier")
    since = last_journal_id(pg)
    with admin(stack) as su:
        su.execute(f"ALTER TABLE public.users ADD COLUMN {column} text DEFAULT 'basic'")  # no row events
    try:
        assert journal(pg, since) == [("add_column", column, None, True)]
        reason, _ = wait_for_job_reason(spark_job, conf, f"ADD COLUMN {column}")
        assert "cdcpipe resync" in reason
        run_resync(stack, conf, pg, cassandra)  # the step it names
        model = wait_until_read_model_matches(pg, cassandra)
        assert model and {row[column] for row in model.values()} == {"basic"}
    finally:
        drop_columns(stack, conf, pg, cassandra, column)


def test_drop_column_is_cleared_at_its_position_and_a_later_add_keeps_its_values(stack, conf, pg, cassandra, spark_job):
    column = fresh("shoe_size")
    with admin(stack) as su:
        su.execute(f"ALTER TABLE public.users ADD COLUMN {column} integer")
    user_id = insert(pg, {**ROW, column: 42})
    wait_until_read_model_matches(pg, cassandra)
    since = last_journal_id(pg)
    with admin(stack) as su:
        su.execute(f"ALTER TABLE public.users DROP COLUMN {column}")
    assert journal(pg, since) == [("drop_column", column, None, False)]
    select = f"SELECT {column} FROM cdc.users WHERE id = %s"
    wait_for(  # no resync: the job clears it
        lambda: cassandra.execute(select, (uuid.UUID(user_id),)).one()[0] is None,
        120,
        "the dropped column's value cleared (it is still in cdc.users)",
    )
    wait_until_read_model_matches(pg, cassandra)
    # Added again (same name and type): a value written after the drop outranks it.
    with admin(stack) as su:
        su.execute(f"ALTER TABLE public.users ADD COLUMN {column} integer")
    try:
        pg.execute(f"UPDATE public.users SET {column} = 43 WHERE id = %s", (user_id,))
        model = wait_until_read_model_matches(pg, cassandra)
        assert model[user_id][column] == 43
    finally:
        pg.execute("DELETE FROM public.users WHERE id = %s", (user_id,))
        drop_columns(stack, conf, pg, cassandra, column)


def test_rename_column_clears_the_old_name_and_stops_naming_resync(stack, conf, pg, cassandra, spark_job):
    renamed, new_name = fresh("nick"), fresh("nickname")
    with admin(stack) as su:
        su.execute(f"ALTER TABLE public.users ADD COLUMN {renamed} text")
    user_id = insert(pg, {**ROW, renamed: "zz"})
    wait_until_read_model_matches(pg, cassandra)
    since = last_journal_id(pg)
    with admin(stack) as su:
        su.execute(f"ALTER TABLE public.users RENAME COLUMN {renamed} TO {new_name}")
    try:
        assert journal(pg, since) == [("rename_column", renamed, new_name, True)]
        reason, _ = wait_for_job_reason(spark_job, conf, f"RENAME COLUMN {renamed} TO {new_name}")
        assert "cdcpipe resync" in reason
        row = cassandra.execute(f"SELECT {renamed} FROM cdc.users WHERE id = %s", (uuid.UUID(user_id),)).one()
        assert row[0] is None  # the old name is cleared before the job stops
        run_resync(stack, conf, pg, cassandra)  # the step it names
        model = wait_until_read_model_matches(pg, cassandra)
        assert model[user_id][new_name] == "zz"
    finally:
        pg.execute("DELETE FROM public.users WHERE id = %s", (user_id,))
        drop_columns(stack, conf, pg, cassandra, new_name, renamed)


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


def column_types(cassandra) -> dict[str, str]:
    return column_types_of(cassandra, "users")


def test_a_base_column_widened_at_the_source_ends_equal_after_rebuild(stack, conf, pg, cassandra, scratch_users_table, spark_job):
    """Issue 23: street_number is int in sql/cassandra. Made bigint at the source, a value past
    int's range stops the job naming 'resync --rebuild', and the rebuild must end equal (it
    re-created the file's int and never finished). Put back to integer afterwards, a second
    rebuild gives exactly the file's column types again."""
    contract = column_types_of(cassandra, scratch_users_table)  # sql/cassandra's cdc.users
    user_id = insert(pg, {**ROW, "street_number": 7})
    wait_until_read_model_matches(pg, cassandra)
    try:
        with admin(stack) as su:
            su.execute("ALTER TABLE public.users ALTER COLUMN street_number TYPE bigint")
        pg.execute("UPDATE public.users SET street_number = %s WHERE id = %s", (5_000_000_000, user_id))
        reason, _ = wait_for_job_reason(spark_job, conf, "street_number")
        assert "cdcpipe resync --rebuild" in reason
        run_resync(stack, conf, pg, cassandra, rebuild=True)  # the documented step
        model = wait_until_read_model_matches(pg, cassandra)
        assert model[user_id]["street_number"] == 5_000_000_000
        assert column_types(cassandra)["street_number"] == "bigint"
    finally:
        pg.execute("DELETE FROM public.users WHERE id = %s", (user_id,))
        with admin(stack) as su:
            su.execute("ALTER TABLE public.users ALTER COLUMN street_number TYPE integer")
        run_resync(stack, conf, pg, cassandra, rebuild=True)
    wait_until_read_model_matches(pg, cassandra)
    rebuilt = column_types(cassandra)
    assert {n: rebuilt.get(n) for n in contract} == contract  # the file's types, from the records' own schema


def column_types_of(cassandra, table: str) -> dict[str, str]:
    cassandra.cluster.refresh_table_metadata("cdc", table)
    return {n: c.cql_type for n, c in cassandra.cluster.metadata.keyspaces["cdc"].tables[table].columns.items()}


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


@pytest.mark.parametrize(
    "kind, value, ddl",
    [
        # PostgreSQL rounds every value, with no USING and no row event
        ("numeric(10,2)", Decimal("12.75"), "ALTER TABLE public.users ALTER COLUMN {c} TYPE numeric(10,0)"),
        # ... or truncates the fractional seconds
        (
            "timestamptz",
            dt.datetime(2026, 1, 2, 3, 4, 5, 678_000, tzinfo=dt.UTC),
            "ALTER TABLE public.users ALTER COLUMN {c} TYPE timestamptz(0)",
        ),
        # a widening the job follows by itself, but with a USING run from a function, which the
        # journal's trigger sees as 'SELECT ...'
        ("integer", 21, "SELECT pg_temp.widen_{c}()"),
    ],
    ids=["numeric-precision-cut", "timestamptz-0", "using-inside-a-function"],
)
def test_a_type_change_that_rewrites_values_stops_naming_resync(stack, conf, pg, cassandra, spark_job, kind, value, ddl):
    """Issue 23: these rewrote every value without a journal stop, and the read model kept the
    old values silently. Now the job stops naming resync, and resync ends equal."""
    column = fresh("rewritten")
    with admin(stack) as su:
        su.execute(f"ALTER TABLE public.users ADD COLUMN {column} {kind}")
    try:
        user_id = insert(pg, {**ROW, column: value})
        wait_until_read_model_matches(pg, cassandra)
        with admin(stack) as su:
            su.execute(
                f"CREATE FUNCTION pg_temp.widen_{column}() RETURNS void LANGUAGE sql AS "
                f"$$ ALTER TABLE public.users ALTER COLUMN {column} TYPE bigint USING {column} * 2 $$"
            )
            su.execute(ddl.format(c=column))
        changed = pg.execute(f"SELECT {column} AS v FROM public.users WHERE id = %s", (user_id,)).fetchone()["v"]
        assert changed != value  # the DDL did rewrite it
        reason, _ = wait_for_job_reason(spark_job, conf, f"ALTER COLUMN {column} TYPE")
        assert "cdcpipe resync" in reason
        run_resync(stack, conf, pg, cassandra)  # the step it names
        model = wait_until_read_model_matches(pg, cassandra)
        assert model[user_id][column] == verify.comparable(changed)
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


def test_a_type_with_no_cql_mapping_stops_the_job_until_its_step_is_taken(stack, conf, pg, cassandra, spark_job):
    """A point has no lossless CQL type: the job stops, naming the column and the step. After
    the step (the type changed at the source, then a resync) the job passes over the records
    it stopped at, and the resync's snapshot brings the rows with the new type."""
    column = fresh("spot")
    with admin(stack) as su:
        su.execute(f"ALTER TABLE public.users ADD COLUMN {column} point")
    user_id = insert(pg, ROW)
    try:
        pg.execute(f"UPDATE public.users SET {column} = point(1.5, 2) WHERE id = %s", (user_id,))
        reason, _ = wait_for_job_reason(spark_job, conf, column)
        assert "no lossless Cassandra type" in reason and "cdcpipe resync" in reason
        with admin(stack) as su:
            su.execute(f"ALTER TABLE public.users ALTER COLUMN {column} TYPE text USING {column}::text")
        run_resync(stack, conf, pg, cassandra)  # the step it names
        model = wait_until_read_model_matches(pg, cassandra)
        assert model[user_id][column] == "(1.5,2)"
    finally:
        pg.execute("DELETE FROM public.users WHERE id = %s", (user_id,))
        drop_columns(stack, conf, pg, cassandra, column)


def journal_offset(stack, journal_id: int) -> int:
    """The offset of journal row ``journal_id``'s insert in the journal topic."""
    from confluent_kafka import TopicPartition

    from cdcpipe.pipeline.avro_reader import decode
    from cdcpipe.pipeline.schema_changes import JOURNAL_TOPIC

    registry = stack["schema_registry"].cache()
    with kafka_io.opened(stack["kafka"].client_config(), "test-journal") as consumer:
        consumer.assign([TopicPartition(JOURNAL_TOPIC, 0, 0)])
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            msg = consumer.poll(0.5)
            if msg is None or msg.error() or msg.value() is None:
                continue
            value = decode(msg.value(), registry)
            if value.get("op") == "c" and value["after"]["id"] == journal_id:
                return msg.offset()
    raise AssertionError(f"journal row {journal_id} not in {JOURNAL_TOPIC} after 60 s")


def test_an_epoch_opens_above_what_was_committed_before_the_resync(stack, conf, pg, cassandra, spark_job, connector):
    """A CI run: a stop named ALTER ... TYPE and 'cdcpipe resync', run at once; the resync read
    the journal topic's end before Debezium had published the ALTER, which then counted as newer
    than the resync and stopped the job again while the resync waited for it (300 s, failed).
    Here Debezium is paused while a DDL commits and the epoch opens: the epoch still starts
    above the DDL's journal record (the resync's fence waits until Debezium has published all
    that was committed before it), and a resync after it completes."""
    from cdcpipe.pipeline.schema_changes import JOURNAL_TOPIC, USERS_TOPIC

    column = fresh("grade")
    client = stack["connect"].client()
    client.pause(connector.name)
    resumer = threading.Timer(3.0, client.resume, (connector.name,))
    try:
        client.wait_for_state(connector.name, "PAUSED", timeout=60)
        with admin(stack) as su:
            su.execute(f"ALTER TABLE public.users ADD COLUMN {column} text")
        journal_id = last_journal_id(pg)
        resumer.start()  # while the fence waits
        kafka = stack["kafka"].client_config()
        resync.await_fence(pg, kafka, stack["schema_registry"].cache(), JOURNAL_TOPIC, "t", 120, print)
        epoch, _ = resync.open_epoch(pg, cassandra, kafka, connector.config["slot.name"], USERS_TOPIC, JOURNAL_TOPIC, "cdc", print)
    finally:
        resumer.cancel()
        client.resume(connector.name)
    try:
        starts = next(e for e in sync_state.load(cassandra, JOURNAL_TOPIC) if e.number == epoch).start_offsets
        assert journal_offset(stack, journal_id) < starts[0], (journal_id, starts)
        since = last_journal_id(pg)
        run_resync(stack, conf, pg, cassandra)  # the epoch opened here stays uncompleted: a new resync is safe
        assert journal(pg, since)[0][0] == "fence", "resync.run writes its fence before anything else it journals"
        wait_until_read_model_matches(pg, cassandra)
    finally:
        drop_columns(stack, conf, pg, cassandra, column)


def test_a_fence_debezium_does_not_publish_fails_the_resync_before_anything_changes(stack, conf, pg, cassandra, connector):
    """With the connector paused the fence never reaches Kafka: the resync fails once its time
    is up, naming where to look, with no epoch recorded; the fence, published on resume, is
    passed over by the job like any fence."""
    from cdcpipe.errors import ResyncFailed
    from cdcpipe.pipeline.schema_changes import USERS_TOPIC

    client = stack["connect"].client()
    before = [e.number for e in sync_state.load(cassandra, USERS_TOPIC)]
    client.pause(connector.name)
    try:
        client.wait_for_state(connector.name, "PAUSED", timeout=60)
        with pytest.raises(ResyncFailed, match=r"did not publish the resync's fence .* in 3s: see 'cdcpipe status'.*no epoch was recorded"):
            resync.await_fence(
                pg, stack["kafka"].client_config(), stack["schema_registry"].cache(), "cdc.public.cdc_schema_changes", "t", 3, print
            )
    finally:
        client.resume(connector.name)
    assert [e.number for e in sync_state.load(cassandra, USERS_TOPIC)] == before
    client.wait_for_state(connector.name, "RUNNING", timeout=60)
    wait_until_read_model_matches(pg, cassandra)


def test_a_database_set_up_before_fences_existed_names_cdcpipe_up(stack, pg):
    """A cdcpipe newer than the database's setup: the resync names the step, not a raw
    UndefinedFunction. (The function is dropped inside a transaction that is rolled back.)"""
    from cdcpipe.errors import ResyncFailed

    with stack["postgres"].connect(dbname="users") as su:  # not autocommit: rolled back below
        su.execute("DROP FUNCTION public.cdc_journal_fence(text)")
        try:
            with pytest.raises(ResyncFailed, match="Run 'cdcpipe up'"):
                resync.await_fence(
                    su, stack["kafka"].client_config(), stack["schema_registry"].cache(), "cdc.public.cdc_schema_changes", "t", 5, print
                )
        finally:
            su.rollback()
    assert pg.execute("SELECT to_regprocedure('public.cdc_journal_fence(text)') IS NOT NULL AS present").fetchone()["present"]


def test_updates_without_their_before_image_are_followed_while_their_values_arrive(stack, conf, pg, cassandra, spark_job):
    """With REPLICA IDENTITY DEFAULT an update has no before image. The job stops only when an
    after image holds Debezium's placeholder for a value (test_apply: ImageIncomplete), not for
    the missing before image: here the unchanged 10 kB value stored out of line arrives in full
    (public.users' BEFORE UPDATE trigger, which sets updated_at, forms the row anew, so the
    value is stored and sent again), and the read model stays equal with no step."""
    long_text = "".join(f"{i:05d}" for i in range(2000))
    user_id = insert(pg, ROW)
    try:
        with admin(stack) as su:
            su.execute("ALTER TABLE public.users ALTER COLUMN picture_large SET STORAGE EXTERNAL")
            su.execute("UPDATE public.users SET picture_large = %s WHERE id = %s", (long_text, user_id))
            su.execute("ALTER TABLE public.users REPLICA IDENTITY DEFAULT")
        pg.execute("UPDATE public.users SET city = 'Bergen' WHERE id = %s", (user_id,))
        model = wait_until_read_model_matches(pg, cassandra)
        assert model[user_id]["city"] == "Bergen" and model[user_id]["picture_large"] == long_text
    finally:
        with admin(stack) as su:
            su.execute("ALTER TABLE public.users REPLICA IDENTITY FULL")
            su.execute("ALTER TABLE public.users ALTER COLUMN picture_large SET STORAGE EXTENDED")
        pg.execute("DELETE FROM public.users WHERE id = %s", (user_id,))
    wait_until_read_model_matches(pg, cassandra)


def test_a_second_resync_while_one_runs_is_refused_at_once(stack, conf, pg, cassandra, spark_job, connector):
    """Two resyncs at once hung one of them until its timeout (cdcpipe opcheck found it): now
    the second fails at once, naming the first, and runs once the first is done."""
    import psycopg

    from cdcpipe.errors import ResyncFailed

    with psycopg.connect(stack["postgres"].dsn(), autocommit=True) as other, resync.exclusive(other):
        started = time.monotonic()
        with pytest.raises(ResyncFailed, match="another 'cdcpipe resync' of this source is running"):
            run_resync(stack, conf, pg, cassandra)
        assert time.monotonic() - started < 5
    summary = run_resync(stack, conf, pg, cassandra)  # the lock went with the first one
    assert summary["epoch"] > 0
    wait_until_read_model_matches(pg, cassandra)


def test_a_replaced_table_stops_the_job_naming_up_and_resync(stack, conf, pg, cassandra, spark_job, connector):
    """Issue 23: public.users renamed away and a new one created like it (grants, REPLICA
    IDENTITY FULL): rows of the new table never reached Cassandra, the publication still named
    the old one, and status said 'capture: moving'. Now the job stops naming 'cdcpipe up' and
    'cdcpipe resync', and those two steps make the read model equal to the new table."""
    from cdcpipe import runtime

    wait_until_read_model_matches(pg, cassandra)
    try:
        with admin(stack) as su:
            su.execute("ALTER TABLE public.users RENAME TO users_prev")
            su.execute("CREATE TABLE public.users (LIKE public.users_prev INCLUDING ALL)")
            su.execute("GRANT SELECT, INSERT, UPDATE, DELETE ON public.users TO users_writer")
            su.execute("ALTER TABLE public.users REPLICA IDENTITY FULL")
        new_id = insert(pg, {**ROW, "city": "in-the-new-table"})
        reason, _ = wait_for_job_reason(spark_job, conf, "renamed away or dropped")
        assert "'cdcpipe up'" in reason and "'cdcpipe resync'" in reason, reason
        runtime.up(conf, progress=lambda m: None)  # the named steps
        run_resync(stack, conf, pg, cassandra)
        assert set(wait_until_read_model_matches(pg, cassandra)) == {new_id}
        streamed = insert(pg, {**ROW, "city": "streamed-from-the-new-table"})
        assert set(wait_until_read_model_matches(pg, cassandra)) == {new_id, streamed}
    finally:
        # Back to the first table: dropping the new one is a replacement too.
        with admin(stack) as su:
            if su.execute("SELECT to_regclass('public.users_prev')").fetchone()[0] is not None:
                su.execute("DROP TABLE IF EXISTS public.users")
                su.execute("ALTER TABLE public.users_prev RENAME TO users")
        wait_for_job_reason(spark_job, conf, "renamed away or dropped")
        runtime.up(conf, progress=lambda m: None)
        run_resync(stack, conf, pg, cassandra)
    wait_until_read_model_matches(pg, cassandra)


def test_a_truncate_before_a_resync_that_never_completed_still_applies(stack, conf, pg, cassandra, spark_job, connector):
    """Issue 23: job stopped -> TRUNCATE -> a resync records epoch E+1 and never completes (it
    timed out) -> job started: the job passed over the older epoch's TRUNCATE, and the
    truncated rows stayed in Cassandra. A clear now always applies; only the stop is waived."""
    from cdcpipe.pipeline.schema_changes import JOURNAL_TOPIC, USERS_TOPIC

    kafka = stack["kafka"].client_config()
    for _ in range(5):
        insert(pg, ROW)
    wait_until_read_model_matches(pg, cassandra)
    spark_job.stop(conf)
    try:
        journal_end = kafka_io.end_offsets(kafka, JOURNAL_TOPIC)[0]
        with admin(stack) as su:
            su.execute("TRUNCATE public.users")
            system_identifier, floor = resync.source_identity(su, "cdc_users")
        wait_for(lambda: kafka_io.end_offsets(kafka, JOURNAL_TOPIC)[0] > journal_end, 60, "the TRUNCATE's journal row in Kafka")
        # What a resync that timed out leaves behind: its epoch recorded, started, never completed.
        starts = {topic: kafka_io.end_offsets(kafka, topic) for topic in (USERS_TOPIC, JOURNAL_TOPIC)}
        newest = sync_state.load(cassandra, USERS_TOPIC)[-1].number
        sync_state.record(cassandra, starts, newest + 1, floor, system_identifier, "cdc_users", "a-resync-that-timed-out")
    finally:
        spark_job.start(conf)
    assert wait_until_read_model_matches(pg, cassandra) == {}
    after = insert(pg, ROW)
    assert list(wait_until_read_model_matches(pg, cassandra)) == [after]


def test_a_resync_of_an_empty_table_empties_the_read_model(stack, conf, pg, cassandra, spark_job, connector, scratch_users_table):
    """Debezium ends the snapshot of an empty table with status EMPTY, which resync took for a
    failed scan (cdcpipe opcheck found it after a table was replaced by a new, empty one).

    Rebuilt from an empty source, cdc.users then had its key alone until the first change, so
    the README's cqlsh queries failed ('Undefined column name'). The rebuild now creates the
    source's columns itself; each must have the type the job gives it from the first record,
    or that record stops the job (the job's own derivation is the judge, on every type the
    rebuild maps: cassandra_sink.CQL_TYPE_OF_POSTGRES)."""
    from cdcpipe.pipeline.cassandra_sink import CQL_TYPE_OF_POSTGRES

    contract = column_types_of(cassandra, scratch_users_table)  # sql/cassandra's cdc.users
    extra = {
        "smallint": 7,
        "bigint": 5_000_000_000,
        "real": 1.5,
        "numeric(10,2)": Decimal("12.34"),
        "numeric": Decimal("1e-20"),
        "boolean": True,
        "character varying(20)": "vc",
        "character(3)": "abc",
        "json": '{"a": 1}',
        "jsonb": '{"b": [2]}',
        "bytea": b"\x00\xff",
    }
    names = {kind: fresh(kind.split("(")[0].replace(" ", "_")[:6]) for kind in extra}
    with admin(stack) as su:
        su.execute("ALTER TABLE public.users " + ", ".join(f"ADD COLUMN {names[k]} {k}" for k in extra))
    try:
        for _ in range(3):
            insert(pg, ROW)
        wait_until_read_model_matches(pg, cassandra)
        with admin(stack) as su:
            su.execute("TRUNCATE public.users")
        summary = run_resync(stack, conf, pg, cassandra)
        assert summary["rows_scanned"] in (0, "0"), summary
        assert wait_until_read_model_matches(pg, cassandra) == {}
        # The cleanup of a table rebuilt with its key alone built a SELECT with no column
        # ('SELECT "id", FROM') and failed.
        assert run_resync(stack, conf, pg, cassandra, rebuild=True)["stale_rows_deleted"] == 0
        assert wait_until_read_model_matches(pg, cassandra) == {}
        rebuilt = column_types(cassandra)
        assert rebuilt == {**contract, **{names[k]: CQL_TYPE_OF_POSTGRES[k.split("(")[0]] for k in extra}}
        # The first change flows into those columns without a stop, and changes no type.
        first = insert(pg, {**ROW, **{names[k]: v for k, v in extra.items()}})
        model = wait_until_read_model_matches(pg, cassandra)
        assert list(model) == [first]
        assert model[first][names["bigint"]] == 5_000_000_000 and model[first][names["bytea"]] == b"\x00\xff"
        assert column_types(cassandra) == rebuilt
    finally:
        drop_columns(stack, conf, pg, cassandra, *names.values())


def test_a_micro_batch_reads_only_the_epochs_it_still_needs(cassandra):
    """The driver reads cdc.sync_state newest first, down to the newest completed epoch
    (sync_state.load_needed): on the real table that is changes.still_needed of every epoch,
    whatever the history, and a topic with none completed keeps them all."""
    from cdcpipe.pipeline import sync_state
    from cdcpipe.pipeline.changes import still_needed

    topic = f"test.epochs.{uuid.uuid4().hex[:8]}"
    try:
        for epoch in range(1, 21):  # more than one page of the newest-first read
            sync_state.record(cassandra, {topic: {0: 100 * epoch}}, epoch, None, None, "cdc_users", f"test-{epoch}")
        assert [e.number for e in sync_state.load_needed(cassandra, topic)] == list(range(1, 21))
        for epoch in (3, 9):
            sync_state.completed(cassandra, topic, epoch)
        needed = sync_state.load_needed(cassandra, topic)
        assert needed == still_needed(sync_state.load(cassandra, topic))
        assert [e.number for e in needed] == list(range(9, 21)) and needed[0].completed
        assert needed[0].start_offsets == {0: 900}
    finally:
        cassandra.execute("DELETE FROM cdc.sync_state WHERE topic = %s", (topic,))
