"""cdc.sync_state: the read model's sync epochs (rule and argument in :mod:`cdcpipe.pipeline.changes`).

Written by ``cdcpipe resync`` (one row per epoch, before the snapshot is signalled), read by
the Spark job and by ``cdcpipe verify``.

The job's driver reads every topic's epochs once per micro-batch (:func:`snapshot`) and hands
them to all of the batch's tasks as a Spark local property (:data:`BATCH_PROPERTY`). Read by
each task instead, a resync recording or completing an epoch while the batch ran gave its tasks
different views: one task could judge a TRUNCATE against epoch E and another a later insert
against E+1 (issue 23). A batch's offsets are fixed before the driver reads, so an epoch
recorded after that starts past every record of the batch: the snapshot misses nothing the
batch holds. Tasks without the property (stand-ins, a job older than this code) read the table.
The view holds only the epochs that can still judge a record, the newest completed one and
those after it (:func:`cdcpipe.pipeline.changes.still_needed`), read newest first: a table that
has seen hundreds of resyncs costs a batch a few rows, not hundreds.
"""

from __future__ import annotations

import json
from typing import Any

from .changes import Epoch

TABLE = "cdc.sync_state"


_COLUMNS = "epoch, start_offsets, floor_lsn, system_identifier, state"


def _epoch(row: Any) -> Epoch:
    return Epoch(row.epoch, dict(row.start_offsets or {}), row.floor_lsn, row.system_identifier, row.state == "completed")


def load(session: Any, topic: str, keyspace: str = "cdc") -> list[Epoch]:
    """The recorded epochs of ``topic``, oldest first ([] before the first resync)."""
    rows = session.execute(f"SELECT {_COLUMNS} FROM {keyspace}.sync_state WHERE topic = %s", (topic,))
    return [_epoch(r) for r in sorted(rows, key=lambda r: r.epoch)]


def load_needed(session: Any, topic: str, keyspace: str = "cdc") -> list[Epoch]:
    """``still_needed(load(...))``, oldest first, read newest first and only down to the newest
    completed epoch: a micro-batch reads a few rows, not one per resync ever run."""
    from cassandra.query import SimpleStatement

    newest_first = SimpleStatement(f"SELECT {_COLUMNS} FROM {keyspace}.sync_state WHERE topic = %s ORDER BY epoch DESC", fetch_size=8)
    needed = []
    for row in session.execute(newest_first, (topic,)):
        needed.append(_epoch(row))
        if row.state == "completed":
            break
    return needed[::-1]


#: The Spark local property that carries a micro-batch's epochs (:func:`snapshot`) to its tasks.
BATCH_PROPERTY = "cdcpipe.sync_epochs"


def snapshot(session: Any, topics: list[str], keyspace: str = "cdc") -> str:
    """The epochs of ``topics`` that can still judge a record (:func:`load_needed`), as one
    JSON text (:func:`from_snapshot` reads it)."""
    view = {}
    for topic in topics:
        epochs = load_needed(session, topic, keyspace)
        view[topic] = [[e.number, e.start_offsets, e.floor_lsn, e.system_identifier, e.completed] for e in epochs]
    return json.dumps(view)


def from_snapshot(text: str) -> dict[str, list[Epoch]]:
    """topic -> its epochs, oldest first, from :func:`snapshot`'s text."""
    return {
        topic: [
            Epoch(number, {int(p): o for p, o in starts.items()}, floor, system, completed)
            for number, starts, floor, system, completed in rows
        ]
        for topic, rows in json.loads(text).items()
    }


def record(
    session: Any,
    starts: dict[str, dict[int, int]],
    epoch: int,
    floor_lsn: int | None,
    system_identifier: str | None,
    slot: str | None,
    signal_id: str | None,
) -> None:
    """Epoch ``epoch`` of every topic of ``starts`` (topic -> its start offsets), in one
    logged batch: all of them or none. Written one by one, a resync interrupted between the
    journal topic's row and the users topic's left one topic in the new epoch and the other
    not, and later changes were judged against the wrong epoch (issue 23)."""
    from cassandra.query import BatchStatement, BatchType, SimpleStatement

    insert = SimpleStatement(
        f"INSERT INTO {TABLE} (topic, epoch, start_offsets, floor_lsn, system_identifier, slot, signal_id, state, started_at) "
        "VALUES (%s, %s, %s, %s, %s, %s, %s, 'started', toTimestamp(now()))"
    )
    batch = BatchStatement(batch_type=BatchType.LOGGED)
    for topic, offsets in starts.items():
        batch.add(insert, (topic, epoch, offsets, floor_lsn, system_identifier, slot, signal_id))
    session.execute(batch)


def completed(session: Any, topic: str, epoch: int) -> None:
    session.execute(
        f"UPDATE {TABLE} SET state = 'completed', completed_at = toTimestamp(now()) WHERE topic = %s AND epoch = %s",
        (topic, epoch),
    )
