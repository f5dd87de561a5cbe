"""Debezium change events -> the writes that make the read model equal the source table.

Ordering rule (why replays and late events are safe)
-----------------------------------------------------
Every write to Cassandra carries ``USING TIMESTAMP`` = the change's *position*:

* streamed changes (op c/u/d): ``STREAMING_BASE + source.lsn``
* snapshot reads (op r):       ``source.lsn``

Cassandra keeps, per cell, the write with the highest timestamp, and a delete shadows every
write with a lower one. So applying the same change twice, or an older change after a newer
one, never changes the outcome: the result only depends on the set of changes, not on the
order or number of times they arrive (replays, restarts, at-least-once redelivery).

Why the LSN orders changes of one key: PostgreSQL serialises writes to a row (row locks;
the unique index for inserts and primary-key updates), so a later change of the same key is
written to WAL after the earlier one committed, at a higher LSN. Snapshot reads carry the
snapshot's LSN, but a transaction that started before the snapshot and committed after it
can be streamed with a *lower* change LSN than the snapshot's. Hence the base: every streamed
change outranks every snapshot read, and snapshot reads among themselves order by LSN.
2**52 microseconds is the year 2112, so the timestamps still look like times and stay above
any wall-clock write made by hand. A deleted row cannot come back from an older event as
long as Cassandra keeps the tombstone (gc_grace_seconds, 10 days by default).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from ..errors import MalformedChange

STREAMING_BASE = 1 << 52
#: Cassandra write timestamps are signed 64-bit; positions must stay below this.
TIMESTAMP_LIMIT = 1 << 63
#: The largest LSN whose position fits (a streamed change adds STREAMING_BASE). PostgreSQL
#: LSNs are unsigned 64-bit, but reaching 2**63 - 2**52 takes 8 EiB of WAL.
MAX_LSN = TIMESTAMP_LIMIT - 1 - STREAMING_BASE


@dataclass(frozen=True)
class Change:
    key: str  # the primary key (users.id) as text
    op: str  # c, u, d or r
    row: dict[str, Any] | None  # the after image; None for deletes
    timestamp: int  # the Cassandra write timestamp (see module docstring)
    offset: int  # the Kafka offset, a tiebreak inside one partition

    @property
    def is_delete(self) -> bool:
        return self.op == "d"


def write_timestamp(op: str, lsn: int) -> int:
    return lsn if op == "r" else STREAMING_BASE + lsn


def image_key(value: Any, key_field: str = "id") -> Any:
    """The primary key in a Debezium envelope's row image (before for deletes, else after),
    or None when the image lacks it."""
    if not isinstance(value, dict):
        return None
    image = value.get("before") if value.get("op") == "d" else value.get("after")
    return image.get(key_field) if isinstance(image, dict) else None


def from_event(key: dict[str, Any] | None, value: dict[str, Any] | None, offset: int, key_field: str = "id") -> Change | None:
    """The change a decoded (key, value) pair describes; None for a tombstone."""
    if value is None:
        return None  # tombstone: compaction marker for Kafka, nothing to apply
    if not isinstance(value, dict) or "op" not in value or "source" not in value:
        raise MalformedChange("value is not a Debezium envelope (no op/source)")
    op = value["op"]
    if op not in ("c", "u", "d", "r"):
        raise MalformedChange(f"unsupported op {op!r}")
    image = value.get("before") if op == "d" else value.get("after")
    if not isinstance(image, dict):
        raise MalformedChange(f"op {op} without its {'before' if op == 'd' else 'after'} image")
    row_key = image_key(value, key_field)
    if row_key is None and isinstance(key, dict):
        row_key = key.get(key_field)
    if row_key is None:
        raise MalformedChange(f"no {key_field} in the event")
    source = value["source"]
    if not isinstance(source, dict):
        raise MalformedChange(f"source is a {type(source).__name__}, not a record")
    lsn = source.get("lsn")
    if type(lsn) is not int:  # bool is an int subclass; True is no LSN
        raise MalformedChange("source.lsn missing" if lsn is None else f"source.lsn is a {type(lsn).__name__}, not an integer")
    if not 0 <= lsn <= MAX_LSN:
        raise MalformedChange(f"source.lsn {lsn} out of range: its write timestamp must fit a signed 64-bit integer (LSN 0..{MAX_LSN})")
    return Change(
        key=str(row_key),
        op=op,
        row=None if op == "d" else image,
        timestamp=write_timestamp(op, lsn),
        offset=offset,
    )


def last_per_key(changes: Iterable[Change]) -> list[Change]:
    """Within one micro-batch, only the newest change of each key (by position, then offset)."""
    newest: dict[str, Change] = {}
    for change in changes:
        current = newest.get(change.key)
        if current is None or (change.timestamp, change.offset) > (current.timestamp, current.offset):
            newest[change.key] = change
    return list(newest.values())
