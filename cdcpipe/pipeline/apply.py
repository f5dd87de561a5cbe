"""What Spark's executors run for each micro-batch: decode, keep the newest change per key,
write to Cassandra, dead-letter what cannot be used.

``apply_arrow`` is the ``mapInArrow`` function of spark_jobs/users_to_cassandra.py; it hands
a partition's records to ``apply_partition``, which needs no Spark at all (tests call it
directly with records they frame themselves).

Why this is a module and not part of the job script: the script runs as ``__main__`` on the
driver, so Spark pickles its functions *by value*, together with the globals they use. The
per-process state below (one Cassandra session, one schema cache with its compiled readers)
then arrived empty with every task, and each micro-batch connected to Cassandra and fetched
and compiled its writer schemas again: ~0.5 s of a one-record batch's 0.55 s (py-spy on the
Python workers). Imported from this module, the state lives as long as the worker process.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import replace
from typing import Any, NamedTuple

from ..errors import ImageIncomplete
from .avro_reader import DecodeError, decode, schema_id_of
from .cassandra_session import DEFAULT_WRITE_CONSISTENCY
from .cassandra_sink import REBUILD_STEP, DeadLetter, TableUnusable, after_field_types, type_conflicts
from .changes import (
    Change,
    Epoch,
    MalformedChange,
    check_source,
    epoch_for,
    from_event,
    image_key,
    last_per_key,
    superseded_below,
    unavailable_columns,
)
from .config import SinkConfig
from .schema_changes import (
    FLOORS_PROPERTY,
    JOURNAL_TOPIC,
    USERS_TOPIC,
    Floors,
    SchemaChange,
    floors_from_snapshot,
    from_journal_event,
    load_floors,
)

# One Cassandra session and registry client per Python worker process, reused across tasks.
_executor_state: dict[str, Any] = {}


def executor_sink(conf: SinkConfig) -> tuple[Any, Any]:
    """This process's (CassandraSink, SchemaCache) for ``conf``, made on first use and kept:
    what every task of a Python worker writes with (and the sink-ceiling benchmark too)."""
    key = json.dumps(conf, sort_keys=True)
    if _executor_state.get("key") != key:
        from .avro_reader import SchemaCache
        from .cassandra_session import connect
        from .cassandra_sink import CassandraSink
        from .logins import read_login

        if _executor_state.get("sink") is not None:  # settings changed: drop the old session
            _executor_state["sink"].session.cluster.shutdown()
        login = read_login(conf["cassandra_credentials"]) if conf.get("cassandra_credentials") else None
        session = connect(conf["cassandra_host"], conf["cassandra_port"], connect_timeout=10, login=login)
        session.default_consistency_level = consistency(conf.get("write_consistency", DEFAULT_WRITE_CONSISTENCY))
        _executor_state.update(
            key=key,
            sink=CassandraSink(session, conf["keyspace"], conf["table"]),
            registry=SchemaCache(
                conf["registry_url"],
                auth=read_login(conf["registry_credentials"], "registry credentials").pair if conf.get("registry_credentials") else None,
            ),
            types={},
            checked=set(),
        )
    return _executor_state["sink"], _executor_state["registry"]


def explain_unreached(exc: Exception) -> str | None:
    """What this process's Cassandra driver saw when ``exc`` named no node it tried
    (:func:`~.cassandra_session.no_node_to_try`); None otherwise, or before any session."""
    from .cassandra_session import no_node_to_try

    sink = _executor_state.get("sink")
    return no_node_to_try(exc, sink.session.cluster) if sink is not None else None


def shutdown_executor() -> None:
    """Close this process's session, if it has one."""
    sink = _executor_state.get("sink")
    _executor_state.clear()
    if sink is not None:
        sink.session.cluster.shutdown()


def consistency(name: str) -> int:
    """A Cassandra consistency level by name (ONE, LOCAL_ONE, LOCAL_QUORUM, QUORUM, ALL, ...)."""
    from cassandra import ConsistencyLevel

    if name.upper() == "ANY":  # acknowledged once kept as a hint, which no read sees (read_level_after)
        raise ValueError(
            "write consistency 'ANY': a write kept only as a hint is acknowledged before any read can see it, "
            "so a committed batch could be unreadable; use ONE or LOCAL_ONE (or a quorum) instead"
        )
    try:
        return ConsistencyLevel.name_to_value[name.upper()]
    except KeyError:
        raise ValueError(f"write consistency {name!r}: not one of {', '.join(sorted(ConsistencyLevel.name_to_value))}") from None


class TaskContext(NamedTuple):
    """What one task of :func:`apply_partition` works with."""

    sink: Any  #: the worker's CassandraSink (or a test's stand-in)
    registry: Any  #: the worker's SchemaCache (or a test's stand-in)
    epochs: Callable[[str], list[Epoch]]  #: a topic's sync epochs, oldest first
    floors: Floors  #: what applied TRUNCATEs and DROP COLUMNs removed
    types_by_schema: dict[int, dict[str, str]]  #: per worker: a writer schema's column types
    checked_schemas: set[int]  #: per worker: the writer schemas already checked against the table


def _task_context(
    conf: SinkConfig,
    sink: Any,
    registry: Any,
    epochs: Callable[[str], list[Epoch]] | None,
    floors: Floors | None,
    stats: dict[str, Any] | None,
) -> TaskContext:
    """What a task of :func:`apply_partition` works with: this worker's sink and registry (or
    the stand-ins given), the epochs and floors to judge records by, and the per-worker caches."""
    if sink is None or registry is None:
        sink, registry = executor_sink(conf)
        types_by_schema: dict[int, dict[str, str]] = _executor_state["types"]
        checked_schemas: set[int] = _executor_state["checked"]
        if _executor_state.pop("failed", False):  # the step a table-level error names may have changed the table
            sink.reload()
            checked_schemas.clear()
        own_view = []  # what this task read itself, not from the driver's view of the batch
        if epochs is None:
            from .sync_state import load

            session = sink.session
            batch_view = batch_epochs()
            if batch_view is None:
                own_view.append("epochs")

            def epochs(topic: str) -> list[Epoch]:
                if batch_view is not None and topic in batch_view:
                    return batch_view[topic]  # the driver's one view for the whole micro-batch
                return load(session, topic, conf["keyspace"])

        if floors is None:
            floors = batch_floors()
            if floors is None:
                own_view.append("floors")
                floors = load_floors(sink.session, conf["keyspace"], conf["table"])
        if stats is not None:
            stats["view"] = "task" if own_view else "batch"
    else:
        types_by_schema, checked_schemas = {}, set()
    if epochs is None:  # stand-ins without epochs: before the first resync

        def epochs(topic: str) -> list[Epoch]:
            return []

    if floors is None:
        floors = Floors()
    return TaskContext(sink, registry, epochs, floors, types_by_schema, checked_schemas)


def _write_newest(sink: Any, changes: list[Change], raw_by_change: dict[int, Any], dead: list[DeadLetter]) -> int:
    """Write the newest change of every key; the number of rows written. A change the sink
    rejects is appended to ``dead`` and its key's next-newest change is written instead."""
    # Only the newest change of a key is written. If the sink rejects it (a value that cannot
    # be stored), it is dead-lettered and the key's newest remaining change is written instead,
    # and so on: no change is dropped without either being applied, superseded by an applied
    # one, or dead-lettered. The fallback costs nothing unless something is rejected.
    pending = last_per_key(changes)
    writes = 0
    older: dict[str, list] | None = None  # per rejected key, its other changes, oldest first
    while pending:
        rejected = sink.apply(pending)
        writes += len(pending) - len(rejected)
        if not rejected:
            break
        if older is None:
            keys = {change.key for change, _ in rejected}
            newest = {id(change) for change in pending}
            older = {}
            for change in changes:
                if change.key in keys and id(change) not in newest:
                    older.setdefault(change.key, []).append(change)
            for backlog in older.values():
                backlog.sort(key=lambda c: (c.timestamp, c.offset))
        pending = []
        for change, reason in rejected:
            raw_key, raw_value, topic, partition, offset = raw_by_change[id(change)]
            dead.append(DeadLetter(topic, partition, offset, raw_key, raw_value, f"BadValue: {reason}"))
            backlog = older.get(change.key)
            if backlog:
                pending.append(backlog.pop())
    return writes


def apply_partition(
    rows,
    conf: SinkConfig,
    sink: Any = None,
    registry: Any = None,
    epochs: Callable[[str], list[Epoch]] | None = None,
    schema_changes: list[SchemaChange] | None = None,
    floors: Floors | None = None,
    stats: dict[str, Any] | None = None,
) -> tuple[int, int, int]:
    """Decode, keep the newest change per key, write; dead-letter what cannot be used.

    ``rows`` yields (key, value, topic, partition, offset); returns (records, writes, dead).
    ``sink`` and ``registry`` default to this worker's own (from ``conf``); tests pass stand-ins
    with the same methods (``tests/test_apply.py``). ``epochs(topic)`` gives the topic's sync
    epochs, oldest first (default: the micro-batch's snapshot the driver handed every task, else
    cdc.sync_state read once per task; stand-ins: none).
    Records of the schema-change journal (``conf["schema_changes_topic"]``) are appended to
    ``schema_changes``, for the driver to apply after the batch (pipeline/schema_changes.py);
    ``floors`` rule out what an applied TRUNCATE or DROP COLUMN removed (default: the driver's,
    read before the batch, else cdc.schema_changes read once per task). ``stats["view"]`` says
    whether both came from the driver ("batch") or the task read one itself ("task").

    Table-level problems raise instead of dead-lettering every row (the batch fails, the job
    reports the reason and retries): a source that changed identity (``SourceChanged``), a
    column whose type changed at the source (``TableUnusable``, once per writer schema).
    """
    task = _task_context(conf, sink, registry, epochs, floors, stats)
    journal_topic = conf.get("schema_changes_topic", JOURNAL_TOPIC)
    epochs_by_topic: dict[str, list[Epoch]] = {}  # cdc.sync_state is tiny: read once per task
    superseded: dict[str, int] = {}
    raw_by_change: dict[int, Any] = {}
    changes = []
    truncate: Change | None = None  # the partition's newest TRUNCATE: it shadows every older one
    dead: list[DeadLetter] = []
    seen = 0
    for row in rows:
        raw_key, raw_value, topic, partition, offset = row
        seen += 1
        if raw_value is None:
            continue  # a tombstone: Kafka's compaction marker, nothing to apply
        known = epochs_by_topic.get(topic)
        if known is None:
            known = epochs_by_topic[topic] = task.epochs(topic)
            if not known and topic == journal_topic:
                # No resync recorded the journal's epochs (resyncs before the journal existed):
                # every journal row is newer than they are, so it is of the newest epoch.
                known = epochs_by_topic[topic] = [replace(e, start_offsets={}) for e in task.epochs(conf.get("topic", USERS_TOPIC))[-1:]]
            superseded[topic] = superseded_below(known)
        epoch = epoch_for(known, partition, offset)
        number = epoch.number if epoch else 0  # the record's epoch
        newest = known[-1].number if known else 0  # the newest recorded, maybe still running
        if number < superseded[topic]:
            continue  # a completed resync re-read its rows and deleted the rest (changes.py)
        try:
            part = "value"
            value = decode(raw_value, task.registry)
            # The key is decoded only when the row image lacks the id (it never does for
            # Debezium's PostgreSQL connector: before/after carry the primary key).
            part = "key"
            key = None if image_key(value) is not None else decode(raw_key, task.registry)
            part = "value"
            if topic == journal_topic:
                schema_change = from_journal_event(value, number)
                if schema_change is not None and check_source(schema_change, epoch, newest):
                    if number < newest:
                        # A newer epoch (a resync) started after it: its snapshot re-reads every
                        # row, so the change stops nothing (stopped here, the job could never
                        # apply the snapshot the resync waits for). Its clear still applies: at
                        # its own, older position it cannot touch the newer epoch's writes, and
                        # skipping it kept truncated rows when that resync never completed.
                        schema_change = replace(schema_change, backfill=False)
                    if schema_changes is not None:
                        schema_changes.append(schema_change)
                continue
            change = from_event(key, value, offset, epoch=number)
            if change is None:
                continue
            if change.op == "u" and value.get("before") is None:
                # An update without its before image: REPLICA IDENTITY is not FULL, and the after
                # image may hold placeholders. (Inserts are not scanned: under FULL they never
                # hold one, and a row whose text is the placeholder's would stop a sound
                # pipeline. Without FULL, the insert half of an update that changed the key can.)
                missing = unavailable_columns(change.row)
                if missing:
                    # Debezium's placeholders for unchanged TOASTed values (errors.py). Once a
                    # resync started after it, its snapshot re-reads the row: passed over.
                    if number < newest:
                        continue
                    source = value["source"]
                    table = f"{source.get('schema') or 'public'}.{source.get('table') or 'users'}"
                    raise ImageIncomplete(table, change.lsn, missing)
            # Raises SourceChanged (not a row's fault: the batch fails and nothing is skipped).
            if not check_source(change, epoch, newest):
                continue  # an older epoch's record of a replaced source: a newer epoch re-read its rows
            change = task.floors.admit(change)
            if change is None:
                continue  # an applied TRUNCATE after it removed its row
            if change.is_truncate:
                if truncate is None or change.timestamp > truncate.timestamp:
                    truncate = change
                continue
            schema_id = schema_id_of(raw_value)
            try:
                if schema_id not in task.checked_schemas:  # once per writer schema: a type change is the table's
                    if schema_id not in task.types_by_schema:
                        task.types_by_schema[schema_id] = after_field_types(task.registry.raw_schema(schema_id))
                    check_types(task.sink, task.types_by_schema[schema_id])
                    task.checked_schemas.add(schema_id)
                if change.row is not None and not change.row.keys() <= task.sink.columns.keys():
                    task.sink.ensure_columns({k: t for k, t in task.types_by_schema[schema_id].items() if k in change.row})
            except TableUnusable:
                # The table cannot hold this record (a type change, a type with no CQL mapping).
                # Once a resync started after it, its snapshot re-reads the record's row with the
                # table as it is now: the record is passed over instead of stopping the job again.
                if number < newest:
                    continue
                raise
            if change.row is not None and not change.row.keys() <= task.sink.columns.keys():
                undeclared = change.row.keys() - task.sink.columns.keys()
                if undeclared:  # the writer schema gives them no type: the record's fault
                    raise MalformedChange(f"columns its writer schema (id {schema_id}) does not type: {', '.join(sorted(undeclared))}")
        except (DecodeError, MalformedChange) as exc:
            dead.append(DeadLetter(topic, partition, offset, raw_key, raw_value, f"{part}: {exc.__class__.__name__}: {exc}"))
            continue
        changes.append(change)
        raw_by_change[id(change)] = row
    writes = _write_newest(task.sink, changes, raw_by_change, dead)
    if truncate is not None:  # after the upserts: those older than the truncate go too
        task.sink.truncate(truncate.timestamp)
        writes += 1
    task.sink.dead_letter(dead)
    return seen, writes, len(dead)


def check_types(sink: Any, writer: dict[str, str]) -> None:
    """Raise TableUnusable, naming the step, when the writer schema changed a column's type to
    one the table's column cannot hold; remember the widened columns (int -> bigint) whose
    values are written while they fit."""
    # The table may have changed since this process read it: another worker added a column,
    # or the step below re-created the table. Judged on stale columns, a widened column would
    # be missed and its first value out of range dead-lettered as the row's fault.
    if not writer.keys() <= sink.columns.keys() or type_conflicts(sink.columns, writer):
        sink.reload()
    conflicts = type_conflicts(sink.columns, writer)
    if conflicts:
        table = f"{sink.keyspace}.{sink.table}"
        raise TableUnusable(
            "the source changed the type of "
            + ", ".join(f"{n} ({had} in {table}, now {now.lstrip('!')})" for n, (had, now) in sorted(conflicts.items()))
            + f": these values would not fit. {REBUILD_STEP}"
        )
    sink.widened.update(n for n, t in writer.items() if n in sink.columns and sink.columns[n] != t)


def _batch_property(name: str) -> str | None:
    """The Spark local property ``name`` of the job this task belongs to (None outside a task)."""
    try:
        from pyspark import TaskContext
    except ImportError:
        return None
    context = TaskContext.get()
    return (context.getLocalProperty(name) or None) if context is not None else None


def batch_epochs() -> dict[str, list[Epoch]] | None:
    """The micro-batch's epochs, as the driver read them (pipeline/sync_state.py), if this runs
    in a Spark task whose job carries them."""
    from .sync_state import BATCH_PROPERTY, from_snapshot

    text = _batch_property(BATCH_PROPERTY)
    return from_snapshot(text) if text else None


def batch_floors() -> Floors | None:
    """The micro-batch's floors, as the driver read them before it (pipeline/schema_changes.py):
    every task judges late records by the same ones, and no task reads cdc.schema_changes."""
    text = _batch_property(FLOORS_PROPERTY)
    return floors_from_snapshot(text) if text else None


def apply_arrow(batches, conf: SinkConfig):
    """mapInArrow: a partition's records arrive as Arrow batches (far cheaper than pickled
    rows); one small batch of counts goes back."""
    import pyarrow as pa

    def rows():
        for batch in batches:
            columns = [batch.column(name).to_pylist() for name in ("key", "value", "topic", "partition", "offset")]
            yield from zip(*columns)

    schema_changes: list[SchemaChange] = []
    stats: dict[str, Any] = {}
    try:
        records, writes, dead = apply_partition(rows(), conf, schema_changes=schema_changes, stats=stats)
    except BaseException:
        _executor_state["failed"] = True  # the retry reads the table again (apply_partition)
        raise
    yield pa.RecordBatch.from_pydict(
        {
            "records": [records],
            "writes": [writes],
            "dead": [dead],
            "schema_changes": [[c.to_json() for c in schema_changes]],
            "view": [stats.get("view", "none")],
        }
    )


def keep_warm_arrow(batches, conf: SinkConfig):
    """mapInArrow of the job's keep-alive (spark_jobs/users_to_cassandra.py): a task that
    touches this worker's Cassandra session and registry client (making them if the worker is
    new), so an idle job keeps warm Python workers. Spark's JVM kills a worker idle for a
    minute; the next micro-batch then forked a fresh one that imported this code, connected
    to Cassandra, read the table and fetched its schemas: 1.3-1.5 s (quiet machine) to 5 s
    (loaded) more for the first change after a pause."""
    import pyarrow as pa

    for _ in batches:
        pass
    executor_sink(conf)
    yield pa.RecordBatch.from_pydict({"ready": [1]})
