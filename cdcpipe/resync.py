"""``cdcpipe resync``: an online re-synchronisation of the read model (rule: cdcpipe/pipeline/changes.py).

1. write a fence into the schema-change journal and wait until Debezium has published it, so
   everything committed before the resync began is in Kafka (:func:`await_fence`);
   then record epoch E+1 in cdc.sync_state: the topics' end offsets, PostgreSQL's system
   identifier, the slot's restart_lsn (the job tags every later record with E+1 from then on);
2. insert an ``execute-snapshot`` signal (Debezium incremental snapshot of public.users) into
   public.cdc_signal; streaming goes on meanwhile;
3. follow Debezium's notifications (topic ``notification.sink.topic.name``) until COMPLETED;
4. wait until the Spark job has applied the topic up to its end offsets at that moment;
5. delete rows and cells still written below epoch E+1 (not in the snapshot, not changed
   since) with a timestamp just below the epoch, so no newer write can be shadowed;
6. mark the epoch completed and verify.
"""

from __future__ import annotations

import contextlib
import json
import re
import time
import uuid
from collections.abc import Callable, Iterator, Mapping
from typing import Any

from . import runtime
from .clients import kafka_io
from .clients.kafka_io import end_offsets
from .errors import ResyncFailed
from .pipeline import sync_state
from .pipeline.changes import EPOCH_BASE, MAX_EPOCH
from .pipeline.schema_changes import FENCE, JOURNAL_TOPIC, USERS_TOPIC
from .runtime import streaming_job

#: How often a resync says it is still waiting for its fence (a connector behind by a backlog).
FENCE_PROGRESS_SECONDS = 15.0
#: The PostgreSQL advisory lock a resync holds while it runs (any number: 'cdcr' in ASCII).
RESYNC_LOCK = 0x63646372


def source_identity(pg: Any, slot: str) -> tuple[str, int | None]:
    """(PostgreSQL's system identifier, the slot's restart_lsn or None without the slot): CLI side,
    the executors never ask PostgreSQL (pipeline/ imports no psycopg)."""
    from psycopg.rows import tuple_row

    with pg.cursor(row_factory=tuple_row) as cur:
        system_identifier = str(cur.execute("SELECT system_identifier FROM pg_control_system()").fetchone()[0])
        row = cur.execute("SELECT restart_lsn - '0/0'::pg_lsn FROM pg_replication_slots WHERE slot_name = %s", (slot,)).fetchone()
    return system_identifier, (int(row[0]) if row and row[0] is not None else None)


def notifications(kafka: dict[str, Any], registry: Any, topic: str):
    """A generator of decoded notification values from the topic's current end on (None while
    idle); ``registry``: a SchemaCache, logged in."""
    from confluent_kafka import TopicPartition

    from .pipeline.avro_reader import decode

    consumer = kafka_io.consumer(kafka, "resync", **{"allow.auto.create.topics": True})
    try:
        starts = end_offsets(kafka, topic)
        consumer.assign([TopicPartition(topic, p, o) for p, o in starts.items()])
        yield None  # positioned: the caller may send the signal now
        while True:
            msg = consumer.poll(0.5)
            if msg is None or msg.error() or msg.value() is None:
                yield None
                continue
            yield decode(msg.value(), registry)
    finally:
        consumer.close()


def await_fence(pg: Any, kafka: dict[str, Any], registry: Any, journal_topic: str, name: str, timeout: float, say) -> int:
    """Write a fence row into the schema-change journal (``public.cdc_journal_fence``) and wait
    until Debezium has published it to ``journal_topic``; its offset there.

    End offsets read at once would miss what PostgreSQL committed but Debezium had not yet
    published: the DDL a stop names, run just before ``cdcpipe resync``, then landed above the
    new epoch's start, counted as newer than the resync, and stopped the job again while the
    resync waited for it (a CI run: ``ALTER COLUMN ... TYPE ... USING``, then the resync at
    once). Debezium publishes in commit order through one producer, so once the fence is in
    the journal's partition every journal row committed before it is too, and the users
    topic's records were sent before it. On one broker they are acknowledged with it; on a
    cluster a users partition led by another broker may acknowledge later. Such a record then
    counts as newer than the resync: its data is still right (the newer epoch ranks streamed
    changes by position, above the snapshot's reads), but a record the job stops at (a type
    the table cannot hold) would stop it again, naming the resync once more.
    ``registry``: a SchemaCache, logged in."""
    import psycopg
    from confluent_kafka import TopicPartition
    from psycopg.rows import tuple_row

    from .pipeline.avro_reader import decode

    started = time.monotonic()
    with kafka_io.opened(kafka, "resync-fence") as consumer:
        consumer.assign([TopicPartition(journal_topic, p, o) for p, o in end_offsets(kafka, journal_topic).items()])
        try:
            with pg.cursor(row_factory=tuple_row) as cur:
                fence_id = int(cur.execute("SELECT public.cdc_journal_fence(%s)", (name,)).fetchone()[0])
        except psycopg.errors.UndefinedFunction:
            raise ResyncFailed(
                "public.cdc_journal_fence does not exist: this cdcpipe is newer than the database's setup. "
                "Run 'cdcpipe up' (it applies sql/postgres) and 'cdcpipe spark stop; cdcpipe spark start', then 'cdcpipe resync' again"
            ) from None
        say(f"fence {name} (journal row {fence_id}) written: waiting for Debezium to publish it ...")
        told = started
        while time.monotonic() - started < timeout:
            msg = consumer.poll(0.5)
            if time.monotonic() - told >= FENCE_PROGRESS_SECONDS:  # Debezium works off a backlog first
                told = time.monotonic()
                say(f"  still waiting for the fence ({told - started:.0f}s; Debezium publishes in commit order)")
            if msg is None or msg.error() or msg.value() is None:
                continue
            value = decode(msg.value(), registry)
            row = value.get("after") if isinstance(value, dict) else None
            if isinstance(row, dict) and row.get("kind") == FENCE and row.get("id") == fence_id:
                say(f"  published at offset {msg.offset()} ({time.monotonic() - started:.1f}s)")
                return msg.offset()
    raise ResyncFailed(
        f"Debezium did not publish the resync's fence (journal row {fence_id}) to {journal_topic} in {timeout:.0f}s: "
        "see 'cdcpipe status' and 'cdcpipe logs connect', then run 'cdcpipe resync' again (no epoch was recorded)"
    )


def open_epoch(
    pg,
    session,
    kafka: dict[str, Any],
    slot: str,
    topic: str,
    journal_topic: str | None,
    keyspace: str,
    say,
) -> tuple[int, str]:
    """Record the next epoch in cdc.sync_state, starting at each topic's end offsets now;
    (epoch, the id of the snapshot signal that will fill it). Call it after
    :func:`await_fence`, so that everything committed before the resync is below them."""
    system_identifier, floor_lsn = source_identity(pg, slot)
    epochs = sync_state.load(session, topic, keyspace)
    epoch = (epochs[-1].number + 1) if epochs else 1
    if epoch > MAX_EPOCH:
        raise ResyncFailed(f"epoch {epoch} would overflow the write timestamps (at most {MAX_EPOCH} resyncs)")
    signal_id = f"resync-{epoch}-{uuid.uuid4().hex[:12]}"
    starts = end_offsets(kafka, topic)
    # The schema-change journal's topic gets the same epoch, from its end offset at the same
    # moment: a journal row before it is then of an older epoch, and a DDL the job stopped at
    # (pipeline/schema_changes.py) is passed over, since this snapshot re-reads every row.
    journal_starts = end_offsets(kafka, journal_topic) if journal_topic else {}
    both = {topic: starts, **({journal_topic: journal_starts} if journal_topic else {})}
    sync_state.record(session, both, epoch, floor_lsn, system_identifier, slot, signal_id)
    say(f"epoch {epoch} recorded: from offsets {starts} of {topic}; source {system_identifier}, slot {slot} restart_lsn {floor_lsn}")
    return epoch, signal_id


def _await_snapshot(feed, signal_id: str, deadline: float, timeout: float, started: float, say) -> int | None:
    """Follow Debezium's notifications of ``signal_id`` until COMPLETED; the rows its table
    scan read. ResyncFailed when the scan fails, is aborted, or does not complete in time."""
    rows_scanned = None
    for note in feed:
        if time.monotonic() > deadline:
            raise ResyncFailed(
                f"no COMPLETED notification for {signal_id} in {timeout:.0f}s "
                f"(cdcpipe logs connect; the epoch stays recorded, a new resync is safe)"
            )
        if not note or note.get("id") != signal_id:
            continue
        kind, extra = note.get("type"), note.get("additional_data") or {}
        if kind == "IN_PROGRESS":
            say(f"  snapshot in progress: last key {extra.get('last_processed_key')} of {extra.get('maximum_key')}")
        elif kind == "TABLE_SCAN_COMPLETED":
            rows_scanned = extra.get("total_rows_scanned")
            say(f"  table scan completed: {rows_scanned} rows ({extra.get('status')})")
            # A failed scan read nothing, and cleaning up would delete rows. EMPTY is no
            # failure: the table had no row (a table replaced by a new one, found by
            # cdcpipe opcheck); rows inserted since are streamed in the new epoch.
            if extra.get("status") not in ("SUCCEEDED", "EMPTY"):
                raise ResyncFailed(
                    f"Debezium's snapshot {signal_id} ended with {extra.get('status')} after {rows_scanned} rows; "
                    "nothing was deleted. See 'cdcpipe logs connect', then run 'cdcpipe resync' again "
                    "(the epoch stays recorded; a new resync is safe)"
                )
        elif kind == "ABORTED":
            raise ResyncFailed(f"Debezium aborted the snapshot {signal_id}")
        elif kind == "COMPLETED":
            say(f"  snapshot completed ({time.monotonic() - started:.0f}s)")
            return rows_scanned
        else:
            say(f"  {kind}")
    raise ResyncFailed(f"the notifications of {signal_id} ended before COMPLETED")


def stale_cleanup(session, keyspace: str, table: str, key: str, epoch: int) -> tuple[int, int]:
    """Delete rows/cells written below ``epoch`` (rows: (deleted rows, rows with stale cells))."""
    from cassandra.query import SimpleStatement

    from .pipeline.cassandra_sink import quote

    session.cluster.refresh_table_metadata(keyspace, table)
    columns = [c for c in session.cluster.metadata.keyspaces[keyspace].tables[table].columns if c != key]
    if not columns:  # a table rebuilt with its key alone from an empty source: nothing older to clean
        return 0, 0
    base = EPOCH_BASE * epoch
    below = base - 1  # shadows every older write (ties go to the delete), no write of the epoch
    select = SimpleStatement(
        f"SELECT {quote(key)}, " + ", ".join(f"writetime({quote(c)})" for c in columns) + f" FROM {keyspace}.{table}",
        fetch_size=2000,
    )
    delete_row = session.prepare(f"DELETE FROM {keyspace}.{table} USING TIMESTAMP ? WHERE {quote(key)} = ?")
    rows_deleted = cells_rows = 0
    for row in session.execute(select, timeout=120):
        times = list(row[1:])
        live = [t for t in times if t is not None]
        if not live or max(live) < base:
            session.execute(delete_row, (below, row[0]))
            rows_deleted += 1
            continue
        stale = [c for c, t in zip(columns, times) if t is not None and t < base]
        if stale:
            session.execute(
                f"DELETE {', '.join(map(quote, stale))} FROM {keyspace}.{table} USING TIMESTAMP %s WHERE {quote(key)} = %s",
                (below, row[0]),
            )
            cells_rows += 1
    return rows_deleted, cells_rows


def recreate_table(session: Any, keyspace: str, table: str, columns: Mapping[str, str] | None = None) -> None:
    """DROP TABLE, and create it again with its primary key and ``columns`` (name -> CQL type).

    Not from sql/cassandra's column list: after a base column's type changed at the source
    (street_number integer -> bigint), that list re-created the old type, the snapshot's
    reads failed the same way, and the rebuild never finished (issue 23). ``columns`` are
    the source's current ones (:func:`source_columns`); the job adds any other column as the
    first record carrying it arrives, typed from that record's writer schema. The other schema
    files then create whatever else is missing (idempotently)."""
    from .pipeline.cassandra_sink import quote
    from .runtime import migrations

    session.execute(f"DROP TABLE IF EXISTS {keyspace}.{table}", timeout=120)
    session.cluster.control_connection.wait_for_schema_agreement()
    if (keyspace, table) == ("cdc", "users"):
        session.execute(migrations.users_table_ddl(key_only=True), timeout=120)
        session.cluster.control_connection.wait_for_schema_agreement()
        if columns:
            added = ", ".join(f"{quote(name)} {kind}" for name, kind in columns.items())
            session.execute(f"ALTER TABLE {keyspace}.{table} ADD IF NOT EXISTS ({added})", timeout=120)
    migrations.apply_cassandra(session)
    session.cluster.control_connection.wait_for_schema_agreement()


def source_columns(pg: Any, table: str, key: str) -> dict[str, str]:
    """``table``'s columns other than ``key`` whose CQL type is known without a record
    (cassandra_sink.CQL_TYPE_OF_POSTGRES), in the table's order: what a rebuild creates at
    once, so a rebuilt read model has the source's columns also while the source is empty."""
    from psycopg.rows import tuple_row

    from .pipeline.cassandra_sink import CQL_TYPE_OF_POSTGRES

    schema, _, name = table.rpartition(".")
    with pg.cursor(row_factory=tuple_row) as cur:
        rows = cur.execute(
            "SELECT column_name, data_type FROM information_schema.columns WHERE table_schema = %s AND table_name = %s "
            "ORDER BY ordinal_position",
            (schema or "public", name),
        ).fetchall()
    # A name Avro does not allow reaches the job adjusted (field.name.adjustment.mode avro):
    # that column is left for the job to add under the name its records carry.
    return {
        column: CQL_TYPE_OF_POSTGRES[kind]
        for column, kind in rows
        if column != key and kind in CQL_TYPE_OF_POSTGRES and AVRO_NAME.fullmatch(column)
    }


#: A name Avro takes as it is.
AVRO_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


def register(
    settings: Any,
    connector: Any,
    timeout: float = 120.0,
    progress: Callable[[str], None] = print,
    topic: str = USERS_TOPIC,
    journal_topic: str | None = JOURNAL_TOPIC,
) -> dict[str, Any]:
    """Register ``connector`` (``connect_client.register_and_wait``) and, the first time, record
    epoch 0: the source the read model starts from (see changes.py, "Source identity").

    Epoch 0 is recorded only when no epoch exists and the topic is still empty, with
    PostgreSQL's system identifier and its WAL position *before* the connector existed: every
    record Debezium writes for this source (its initial snapshot included) is at or above it.
    A source replaced later (a restore, a fresh initdb, a failover) is then caught before the
    first ``cdcpipe resync``, not only after it. Returns the connector's status.
    """
    from .clients.connect import register_and_wait

    svcs = runtime.by_name(settings, ["postgres", "kafka", "cassandra", "connect"])
    with svcs["postgres"].connect(dbname="users", autocommit=True) as pg:
        system_identifier, _ = source_identity(pg, connector.config.get("slot.name", "debezium"))
        lsn = int(pg.execute("SELECT pg_current_wal_lsn() - '0/0'::pg_lsn").fetchone()[0])
    kafka = svcs["kafka"].client_config()
    starts = {t: end_offsets(kafka, t) for t in (topic, journal_topic) if t}
    _verb, status = register_and_wait(svcs["connect"].client(), connector, timeout=timeout, progress=progress)
    if any(offset for offsets in starts.values() for offset in offsets.values()):
        return status  # not a first registration: epochs are resync's
    with svcs["cassandra"].connected() as session:
        if not sync_state.load(session, topic):
            sync_state.record(session, starts, 0, lsn, system_identifier, connector.config.get("slot.name"), None)
            for name in starts:
                sync_state.completed(session, name, 0)
            progress(f"epoch 0 recorded: source {system_identifier} from LSN {lsn}")
    return status


@contextlib.contextmanager
def exclusive(pg: Any) -> Iterator[None]:
    """Hold the resync lock, a PostgreSQL session advisory lock, on ``pg``; ResyncFailed at
    once if another session holds it. It goes with the session, so a resync that was killed
    leaves none behind."""
    row = pg.execute("SELECT pg_try_advisory_lock(%s)", (RESYNC_LOCK,)).fetchone()
    if not (row["pg_try_advisory_lock"] if isinstance(row, dict) else row[0]):
        raise ResyncFailed(
            "another 'cdcpipe resync' of this source is running (it holds the resync lock): wait for it to end, "
            "then run this one again if it is still needed"
        )
    try:
        yield
    finally:
        if not pg.closed:
            pg.execute("SELECT pg_advisory_unlock(%s)", (RESYNC_LOCK,))


def run(
    *,
    pg,
    session,
    connect,
    connector,
    kafka: dict[str, Any],
    registry: Any,
    settings=None,
    topic: str = USERS_TOPIC,
    journal_topic: str | None = JOURNAL_TOPIC,
    table: str = "public.users",
    keyspace: str = "cdc",
    cassandra_table: str = "users",
    key: str = "id",
    timeout: float = 600.0,
    rebuild: bool = False,
    say: Callable[[str], None] = print,
) -> dict[str, Any]:
    """Run a resync; returns a summary. ``connector`` is a ConnectorFile (slot, signal table).

    One at a time (:func:`exclusive`): two at once both took epoch E+1 and signalled two
    snapshots of the same table; Debezium ran them over each other and one never got its
    COMPLETED notification, so that resync hung until its timeout (found by ``cdcpipe
    opcheck``).

    ``rebuild`` first drops and re-creates the Cassandra table (``recreate_table``): the step for a
    column whose type changed at the source (see cassandra_sink.REBUILD_STEP). The job keeps
    streaming into the new table meanwhile, and the snapshot then re-reads every row.
    """
    with exclusive(pg):
        started = time.monotonic()
        deadline = started + timeout
        config = connector.config
        slot = config.get("slot.name", "debezium")
        signal_table = config.get("signal.data.collection")
        notification_topic = config.get("notification.sink.topic.name")
        if not signal_table or not notification_topic:
            raise ResyncFailed(
                f"connector '{connector.name}' has no signal.data.collection or notification.sink.topic.name: "
                "register the current connectors/users-cdc.json first ('cdcpipe connector register')"
            )
        status = connect.wait_for_state(connector.name, "RUNNING", timeout=60)
        say(f"connector {connector.name}: {status['connector']['state']}")

        # The fence first: if Debezium does not publish it, nothing has changed yet (a rebuild
        # would have left cdc.users empty with no epoch to fill it).
        if journal_topic:
            await_fence(pg, kafka, registry, journal_topic, f"resync-{uuid.uuid4().hex[:12]}", max(1.0, deadline - time.monotonic()), say)
        if rebuild:
            columns = source_columns(pg, table, key)
            recreate_table(session, keyspace, cassandra_table, columns)
            say(f"{keyspace}.{cassandra_table} dropped and re-created with the source's {len(columns) + 1} columns of known type")

        epoch, signal_id = open_epoch(pg, session, kafka, slot, topic, journal_topic, keyspace, say)

        # A precaution after DDL with no row change since (DROP COLUMN, ADD COLUMN ... DEFAULT):
        # rewriting one row to itself makes pgoutput send the relation's current columns ahead of
        # the signal, so Debezium's table schema, from which it builds snapshot reads, is current.
        # Its change event carries the row's current values: applying it changes nothing. (The
        # scan failure seen after such DDL, "cached plan must not change result type", is the JDBC
        # driver's server-side prepared statement; the connector sets driver.prepareThreshold=0.)
        pg.execute(f"UPDATE {table} SET {key} = {key} WHERE {key} = (SELECT {key} FROM {table} LIMIT 1)")

        feed = notifications(kafka, registry, notification_topic)
        next(feed)
        data = json.dumps({"data-collections": [table], "type": "incremental"})
        pg.execute(f"INSERT INTO {signal_table} (id, type, data) VALUES (%s, 'execute-snapshot', %s)", (signal_id, data))
        say(f"signal {signal_id} sent: incremental snapshot of {table}")

        try:
            rows_scanned = _await_snapshot(feed, signal_id, deadline, timeout, started, say)
        finally:
            feed.close()

        ends = end_offsets(kafka, topic)
        if settings is not None:
            say(f"waiting for the Spark job to apply {topic} up to {ends} ...")
            streaming_job.wait_for_offsets(
                settings, {topic: {str(p): o for p, o in ends.items()}}, timeout=max(60.0, deadline - time.monotonic())
            )
        deleted, trimmed = stale_cleanup(session, keyspace, cassandra_table, key, epoch)
        say(f"stale rows deleted: {deleted}; rows with stale cells cleared: {trimmed}")
        for done in (topic, journal_topic) if journal_topic else (topic,):
            sync_state.completed(session, done, epoch)
        return {
            "epoch": epoch,
            "signal": signal_id,
            "rows_scanned": rows_scanned,
            "stale_rows_deleted": deleted,
            "rows_trimmed": trimmed,
            "seconds": round(time.monotonic() - started, 1),
        }
