"""The source table's schema changes, applied to the read model at their place in the stream.

Logical decoding streams rows, not DDL, and some DDL changes what a table holds without a
single row event. ``sql/postgres/004_schema_changes.sql`` therefore journals every schema
change of public.users into ``public.cdc_schema_changes``, in the DDL's own transaction (an
event trigger for ALTER TABLE, a statement trigger for TRUNCATE). Debezium captures the
journal like any table, into ``cdc.public.cdc_schema_changes``; the Spark job reads that
topic with the users topic. A journal row's position is its insert's LSN, inside the DDL's
transaction: every change of public.users before the DDL has a lower LSN, every change after
it a higher one. Its write timestamp is that of a streamed change at that LSN, in the
record's epoch (:mod:`cdcpipe.pipeline.changes`).

What the job does with each kind, after the micro-batch's own writes (``apply``):

* ``truncate`` at timestamp T: every row of the read model is deleted ``USING TIMESTAMP T``.
  The delete shadows exactly the writes older than the TRUNCATE: an insert streamed after it
  has a higher timestamp and survives, also when the truncate is replayed. Upserts older than
  T that reach the job later (the users topic and the journal topic are separate partitions,
  so Kafka does not order them) are skipped: :class:`Floors` holds T.
* ``drop_column`` at T: the column's cells are deleted ``USING TIMESTAMP T``, key by key in
  the rows that hold one, which keeps a value written after a later ADD COLUMN of the same name. Cassandra's own
  ``ALTER TABLE ... DROP`` is not used: it drops cells by the wall-clock time of the drop,
  and this pipeline's timestamps lie far in the future (docs/operations.md, "Re-sync and
  schema changes"). The emptied column stays in ``cdc.users``. A late record of the old schema
  still carries the column: its value is left out when the record is older than the drop.
* ``rename_column``: the old name is cleared as by a drop. The new name's values reach no
  row event (nor ``add_column`` with a DEFAULT or a GENERATED expression, nor an
  ``ALTER COLUMN ... TYPE`` that may rewrite every value: anything but a widening that keeps
  every value, in a plain ALTER TABLE with no USING): these journal rows say
  ``backfill``, and the job stops at them with :class:`SchemaChangeNeedsResync`, naming
  ``cdcpipe resync``. Stopping is the honest choice: an incremental snapshot *inside* the
  epoch cannot repair them, because its reads rank below every streamed change of the epoch,
  deletes included, so a row deleted and inserted again in the epoch would keep the new
  column empty. A resync's reads belong to a newer epoch and outrank everything before it.
  ``cdcpipe resync`` records the new epoch for the journal topic too, so the stopping journal
  row then belongs to an older epoch and is passed over: the resync re-reads every row.
* ``add_column`` without a value for existing rows and an ``alter_type`` that keeps every
  value (``cdc_type_change_keeps_values`` in sql/postgres/004_schema_changes.sql): nothing.
  The column is added with the first record that carries it; a type the column cannot hold
  stops the job at that record (``check_types`` in :mod:`cdcpipe.pipeline.apply`).

The clears are recorded in ``cdc.schema_changes`` *before* they run, so executors that start
after it skip late records, and a clear that fails half-way is redone when the batch is
retried (deletes at a fixed timestamp are idempotent).
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterable
from dataclasses import asdict, dataclass, field
from typing import Any

from ..errors import MalformedChange, SchemaChangeNeedsResync
from .changes import Change, write_timestamp

log = logging.getLogger(__name__)

#: The journal topic Debezium writes public.cdc_schema_changes to, and the table's own topic.
JOURNAL_TOPIC = "cdc.public.cdc_schema_changes"
USERS_TOPIC = "cdc.public.users"
KINDS = ("add_column", "drop_column", "rename_column", "alter_type", "truncate", "table_replaced")
#: A journal row that records no schema change: ``cdcpipe resync``'s barrier (resync.py, fence).
FENCE = "fence"
#: Kinds that clear something in the read model at their position.
CLEARING = ("drop_column", "rename_column", "truncate")


@dataclass(frozen=True)
class SchemaChange:
    """One journal row of public.cdc_schema_changes, placed in the stream."""

    journal_id: int
    kind: str
    table: str  # the source table, e.g. public.users
    column: str | None
    new_name: str | None
    column_type: str | None
    backfill: bool
    timestamp: int  # its write timestamp: the position of a streamed change at its LSN
    lsn: int
    epoch: int
    op: str = "c"  # for changes.check_source

    @property
    def key(self) -> str:
        return f"schema change {self.journal_id}"

    def to_json(self) -> str:
        return json.dumps(asdict(self))

    @classmethod
    def from_json(cls, text: str) -> SchemaChange:
        return cls(**json.loads(text))

    def describe(self) -> str:
        if self.kind == "rename_column":
            return f"RENAME COLUMN {self.column} TO {self.new_name}"
        if self.kind == "add_column":
            return f"ADD COLUMN {self.column} {self.column_type}"
        if self.kind == "alter_type":
            return f"ALTER COLUMN {self.column} TYPE {self.column_type}"
        if self.kind == "drop_column":
            return f"DROP COLUMN {self.column}"
        if self.kind == "table_replaced":
            return f"{self.table} renamed away or dropped"
        return "TRUNCATE"


def from_journal_event(value: dict[str, Any] | None, epoch: int = 0) -> SchemaChange | None:
    """The schema change a decoded journal event records; None for what records none (a
    snapshot read of an old journal row, which the snapshot of the table already reflects;
    an update or delete of the journal; a tombstone; a resync's fence)."""
    from .changes import _lsn

    if value is None or not isinstance(value, dict) or value.get("op") != "c":
        return None
    row = value.get("after")
    if not isinstance(row, dict):
        raise MalformedChange("a schema-change journal insert without its after image")
    kind = row.get("kind")
    if kind == FENCE:
        return None
    if kind not in KINDS:
        raise MalformedChange(f"schema-change journal row {row.get('id')}: unknown kind {kind!r}")
    lsn = _lsn(value.get("source"))
    return SchemaChange(
        journal_id=int(row["id"]),
        kind=kind,
        table=str(row.get("table_name")),
        column=row.get("column_name"),
        new_name=row.get("new_name"),
        column_type=row.get("column_type"),
        backfill=bool(row.get("backfill")),
        timestamp=write_timestamp("c", lsn, epoch),
        lsn=lsn,
        epoch=epoch,
    )


@dataclass
class Floors:
    """What the applied schema changes rule out for records that reach the job late."""

    truncated_at: int = -1  # upserts written at or below this are skipped
    dropped: dict[str, int] = field(default_factory=dict)  # column -> its newest clear

    def admit(self, change: Change) -> Change | None:
        """``change`` as it may still be applied: None when a truncate after it removed its
        row; without the values of columns cleared after it."""
        if change.timestamp <= self.truncated_at:
            return None
        if change.row and self.dropped and any(self.dropped.get(c, -1) >= change.timestamp for c in change.row):
            row = {c: v for c, v in change.row.items() if self.dropped.get(c, -1) < change.timestamp}
            return Change(change.key, change.op, row, change.timestamp, change.offset, change.lsn)
        return change


#: The Spark local property that hands the driver's floors to every task of a micro-batch.
FLOORS_PROPERTY = "cdcpipe.floors"


def floors_snapshot(floors: Floors) -> str:
    """``floors`` as one JSON text (:func:`floors_from_snapshot` reads it)."""
    return json.dumps({"truncated_at": floors.truncated_at, "dropped": floors.dropped})


def floors_from_snapshot(text: str) -> Floors:
    data = json.loads(text)
    return Floors(int(data["truncated_at"]), {str(c): int(t) for c, t in data["dropped"].items()})


def load_floors(session: Any, keyspace: str, table: str) -> Floors:
    """The floors of ``keyspace.table`` from cdc.schema_changes (one small query)."""
    floors = Floors()
    for r in session.execute(f"SELECT write_timestamp, kind, column_name FROM {keyspace}.schema_changes WHERE table_name = %s", (table,)):
        if r.kind == "truncate":
            floors.truncated_at = max(floors.truncated_at, r.write_timestamp)
        elif r.column_name is not None:
            floors.dropped[r.column_name] = max(floors.dropped.get(r.column_name, -1), r.write_timestamp)
    return floors


def apply(sink: Any, changes: Iterable[SchemaChange]) -> list[str]:
    """Apply a micro-batch's schema changes, oldest first, after its row writes; returns what
    was done. Raises SchemaChangeNeedsResync at the first one whose values no event carries."""
    done = []
    for change in sorted(changes, key=lambda c: (c.timestamp, c.journal_id)):
        if change.kind in CLEARING:
            record(sink.session, sink.keyspace, sink.table, change)
            if change.kind == "truncate":
                cleared = sink.truncate(change.timestamp)
                what = f"TRUNCATE: {cleared} rows deleted at timestamp {change.timestamp}"
            else:
                cleared = sink.clear_column(change.column, change.timestamp)
                what = f"{change.describe()}: {change.column} cleared in {cleared} rows at timestamp {change.timestamp}"
            log.warning("schema change %d applied: %s", change.journal_id, what)
            done.append(what)
        if change.kind == "table_replaced" and change.backfill:
            raise SchemaChangeNeedsResync(
                f"{change.describe()} (schema change {change.journal_id}, LSN {change.lsn}): capture followed that table, "
                f"and a new table named {change.table} is in no publication. Step: 'cdcpipe up' (it adds the table now named "
                f"{change.table} to the publication, with its triggers and grants), then 'cdcpipe resync'"
            )
        if change.backfill:
            raise SchemaChangeNeedsResync(
                f"{change.describe()} on {change.table} (schema change {change.journal_id}, LSN {change.lsn}) gave existing rows "
                "values that no change event carries. Run 'cdcpipe resync': it re-reads every row, and the job then goes on"
                + (" (with 'cdcpipe resync --rebuild' if the new type does not fit the column)" if change.kind == "alter_type" else "")
            )
    return done


def record(session: Any, keyspace: str, table: str, change: SchemaChange) -> None:
    session.execute(
        f"INSERT INTO {keyspace}.schema_changes (table_name, write_timestamp, journal_id, kind, column_name, new_name, lsn, epoch, "
        "applied_at) VALUES (%s, %s, %s, %s, %s, %s, %s, %s, toTimestamp(now()))",
        (table, change.timestamp, change.journal_id, change.kind, change.column, change.new_name, change.lsn, change.epoch),
    )
