"""Is capture moving? The connector's liveness, judged from PostgreSQL, not from Connect.

Connect reports a task RUNNING as long as its thread exists, even when it is stuck (seen:
a registry call inside the Avro converter that never returned). What does not lie:

* the **heartbeat**: Debezium upserts ``public.cdc_heartbeat`` every ``heartbeat.interval.ms``
  (1 s) from its streaming loop, so a streaming loop that stopped stops beating;
* the **slot**: ``pg_replication_slots.confirmed_flush_lsn`` is where the connector has
  acknowledged; WAL written after it is what capture still owes. It moves only when
  Connect has committed the offsets of records the task thread delivered to Kafka
  (``offset.flush.interval.ms``, 1 s) and Debezium flushes them to the slot. Debezium's
  own heartbeat record (every ``heartbeat.interval.ms``) carries the newest position it has
  read, which includes the heartbeat table's changes (the table is in the publication,
  though not captured into a topic), so even an idle database moves the slot every second
  or two.

The two fail apart. A streaming loop blocked on a lock stops the heartbeat. A task thread
blocked in the converter (its registry call never answered) leaves the streaming loop
beating into Debezium's queue while nothing reaches Kafka and the slot stands still: that
hang was judged "moving" by the heartbeat alone, and a test waited for it for good.

A connector is **stuck** when the slot is behind the WAL (there was something to capture;
an idle database moves the WAL too, by the heartbeat's own writes) and, for longer than
``stuck_after`` (default 60 s), either no heartbeat came or the slot's confirmed position
did not move, and its topics have not grown for as long either. The last condition is
about snapshots: Debezium writes no heartbeat and flushes nothing while it snapshots, so a
snapshot longer than a minute looked stuck, and the watchdog restarted it, over and over
(issue 23). Records arriving in the topics are the connector moving, whatever it is doing.

The slot's standing still counts only while it means something (:func:`slot_still`): the
connector and its tasks RUNNING (a paused connector's slot stands still by design), Kafka
answering (a task that cannot produce waits, and a restart would not help), and the slot's
WAL sender past the confirmed position. That last one is about restarts: PostgreSQL then
re-reads the WAL from the slot's ``restart_lsn`` up to the confirmed position and sends
nothing, which after a long open transaction can take a while; restarting the connector
for it would only start the re-read again.

The watchdog (``cdcpipe.runtime.watchdog``, a service of the local runtime) restarts a stuck
connector, and a FAILED one, with backoff, and records what it did for ``status``.
"""

from __future__ import annotations

import os
from dataclasses import asdict, dataclass
from typing import Any

#: Seconds without a heartbeat or a move of the slot, with WAL to capture, before a connector counts as stuck.
STUCK_AFTER = float(os.environ.get("CDCPIPE_WATCHDOG_STUCK_AFTER", "60"))


@dataclass(frozen=True)
class Liveness:
    state: str  # moving | stuck | failed | paused | stopped | absent | unknown
    reason: str
    connector_state: str | None
    heartbeat_age_s: float | None
    slot_lag_bytes: int | None
    slot_active: bool | None
    slot_still_s: float | None = None

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class CaptureFacts:
    """What PostgreSQL says of capture: seconds since the last heartbeat, bytes of WAL past
    the slot's confirmed position, whether a client streams from the slot, that position
    (bytes from 0/0), and whether the slot's WAL sender has sent past it. None where there is
    no heartbeat row, no slot or no sender."""

    heartbeat_age_s: float | None
    slot_lag_bytes: int | None
    slot_active: bool | None
    flushed_lsn: int | None
    sent_past_flushed: bool | None = None


def capture_facts(pg: Any, slot: str = "cdc_users") -> CaptureFacts:
    """The facts, from PostgreSQL. ``pg`` must be allowed to read public.cdc_heartbeat (the
    runtime grants it to cdcpipe); pg_replication_slots and pg_current_wal_lsn() are open to
    every role."""
    row = pg.execute("SELECT extract(epoch FROM now() - beat_at) FROM public.cdc_heartbeat WHERE id = 1").fetchone()
    age = float(row[0]) if row else None
    slot_row = pg.execute(
        "SELECT active, pg_wal_lsn_diff(pg_current_wal_lsn(), confirmed_flush_lsn)::bigint,"
        " pg_wal_lsn_diff(confirmed_flush_lsn, '0/0')::bigint,"
        " public.cdc_slot_sent_lsn(slot_name) > confirmed_flush_lsn FROM pg_replication_slots WHERE slot_name = %s",
        (slot,),
    ).fetchone()
    if slot_row is None:
        return CaptureFacts(age, None, None, None)
    lag, flushed = (int(v) if v is not None else None for v in slot_row[1:3])
    return CaptureFacts(age, lag, bool(slot_row[0]), flushed, slot_row[3])


def judge(
    status: dict[str, Any] | None,
    heartbeat_age: float | None,
    slot_lag: int | None,
    slot_active: bool | None,
    stuck_after: float = STUCK_AFTER,
    produced_age: float | None = None,
    slot_still: float | None = None,
) -> Liveness:
    """The verdict from Connect's status, PostgreSQL's facts, ``produced_age`` (seconds since
    the connector's topics last grew) and ``slot_still`` (seconds the slot's confirmed
    position has not moved); None where a fact is not known. Pure; see the module doc."""
    if status is None:
        return Liveness("absent", "no such connector in Connect", None, heartbeat_age, slot_lag, slot_active, slot_still)
    connector = status.get("connector", {}).get("state")
    tasks = status.get("tasks") or []
    facts = (connector, heartbeat_age, slot_lag, slot_active, slot_still)
    if connector == "FAILED" or any(t.get("state") == "FAILED" for t in tasks):
        return Liveness("failed", "the connector or a task is FAILED", *facts)
    if connector == "PAUSED":
        return Liveness("paused", "paused by someone: not restarted", *facts)
    if connector == "STOPPED":
        return Liveness("stopped", "stopped by someone (resync and reset-offsets stop it): not restarted", *facts)
    states = f"connector {connector}, tasks {[t.get('state') for t in tasks]}"
    running = _running(status)
    silent = []
    if heartbeat_age is not None and heartbeat_age > stuck_after:
        silent.append(f"no heartbeat for {heartbeat_age:.0f}s")
    if slot_still is not None and slot_still > stuck_after:
        silent.append(f"the slot has not moved for {slot_still:.0f}s")
    if silent and (slot_lag or 0) > 0:
        if produced_age is not None and produced_age <= stuck_after:
            said = f"{' and '.join(silent)}, but records reached its topics {produced_age:.0f}s ago (a snapshot)"
            return Liveness("moving", said, *facts)
        # Not only a RUNNING connector can stop moving: one left UNASSIGNED (or without
        # tasks) by a worker that came back never moves again by itself, and Connect's
        # restart is what assigns it again.
        said = "RUNNING" if running else states
        return Liveness("stuck", f"{said}, but {' and '.join(silent)} while it is {slot_lag} bytes behind the WAL", *facts)
    if not running:
        return Liveness("unknown", states, *facts)
    return Liveness("moving", "heartbeats arrive and the slot follows the WAL", *facts)


def _running(status: dict[str, Any] | None) -> bool:
    """The connector and every one of its tasks (at least one) RUNNING."""
    tasks = (status or {}).get("tasks") or []
    return (
        bool(status)
        and status.get("connector", {}).get("state") == "RUNNING"
        and bool(tasks)
        and all(t.get("state") == "RUNNING" for t in tasks)
    )


class Stillness:
    """How long a value has stood still: fed it at each check, dated from its first sight
    (the slot's confirmed position; a new slot is a new value)."""

    def __init__(self) -> None:
        self.value: int | None = None
        self.since: float | None = None

    def age(self, value: int | None, now: float) -> float | None:
        """Seconds since ``value`` last changed (None while it is not known)."""
        if value is None:
            return None
        if value != self.value:  # a reset left None, which no position equals
            self.value, self.since = value, now
        return now - self.since

    def reset(self) -> None:
        """Forget: the next value is a first sight."""
        self.value = self.since = None


def slot_still(tracker: Stillness, status: dict[str, Any] | None, facts: CaptureFacts, kafka_answered: bool, now: float) -> float | None:
    """Seconds the slot's confirmed position has stood still while that counts against the
    connector, or None when it does not count now (see the module doc). A connector or task
    not RUNNING, or a sender not past the confirmed position, starts the clock again; Kafka not
    answering only skips this check."""
    if not _running(status) or not facts.sent_past_flushed:
        tracker.reset()
        return None
    still = tracker.age(facts.flushed_lsn, now)
    return still if kafka_answered else None


class Growth:
    """When a set of topics last grew: fed their end offsets at each check."""

    def __init__(self) -> None:
        self.offsets: dict[str, int] | None = None
        self.grew_at: float | None = None

    def age(self, offsets: dict[str, int] | None, now: float) -> float | None:
        """Seconds since the offsets last grew (None until they have been seen to)."""
        if offsets is not None:
            if self.offsets is not None and any(offsets.get(k, 0) > v for k, v in self.offsets.items()):
                self.grew_at = now
            self.offsets = offsets
        return None if self.grew_at is None else now - self.grew_at
