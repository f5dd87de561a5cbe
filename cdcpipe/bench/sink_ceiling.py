"""The sink's ceiling: how fast the job's own writer puts given rows into Cassandra, alone.

``cdcpipe bench --from-postgres`` ends with this, so its pipeline figure can be read as a
share of what Cassandra takes on this machine right now (a ratio from one run means more on
a shared, noisy machine than two absolute figures from different moments).

What is the same as in the job: the records (the newest Kafka record of each key the run
touched, raw bytes, decoded with the job's decoder), the writer (each process builds its
sink with :func:`cdcpipe.pipeline.apply.executor_sink`, exactly as a Spark Python worker
does: session, consistency level, :class:`~cdcpipe.pipeline.cassandra_sink.CassandraSink`
with its UNLOGGED batches and ``CONCURRENCY`` requests in flight), and the parallelism (as
many processes as the job runs tasks: ``local[2]`` and ``--min-partitions 2``). What is left
out on purpose: Kafka, Spark and decoding — only ``sink.apply`` is timed, from a barrier that
every process has reached with its statements' inputs decoded and its session open, to the
last process's last acknowledgement.

The rows go to a scratch table ``cdc.users_ceiling_<hex>`` made from the same CQL as
``cdc.users`` (plus any column the live table has gained), compared with PostgreSQL after the
write, and dropped whatever happens.
"""

from __future__ import annotations

import multiprocessing
import queue
import time
import uuid
from collections.abc import Callable
from typing import Any

from .. import verify
from ..errors import CeilingFailed
from ..pipeline.cassandra_session import DEFAULT_WRITE_CONSISTENCY
from ..pipeline.config import SinkConfig
from ..runtime import migrations

#: Raw records as KafkaTimes keeps them: (key bytes, value bytes, partition, offset).
RawRecord = tuple[bytes, bytes, int, int]


def _writer(conf: SinkConfig, records: list[RawRecord], ready: Any, results: Any) -> None:
    """One writer process: decode, open the sink as an executor does, wait, write, report."""
    try:
        from ..pipeline.apply import executor_sink
        from ..pipeline.avro_reader import decode
        from ..pipeline.changes import from_event

        sink, registry = executor_sink(conf)
        changes = [from_event(None, decode(value, registry), offset) for _key, value, _partition, offset in records]
        ready.wait(120)
        started = time.time()
        rejected = sink.apply([c for c in changes if c is not None])
        results.put(("ok", started, time.time(), len(changes), [reason for _, reason in rejected]))
    except BaseException as exc:  # reported by the parent, which raises
        results.put(("error", f"{exc.__class__.__name__}: {exc}"))
    finally:
        from ..pipeline.apply import shutdown_executor

        shutdown_executor()


def measure(
    session: Any,
    conf: SinkConfig,
    records: dict[str, RawRecord],
    pg: Any,
    processes: int = 2,
    progress: Callable[[str], None] = print,
) -> dict[str, Any]:
    """Write ``records`` (key -> its newest raw record) to a scratch table with ``processes`` writers; rows/s.

    ``conf`` is the job's executor configuration (cassandra host/port, keyspace, registry URL,
    write consistency); its table is replaced by the scratch table's. ``pg`` (psycopg) is used
    to check that the scratch table ends equal to public.users for these keys."""
    table = f"users_ceiling_{uuid.uuid4().hex[:8]}"
    migrations.create_users_copy(session, table)
    try:
        _add_live_columns(session, table)
        ordered = list(records.values())
        shares = [ordered[i::processes] for i in range(processes)]
        ctx = multiprocessing.get_context("spawn")  # the parent holds a driver with threads: no fork
        ready, results = ctx.Barrier(processes + 1), ctx.Queue()
        workers = [ctx.Process(target=_writer, args=({**conf, "table": table}, share, ready, results), daemon=True) for share in shares]
        progress(f"sink ceiling: {len(records):,} rows into cdc.{table} with {processes} writer processes ...")
        for worker in workers:
            worker.start()
        try:
            ready.wait(180)
        except BaseException as exc:  # a writer died before the barrier: its error is queued
            raise CeilingFailed(f"sink ceiling: a writer process did not start: {_first_error(results) or exc}") from exc
        outcomes = [results.get(timeout=900) for _ in workers]
        for worker in workers:
            worker.join(30)
        errors = [o[1] for o in outcomes if o[0] != "ok"]
        if errors:
            raise CeilingFailed(f"sink ceiling: a writer failed: {errors[0]}")
        started, ended = min(o[1] for o in outcomes), max(o[2] for o in outcomes)
        rejected = [reason for o in outcomes for reason in o[4]]
        _, differences = verify.compare(pg, session, list(records), table=table)
    finally:
        session.execute(f"DROP TABLE IF EXISTS cdc.{table}", timeout=120)
    dropped = table not in session.cluster.metadata.keyspaces["cdc"].tables
    seconds = ended - started
    return {
        "rows": len(records),
        "seconds": round(seconds, 2),
        "rows_per_s": round(len(records) / seconds) if seconds > 0 else None,
        "processes": processes,
        "write_consistency": conf.get("write_consistency", DEFAULT_WRITE_CONSISTENCY),
        "rejected": len(rejected),
        "exact": not differences and not rejected,
        "differences": differences,
        "table": f"cdc.{table}",
        "table_dropped": dropped,
    }


def _add_live_columns(session: Any, table: str) -> None:
    """Columns cdc.users has gained (the job adds new source columns) go on the copy too."""
    session.cluster.refresh_table_metadata("cdc", "users")
    session.cluster.refresh_table_metadata("cdc", table)
    tables = session.cluster.metadata.keyspaces["cdc"].tables
    for name, column in tables["users"].columns.items():
        if name not in tables[table].columns:
            session.execute(f'ALTER TABLE cdc.{table} ADD IF NOT EXISTS "{name}" {column.cql_type}', timeout=60)


def _first_error(results: Any) -> str | None:
    try:
        outcome = results.get(timeout=5)
    except queue.Empty:  # the writer died without a word
        return None
    return outcome[1] if outcome[0] != "ok" else None
