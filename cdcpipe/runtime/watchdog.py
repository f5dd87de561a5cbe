"""The capture watchdog: ``python -m cdcpipe.runtime.watchdog``, a process of the local runtime.

Every ``CDCPIPE_WATCHDOG_INTERVAL`` seconds (default 15) it judges the connector's liveness
(:mod:`cdcpipe.runtime.liveness`) and, when the connector is **stuck** (no heartbeat, or a slot that
does not move, while WAL waits) or **FAILED**, restarts it and its tasks through Connect's REST API, at
most once per backoff period (60 s, doubling to 10 min while it keeps failing). Nothing is
lost by a restart: the task resumes from its last committed offset and the slot has kept
the WAL since. A paused connector is left alone (someone paused it). What it saw and did
is written to ``<state>/watchdog/state.json`` for ``cdcpipe status``; it stops cleanly on
SIGTERM.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os
import signal
import threading
import time
from pathlib import Path
from typing import Any

from .. import runtime, settings
from ..clients import kafka_io
from ..clients.connect import ConnectClient, ConnectorFile
from ..errors import CdcpipeError
from ..pipeline.schema_changes import JOURNAL_TOPIC, USERS_TOPIC
from . import credentials, liveness
from .services.watchdog import state_file

log = logging.getLogger("cdcpipe.runtime.watchdog")

INTERVAL = float(os.environ.get("CDCPIPE_WATCHDOG_INTERVAL", "15"))
BACKOFF_FIRST, BACKOFF_MAX = 60.0, 600.0
CONNECTOR_FILE = settings.REPO / "connectors" / "users-cdc.json"


def _write(path: Path, report: dict[str, Any]) -> None:
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(report, default=str))
    tmp.replace(path)


def topic_ends(conf: settings.Settings, topics: list[str]) -> dict[str, int] | None:
    """The end offsets of ``topics``, each summed over its partitions (None when Kafka does
    not answer at once). Capture is judged from PostgreSQL; this is an extra fact, so it never
    holds a check up: nothing listening on Kafka's port means no answer, and the client's
    waits are short."""
    import socket

    try:
        socket.create_connection((conf.host, conf.port("kafka")), timeout=1).close()
    except OSError:
        return None
    kafka = runtime.service(conf, "kafka").client_config()
    try:
        with kafka_io.opened(kafka, "watchdog", **{"socket.connection.setup.timeout.ms": 2000, "reconnect.backoff.max.ms": 1000}) as c:
            # a topic's end: the sum over its partitions (three on a cluster)
            return {topic: sum(max(end, 0) for end in kafka_io.partition_ends(c, topic, 3).values()) for topic in topics}
    except Exception:  # noqa: BLE001 - Kafka away or busy: the fact is not known this time
        return None


def check_once(
    conf: settings.Settings,
    client: ConnectClient,
    name: str,
    growth: liveness.Growth | None = None,
    topics: list[str] | None = None,
    slot: liveness.Stillness | None = None,
    watching_for: float | None = None,
) -> liveness.Liveness:
    """One verdict. ``growth`` and ``slot`` carry what earlier checks saw (the topics' ends,
    the slot's position): without them the verdict rests on the heartbeat alone.
    ``watching_for``: seconds since the watchdog started. A heartbeat older than that is not
    held against the connector: after ``cdcpipe up`` of a stack that was down, the last beat
    is as old as the pause, and the connector was restarted while it was still starting."""
    import psycopg

    secrets = credentials.load(conf)
    try:
        status = client.status(name)
    except CdcpipeError as exc:
        if "no connector named" in str(exc):
            status = None
        else:
            return liveness.Liveness("unknown", f"Connect: {exc}", None, None, None, None)
    try:
        with psycopg.connect(
            host=conf.host,
            port=conf.port("postgres"),
            dbname="users",
            user="cdcpipe",
            password=secrets["cdcpipe"],
            connect_timeout=5,
            options="-c statement_timeout=5000",
        ) as pg:  # never hang the watchdog
            facts = liveness.capture_facts(pg)
    except psycopg.Error as exc:
        return liveness.Liveness("unknown", f"PostgreSQL: {str(exc).strip()[:200]}", None, None, None, None)
    now = time.monotonic()
    ends = topic_ends(conf, topics or [])
    produced = growth.age(ends, now) if growth is not None else None
    still = liveness.slot_still(slot, status, facts, ends is not None, now) if slot is not None else None
    beat = facts.heartbeat_age_s
    if beat is not None and watching_for is not None:
        beat = min(beat, watching_for)
    verdict = liveness.judge(status, beat, facts.slot_lag_bytes, facts.slot_active, produced_age=produced, slot_still=still)
    return dataclasses.replace(verdict, heartbeat_age_s=facts.heartbeat_age_s)  # status shows the real age


def run(conf: settings.Settings, stop: threading.Event) -> None:
    client = runtime.service(conf, "connect").client(timeout=10)
    name = ConnectorFile.load(CONNECTOR_FILE).name
    path = state_file(conf)
    path.parent.mkdir(parents=True, exist_ok=True)
    restarts: list[dict[str, Any]] = []
    backoff, next_allowed = BACKOFF_FIRST, 0.0
    growth, topics, slot = liveness.Growth(), [USERS_TOPIC, JOURNAL_TOPIC], liveness.Stillness()
    started = time.monotonic()
    while not stop.is_set():
        verdict = check_once(conf, client, name, growth, topics, slot, watching_for=time.monotonic() - started)
        action = None
        if verdict.state in ("stuck", "failed"):
            if time.monotonic() >= next_allowed:
                try:
                    client.restart(name)
                    action = f"restarted {name}: {verdict.reason}"
                    log.warning(action)
                    restarts.append({"at": time.time(), "why": verdict.reason})
                    del restarts[:-20]
                except CdcpipeError as exc:
                    action = f"restart of {name} failed: {exc}"
                    log.error(action)
                next_allowed = time.monotonic() + backoff
                backoff = min(BACKOFF_MAX, backoff * 2)
        elif verdict.state == "moving":
            backoff = BACKOFF_FIRST
        _write(
            path,
            {
                "checked_at": time.time(),
                "pid": os.getpid(),
                "connector": name,
                **verdict.as_dict(),
                "last_action": action,
                "restarts": restarts,
            },
        )
        stop.wait(INTERVAL)


def main() -> None:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s %(message)s")
    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    conf = settings.load()
    log.info(
        "watching connector liveness every %.0fs (stuck after %.0fs without a heartbeat or a move of the slot)",
        INTERVAL,
        liveness.STUCK_AFTER,
    )
    run(conf, stop)


if __name__ == "__main__":
    main()
