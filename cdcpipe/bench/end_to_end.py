"""End-to-end throughput: N changes committed in PostgreSQL until the read model is exact.

``cdcpipe bench --from-postgres N`` (issue 14), on the running pipeline (connector and job up):

0. **Warm-up.** One insert and its delete go through first (see :func:`_warm_up`).
1. **Write.** :mod:`cdcpipe.bench.change_mix` plans N changes (40 % inserts, 50 % updates, 10 %
   deletes, 1,000 per transaction, each key once per transaction) before the clock starts,
   then commits them back to back on one connection, three ``unnest`` statements per
   transaction. ``t0`` is the first COMMIT's return.
2. **Capture.** A consumer of ``cdc.public.users`` (:class:`cdcpipe.bench.latency.KafkaTimes`,
   from the topic's end before the first write) keeps every record of a touched key: offset
   and timestamp (CreateTime, set by Connect's producer). *Captured* = the last change's
   record timestamp − t0; every change must arrive exactly once (and a tombstone per delete).
3. **Apply.** The job's progress file (written when each micro-batch ends) is sampled every
   0.2 s: batch start, end, committed offsets and the job's running count of row writes.
   *Applied* = the end of the batch whose committed offsets pass the run's last record − t0;
   rows/s = the job's row writes in between ÷ that time (a key's changes inside one batch
   collapse to one write, so rows ≤ changes).
4. **Exact.** Then every touched key is compared, value by value, between public.users and
   cdc.users (:func:`cdcpipe.verify.compare`, absent keys included) until equal; *exact* is
   when the comparison that found them equal started (it starts only once the job has
   committed the last record's batch, whose writes were acknowledged before; it takes
   seconds for 40,000 keys and is reported apart). Polling Cassandra during the run would
   take CPU from the pipeline it measures.
5. **Ceiling.** :mod:`cdcpipe.bench.sink_ceiling`: the newest record of each touched key, written
   by the job's own sink code in as many processes as the job has tasks, into a scratch table
   (dropped afterwards). *Ratio* = the pipeline's row writes/s ÷ the ceiling's rows/s.
6. **Cleanup.** The run's rows are deleted from PostgreSQL; the command waits until they are
   gone from Cassandra too, so the next run (or test) starts from a quiet pipeline.
7. **CPU.** Every process's CPU from the first write until the last batch: average cores,
   core-milliseconds per 1,000 changes per process and for the pipeline's stages, and the
   floor those set (:mod:`cdcpipe.bench.cpu`).

Rates are end to end — each stage's count divided by the time since the first commit — so a
stage can never look faster than those before it; the plot shows per-second rates and each
change's latency (commit → Kafka, commit → its batch's end) over the run.

The warm-up is there because an idle job's first batch took seconds; the figures of every run,
dated, are in docs/benchmarks.md.
"""

from __future__ import annotations

import json
import math
import os
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .. import runtime, verify
from ..errors import PipelineStalled
from ..pipeline.cassandra_session import DEFAULT_WRITE_CONSISTENCY
from ..pipeline.config import SinkConfig
from ..pipeline.schema_changes import USERS_TOPIC
from ..runtime import streaming_job
from ..settings import Settings
from . import change_mix, cpu, sink_ceiling
from .latency import KafkaTimes, TopicRecord, percentiles, until_readable

TOPIC = USERS_TOPIC


@dataclass(frozen=True)
class Batch:
    """One micro-batch of the job as its progress file reported it."""

    batch_id: int
    start: float
    end: float
    input_rows: int
    end_offsets: dict[int, int]  # partition -> next offset to read (committed when the batch ended)
    writes_total: int  # the job's row writes since it started, this batch included


class JobBatches(threading.Thread):
    """Samples the job's progress file every ``interval`` s; keeps each batch that read data."""

    def __init__(self, settings: Settings, interval: float = 0.2):
        super().__init__(daemon=True)
        self.settings, self.interval = settings, interval
        self.batches: list[Batch] = []
        self.stop = threading.Event()
        first = self.sample()
        self.baseline_writes = first.writes_total if first else 0
        self.last_id = first.batch_id if first else -1

    def sample(self) -> Batch | None:
        report = streaming_job.read_progress(self.settings) or {}
        last = report.get("last_progress") or {}
        if last.get("batchId") is None or not last.get("durationMs"):
            return None
        sources = last.get("sources") or [{}]
        offsets = streaming_job._offsets(sources[0].get("endOffset")) or {}
        start = streaming_job.progress_seconds(last["timestamp"])
        return Batch(
            batch_id=last["batchId"],
            start=start,
            end=start + last["durationMs"].get("triggerExecution", 0) / 1000,
            input_rows=last.get("numInputRows") or 0,
            end_offsets={int(p): int(o) for p, o in (offsets.get(TOPIC) or {}).items()},
            writes_total=(report.get("totals") or {}).get("writes", 0),
        )

    def run(self) -> None:
        while not self.stop.is_set():
            batch = self.sample()
            if batch is not None and batch.batch_id > self.last_id:
                self.last_id = batch.batch_id
                if batch.input_rows:
                    self.batches.append(batch)
            self.stop.wait(self.interval)

    def writes_since(self) -> int:
        """The job's row writes since this sampler was made, as last seen."""
        return self.batches[-1].writes_total - self.baseline_writes if self.batches else 0

    def committed(self, partition: int) -> int:
        """The job's committed offset in ``partition`` as last seen (-1: none yet)."""
        return self.batches[-1].end_offsets.get(partition, -1) if self.batches else -1

    def close(self) -> None:
        self.stop.set()
        self.join(5)


# --- pure pieces: rates and latencies -------------------------------------------------------


def per_second(times: list[float], start: float, width: float = 1.0) -> list[float]:
    """Events per second in consecutive bins of ``width`` s from ``start`` (events before it are
    ignored)."""
    if not times:
        return []
    bins = [0.0] * (int((max(times) - start) // width) + 1)
    for t in times:
        if t >= start:
            bins[int((t - start) // width)] += 1
    return [b / width for b in bins]


def spread(intervals: list[tuple[float, float, float]], start: float, width: float = 1.0) -> list[float]:
    """Rates per bin of ``width`` s from ``start`` when each (begin, end, amount) is spread
    evenly over [begin, end); an amount with end <= begin falls in the bin of its end. What
    lies before ``start`` is dropped."""
    if not intervals:
        return []
    bins = [0.0] * (int((max(end for _, end, _ in intervals) - start) // width) + 1)
    for begin, end, amount in intervals:
        if end < start:
            continue
        if end <= begin:
            bins[int((end - start) // width)] += amount
            continue
        per_s = amount / (end - begin)
        first, last = max(0, int((begin - start) // width)), int((end - start) // width)
        for i in range(first, min(last, len(bins) - 1) + 1):
            low, high = max(begin, start + i * width), min(end, start + (i + 1) * width)
            if high > low:
                bins[i] += per_s * (high - low)
    return [b / width for b in bins]


def applied_intervals(batches: list[Batch], baseline_writes: int) -> list[tuple[float, float, float]]:
    """(begin, end, row writes) per observed batch; a batch the sampler missed is merged into
    the next one seen (its writes are in that one's running total)."""
    out = []
    previous_total, previous = baseline_writes, None
    for batch in batches:
        begin = previous.end if previous is not None and batch.batch_id - previous.batch_id > 1 else batch.start
        out.append((begin, batch.end, float(batch.writes_total - previous_total)))
        previous_total, previous = batch.writes_total, batch
    return out


def applied_at(batches: list[Batch], partition: int, offset: int) -> float | None:
    """When the record at ``offset`` was applied: the end of the first batch seen that
    committed past it (an upper bound when the sampler missed the batch itself)."""
    for batch in batches:
        if batch.end_offsets.get(partition, -1) > offset:
            return batch.end
    return None


def change_times(
    sequence: dict[str, list[int]], commits: list[float], records: list[TopicRecord], batches: list[Batch]
) -> tuple[list[tuple[float, float, float | None]], int]:
    """(committed, in Kafka, applied) per change, pairing each key's k-th change record with
    its k-th planned change; and how many keys' record counts did not match their plan."""
    by_key: dict[str, list[TopicRecord]] = {}
    for record in records:
        if not record.tombstone:
            by_key.setdefault(record.key, []).append(record)
    out, mismatched = [], 0
    for key, txns in sequence.items():
        seen = sorted(by_key.get(key, []), key=lambda r: (r.partition, r.offset))
        if len(seen) != len(txns):
            mismatched += 1
            continue
        for txn, record in zip(txns, seen):
            out.append((commits[txn], record.timestamp, applied_at(batches, record.partition, record.offset)))
    out.sort()
    return out, mismatched


def rate(count: float, seconds: float) -> int | None:
    return round(count / seconds) if seconds > 0 else None


# --- the run --------------------------------------------------------------------------------


def job_writer_conf(settings: Settings, registry_url: str) -> tuple[SinkConfig, int]:
    """The running job's executor configuration and task count, as ``cdcpipe spark start`` and
    the job's defaults give them (for the ceiling: the same consistency and parallelism)."""
    try:
        wanted = json.loads(streaming_job.wanted_file(settings).read_text())
    except (OSError, ValueError):
        wanted = {}
    cassandra = runtime.service(settings, "cassandra")
    conf: SinkConfig = {
        "cassandra_host": cassandra.contact_points,
        "cassandra_port": settings.port("cassandra"),
        "cassandra_credentials": str(cassandra.credentials_file("job")),
        "keyspace": "cdc",
        "registry_url": registry_url,
        "registry_credentials": str(runtime.service(settings, "schema_registry").credentials_file),
        "write_consistency": wanted.get("write_consistency")
        or os.environ.get("CDC_WRITE_CONSISTENCY", cassandra.consistency or DEFAULT_WRITE_CONSISTENCY),
    }
    tasks = int(wanted.get("min_partitions") or os.environ.get("CDC_MIN_PARTITIONS", "2"))
    return conf, tasks


class _Ticker:
    """Calls ``progress`` at most every ``every`` seconds."""

    def __init__(self, progress: Callable[[str], None], every: float = 5.0):
        self.progress, self.every, self.last = progress, every, 0.0

    def __call__(self, message: Callable[[], str], force: bool = False) -> None:
        now = time.monotonic()
        if force or now - self.last >= self.every:
            self.last = now
            self.progress(message())


def _wait(
    done: Callable[[], bool],
    position: Callable[[], int],
    describe: Callable[[], str],
    stalled: Callable[[], str],
    stall_timeout: float,
    tick: _Ticker,
) -> None:
    """Poll until ``done``; PipelineStalled if ``position`` does not move for ``stall_timeout``."""
    last, moved = position(), time.monotonic()
    while not done():
        now = position()
        if now != last:
            last, moved = now, time.monotonic()
        elif time.monotonic() - moved > stall_timeout:
            raise PipelineStalled(stalled())
        tick(describe)
        time.sleep(0.1)


def run(
    settings: Settings,
    n: int = 100_000,
    transaction_size: int = 1000,
    seed: int | None = None,
    plot: Path | None = None,
    ceiling: bool = True,
    stall_timeout: float = 120.0,
    progress: Callable[[str], None] = print,
) -> dict[str, Any]:
    """Write ``n`` changes, follow them through capture and apply to an exact read model,
    measure the sink's ceiling on the same rows, clean up; the report (and a PNG)."""
    import psycopg

    svcs = runtime.by_name(settings, ["postgres", "kafka", "schema_registry", "cassandra"])
    streaming_job.require_running(settings)
    seed = seed if seed is not None else int(time.time())
    progress(f"planning {n:,} changes (seed {seed}) ...")
    the_plan = change_mix.plan(n, seed=seed, transaction_size=transaction_size, prefix=f"bench-pg-{seed}-")
    counts, touched, sequence = the_plan.counts(), the_plan.touched(), the_plan.sequence()
    expected_records = n + counts["deletes"]  # a tombstone follows each delete
    session = svcs["cassandra"].session()
    progress("warm-up: one insert and its delete through the pipeline ...")
    try:
        warmup_s = _warm_up(svcs["postgres"].dsn(), session, f"bench-pg-{seed}-warmup", stall_timeout)
    except BaseException:
        session.cluster.shutdown()
        raise
    kafka = KafkaTimes(svcs["kafka"].client_config(), svcs["schema_registry"].cache())
    kafka.wanted = set(touched)
    kafka.start()
    job = JobBatches(settings)
    job.start()
    tick = _Ticker(progress)
    cleaned = False
    try:
        with psycopg.connect(svcs["postgres"].dsn(), autocommit=True) as pg:
            progress(
                f"writing {n:,} changes ({counts['inserts']:,} inserts, {counts['updates']:,} updates, {counts['deletes']:,} deletes) "
                f"in {len(the_plan.transactions):,} transactions of {transaction_size:,} ..."
            )
            cpu_before = cpu.snapshot(settings)
            write_start = time.time()
            commits = change_mix.write(
                pg,
                the_plan,
                on_commit=lambda i, when: tick(
                    lambda: (
                        f"  written {sum(len(t) for t in the_plan.transactions[: i + 1]):,}/{n:,}; "
                        f"captured {len(kafka.records):,}/{expected_records:,} records; job: {job.writes_since():,} row writes"
                    )
                ),
            )
            progress(f"written in {commits[-1] - write_start:.1f}s; waiting for Debezium ...")
            _wait(
                lambda: len(kafka.records) >= expected_records,
                lambda: len(kafka.records),
                lambda: f"  captured {len(kafka.records):,}/{expected_records:,} records; job: {job.writes_since():,} row writes",
                lambda: (
                    f"Debezium captured {len(kafka.records):,} of {expected_records:,} records and nothing more for "
                    f"{stall_timeout:.0f}s: check 'cdcpipe connector status' and 'cdcpipe status' (capture: stuck?)"
                ),
                stall_timeout,
                tick,
            )
            last = {}
            for record in kafka.records:
                last[record.partition] = max(last.get(record.partition, -1), record.offset)
            progress("captured; waiting for the Spark job ...")
            _wait(
                lambda: all(job.committed(p) > o for p, o in last.items()),
                lambda: sum(max(0, job.committed(p)) for p in last),
                lambda: f"  job committed {_offsets_text(job, last)}; {job.writes_since():,} row writes",
                lambda: (
                    f"the Spark job committed {_offsets_text(job, last)} and nothing more for {stall_timeout:.0f}s: "
                    "check 'cdcpipe spark status' (retrying? why?) and 'cdcpipe logs' of its services"
                ),
                stall_timeout,
                tick,
            )
            cpu_after, cpu_window = cpu.snapshot(settings), time.time() - write_start
            job.close()
            progress(f"applied; comparing {len(touched):,} keys between PostgreSQL and Cassandra ...")
            exact_at, check_s, differences = _until_exact(pg, session, touched, stall_timeout, progress)
            records = list(kafka.records)
            kafka.close()
            ceiling_report = None
            if ceiling:
                conf, tasks = job_writer_conf(settings, svcs["schema_registry"].url)
                ceiling_report = sink_ceiling.measure(session, conf, dict(kafka.latest), pg, processes=tasks, progress=progress)
            progress(f"cleanup: deleting the run's {len(the_plan.alive_at_end()):,} remaining rows ...")
            cleanup_start = time.time()
            change_mix.delete_rows(pg, sorted(the_plan.alive_at_end()))
            cleaned = True
            _until_exact(pg, session, touched, stall_timeout, progress)
            cleanup_s = time.time() - cleanup_start
    finally:
        job.close()
        kafka.close()
        if not cleaned:
            _cleanup_quietly(svcs["postgres"].dsn(), touched, progress)
        session.cluster.shutdown()
    report = _report(
        n, transaction_size, counts, touched, the_plan, write_start, commits, records, job, exact_at, check_s, differences, ceiling_report
    )
    report["cpu_cores"] = cpu.cores(cpu_before, cpu_after, cpu_window)
    per_1k = cpu.per_1k_changes(cpu_before, cpu_after, n)
    total = cpu.pipeline_total(per_1k)
    report["core_ms_per_1k_changes"] = per_1k
    report["core_ms_per_1k_changes_pipeline"] = total
    report["cores_available"] = cpu.available_cores()
    report["cpu_floor_s"] = cpu.floor_s(total, n, report["cores_available"])
    report["warmup_s"] = round(warmup_s, 2)
    report["cleanup_s"] = round(cleanup_s, 1)
    if plot:
        draw(report, sequence, commits, records, job, plot)
        report["plot"] = str(plot)
    return report


def _warm_up(dsn: str, session: Any, username: str, timeout: float) -> float:
    """One insert and its delete through the pipeline before the clock starts; the seconds
    until the insert was readable. A job idle for minutes took 5-6 s for its first batch
    (measured: 88 records, addBatch 5.4 s, then 5,317 records in 2.7 s), which would otherwise
    be charged to the run; ``cdcpipe bench`` warms its job up for the same reason."""
    import uuid

    import psycopg

    user_id = uuid.uuid4()
    select = session.prepare("SELECT id FROM cdc.users WHERE id = ?")
    with psycopg.connect(dsn, autocommit=True) as pg:
        pg.execute("INSERT INTO public.users (id, username) VALUES (%s, %s)", [user_id, username])
        try:
            waited = until_readable(session, select, user_id, timeout)
        finally:
            pg.execute("DELETE FROM public.users WHERE id = %s", [user_id])
    until_readable(session, select, user_id, timeout, present=False)
    return waited


def _offsets_text(job: JobBatches, last: dict[int, int]) -> str:
    return ", ".join(f"partition {p}: {max(0, job.committed(p)):,}/{o + 1:,}" for p, o in sorted(last.items()))


def _until_exact(pg: Any, session: Any, keys: list[str], timeout: float, progress: Callable[[str], None]) -> tuple[float, float, list[str]]:
    """Compare the keys until equal; (when the comparison that found them equal started, how
    long it took, [])."""
    deadline = time.monotonic() + timeout
    while True:
        started = time.time()
        _, differences = verify.compare(pg, session, keys)
        if not differences:  # it started after the job had applied everything: exact by then
            return started, time.time() - started, []
        if time.monotonic() > deadline:
            raise verify.Mismatch(
                f"{len(keys):,} keys: cdc.users still differs from public.users after {timeout:.0f}s: " + "; ".join(differences)
            )
        progress(f"  not yet equal: {differences[0]}")
        time.sleep(1)


def _cleanup_quietly(dsn: str, keys: list[str], progress: Callable[[str], None]) -> None:
    """After a failure: delete whatever the run wrote (the failure itself is what is raised)."""
    import psycopg

    try:
        with psycopg.connect(dsn, autocommit=True) as pg:
            change_mix.delete_rows(pg, keys)
    except psycopg.Error as exc:
        progress(f"could not delete the run's rows from public.users ({exc}); they start with username 'bench-pg-'")


def _report(
    n: int,
    transaction_size: int,
    counts: dict[str, int],
    touched: list[str],
    the_plan: change_mix.Plan,
    write_start: float,
    commits: list[float],
    records: list[TopicRecord],
    job: JobBatches,
    exact_at: float,
    check_s: float,
    differences: list[str],
    ceiling: dict[str, Any] | None,
) -> dict[str, Any]:
    t0 = commits[0]
    changes = [r for r in records if not r.tombstone]
    captured_s = max(r.timestamp for r in changes) - t0
    applied_s = job.batches[-1].end - t0
    writes = job.batches[-1].writes_total - job.baseline_writes
    times, mismatched = change_times(the_plan.sequence(), commits, records, job.batches)
    applied_rate = rate(writes, applied_s)
    report: dict[str, Any] = {
        "changes": n,
        **counts,
        "transaction_size": transaction_size,
        "keys_touched": len(touched),
        "rows_alive_at_end": len(the_plan.alive_at_end()),
        "postgres": {"seconds": round(commits[-1] - write_start, 2), "changes_per_s": rate(n, commits[-1] - write_start)},
        "capture": {
            "changes": len(changes),
            "tombstones": len(records) - len(changes),
            "keys_not_matching_plan": mismatched,
            "after_s": round(captured_s, 2),
            "changes_per_s": rate(len(changes), captured_s),
            "peak_changes_per_s": round(max(per_second([r.timestamp for r in changes], t0), default=0)),
        },
        "apply": {
            "row_writes": writes,
            "batches": len(job.batches),
            "after_s": round(applied_s, 2),
            "rows_per_s": applied_rate,
            "peak_rows_per_s": round(max(spread(applied_intervals(job.batches, job.baseline_writes), t0), default=0)),
        },
        "exact": {"exact": not differences, "after_s": round(exact_at - t0, 2), "check_s": round(check_s, 2)},
        "latency": {
            "commit_to_kafka": percentiles([k - c for c, k, _ in times]),
            "commit_to_cassandra": percentiles([a - c for c, _, a in times if a is not None]),
        },
    }
    if ceiling:
        report["ceiling"] = ceiling
        report["ratio"] = round(applied_rate / ceiling["rows_per_s"], 3) if applied_rate and ceiling["rows_per_s"] else None
    return report


def summary(report: dict[str, Any]) -> str:
    """The report as a few lines for people."""
    pg, cap, app, exact = report["postgres"], report["capture"], report["apply"], report["exact"]
    lat = report["latency"]
    lines = [
        f"changes          {report['changes']:,} ({report['inserts']:,} inserts, {report['updates']:,} updates, "
        f"{report['deletes']:,} deletes; {report['transaction_size']:,} per transaction; {report['keys_touched']:,} keys)",
        f"PostgreSQL       {pg['changes_per_s']:,} changes/s committed ({pg['seconds']} s)",
        f"captured         {cap['changes_per_s']:,} changes/s into Kafka: all {cap['changes']:,} (+{cap['tombstones']:,} tombstones) "
        f"{cap['after_s']} s after the first commit; peak {cap['peak_changes_per_s']:,}/s",
        f"applied          {app['rows_per_s']:,} rows/s into Cassandra: {app['row_writes']:,} row writes in {app['batches']} batches, "
        f"done {app['after_s']} s after the first commit; peak {app['peak_rows_per_s']:,}/s",
        f"exact            {'yes' if exact['exact'] else 'NO'}, {exact['after_s']} s after the first commit "
        f"(the comparison of every touched key took {exact['check_s']} s)",
        f"warm-up          one insert readable in {report['warmup_s']} s before the run (a job idle for a while is slow to start)",
        f"latency          commit -> Kafka p50 {_ms(lat['commit_to_kafka'], 'p50_ms')}, p99 {_ms(lat['commit_to_kafka'], 'p99_ms')}; "
        f"commit -> Cassandra p50 {_ms(lat['commit_to_cassandra'], 'p50_ms')}, p99 {_ms(lat['commit_to_cassandra'], 'p99_ms')}, "
        f"max {_ms(lat['commit_to_cassandra'], 'max_ms')}",
    ]
    ceiling = report.get("ceiling")
    if ceiling:
        lines.append(
            f"sink ceiling     {ceiling['rows_per_s']:,} rows/s: {ceiling['rows']:,} rows by the job's writer alone "
            f"in {ceiling['seconds']} s "
            f"({ceiling['processes']} processes, {ceiling['write_consistency']}; {ceiling['table']} "
            f"{'exact' if ceiling['exact'] else 'NOT exact'}, {'dropped' if ceiling['table_dropped'] else 'NOT dropped'})"
        )
        lines.append(f"ratio            {report['ratio']:.0%} of the ceiling (pipeline rows/s ÷ ceiling rows/s; target ≥ 80 %)")
    if report.get("cpu_cores"):
        lines.append(
            "CPU (cores)      from the first write until applied, on average: "
            + ", ".join(f"{name} {cores}" for name, cores in report["cpu_cores"].items())
        )
    if report.get("core_ms_per_1k_changes"):
        lines.append(
            f"CPU per change   {report['core_ms_per_1k_changes_pipeline']} core-ms per 1,000 changes for the pipeline's stages; "
            + ", ".join(f"{name} {ms}" for name, ms in report["core_ms_per_1k_changes"].items())
        )
        lines.append(
            f"CPU floor        {report['cpu_floor_s']} s: this run's pipeline work alone on this machine's {report['cores_available']} "
            "cores, however well it overlapped (at this cost per change, exact can be no sooner)"
        )
    lines.append(f"cleanup          {report['cleanup_s']} s (the run's rows deleted, and gone from Cassandra)")
    if report.get("plot"):
        lines.append(f"plot             {report['plot']}")
    return "\n".join(lines)


def _ms(stats: dict[str, Any], key: str) -> str:
    value = stats.get(key)
    return "-" if value is None else (f"{value} ms" if value < 10_000 else f"{value / 1000:.1f} s")


def draw(
    report: dict[str, Any],
    sequence: dict[str, list[int]],
    commits: list[float],
    records: list[TopicRecord],
    job: JobBatches,
    path: Path,
) -> None:
    """Two panels over the run: changes/s at each stage, and each change's latency."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    t0 = commits[0]
    sizes = [0] * len(commits)
    for txns in sequence.values():
        for txn in txns:
            sizes[txn] += 1
    committed = spread([(c, c, float(s)) for c, s in zip(commits, sizes)], t0)
    captured = per_second([r.timestamp for r in records if not r.tombstone], t0)
    applied = spread(applied_intervals(job.batches, job.baseline_writes), t0)
    fig, (top, bottom) = plt.subplots(2, 1, figsize=(10, 7), dpi=110, sharex=True, gridspec_kw={"height_ratios": [3, 2]})
    for values, label, color in (
        (committed, "committed in PostgreSQL (changes/s)", "#55a868"),
        (captured, "captured into Kafka by Debezium (changes/s)", "#4c72b0"),
        (applied, "applied to Cassandra by the Spark job (rows/s)", "#dd8452"),
    ):
        if values:
            top.stairs(values, range(len(values) + 1), label=label, color=color, linewidth=1.5)
    ceiling = report.get("ceiling")
    if ceiling and ceiling.get("rows_per_s"):
        top.axhline(ceiling["rows_per_s"], color="#c44e52", linestyle="--", label=f"sink ceiling: {ceiling['rows_per_s']:,} rows/s")
    exact = report["exact"]["after_s"]
    for ax in (top, bottom):
        ax.axvline(exact, color="#333333", linestyle=":", label=f"read model exact: {exact} s" if ax is top else None)
        ax.grid(alpha=0.3)
    top.set_ylabel("per second (1 s bins)")
    top.legend(loc="upper right", fontsize=8)
    ratio = f", {report['ratio']:.0%} of the sink ceiling" if report.get("ratio") else ""
    top.set_title(
        f"cdcpipe bench --from-postgres {report['changes']:,}: PostgreSQL → Debezium → Kafka → Spark → Cassandra\n"
        f"captured {report['capture']['changes_per_s']:,} changes/s, applied {report['apply']['rows_per_s']:,} rows/s{ratio}",
        fontsize=10,
    )
    times, _ = change_times(sequence, commits, records, job.batches)
    step = max(1, math.ceil(len(times) / 4000))  # a readable number of points
    sample = times[::step]
    bottom.scatter([c - t0 for c, _, _ in sample], [k - c for c, k, _ in sample], s=3, color="#4c72b0", label="commit → in Kafka")
    bottom.scatter(
        [c - t0 for c, _, a in sample if a], [a - c for c, _, a in sample if a], s=3, color="#dd8452", label="commit → applied in Cassandra"
    )
    bottom.set_ylabel("latency of each change (s)")
    bottom.set_xlabel("seconds since the first commit")
    bottom.legend(loc="upper left", fontsize=8, markerscale=3)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path)
    plt.close(fig)
