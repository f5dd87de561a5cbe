"""Is capture moving? The connector's liveness, judged from PostgreSQL, not from Connect.

Connect reports a task RUNNING as long as its thread exists, even when it is stuck (seen:
a registry call inside the Avro converter that never returned). What does not lie:

* the **heartbeat**: Debezium upserts ``public.cdc_heartbeat`` every ``heartbeat.interval.ms``
  (1 s) from its streaming loop, so a task that stopped moving stops beating;
* the **slot**: ``pg_replication_slots.confirmed_flush_lsn`` is where the connector has
  acknowledged; WAL written after it is what capture still owes.

A connector is **stuck** when Connect says RUNNING, the last heartbeat is older than
``stuck_after`` (default 60 s: sixty missed beats) and the slot is behind the WAL (so there
was something to capture; an idle database moves the WAL too, at least by the heartbeat's
own writes), and its topics have not grown for as long either. The last condition is
about snapshots: Debezium writes no heartbeat while it snapshots, so a snapshot longer
than a minute looked stuck, and the watchdog restarted it, over and over (issue 23).
Records arriving in the topics are the connector moving, whatever it is doing.

The watchdog (``cdcpipe.runtime.watchdog``, a service of the local runtime) restarts a stuck
connector, and a FAILED one, with backoff, and records what it did for ``status``.
"""

from __future__ import annotations

import os
from dataclasses import asdict, dataclass
from typing import Any

#: Seconds without a heartbeat, with WAL to capture, before a RUNNING connector counts as stuck.
STUCK_AFTER = float(os.environ.get("CDCPIPE_WATCHDOG_STUCK_AFTER", "60"))


@dataclass(frozen=True)
class Liveness:
    state: str  # moving | stuck | failed | paused | stopped | absent | unknown
    reason: str
    connector_state: str | None
    heartbeat_age_s: float | None
    slot_lag_bytes: int | None
    slot_active: bool | None

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def capture_facts(pg: Any, slot: str = "cdc_users") -> tuple[float | None, int | None, bool | None]:
    """(seconds since the last heartbeat, bytes of WAL past the slot, slot active) from PostgreSQL.

    ``pg`` must be allowed to read public.cdc_heartbeat (the runtime grants it to cdcpipe);
    pg_replication_slots and pg_current_wal_lsn() are open to every role."""
    row = pg.execute("SELECT extract(epoch FROM now() - beat_at) FROM public.cdc_heartbeat WHERE id = 1").fetchone()
    age = float(row[0]) if row else None
    slot_row = pg.execute(
        "SELECT active, pg_wal_lsn_diff(pg_current_wal_lsn(), confirmed_flush_lsn)::bigint FROM pg_replication_slots WHERE slot_name = %s",
        (slot,),
    ).fetchone()
    if slot_row is None:
        return age, None, None
    return age, int(slot_row[1]) if slot_row[1] is not None else None, bool(slot_row[0])


def judge(
    status: dict[str, Any] | None,
    heartbeat_age: float | None,
    slot_lag: int | None,
    slot_active: bool | None,
    stuck_after: float = STUCK_AFTER,
    produced_age: float | None = None,
) -> Liveness:
    """The verdict from Connect's status, PostgreSQL's facts and ``produced_age``, the seconds
    since the connector's topics last grew (None: not known). Pure; see the module doc."""
    if status is None:
        return Liveness("absent", "no such connector in Connect", None, heartbeat_age, slot_lag, slot_active)
    connector = status.get("connector", {}).get("state")
    tasks = status.get("tasks") or []
    facts = (connector, heartbeat_age, slot_lag, slot_active)
    if connector == "FAILED" or any(t.get("state") == "FAILED" for t in tasks):
        return Liveness("failed", "the connector or a task is FAILED", *facts)
    if connector == "PAUSED":
        return Liveness("paused", "paused by someone: not restarted", *facts)
    if connector == "STOPPED":
        return Liveness("stopped", "stopped by someone (resync and reset-offsets stop it): not restarted", *facts)
    states = f"connector {connector}, tasks {[t.get('state') for t in tasks]}"
    running = connector == "RUNNING" and tasks and all(t.get("state") == "RUNNING" for t in tasks)
    if produced_age is not None and produced_age <= stuck_after and (heartbeat_age is None or heartbeat_age > stuck_after):
        return Liveness("moving", f"no heartbeat, but records reached its topics {produced_age:.0f}s ago (a snapshot)", *facts)
    if heartbeat_age is not None and heartbeat_age > stuck_after and (slot_lag or 0) > 0:
        # Not only a RUNNING connector can stop moving: one left UNASSIGNED (or without
        # tasks) by a worker that came back never moves again by itself, and Connect's
        # restart is what assigns it again.
        said = "RUNNING" if running else states
        return Liveness(
            "stuck", f"{said}, but no heartbeat for {heartbeat_age:.0f}s while the slot is {slot_lag} bytes behind the WAL", *facts
        )
    if not running:
        return Liveness("unknown", states, *facts)
    return Liveness("moving", "heartbeats arrive and the slot follows the WAL", *facts)


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
