"""Throughput of the Spark job: N change events in, how fast do they land in Cassandra?

The events are real Debezium envelopes, Avro-encoded with the writer schemas the connector
registered (Confluent framing), produced to a fresh topic ``bench.<run>``; the job
(spark_jobs/users_to_cassandra.py, unchanged) applies them to ``cdc.users_bench``, so the
read model ``cdc.users`` is untouched while the rest of the stack keeps running.
The job is warmed up first; then N events arrive at once and the sustained rate is
N / (end of the last batch - start of the first batch that read them).
"""

from __future__ import annotations

import io
import json
import random
import struct
import time
import uuid
from pathlib import Path
from typing import Any

import fastavro
import requests

from .. import runtime
from ..errors import CdcpipeError
from ..pipeline.schema_changes import USERS_TOPIC
from ..runtime import migrations, processes, streaming_job
from ..settings import Settings

SOURCE_TOPIC = USERS_TOPIC


def _latest(registry: Any, subject: str) -> tuple[int, Any]:
    response = requests.get(f"{registry.url}/subjects/{subject}/versions/latest", timeout=10, auth=registry.auth)
    if response.status_code != 200:
        raise CdcpipeError(
            f"no schema under {subject}: register the connector and write a row first ('cdcpipe connector register', 'cdcpipe ingest')"
        )
    body = response.json()
    return body["id"], fastavro.parse_schema(json.loads(body["schema"]))


def _frame(schema_id: int, schema: Any, record: dict[str, Any]) -> bytes:
    out = io.BytesIO()
    out.write(struct.pack(">bI", 0, schema_id))
    fastavro.schemaless_writer(out, schema, record)
    return out.getvalue()


def _row(rng: random.Random, user_id: str, i: int) -> dict[str, Any]:
    return {
        "id": user_id,
        "username": f"bench{i}",
        "email": f"bench{i}@example.com",
        "title": "Mx",
        "first_name": "Zoë",
        "last_name": "O'Brien",
        "gender": "female",
        "dob": "1970-01-01T00:00:00.000000Z",
        "registered_at": "2020-02-02T02:02:02.020000Z",
        "phone": "0",
        "cell": "0",
        "street_number": i,
        "street_name": "New Road",
        "city": "Kilcoole",
        "state": "Waterford",
        "country": "Ireland",
        "postcode": str(i),
        "latitude": rng.uniform(-90, 90),
        "longitude": rng.uniform(-180, 180),
        "timezone_offset": "+1:00",
        "timezone_description": "Paris",
        "nationality": "IE",
        "picture_large": "l",
        "picture_medium": "m",
        "picture_thumbnail": "t",
        "created_at": "2026-01-01T00:00:00.000000Z",
        "updated_at": "2026-01-01T00:00:00.000000Z",
    }


def events(n: int, keys: int, seed: int = 1) -> list[tuple[str, dict[str, Any]]]:
    """n envelopes over ``keys`` users: first an insert per key, then updates, 5% deletes."""
    rng = random.Random(seed)
    ids = [str(uuid.UUID(int=rng.getrandbits(128), version=4)) for _ in range(keys)]
    alive: dict[str, dict[str, Any]] = {}
    out = []
    lsn = 10_000_000
    for i in range(n):
        lsn += 100
        user_id = ids[i] if i < keys else rng.choice(ids)
        source = {
            "version": "bench",
            "connector": "postgresql",
            "name": "bench",
            "ts_ms": 0,
            "snapshot": "false",
            "db": "users",
            "sequence": None,
            "ts_us": 0,
            "ts_ns": 0,
            "schema": "public",
            "table": "users",
            "txId": i,
            "lsn": lsn,
            "xmin": None,
            "origin": None,
            "origin_lsn": None,
        }
        if user_id in alive and i >= keys and rng.random() < 0.05:
            value = {
                "before": alive.pop(user_id),
                "after": None,
                "source": source,
                "op": "d",
                "ts_ms": 0,
                "ts_us": 0,
                "ts_ns": 0,
                "transaction": None,
            }
        else:
            after = _row(rng, user_id, i)
            value = {
                "before": alive.get(user_id),
                "after": after,
                "source": source,
                "op": "u" if user_id in alive else "c",
                "ts_ms": 0,
                "ts_us": 0,
                "ts_ns": 0,
                "transaction": None,
            }
            alive[user_id] = after
        out.append((user_id, value))
    return out


def run(
    settings: Settings, n: int = 200_000, keys: int = 50_000, partitions: int = 2, warmup: int = 20_000, progress=print
) -> dict[str, Any]:
    """Warm the job up on ``warmup`` events, then measure how fast it works off ``n`` more
    that arrive at once (pre-encoded, produced in a few seconds): a backlog, the case where
    throughput matters. Start-up (JVM, Python workers, sessions) is reported apart."""
    from confluent_kafka import Producer
    from confluent_kafka.admin import AdminClient, NewTopic

    svcs = runtime.by_name(settings, ["kafka", "schema_registry", "cassandra"])
    key_id, key_schema = _latest(svcs["schema_registry"], f"{SOURCE_TOPIC}-key")
    value_id, value_schema = _latest(svcs["schema_registry"], f"{SOURCE_TOPIC}-value")

    session = svcs["cassandra"].session()
    migrations.create_users_copy(session, "users_bench")
    session.execute("TRUNCATE cdc.users_bench", timeout=120)

    run_id = time.strftime("%Y%m%d%H%M%S")
    topic = f"bench.{run_id}"
    kafka = svcs["kafka"]
    admin = AdminClient(kafka.client_config())
    admin.create_topics([NewTopic(topic, partitions, 1)])[topic].result(30)

    total = warmup + n
    progress(f"encoding {warmup} warm-up + {n} measured events over {keys} keys ...")
    generated = events(total, keys)
    frames = [(_frame(key_id, key_schema, {"id": user_id}), _frame(value_id, value_schema, value)) for user_id, value in generated]
    producer = Producer(kafka.client_config(**{"linger.ms": 20, "batch.size": 1_000_000, "compression.type": "lz4"}))

    def produce(chunk: list[tuple[bytes, bytes]]) -> float:
        started = time.monotonic()
        for key, value in chunk:
            while True:
                try:
                    producer.produce(topic, key=key, value=value)
                    break
                except BufferError:
                    producer.poll(0.1)
            producer.poll(0)
        if producer.flush(120):
            raise CdcpipeError("producer could not deliver every bench event")
        return time.monotonic() - started

    work = settings.service_dir("spark") / "bench" / run_id
    work.mkdir(parents=True, exist_ok=True)
    progress_path = work / "progress.json"
    argv = streaming_job.job_argv(
        settings,
        None,
        work / "checkpoint",
        topic=topic,
        schema_changes_topic="",
        table="users_bench",
        trigger_seconds=0.5,
        max_offsets_per_trigger=max(n // 4, 1),
    )
    argv[argv.index("--progress-file") + 1] = str(progress_path)
    name = f"bench-{run_id}"
    produce(frames[:warmup])
    progress(f"starting the job; warming up on {warmup} events ...")
    pid = processes.spawn(settings, name, argv, env=streaming_job.job_env(settings), cwd=work)
    try:
        warm = _wait_done(progress_path, warmup, pid, settings.log_file(name))
        progress(f"warm; producing {n} events at once ...")
        produce_s = produce(frames[warmup:])
        progress(f"produced in {produce_s:.1f}s ({n / produce_s:,.0f}/s); waiting for the job ...")
        report = _wait_done(progress_path, total, pid, settings.log_file(name))
    finally:
        processes.stop(settings, name, timeout=60)
    warm_ids = {b["batchId"] for b in warm["all"]}
    batches = [b for b in report["all"] if b.get("numInputRows") and b["batchId"] not in warm_ids]
    first_start = min(streaming_job.progress_seconds(b["timestamp"]) for b in batches)
    last_end = max(streaming_job.progress_seconds(b["timestamp"]) + b["durationMs"]["triggerExecution"] / 1000 for b in batches)
    measured = sum(b["numInputRows"] for b in batches)
    rows = session.execute("SELECT count(*) FROM cdc.users_bench", timeout=120).one()[0]
    session.execute("TRUNCATE cdc.users_bench", timeout=120)
    session.cluster.shutdown()
    admin.delete_topics([topic])[topic].result(30)
    alive: set[str] = set()
    for user_id, value in generated:
        (alive.discard if value["op"] == "d" else alive.add)(user_id)
    durations = sorted(b["durationMs"]["triggerExecution"] for b in batches)
    totals = report["totals"]
    return {
        "events": n,
        "keys": keys,
        "topic_partitions": partitions,
        "batches": len(batches),
        "sustained_events_per_s": round(measured / (last_end - first_start)),
        "rows_written_per_s": round((totals["writes"] - warm["totals"]["writes"]) / (last_end - first_start)),
        "batch_ms_median": durations[len(durations) // 2],
        "batch_ms_max": durations[-1],
        "startup_first_batch_ms": min(warm["all"], key=lambda b: b["batchId"])["durationMs"]["triggerExecution"],
        "rows_in_cassandra": rows,
        "rows_expected": len(alive),
        "correct": rows == len(alive),
        "topic": topic,
        "produce_events_per_s": round(n / produce_s),
    }


#: Failures in a row (micro-batches or query starts; the job's backoff makes five about 30 s)
#: after which the bench stops waiting: a job that keeps failing measures nothing, and waiting
#: out the timeout only hides why (the job retries for good). One passing failure is waited out.
RETRIES_TOLERATED = 5


def _wait_done(progress_path: Path, n: int, pid: int, log: Path, timeout: float = 900.0) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    seen: dict[int, dict[str, Any]] = {}
    while time.monotonic() < deadline:
        if not processes.is_alive(pid):
            raise CdcpipeError(f"bench job exited early:\n{processes.log_tail(log, 30)}")
        try:
            report = json.loads(progress_path.read_text())
        except (OSError, ValueError):
            time.sleep(1)
            continue
        failure = report.get("failure") or {}
        if failure.get("attempts", 0) >= RETRIES_TOLERATED:  # failing, not slow: say why now
            raise CdcpipeError(
                f"bench job failed {failure['attempts']} times in a row: {failure.get('reason')}\n{processes.log_tail(log, 30)}"
            )
        for batch in report.get("recent") or []:
            if batch.get("batchId") is not None:
                seen[batch["batchId"]] = batch
        totals = report.get("totals") or {}
        if totals.get("records", 0) >= n and all(b.get("durationMs") for b in seen.values()):
            return {"all": [seen[k] for k in sorted(seen)], "totals": totals}
        time.sleep(1)
    raise CdcpipeError(f"bench job did not finish {n} events in {timeout:.0f}s")
