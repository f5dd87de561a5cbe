"""End-to-end latency: a change committed in PostgreSQL until it is readable in Cassandra.

What `cdcpipe bench --latency N` measures, on the running pipeline (connector and job up):

* **probes** are single-row inserts into ``public.users``, one after a random pause of 0.1–0.6 s (so
  they do not phase-lock with the job's trigger), each in its own transaction;
* ``committed``: the wall clock when COMMIT returned to the client;
* ``in_kafka``: the Kafka record's timestamp (CreateTime: when Connect's producer sent the
  event), read by a consumer of ``cdc.public.users`` that decodes keys and picks the probes;
* ``readable``: the first poll (every 5 ms) that finds the row in ``cdc.users``.

commit -> Kafka is ``in_kafka - committed`` (Debezium: WAL decoding, its poll interval, the
converter, the producer), Kafka -> Cassandra is ``readable - in_kafka`` (the job's trigger,
the micro-batch, the write). Everything runs on one machine, one clock.

The probes run twice: at idle, then under a background load that this module generates
itself in PostgreSQL (``--load`` changes/s: 20% inserts, 70% updates of rows it inserted, 10%
deletes, committed in small transactions every 20 ms by a thread of its own). Probe and
load rows are deleted afterwards. A PNG shows each probe's latency over time, split in two.
"""

from __future__ import annotations

import math
import random
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .. import runtime
from ..clients import kafka_io
from ..errors import CdcpipeError
from ..pipeline.schema_changes import USERS_TOPIC
from ..runtime import streaming_job
from ..settings import Settings

TOPIC = USERS_TOPIC
PROBE_PREFIX = "latency-probe-"
LOAD_PREFIX = "latency-load-"


def percentiles(values: list[float]) -> dict[str, float]:
    """p50, p90, p99 and max of ``values`` in milliseconds (nearest rank)."""
    if not values:
        return {}
    ordered = sorted(values)

    def rank(p: float) -> float:  # nearest rank: the smallest value with p% of them at or below it
        return ordered[max(1, math.ceil(p / 100 * len(ordered))) - 1]

    return {
        "p50_ms": round(rank(50) * 1000),
        "p90_ms": round(rank(90) * 1000),
        "p99_ms": round(rank(99) * 1000),
        "max_ms": round(ordered[-1] * 1000),
        "n": len(ordered),
    }


@dataclass(frozen=True)
class TopicRecord:
    key: str
    partition: int
    offset: int
    timestamp: float  # the record's CreateTime (Connect's producer), seconds since the epoch
    tombstone: bool


class KafkaTimes(threading.Thread):
    """Consumes the CDC topic from the end it had when made; for each record of a key in
    ``wanted``: its offset and timestamp (``records``, in arrival order), the first timestamp
    per key (``seen``) and the newest change's raw record per key (``latest``: key bytes,
    value bytes, partition, offset). Keys are decoded, values are not."""

    def __init__(self, kafka: dict[str, Any], registry: Any):
        """``kafka``: a client configuration (``Kafka.client_config()``); ``registry``: a
        SchemaCache (logged in) to decode keys with."""
        super().__init__(daemon=True)
        from confluent_kafka import TopicPartition

        self.registry = registry
        self.consumer = kafka_io.consumer(kafka, "latency", **{"fetch.wait.max.ms": 10})
        # Explicit offsets, not OFFSET_END: that is resolved at the first fetch, after the
        # caller may already have committed changes it wants timed.
        self.start_offsets = kafka_io.partition_ends(self.consumer, TOPIC)
        self.consumer.assign([TopicPartition(TOPIC, p, offset) for p, offset in self.start_offsets.items()])
        self.seen: dict[str, float] = {}
        self.records: list[TopicRecord] = []
        self.latest: dict[str, tuple[bytes, bytes, int, int]] = {}
        self.wanted: set[str] = set()
        self.stop = threading.Event()

    def run(self) -> None:
        from ..pipeline.avro_reader import decode

        while not self.stop.is_set():
            for msg in self.consumer.consume(1000, 0.05):
                if msg.error() or msg.key() is None:
                    continue
                key = decode(msg.key(), self.registry)
                user_id = str((key or {}).get("id"))
                if user_id not in self.wanted:
                    continue
                when = msg.timestamp()[1] / 1000.0
                value = msg.value()
                self.records.append(TopicRecord(user_id, msg.partition(), msg.offset(), when, value is None))
                if value is not None:
                    self.seen.setdefault(user_id, when)
                    self.latest[user_id] = (msg.key(), value, msg.partition(), msg.offset())

    def close(self) -> None:
        self.stop.set()
        self.join(5)
        self.consumer.close()


class Load(threading.Thread):
    """``rate`` changes/s into public.users until stopped: inserts, updates, deletes.

    It reconnects while PostgreSQL is away (``reconnects`` counts it), then catches up with
    its schedule; what it committed is whatever PostgreSQL has. The fault tests use it too.
    """

    TICK = 0.02

    def __init__(self, dsn: str, rate: int, seed: int = 1):
        super().__init__(daemon=True)
        self.dsn, self.rate, self.rng = dsn, rate, random.Random(seed)
        self.stop = threading.Event()
        self.done = self.reconnects = 0
        self.behind = 0.0  # seconds the load fell behind its schedule at most
        self.error: BaseException | None = None
        self.live: list[uuid.UUID] = []

    def run(self) -> None:
        import psycopg

        pg = None
        started = time.monotonic()
        try:
            while not self.stop.is_set():
                due = int((time.monotonic() - started) * self.rate) - self.done
                if due <= 0:
                    time.sleep(self.TICK)
                    continue
                self.behind = max(self.behind, due / self.rate)
                try:
                    pg = pg or psycopg.connect(self.dsn, autocommit=True, connect_timeout=3)
                    self._commit(pg, min(due, max(1, self.rate // 10)))
                except (psycopg.OperationalError, psycopg.InterfaceError):  # PostgreSQL away: connect again
                    self.reconnects += 1
                    if pg is not None:
                        pg.close()
                    pg = None
                    time.sleep(0.5)
        except BaseException as exc:  # reported by the caller
            self.error = exc
        finally:
            if pg is not None:
                pg.close()

    def _commit(self, pg: Any, n: int) -> None:
        inserts, updates, deletes = [], [], []
        for _ in range(n):
            roll = self.rng.random()
            if roll < 0.2 or len(self.live) < 100:
                user_id = uuid.uuid4()
                self.live.append(user_id)
                inserts.append((user_id, f"{LOAD_PREFIX}{self.done + len(inserts)}"))
            elif roll < 0.9:
                updates.append((f"load city {self.rng.random():.6f}", self.rng.choice(self.live)))
            else:
                deletes.append((self.live.pop(self.rng.randrange(len(self.live))),))
        with pg.transaction(), pg.cursor() as cur:
            if inserts:
                cur.executemany("INSERT INTO public.users (id, username) VALUES (%s, %s)", inserts)
            if updates:
                cur.executemany("UPDATE public.users SET city = %s WHERE id = %s", updates)
            if deletes:
                cur.executemany("DELETE FROM public.users WHERE id = %s", deletes)
        self.done += n


def until_readable(session: Any, select: Any, user_id: uuid.UUID, timeout: float, present: bool = True) -> float:
    """Poll cdc.users every 5 ms (``select``: SELECT id ... WHERE id = ?) until the row is
    there (or gone: ``present=False``); seconds waited."""
    started = time.time()
    while (session.execute(select, [user_id]).one() is None) == present:
        if time.time() - started > timeout:
            raise CdcpipeError(
                f"row {user_id} still {'missing from' if present else 'in'} cdc.users after {timeout:.0f}s: "
                "are the connector and the job running? ('cdcpipe connector status', 'cdcpipe spark status')"
            )
        time.sleep(0.005)
    return time.time() - started


def _probe_round(
    pg: Any, session: Any, kafka: KafkaTimes, probes: int, label: str, progress: Callable[[str], None], timeout: float, rng: random.Random
) -> list[dict[str, Any]]:
    select = session.prepare("SELECT id FROM cdc.users WHERE id = ?")
    samples = []
    for n in range(probes):
        user_id = uuid.uuid4()
        kafka.wanted.add(str(user_id))
        pg.execute("INSERT INTO public.users (id, username) VALUES (%s, %s)", [user_id, f"{PROBE_PREFIX}{n}"])
        committed = time.time()
        readable = committed + until_readable(session, select, user_id, timeout)
        samples.append({"id": str(user_id), "label": label, "committed": committed, "readable": readable})
        if (n + 1) % max(1, probes // 5) == 0:
            progress(f"  {label}: {n + 1}/{probes} probes, last {1000 * (readable - committed):.0f} ms")
        # A random pause longer than a trigger interval: real changes arrive at any phase of
        # the job's trigger. A fixed short pause (0.1-0.2 s, before 2026-11-22) put every probe
        # just after a trigger had found nothing, so each waited most of the next interval.
        time.sleep(rng.uniform(0.1, 0.6))
    return samples


def measure(
    settings: Settings,
    probes: int = 100,
    load: int = 2000,
    plot: Path | None = None,
    timeout: float = 60.0,
    progress: Callable[[str], None] = print,
) -> dict[str, Any]:
    """Probe latency at idle and under ``load`` changes/s; percentiles and the split."""
    import psycopg

    svcs = runtime.by_name(settings, ["postgres", "kafka", "schema_registry", "cassandra"])
    streaming_job.require_running(settings)
    kafka = KafkaTimes(svcs["kafka"].client_config(), svcs["schema_registry"].cache())
    kafka.start()
    session = svcs["cassandra"].session()
    rng = random.Random(7)
    samples: list[dict[str, Any]] = []
    loader = None
    load_rate = None
    try:
        with psycopg.connect(svcs["postgres"].dsn(), autocommit=True) as pg:
            progress(f"idle pipeline: {probes} probes")
            samples += _probe_round(pg, session, kafka, probes, "idle", progress, timeout, rng)
            if load:
                loader = Load(svcs["postgres"].dsn(), load)
                loader.start()
                time.sleep(3)  # let the pipeline reach its steady state under load
                progress(f"under {load} changes/s of background writes: {probes} probes")
                load_started, load_done = time.monotonic(), loader.done
                samples += _probe_round(pg, session, kafka, probes, "load", progress, timeout, rng)
                load_rate = round((loader.done - load_done) / (time.monotonic() - load_started))
                loader.stop.set()
                loader.join(10)
                if loader.error:
                    raise CdcpipeError(f"the background load failed: {loader.error}")
            # Every probe was read back from Cassandra, so it is in Kafka; wait for the
            # consumer thread (it also reads the load's records) to have seen each one.
            deadline = time.monotonic() + 30
            while any(s["id"] not in kafka.seen for s in samples) and time.monotonic() < deadline:
                time.sleep(0.05)
            pg.execute("DELETE FROM public.users WHERE username LIKE %s OR username LIKE %s", [PROBE_PREFIX + "%", LOAD_PREFIX + "%"])
    finally:
        if loader is not None:
            loader.stop.set()
        kafka.close()
        session.cluster.shutdown()
    for s in samples:
        s["in_kafka"] = kafka.seen.get(s["id"])
    report: dict[str, Any] = {}
    for label in ("idle", "load"):
        group = [s for s in samples if s["label"] == label]
        if not group:
            continue
        timed = [s for s in group if s["in_kafka"] is not None]
        report[label] = {
            "end_to_end": percentiles([s["readable"] - s["committed"] for s in group]),
            "commit_to_kafka": percentiles([max(0.0, s["in_kafka"] - s["committed"]) for s in timed]),
            # Split at the Kafka timestamp, but never before the commit: the clock is read
            # after COMMIT returns, and Debezium may publish before a descheduled client reads it.
            "kafka_to_cassandra": percentiles([max(0.0, s["readable"] - max(s["in_kafka"], s["committed"])) for s in timed]),
        }
    if load:
        report["load"]["changes_per_s"] = load_rate
        report["load"]["load_fell_behind_s"] = round(loader.behind, 2) if loader else None
    if plot:
        draw(samples, plot, load)
        report["plot"] = str(plot)
    return report


def summary(report: dict[str, Any]) -> str:
    """The report as a table: one row per round and leg, percentiles in ms."""
    lines = [f"{'':6} {'leg':20} {'p50':>7} {'p90':>7} {'p99':>7} {'max':>7} {'n':>4}  (ms)"]
    for label in ("idle", "load"):
        for leg in ("end_to_end", "commit_to_kafka", "kafka_to_cassandra"):
            p = (report.get(label) or {}).get(leg)
            if p:
                lines.append(
                    f"{label:6} {leg.replace('_', ' '):20} {p['p50_ms']:>7} {p['p90_ms']:>7} {p['p99_ms']:>7} {p['max_ms']:>7} {p['n']:>4}"
                )
    if report.get("load"):
        lines.append(f"load: {report['load']['changes_per_s']} changes/s written (fell behind by {report['load']['load_fell_behind_s']} s)")
    if report.get("plot"):
        lines.append(f"plot: {report['plot']}")
    return "\n".join(lines)


def draw(samples: list[dict[str, Any]], path: Path, load: int) -> None:
    """Each probe's end-to-end latency over the run, split at the Kafka timestamp."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    start = samples[0]["committed"]
    fig, ax = plt.subplots(figsize=(9, 4.5), dpi=110)
    t = [s["committed"] - start for s in samples]
    total = [1000 * (s["readable"] - s["committed"]) for s in samples]
    timed = [(t_, 1000 * (s["in_kafka"] - s["committed"])) for t_, s in zip(t, samples) if s["in_kafka"]]
    ax.scatter(t, total, s=14, color="#dd8452", label="commit → readable in Cassandra")
    ax.scatter(
        [x for x, _ in timed], [max(1.0, y) for _, y in timed], s=14, marker="x", color="#4c72b0", label="commit → in Kafka (Debezium)"
    )
    ax.set_yscale("log")
    loaded = [s["committed"] - start for s in samples if s["label"] == "load"]
    if loaded:
        ax.axvspan(min(loaded) - 0.5, max(loaded) + 0.5, color="#999999", alpha=0.15, label=f"{load} changes/s in PostgreSQL")
    ax.set_xlabel("seconds into the run")
    ax.set_ylabel("milliseconds after commit (log scale)")
    ax.set_title("cdcpipe: end-to-end latency of single inserts (cdcpipe bench --latency)")
    ax.legend(loc="upper left")
    ax.grid(axis="y", alpha=0.3)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path)
    plt.close(fig)
