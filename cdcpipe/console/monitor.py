"""What the console shows, read through the package's own clients.

Nothing here re-implements the CLI: service states come from :func:`cdcpipe.runtime.status`,
the job's progress from :func:`cdcpipe.runtime.streaming_job.progress`, connector actions from
:class:`cdcpipe.clients.connect.ConnectClient`, change events are decoded by
:func:`cdcpipe.pipeline.avro_reader.decode` and made JSON by ``avro_reader.to_json``.

Two background threads keep what a page should not wait for:

* the sampler (every ``SAMPLE_SECONDS``): the stack's status, each topic's end offsets and the
  job's committed offsets -> consumer lag and messages/s, in a ring buffer for the chart;
* the tail: one consumer (no group commits) on the CDC topics, keeping the newest decoded
  change events for the live tail's Server-Sent Events.

Every read tolerates a service that is down: it is reported as an error string, never raised
into a page.
"""

from __future__ import annotations

import datetime as dt
import json
import threading
import time
import uuid
from collections import deque
from typing import Any
from urllib.parse import quote

import requests

from .. import runtime
from ..clients import kafka_io, topics
from ..clients.connect import DEFAULT_FILE, ConnectorFile
from ..pipeline.avro_reader import DecodeError, SchemaCache, decode, to_json
from ..pipeline.cassandra_sink import quote as quote_name
from ..runtime import streaming_job
from ..settings import Settings

SAMPLE_SECONDS = 5.0
#: Samples kept for the lag chart: 15 minutes at one sample every 5 s.
HISTORY = 180
#: Change events kept for the live tail.
TAIL_KEEP = 500
#: On start, the tail shows up to this many of the newest events already in each partition.
TAIL_BACKLOG = 50
#: At most this many events decoded per request (the newest): a page shows no more.
TAIL_PUSH = 200


def _error(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
    return f"{exc.__class__.__name__}: {text}"[:300]


class Monitor:
    def __init__(self, settings: Settings):
        self.settings = settings
        self.services = {s.name: s for s in runtime.services(settings)}
        self.connect = self.services["connect"].client(timeout=10)
        self.registry_url = self.services["schema_registry"].url
        self.registry_auth = self.services["schema_registry"].auth
        self.registry = SchemaCache(self.registry_url, auth=self.registry_auth)
        self.cdc_topics = [spec.name for spec in topics.load()]
        self._admin: Any = None
        self._cassandra: Any = None
        self._cassandra_lock = threading.Lock()
        self.history: deque[dict[str, Any]] = deque(maxlen=HISTORY)
        self.status: dict[str, Any] | None = None
        self.status_error: str | None = None
        self.offsets: dict[str, Any] = {}  # topic -> {"partitions": {p: (low, high)}, "at": t}
        self.rates: dict[str, float | None] = {}
        self.tail: deque[tuple[int, tuple[Any, ...]]] = deque(maxlen=TAIL_KEEP)  # (seq, raw record)
        self._decoded_cache: dict[int, dict[str, Any]] = {}
        self.tail_seq = 0
        self.tail_error: str | None = None
        self._tail_lock = threading.Lock()
        self._stop = threading.Event()

    # --- background ------------------------------------------------------------------
    def start(self) -> None:
        threading.Thread(target=self._sample_loop, name="console-sampler", daemon=True).start()
        threading.Thread(target=self._tail_loop, name="console-tail", daemon=True).start()

    def stop(self) -> None:
        self._stop.set()

    def _sample_loop(self) -> None:
        while not self._stop.is_set():
            started = time.monotonic()
            self.sample()
            self._stop.wait(max(0.5, SAMPLE_SECONDS - (time.monotonic() - started)))

    def sample(self) -> None:
        try:
            self.status = runtime.status(self.settings)
            self.status_error = None
        except Exception as exc:  # noqa: BLE001 - shown on the page, the sampler goes on
            self.status_error = _error(exc)
        now = time.time()
        previous = dict(self.offsets)
        try:
            current = self.end_offsets(self.topic_names())
        except Exception as exc:  # noqa: BLE001 - Kafka down
            current = {}
            self.kafka_error = _error(exc)
        else:
            self.kafka_error = None
        for topic, parts in current.items():
            before = previous.get(topic)
            if before and now > before["at"]:
                moved = sum(high - before["partitions"].get(p, (0, high))[1] for p, (_low, high) in parts.items())
                self.rates[topic] = max(0, moved) / (now - before["at"])
            self.offsets[topic] = {"partitions": parts, "at": now}
        job = streaming_job.progress(self.settings)
        self.history.append({"t": now, "lag": self.lag(job, current), "state": job["state"]})

    def lag(self, job: dict[str, Any] | None = None, offsets: dict[str, Any] | None = None) -> int | None:
        """End offsets minus the job's committed offsets, over the CDC topics; None if unknown."""
        job = job or streaming_job.progress(self.settings)
        if offsets is None:
            offsets = {t: o["partitions"] for t, o in self.offsets.items()}
        committed = job.get("committed_offsets") or {}
        total, known = 0, False
        for topic in self.cdc_topics:
            parts = offsets.get(topic)
            if not parts:
                continue
            done = committed.get(topic) or {}
            for partition, (low, high) in parts.items():
                at = done.get(str(partition))
                total += max(0, high - (int(at) if at is not None else low))
                known = True
        return total if known else None

    # --- Kafka -----------------------------------------------------------------------
    def admin(self) -> Any:
        if self._admin is None:
            self._admin = self.services["kafka"].admin()
        return self._admin

    def topic_names(self) -> list[str]:
        meta = self.admin().list_topics(timeout=5)
        return sorted(name for name in meta.topics if not name.startswith("_"))

    def end_offsets(self, names: list[str]) -> dict[str, dict[int, tuple[int, int]]]:
        """{topic: {partition: (low, high)}} through the admin client's ListOffsets."""
        from confluent_kafka import TopicPartition
        from confluent_kafka.admin import OffsetSpec

        meta = self.admin().list_topics(timeout=5).topics
        tps = [TopicPartition(t, p) for t in names if t in meta for p in meta[t].partitions]
        if not tps:
            return {}
        low = self.admin().list_offsets({tp: OffsetSpec.earliest() for tp in tps}, request_timeout=5)
        high = self.admin().list_offsets({tp: OffsetSpec.latest() for tp in tps}, request_timeout=5)
        result: dict[str, dict[int, tuple[int, int]]] = {}
        for tp in tps:
            lo = next(f for k, f in low.items() if k.topic == tp.topic and k.partition == tp.partition).result().offset
            hi = next(f for k, f in high.items() if k.topic == tp.topic and k.partition == tp.partition).result().offset
            result.setdefault(tp.topic, {})[tp.partition] = (lo, hi)
        return result

    def topics_overview(self) -> list[dict[str, Any]]:
        rows = []
        names = self.topic_names()
        offsets = self.end_offsets(names)
        for name in names:
            described = topics.describe(self.admin(), name)
            parts = offsets.get(name, {})
            rows.append(
                {
                    "name": name,
                    "partitions": [{"partition": p, "low": lo, "high": hi} for p, (lo, hi) in sorted(parts.items())],
                    "messages": sum(hi - lo for lo, hi in parts.values()),
                    "retention_ms": described["config"].get("retention.ms"),
                    "cleanup_policy": described["config"].get("cleanup.policy"),
                    "rate": self.rates.get(name),
                }
            )
        return rows

    def _tail_loop(self) -> None:
        from confluent_kafka import KafkaError, TopicPartition

        while not self._stop.is_set():
            consumer = None
            try:
                consumer = kafka_io.consumer(self.services["kafka"].client_config(), "console", log_level=0)
                offsets = self.end_offsets(self.cdc_topics)
                if not offsets:
                    self.tail_error = f"waiting for topic(s) {', '.join(self.cdc_topics)}"
                    self._stop.wait(5)
                    continue
                consumer.assign(
                    [TopicPartition(t, p, max(lo, hi - TAIL_BACKLOG)) for t, parts in offsets.items() for p, (lo, hi) in parts.items()]
                )
                self.tail_error = None
                while not self._stop.is_set():
                    msg = consumer.poll(0.5)
                    if msg is None:
                        continue
                    if msg.error():
                        if msg.error().code() != KafkaError._PARTITION_EOF:
                            self.tail_error = msg.error().str()
                        continue
                    self._remember(msg)
            except Exception as exc:  # noqa: BLE001 - Kafka or the registry away: try again
                self.tail_error = _error(exc)
                self._stop.wait(5)
            finally:
                if consumer is not None:
                    consumer.close()

    def _remember(self, msg: Any) -> None:
        """Keep the raw record only: decoding is done when a page asks (see ``tail_since``).
        Decoding every record here cost 70% of a core under 2,000 changes/s (measured)."""
        raw = (msg.topic(), msg.partition(), msg.offset(), msg.key(), msg.value())
        with self._tail_lock:
            self.tail_seq += 1
            self.tail.append((self.tail_seq, raw))

    def _decoded(self, seq: int, raw: tuple[Any, ...]) -> dict[str, Any]:
        cached = self._decoded_cache.get(seq)
        if cached is not None:
            return cached
        topic, partition, offset, key, value_bytes = raw
        event: dict[str, Any] = {"seq": seq, "topic": topic, "partition": partition, "offset": offset}
        for part, data in (("key", key), ("value", value_bytes)):
            try:
                event[part] = to_json(decode(data, self.registry))
            except DecodeError as exc:
                event[part] = None
                event["error"] = f"{part}: {exc.reason}"
        value = event.get("value") or {}
        source = value.get("source") or {}
        ts_ms = source.get("ts_ms")
        event.update(
            op=value.get("op") or ("tombstone" if value_bytes is None else "?"),
            before=value.get("before"),
            after=value.get("after"),
            lsn=source.get("lsn"),
            commit_time=dt.datetime.fromtimestamp(ts_ms / 1000, dt.UTC).isoformat(timespec="milliseconds") if ts_ms else None,
            key_text=json.dumps(event.get("key"), ensure_ascii=False),
        )
        self._decoded_cache[seq] = event
        while len(self._decoded_cache) > TAIL_KEEP:
            self._decoded_cache.pop(next(iter(self._decoded_cache)))
        return event

    def tail_since(self, seq: int, key: str = "", op: str = "") -> list[dict[str, Any]]:
        """Decoded events after ``seq`` (at most the newest TAIL_PUSH), filtered by key and op."""
        with self._tail_lock:
            raws = [(n, raw) for n, raw in self.tail if n > seq][-TAIL_PUSH:]
        events = [self._decoded(n, raw) for n, raw in raws]
        return [e for e in events if (not op or e["op"] == op) and (not key or key in e["key_text"])]

    # --- registry --------------------------------------------------------------------
    def _registry(self, path: str) -> Any:
        response = requests.get(self.registry_url + path, timeout=10, auth=self.registry_auth)
        response.raise_for_status()
        return response.json()

    def subjects(self) -> list[dict[str, Any]]:
        names = sorted(self._registry("/subjects"))
        return [{"subject": s, "versions": self._registry(f"/subjects/{quote(s, safe='')}/versions")} for s in names]

    def schema_version(self, subject: str, version: int | str) -> dict[str, Any]:
        """One version of a subject; both are path segments of the registry's URL, quoted
        (a subject can hold any character, and comes from a query string)."""
        return self._registry(f"/subjects/{quote(subject, safe='')}/versions/{quote(str(version), safe='')}")

    # --- Connect ---------------------------------------------------------------------
    def connector_name(self) -> str:
        return ConnectorFile.load(DEFAULT_FILE).name

    # --- Cassandra -------------------------------------------------------------------
    def cql(self, query: str, *params: Any, timeout: float = 30) -> list[Any]:
        """Rows of a CQL query on a shared session (made again after Cassandra was away)."""
        with self._cassandra_lock:
            if self._cassandra is None:
                self._cassandra = self.services["cassandra"].session(use="reader")
            session = self._cassandra
        try:
            return list(session.execute(query, params or None, timeout=timeout))
        except Exception:
            with self._cassandra_lock:
                if self._cassandra is session:
                    self._cassandra = None
                    session.cluster.shutdown()
            raise

    def user_columns(self) -> list[str]:
        rows = self.cql("SELECT column_name, kind FROM system_schema.columns WHERE keyspace_name = 'cdc' AND table_name = 'users'")
        return sorted(r.column_name for r in rows if r.kind == "regular")

    def user(self, user_id: str) -> dict[str, Any] | None:
        """One row of cdc.users and each column's write time (µs; 2^52 + LSN for streamed changes)."""
        columns = self.user_columns()
        # Quoted: a column can be named anything (mixed case, reserved words, quotes, markup).
        select = ", ".join(["id", *map(quote_name, columns), *(f"writetime({quote_name(c)})" for c in columns)])
        rows = self.cql(f"SELECT {select} FROM cdc.users WHERE id = %s", uuid.UUID(user_id))
        if not rows:
            return None
        row = rows[0]
        values = list(row)
        return {
            "id": str(values[0]),
            "columns": [{"name": c, "value": values[1 + i], "writetime": values[1 + len(columns) + i]} for i, c in enumerate(columns)],
        }

    def dead_letters(self, limit: int = 100) -> list[Any]:
        return self.cql(
            "SELECT topic, kafka_partition, kafka_offset, error, failed_at, record_key, record_value FROM cdc.dead_letters LIMIT %s",
            limit,
        )
