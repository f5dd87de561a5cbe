"""Debezium change events -> the writes that make the read model equal the source table.

Ordering rule (why replays and late events are safe)
-----------------------------------------------------
Every write to Cassandra carries ``USING TIMESTAMP`` = ``EPOCH_BASE * epoch + position``:

* position of a streamed change (op c/u/d/t): ``STREAMING_BASE + source.lsn``
* position of a snapshot read (op r, initial or incremental): ``source.lsn``
* epoch: the sync epoch the record belongs to, 0 until the first ``cdcpipe resync`` (so
  epoch 0 is exactly the rule that was used before epochs existed: no rewrite needed).

Cassandra keeps, per cell, the write with the highest timestamp, and a delete shadows every
write with a lower (or equal) one. So applying the same change twice, or an older change after
a newer one, never changes the outcome: the result only depends on the set of changes, not on
the order or number of times they arrive (replays, restarts, at-least-once redelivery).

Within one epoch. PostgreSQL serialises writes to a row (row locks; the unique index for
inserts and primary-key updates), so a later change of the same key is written to WAL after
the earlier one committed, at a higher LSN. Snapshot reads carry an LSN of the stream position
when they were read, but a transaction that started before the read and committed after it
can be streamed with a *lower* change LSN. Hence the base: every streamed change outranks
every snapshot read of its epoch, and snapshot reads among themselves order by LSN. That is
safe because the stream of an epoch is a complete suffix of the table's history that begins
before any of the epoch's snapshot reads (see "epochs" below): for any key, the newest change
streamed before a read has the value the read saw, changes committed after the read are newer
anyway, and changes inside an incremental snapshot's chunk window are dropped from the chunk
by Debezium (its watermark de-duplication), so the read is only emitted when nothing in the
window touched the key.

Across epochs. ``cdcpipe resync`` repairs what no stream can (a lost or re-created slot, a
gap, a new PostgreSQL cluster whose LSNs restarted low, DDL that rewrote rows without row
events): it records epoch E+1 in ``cdc.sync_state`` *first* -- the Kafka end offset of every
partition of the topic at that moment, the source's system identifier and the slot's
``restart_lsn`` -- and only then inserts an ``execute-snapshot`` signal (Debezium incremental
snapshot). A record's epoch is a function of the record alone: the highest epoch whose
start offset for the record's partition is <= the record's offset. Replays therefore tag a
record exactly as the first pass did (deterministic), and every snapshot read of the resync
is in epoch E+1, because Debezium emits them after the signal, i.e. after the recorded
offsets. An epoch-(E+1) timestamp outranks every epoch-<=E timestamp, so the resync's reads
overwrite whatever the gap left behind -- but never a streamed write made after the chunk was
read, because that write is streamed in epoch E+1 too and streamed changes outrank reads of
their epoch. A streamed change read by a micro-batch that started before the record was
written may be tagged E instead of E+1 (and E+1 on a replay): both are correct, since the
signal, hence every read of E+1, comes after it.

When the snapshot has completed and the job has applied it, every row and cell still written
at a timestamp below ``EPOCH_BASE * (E+1)`` was neither read by the snapshot nor changed since:
it no longer exists in PostgreSQL (deleted, or a dropped/renamed column). ``cdcpipe resync``
deletes those with ``USING TIMESTAMP EPOCH_BASE * (E+1) - 1``: that shadows every older write
(ties go to the delete) and no write of epoch E+1, so it cannot race a newer change.

TRUNCATE (op t), should a topic carry one, is applied as a delete of every row with the
truncate's own timestamp, not as CQL TRUNCATE (which has no timestamp and would wipe writes
that are newer than it on a replay). The pipeline's own connector skips TRUNCATE (Debezium's
default): the event has no key and the compacted topic refuses keyless records. A TRUNCATE is
repaired by ``cdcpipe resync`` instead: no row survives its stale cleanup unless re-read.

Headroom. Cassandra timestamps are signed 64-bit. A position is < ``EPOCH_BASE`` = 2**53 as
long as LSN < 2**52 (4 PiB of WAL; :data:`MAX_LSN`), and epochs go up to
:data:`MAX_EPOCH` = 2**10 - 1 (1023 resyncs). 2**52 microseconds is the year 2112, so epoch 0
timestamps still look like times and stay above any wall-clock write made by hand. A deleted
row cannot come back from an older event as long as Cassandra keeps the tombstone
(gc_grace_seconds, 10 days by default).

Source identity. Logical decoding only emits changes whose WAL records are at or after the
slot's ``restart_lsn``, which never moves backwards, and a record still in flight is not yet
confirmed so it cannot be below it either. So every record written to Kafka after an epoch
was recorded, by the same cluster and slot, has ``lsn >= floor_lsn`` of that epoch. A record
of the epoch below the floor comes from another cluster (a restore, a fresh initdb, a
failover to a logical copy) or a slot whose LSNs went backwards: applying it would be shadowed
by the old timestamps, so the job stops with :class:`SourceChanged`, which names
``cdcpipe resync``. Once a newer epoch exists, such records of an older epoch are skipped:
the newer epoch's snapshot re-reads their rows. ``cdcpipe resync`` and ``cdcpipe verify``
also compare PostgreSQL's system identifier with the recorded one.

Superseded epochs. Once epoch E+1 is *completed* (its snapshot applied, the rows and cells it
did not read deleted), the records of epochs <= E carry nothing the read model still needs:
every row that existed was re-read in E+1 and every later change is streamed in E+1. The job
skips them. That matters for a replay of the whole topic after ``cdcpipe resync --rebuild``
(a re-created table holds none of the cleanup's tombstones): without the skip, an old epoch's
upsert of a row deleted during a gap -- whose delete never reached the topic -- would bring it
back, and an old column type would be re-created. ``cdcpipe resync`` marks an epoch completed
only after the job has applied the topic past the snapshot, so no record of an older epoch is
still unapplied when the skip starts.
"""

from __future__ import annotations

import hashlib
import uuid
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from ..errors import MalformedChange, PositionOverflow, SourceChanged

STREAMING_BASE = 1 << 52
#: One epoch's span of timestamps: every position is below it.
EPOCH_BASE = 1 << 53
#: Cassandra write timestamps are signed 64-bit; timestamps must stay below this.
TIMESTAMP_LIMIT = 1 << 63
#: The largest LSN whose position fits in an epoch (a streamed change adds STREAMING_BASE).
#: PostgreSQL LSNs are unsigned 64-bit, but reaching 2**52 takes 4 PiB of WAL.
MAX_LSN = STREAMING_BASE - 1
#: The largest epoch whose timestamps still fit a signed 64-bit integer.
MAX_EPOCH = TIMESTAMP_LIMIT // EPOCH_BASE - 1


@dataclass(frozen=True)
class Change:
    key: str  # the primary key (users.id) as text
    op: str  # c, u, d, r, or t (truncate: key "", row None)
    row: dict[str, Any] | None  # the after image; None for deletes and truncates
    timestamp: int  # the Cassandra write timestamp (see module docstring)
    offset: int  # the Kafka offset, a tiebreak inside one partition
    lsn: int = 0  # source.lsn, for the source identity check

    @property
    def is_delete(self) -> bool:
        return self.op == "d"

    @property
    def is_truncate(self) -> bool:
        return self.op == "t"


def write_timestamp(op: str, lsn: int, epoch: int = 0) -> int:
    if not 0 <= epoch <= MAX_EPOCH:
        raise ValueError(f"epoch {epoch} out of range 0..{MAX_EPOCH}")
    return EPOCH_BASE * epoch + (lsn if op == "r" else STREAMING_BASE + lsn)


@dataclass(frozen=True)
class Epoch:
    """One row of cdc.sync_state: from these offsets on, records belong to ``number``."""

    number: int
    start_offsets: dict[int, int]  # Kafka partition -> first offset of the epoch
    floor_lsn: int | None = None  # the slot's restart_lsn when the epoch was recorded
    system_identifier: str | None = None
    completed: bool = False  # its snapshot was applied and what it did not read was deleted


def superseded_below(epochs: list[Epoch]) -> int:
    """Records of an epoch below this carry nothing the read model still needs: the newest
    *completed* epoch re-read every row that existed and deleted the rest (0: none yet)."""
    return max((e.number for e in epochs if e.completed), default=0)


def still_needed(epochs: list[Epoch]) -> list[Epoch]:
    """The epochs (sorted by number) that judge every record as all of ``epochs`` do: the
    newest completed one and those after it.

    A record of an older epoch is skipped either way. With every epoch it belongs to one below
    :func:`superseded_below`; without them :func:`epoch_for` finds none for it (each kept epoch
    is newer than its own, so none starts at or below its offset), which is epoch 0, also below.
    Every other record belongs to a kept epoch, found the same way. So a micro-batch's view
    stays a few rows however many resyncs the table has seen (up to :data:`MAX_EPOCH`)."""
    below = superseded_below(epochs)
    return [e for e in epochs if e.number >= below]


def epoch_for(epochs: list[Epoch], partition: int, offset: int) -> Epoch | None:
    """The epoch a record belongs to (``epochs`` sorted by number); None: before any epoch
    was recorded (epoch 0 without a floor)."""
    found = None
    for epoch in epochs:
        start = epoch.start_offsets.get(partition, 0)
        if offset >= start:
            found = epoch
    return found


def check_source(change: Change, epoch: Epoch | None, newest: int) -> bool:
    """True to apply ``change``; False to skip it (below its epoch's floor, but a newer
    epoch's snapshot re-reads its rows); SourceChanged when it would be applied otherwise."""
    if epoch is None or epoch.floor_lsn is None or change.lsn >= epoch.floor_lsn:
        return True
    if epoch.number < newest:
        return False
    raise SourceChanged(
        f"a change (op {change.op}, key {change.key or '-'}) has LSN {change.lsn}, below the floor "
        f"{epoch.floor_lsn} recorded for epoch {epoch.number} (system identifier {epoch.system_identifier})"
    )


def image_key(value: Any, key_field: str = "id") -> Any:
    """The primary key in a Debezium envelope's row image (before for deletes, else after),
    or None when the image lacks it."""
    if not isinstance(value, dict):
        return None
    image = value.get("before") if value.get("op") == "d" else value.get("after")
    return image.get(key_field) if isinstance(image, dict) else None


def from_event(
    key: dict[str, Any] | None, value: dict[str, Any] | None, offset: int, key_field: str = "id", epoch: int = 0
) -> Change | None:
    """The change a decoded (key, value) pair describes; None for a tombstone."""
    if value is None:
        return None  # tombstone: compaction marker for Kafka, nothing to apply
    if not isinstance(value, dict) or "op" not in value or "source" not in value:
        raise MalformedChange("value is not a Debezium envelope (no op/source)")
    op = value["op"]
    if op not in ("c", "u", "d", "r", "t"):
        raise MalformedChange(f"unsupported op {op!r}")
    if op == "t":  # TRUNCATE: no images, the whole table at one position
        lsn = _lsn(value["source"])
        return Change(key="", op="t", row=None, timestamp=write_timestamp("t", lsn, epoch), offset=offset, lsn=lsn)
    image = value.get("before") if op == "d" else value.get("after")
    if not isinstance(image, dict):
        raise MalformedChange(f"op {op} without its {'before' if op == 'd' else 'after'} image")
    row_key = image_key(value, key_field)
    if row_key is None and isinstance(key, dict):
        row_key = key.get(key_field)
    if row_key is None:
        raise MalformedChange(f"no {key_field} in the event")
    lsn = _lsn(value["source"], incremental_read=op == "r")
    return Change(
        key=str(row_key),
        op=op,
        row=None if op == "d" else image,
        timestamp=write_timestamp(op, lsn, epoch),
        offset=offset,
        lsn=lsn,
    )


#: What Debezium puts in an after image for an unchanged TOASTed value it does not have (its
#: ``unavailable.value.placeholder``, left at the default): with REPLICA IDENTITY FULL it takes
#: the value from the before image instead, without FULL there is none.
UNAVAILABLE = "__debezium_unavailable_value"
_UNAVAILABLE_BYTES = UNAVAILABLE.encode()
#: Its forms, as decoded here (Debezium's UnchangedToastedPlaceholder): the text, its bytes
#: (bytea), and for arrays a list of one of those, a list of its bytes as numbers (integer,
#: bigint and date arrays), or a list of the UUID Java's nameUUIDFromBytes makes of it.
_UNAVAILABLE_VALUES = (UNAVAILABLE, _UNAVAILABLE_BYTES)
_UNAVAILABLE_LISTS = (
    [UNAVAILABLE],
    [_UNAVAILABLE_BYTES],
    list(_UNAVAILABLE_BYTES),
    [str(uuid.UUID(bytes=hashlib.md5(_UNAVAILABLE_BYTES).digest(), version=3))],
)


def unavailable_columns(row: dict[str, Any] | None) -> list[str]:
    """The columns of ``row`` that hold Debezium's placeholder instead of a value."""
    return [
        name
        for name, value in (row or {}).items()
        if (value in _UNAVAILABLE_VALUES if isinstance(value, (str, bytes)) else isinstance(value, list) and value in _UNAVAILABLE_LISTS)
    ]


def _lsn(source: Any, incremental_read: bool = False) -> int:
    if not isinstance(source, dict):
        raise MalformedChange(f"source is a {type(source).__name__}, not a record")
    lsn = source.get("lsn")
    if lsn is None and incremental_read and source.get("snapshot") == "incremental":
        # Debezium 3.7 leaves lsn null on incremental snapshot reads; source.sequence
        # ["last commit LSN", "LSN"] holds the stream position when the chunk was emitted.
        lsn = _sequence_lsn(source.get("sequence"))
    if type(lsn) is not int:  # bool is an int subclass; True is no LSN
        raise MalformedChange("source.lsn missing" if lsn is None else f"source.lsn is a {type(lsn).__name__}, not an integer")
    if lsn < 0:  # no LSN is negative: this record is garbage
        raise MalformedChange(f"source.lsn {lsn} out of range: an LSN is never negative")
    if lsn > MAX_LSN:  # a real source can get here (4 PiB of WAL): the system's limit, not the record's fault
        raise PositionOverflow(lsn, MAX_LSN)
    return lsn


def _sequence_lsn(sequence: Any) -> Any:
    import json

    try:
        positions = [int(p) for p in json.loads(sequence) if p is not None]
    except (TypeError, ValueError):
        return None
    return max(positions) if positions else None


def last_per_key(changes: Iterable[Change]) -> list[Change]:
    """Within one micro-batch, only the newest change of each key (by position, then offset)."""
    newest: dict[str, Change] = {}
    for change in changes:
        current = newest.get(change.key)
        if current is None or (change.timestamp, change.offset) > (current.timestamp, current.offset):
            newest[change.key] = change
    return list(newest.values())
