"""Helpers the CDC tests share: reading decoded change events from a position onwards."""

from __future__ import annotations

import contextlib
import datetime as dt
import importlib.util
import os
import subprocess
import sys
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

from confluent_kafka import KafkaError, KafkaException, TopicPartition

from cdcpipe import verify
from cdcpipe.clients import kafka_io
from cdcpipe.clients.topics import partitions
from cdcpipe.pipeline.avro_reader import decode

TOPIC = "cdc.public.users"
#: Where browser tests put their screenshots (a test artifact).
SCREENSHOTS = Path(os.environ.get("CDCPIPE_SCREENSHOTS") or Path(__file__).resolve().parent.parent / "build" / "screenshots")


def settings_where_nothing_listens(home: Path, topology: str = "single") -> Any:
    """Settings of a state directory ``home`` whose every port (every node's, on a cluster
    ``topology``) is free now: no service answers."""
    import socket

    from cdcpipe import settings

    ports = {}
    for name in {**settings.DEFAULT_PORTS, **settings.node_ports(settings.TOPOLOGIES[topology])}:
        with socket.socket() as sock:
            sock.bind(("127.0.0.1", 0))
            ports[f"CDCPIPE_PORT_{name.upper()}"] = str(sock.getsockname()[1])
    return settings.load({"CDCPIPE_HOME": str(home), "CDCPIPE_TOPOLOGY": topology, **ports})


def shot(page: Any, name: str) -> Path:
    """A full-page screenshot of a Playwright page, as ``SCREENSHOTS/console-NAME.png``."""
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    path = SCREENSHOTS / f"console-{name}.png"
    page.screenshot(path=str(path), full_page=True)
    return path


#: A user row with hard values (accents, quotes, microseconds) for the tests' inserts.
ROW = {
    "username": "purplecat123",
    "email": "zoë.o'brien@example.com",
    "title": "Ms",
    "first_name": "Zoë",
    "last_name": "O'Brien",
    "gender": "female",
    "dob": dt.datetime(1961, 3, 4, 5, 6, 7, 891000, tzinfo=dt.UTC),
    "registered_at": dt.datetime(2012, 8, 9, 10, 11, 12, 130000, tzinfo=dt.UTC),
    "phone": "(272) 790-0888",
    "cell": "(489) 330-2385",
    "street_number": 9278,
    "street_name": "New Road",
    "city": "Kilcoole",
    "state": "Waterford",
    "country": "Ireland",
    "postcode": "93027",
    "latitude": -69.8246,
    "longitude": 134.8719,
    "timezone_offset": "+9:30",
    "timezone_description": "Adelaide, Darwin",
    "nationality": "IE",
    "picture_large": "https://randomuser.me/api/portraits/women/75.jpg",
    "picture_medium": "https://randomuser.me/api/portraits/med/women/75.jpg",
    "picture_thumbnail": "https://randomuser.me/api/portraits/thumb/women/75.jpg",
}


def insert(pg, row: dict, user_id: uuid.UUID | None = None) -> str:
    """INSERT ``row`` into public.users with a new (or the given) id; the id as text."""
    user_id = user_id or uuid.uuid4()
    cols = ["id", *row]
    pg.execute(
        f"INSERT INTO public.users ({', '.join(cols)}) VALUES ({', '.join(['%s'] * len(cols))})",
        [user_id, *row.values()],
    )
    return str(user_id)


def job_module():
    """spark_jobs/users_to_cassandra.py loaded as a module (it is a script, not in the package)."""
    spec = importlib.util.spec_from_file_location(
        "users_to_cassandra", Path(__file__).resolve().parent.parent / "spark_jobs" / "users_to_cassandra.py"
    )
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def rows_named_like(pg, *prefixes: str) -> int:
    """Rows of public.users whose username starts with one of ``prefixes`` (what a benchmark
    must have deleted when it ends)."""
    where = " OR ".join(["username LIKE %s"] * len(prefixes))
    return pg.execute(f"SELECT count(*) AS n FROM public.users WHERE {where}", [p + "%" for p in prefixes]).fetchone()["n"]


def run_cli(*args: str, env: dict[str, str] | None = None, timeout: float = 180) -> subprocess.CompletedProcess[str]:
    """``cdcpipe ARGS`` in a child process as a user runs it; output captured as text."""
    return subprocess.run([sys.executable, "-m", "cdcpipe", *args], env=env, capture_output=True, text=True, timeout=timeout)


def register_schema(registry: Any, schema: dict[str, Any], subject: str | None = None) -> int:
    """Register ``schema`` under a fresh (or the given) subject via the Confluent-compatible
    API of ``registry`` (the runtime's SchemaRegistry, logged in); the id it answers is the
    one ``/schemas/ids/{id}`` resolves."""
    import json

    import requests

    subject = subject or f"test-{uuid.uuid4().hex[:8]}-value"
    response = requests.post(
        f"{registry.url}/subjects/{subject}/versions",
        json={"schema": json.dumps(schema)},
        headers={"Content-Type": "application/vnd.schemaregistry.v1+json"},
        timeout=10,
        auth=registry.auth,
    )
    assert response.status_code == 200, response.text
    return response.json()["id"]


class TopicReader:
    """Reads a topic from the end each of its partitions had when the reader was made (a key's
    events keep their order: Debezium keys by id, so a key stays in one partition)."""

    def __init__(self, kafka: Any, registry: Any, topic: str = TOPIC):
        """``kafka``, ``registry``: the runtime's Kafka and SchemaRegistry (their clients log in)."""
        self.topic = topic
        self.registry = registry.cache()
        self.consumer = kafka_io.consumer(kafka.client_config(), "test")
        #: partition -> its end offset when the reader was made (every partition: three on a cluster)
        self.starts: dict[int, int] = {}
        for partition in partitions(self.consumer, topic):
            try:
                _, high = self.consumer.get_watermark_offsets(TopicPartition(topic, partition), timeout=10)
            except KafkaException as exc:  # a topic not made yet starts at 0; any other error is the test's failure
                if exc.args[0].code() not in (KafkaError._UNKNOWN_PARTITION, KafkaError.UNKNOWN_TOPIC_OR_PART):
                    raise
                high = 0
            self.starts[partition] = max(high, 0)
        self.consumer.assign([TopicPartition(topic, p, o) for p, o in self.starts.items()])
        self.raw: list[tuple[bytes | None, bytes | None, int]] = []

    def read_until(self, done: Callable[[list[dict[str, Any]]], bool], timeout: float = 60.0) -> list[dict[str, Any]]:
        """Decoded events {key, value, offset} read so far once ``done(events)`` is true."""
        events: list[dict[str, Any]] = []
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            msg = self.consumer.poll(0.5)
            if msg is not None and not msg.error():
                self.raw.append((msg.key(), msg.value(), msg.offset()))
                events.append(
                    {"key": decode(msg.key(), self.registry), "value": decode(msg.value(), self.registry), "offset": msg.offset()}
                )
            elif done(events):
                return events
        raise AssertionError(f"condition not met after {timeout:.0f}s; {len(events)} event(s) read: {events[-5:]}")

    def close(self) -> None:
        self.consumer.close()


def for_ids(events: list[dict[str, Any]], ids: set[str]) -> list[dict[str, Any]]:
    return [e for e in events if e["key"] and e["key"]["id"] in ids]


def replay(events: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """Apply change events in order to an empty table: the state they describe."""
    state: dict[str, dict[str, Any]] = {}
    for event in events:
        value = event["value"]
        if value is None:  # tombstone
            continue
        if value["op"] in ("c", "r", "u"):
            state[value["after"]["id"]] = value["after"]
        elif value["op"] == "d":
            state.pop(value["before"]["id"], None)
    return state


def pg_row_as_event(row: dict[str, Any]) -> dict[str, Any]:
    """A PostgreSQL row (psycopg dict_row) in the representation Debezium's events use."""
    out = {}
    for key, value in row.items():
        if isinstance(value, uuid.UUID):
            value = str(value)
        elif isinstance(value, dt.datetime):
            value = value.astimezone(dt.UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
        out[key] = value
    return out


def wait_for(predicate: Callable[[], Any], timeout: float, what: str | Callable[[], str], *, interval: float = 0.5) -> Any:
    """``predicate()``'s first truthy value, polled every ``interval`` s; AssertionError naming
    ``what`` after ``timeout`` s. ``what`` may be a callable, called only then, so the message
    can carry what was seen last (the last state, a count)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(interval)
    raise AssertionError(f"not within {timeout:.0f}s: {what() if callable(what) else what}")


def wait_until_read_model_matches(pg, session, timeout: float = 120.0) -> dict[str, dict[str, Any]]:
    """Poll until cdc.users equals public.users column by column (ms precision)."""
    return verify.wait_until_equal(pg, session, timeout)


def pipeline_facts(conf: Any, log_lines: int = 6) -> str:
    """Where a change is stuck, for a failing test's message: the connector's status, the slot
    against the WAL, the topic's end against the job's offsets, the watchdog's and the job's
    verdicts, and the last warnings and errors of Connect, Kafka and the job. Each fact is
    gathered on its own: a service that is down reads as that, not as a second failure."""
    import json

    import psycopg

    from cdcpipe import runtime
    from cdcpipe.runtime import credentials, streaming_job
    from cdcpipe.runtime.services.watchdog import read_state as read_watchdog_state

    facts: list[str] = []

    def fact(name: str, read: Callable[[], Any]) -> None:
        try:
            facts.append(f"{name}: {read()}")
        except Exception as exc:  # noqa: BLE001 - a diagnosis, never a second failure
            facts.append(f"{name}: unreadable ({exc.__class__.__name__}: {str(exc)[:160]})")

    def slot() -> Any:
        secrets = credentials.load(conf)
        with psycopg.connect(
            host=conf.host, port=conf.port("postgres"), dbname="users", user="cdcpipe", password=secrets["cdcpipe"], connect_timeout=3
        ) as pg:
            return pg.execute(
                "SELECT slot_name, active, active_pid, confirmed_flush_lsn, pg_current_wal_lsn() FROM pg_replication_slots"
            ).fetchall()

    def topic_end() -> int:  # summed over the partitions (three on a cluster)
        return sum(kafka_io.end_offsets(runtime.service(conf, "kafka").client_config(), TOPIC).values())

    def job() -> Any:
        report = streaming_job.read_progress(conf) or {}
        last = report.get("last_progress") or {}
        ends = [source.get("endOffset") for source in last.get("sources") or []]
        return {
            "state": report.get("state"),
            "reason": report.get("reason"),
            "batch": last.get("batchId"),
            "at": last.get("timestamp"),
            "ends": ends,
        }

    fact("connector", lambda: json.dumps(runtime.service(conf, "connect").client(timeout=5).status("users-cdc")))
    fact("slot", slot)
    fact("topic end", topic_end)
    fact("job", job)
    fact("watchdog", lambda: {k: (read_watchdog_state(conf) or {}).get(k) for k in ("state", "reason", "last_action")})
    for name in ("connect", "kafka", "spark-job"):

        def tail(name: str = name) -> str:
            lines = conf.log_file(name).read_text(errors="replace").splitlines()
            bad = [line[:240] for line in lines if " WARN " in line or " ERROR " in line or "Exception" in line]
            return "\n    " + "\n    ".join(bad[-log_lines:])

        fact(f"{name}.log warnings", tail)
    return "\n  ".join(["pipeline facts:", *facts])


@contextlib.contextmanager
def standalone_cores_free(conf):
    """Free the standalone Spark cluster's cores for another application meanwhile.

    On the cluster topology the streaming job is an application of the standalone cluster and
    holds every worker's core, so another application would wait for cores for ever: the job
    is stopped meanwhile and started again after. On one node it runs on local[2]: nothing to do.
    """
    from cdcpipe.runtime import streaming_job

    running = conf.spark_master.startswith("spark://") and streaming_job.status(conf)["state"] == "running"
    if running:
        streaming_job.stop(conf)
    try:
        yield
    finally:
        if running:
            streaming_job.start(conf)
