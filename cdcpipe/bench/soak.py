"""A soak: ``cdcpipe bench --soak SECONDS --load R``. Latency, lag, memory and CPU, per minute.

A thirty-second latency run shows a fresh stack at its best; what a user running the pipeline
for a day sees depends on what builds up: Cassandra's memtables and compactions, garbage in
every JVM, a backlog the job batches bigger and bigger. So the soak keeps one load on for as
long as asked and reports each window (``--window``, 60 s) on its own:

* **latency**: commit -> readable in ``cdc.users`` of a probe insert about every second (the
  probes of :mod:`cdcpipe.bench.latency`), p50/p99/max;
* **lag**: the slot's WAL not yet confirmed by Debezium (bytes) and the topic's records not
  yet consumed by the job, at the window's end;
* **memory**: resident memory of every service and of the job (process trees);
* **CPU**: average cores of each, and core-milliseconds per 1,000 changes written, per process
  and summed over the stages a change passes through (:mod:`cdcpipe.bench.cpu`);
* **Cassandra**: pending compactions and garbage-collection time (``nodetool compactionstats``
  and ``gcstats``, over JMX with the runtime's login; the two nodetool JVMs run between
  windows, so their CPU and their seconds are in no window's figures);
* **the job**: how many records its batches took (median, max) and their duration: of the
  window's batches that its progress file still lists (its last 20).

The load is :class:`cdcpipe.bench.latency.Load` (inserts, updates, deletes of its own rows). Its rows
and the probes are deleted at the end. Figures are printed, never judged here: what they should
be is issue 27's, and dated runs go in ``docs/benchmarks.md``.
"""

from __future__ import annotations

import random
import re
import statistics
import subprocess
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

from .. import runtime
from ..clients.kafka_io import end_offsets
from ..errors import CdcpipeError
from ..runtime import liveness, processes, streaming_job
from ..settings import Settings
from . import cpu, latency

PROBE_PREFIX = "soak-probe-"


def memory(settings: Settings) -> dict[str, int]:
    """Resident bytes of every process of the stack and of the job (:func:`cdcpipe.runtime.pids`)."""
    return {name: processes.rss_bytes(pid) for name, pid in runtime.pids(settings).items()}


def cassandra_facts(settings: Settings) -> dict[str, Any]:
    """Pending compactions and GC since the previous call (nodetool gcstats resets its own
    window), or the error that kept nodetool from answering."""
    cassandra = runtime.service(settings, "cassandra")
    facts: dict[str, Any] = {}
    try:
        done = subprocess.run(cassandra.nodetool_argv("compactionstats"), capture_output=True, text=True, timeout=60)
        match = re.search(r"pending tasks:?\s+(\d+)", done.stdout)
        facts["pending_compactions"] = int(match.group(1)) if match else None
        done = subprocess.run(cassandra.nodetool_argv("gcstats"), capture_output=True, text=True, timeout=60)
        # Header: Interval (ms) | Max GC Elapsed (ms) | Total GC Elapsed (ms) | Stdev | Reclaimed | Collections | Direct
        rows = [line.split() for line in done.stdout.splitlines() if re.match(r"\s*\d", line)]
        if rows and len(rows[-1]) >= 6:
            row = rows[-1]
            facts["gc_max_pause_ms"] = int(float(row[1]))
            facts["gc_total_ms"] = int(float(row[2]))
            facts["gc_collections"] = int(float(row[5]))
    except (OSError, subprocess.TimeoutExpired, ValueError) as exc:
        facts["error"] = f"nodetool: {exc}"
    return facts


def _topic_lag(settings: Settings) -> int | None:
    """Records of the CDC topic the job has not consumed yet (None when not known)."""
    committed = streaming_job.progress(settings)["committed_offsets"] or {}
    done = {str(p): int(o) for p, o in (committed.get(latency.TOPIC) or {}).items()}
    if not done:
        return None
    try:
        ends = {str(p): o for p, o in end_offsets(runtime.service(settings, "kafka").client_config(), latency.TOPIC).items()}
    except Exception:  # noqa: BLE001 - Kafka busy: this window's lag is not known
        return None
    return sum(max(0, ends.get(p, 0) - done[p]) for p in done)


def _batches(settings: Settings, since: float) -> dict[str, Any]:
    """The job's batches that ended after ``since`` (epoch s): records per batch, duration."""
    report = streaming_job.read_progress(settings) or {}
    recent = [b for b in report.get("recent") or [] if streaming_job.progress_seconds(b.get("timestamp")) >= since]
    sizes = [int(b.get("numInputRows") or 0) for b in recent]
    took = [int((b.get("durationMs") or {}).get("triggerExecution") or 0) for b in recent]
    if not sizes:
        return {"batches": 0}
    return {
        "batches": len(sizes),
        "records_median": int(statistics.median(sizes)),
        "records_max": max(sizes),
        "ms_median": int(statistics.median(took)),
    }


def run(
    settings: Settings,
    seconds: float,
    load: int = 2000,
    window: float = 60.0,
    plot: Path | None = None,
    timeout: float = 60.0,
    progress: Callable[[str], None] = print,
) -> dict[str, Any]:
    """Soak the running pipeline for ``seconds`` under ``load`` changes/s; one report per window.
    A probe not readable within ``timeout`` s counts in its window as such, and the soak goes on."""
    import psycopg

    if seconds < window:
        raise CdcpipeError(f"--soak {seconds:.0f} is shorter than one window ({window:.0f} s): nothing would be reported")
    svcs = runtime.by_name(settings, ["postgres", "cassandra"])
    streaming_job.require_running(settings)
    dsn = svcs["postgres"].dsn()
    session = svcs["cassandra"].session()
    select = session.prepare("SELECT id FROM cdc.users WHERE id = ?")
    loader = latency.Load(dsn, load, seed=27)
    rng = random.Random(27)
    windows: list[dict[str, Any]] = []
    probes: list[dict[str, float]] = []
    try:
        with psycopg.connect(dsn, autocommit=True) as pg:
            cassandra_facts(settings)  # starts gcstats' window
            # One probe before the clock starts: a job idle for a while takes seconds for its
            # first batch (Python workers, sessions), which is not what a soak measures.
            warm = uuid.uuid4()
            pg.execute("INSERT INTO public.users (id, username) VALUES (%s, %s)", [warm, f"{PROBE_PREFIX}warm-up"])
            progress(f"warm-up probe readable after {latency.until_readable(session, select, warm, 120):.1f} s")
            loader.start()
            started = time.time()
            opened, cpu_opened, written, n = started, cpu.snapshot(settings), 0, 0
            count = max(1, round(seconds / window))  # equal windows: none cut short at the end
            progress(f"soak: {count} windows of {window:.0f} s under {load} changes/s")
            while len(windows) < count:
                user_id = uuid.uuid4()
                pg.execute("INSERT INTO public.users (id, username) VALUES (%s, %s)", [user_id, f"{PROBE_PREFIX}{n}"])
                committed = time.time()
                try:
                    took = latency.until_readable(session, select, user_id, timeout)
                except CdcpipeError:  # the pipeline fell that far behind: a fact of the window
                    took = float("inf")
                probes.append({"t": committed - started, "latency_s": took})
                n += 1
                if loader.error:
                    raise CdcpipeError(f"the background load failed: {loader.error}")
                time.sleep(rng.uniform(0.5, 1.0))
                now = time.time()
                if now - opened >= window:
                    cpu_now, done = cpu.snapshot(settings), loader.done
                    report = _window(settings, pg, started, opened, now, probes, cpu_opened, cpu_now, done - written)
                    windows.append(report)
                    progress(line(report))
                    # The next window opens once this one's figures are taken: nodetool's two
                    # JVMs (seconds of CPU) are nobody's latency and nobody's CPU.
                    opened, cpu_opened, written = time.time(), cpu.snapshot(settings), loader.done
            loader.stop.set()
            loader.join(10)
            pg.execute(
                "DELETE FROM public.users WHERE username LIKE %s OR username LIKE %s", [PROBE_PREFIX + "%", latency.LOAD_PREFIX + "%"]
            )
    finally:
        loader.stop.set()
        session.cluster.shutdown()
    result = {"seconds": round(time.time() - started), "load": load, "window_s": window, "windows": windows, **_overall(windows)}
    if plot:
        draw(windows, probes, plot, load)
        result["plot"] = str(plot)
    return result


def _window(
    settings: Settings,
    pg: Any,
    started: float,
    opened: float,
    now: float,
    probes: list[dict[str, float]],
    cpu_before: dict[str, float],
    cpu_after: dict[str, float],
    changes: int,
) -> dict[str, Any]:
    seconds = now - opened
    inside = [p["latency_s"] for p in probes if opened - started <= p["t"] < now - started]
    timed_out = sum(1 for s in inside if s == float("inf"))
    inside = [s for s in inside if s != float("inf")]
    cores = cpu.cores(cpu_before, cpu_after, seconds)
    per_1k = cpu.per_1k_changes(cpu_before, cpu_after, changes)
    slot_lag = liveness.capture_facts(pg).slot_lag_bytes
    return {
        "at_s": round(now - started),
        "changes_per_s": round(changes / seconds),
        "latency": latency.percentiles(inside),
        "probes_not_readable_within_timeout": timed_out,
        "slot_lag_bytes": slot_lag,
        "topic_lag_records": _topic_lag(settings),
        "rss_bytes": memory(settings),
        "cores": cores,
        "core_ms_per_1k_changes": per_1k,
        "core_ms_per_1k_changes_pipeline": cpu.pipeline_total(per_1k),
        "cassandra": cassandra_facts(settings),
        "job": _batches(settings, opened),
    }


def _overall(windows: list[dict[str, Any]]) -> dict[str, Any]:
    """The worst window's p99, and each process's memory growth from the second window to the
    last (the first includes warming up)."""
    p99 = [w["latency"].get("p99_ms") for w in windows if w["latency"]]
    out: dict[str, Any] = {"worst_window_p99_ms": max(p99) if p99 else None}
    if len(windows) >= 3:
        first, last = windows[1]["rss_bytes"], windows[-1]["rss_bytes"]
        out["rss_growth_pct_from_window_2"] = {k: round(100 * (last[k] - first[k]) / first[k], 1) for k in last if first.get(k)}
    return out


def line(w: dict[str, Any]) -> str:
    """One window as a line of text."""
    lat = w["latency"] or {}
    rss = sum(w["rss_bytes"].values())
    gc = w["cassandra"]
    return (
        f"  {w['at_s']:>5} s  {w['changes_per_s']:>5} changes/s  latency p50 {lat.get('p50_ms', '-')} p99 {lat.get('p99_ms', '-')} "
        f"max {lat.get('max_ms', '-')} ms (n {lat.get('n', 0)}, {w['probes_not_readable_within_timeout']} not readable in time)  "
        f"slot lag {w['slot_lag_bytes']} B, topic lag {w['topic_lag_records']}  "
        f"RSS {processes.human_bytes(rss)}  pipeline CPU {w['core_ms_per_1k_changes_pipeline']} core-ms/1k changes  "
        f"Cassandra pending compactions {gc.get('pending_compactions')}, GC {gc.get('gc_total_ms')} ms  "
        f"job batches {w['job'].get('batches')} (median {w['job'].get('records_median', '-')} records)"
    )


def summary(result: dict[str, Any]) -> str:
    """The soak as a table, one row per window, then per-process memory and CPU of the last."""
    out = [f"soak: {result['seconds']} s under {result['load']} changes/s"]
    out += [line(w) for w in result["windows"]]
    last = result["windows"][-1]
    out.append("last window, per process: RSS / cores / core-ms per 1,000 changes")
    for name, rss in sorted(last["rss_bytes"].items(), key=lambda kv: -kv[1]):
        cores, per_1k = last["cores"].get(name, 0), last["core_ms_per_1k_changes"].get(name, "-")
        out.append(f"  {name:<22} {processes.human_bytes(rss):>10}  {cores:>5}  {per_1k}")
    out.append(f"worst window p99: {result['worst_window_p99_ms']} ms")
    if "rss_growth_pct_from_window_2" in result:
        grown = sorted(result["rss_growth_pct_from_window_2"].items(), key=lambda kv: -kv[1])
        out.append("memory growth from window 2 to the last: " + ", ".join(f"{k} {v:+.1f}%" for k, v in grown))
    if result.get("plot"):
        out.append(f"plot: {result['plot']}")
    return "\n".join(out)


def draw(windows: list[dict[str, Any]], probes: list[dict[str, float]], path: Path, load: int) -> None:
    """Latency of every probe with each window's p99, and each process's memory, over the run."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (top, bottom) = plt.subplots(2, 1, figsize=(9, 7), dpi=110, sharex=True)
    readable = [p for p in probes if p["latency_s"] != float("inf")]
    top.scatter(
        [p["t"] for p in readable], [1000 * p["latency_s"] for p in readable], s=6, color="#dd8452", label="probe: commit → readable"
    )
    ends = [w["at_s"] for w in windows if w["latency"]]
    top.step(ends, [w["latency"]["p99_ms"] for w in windows if w["latency"]], where="pre", color="#c44e52", label="p99 of the window")
    top.set_yscale("log")
    top.set_ylabel("ms after commit (log)")
    top.set_title(f"cdcpipe bench --soak: {load} changes/s")
    top.legend(loc="upper left")
    top.grid(axis="y", alpha=0.3)
    names = sorted({n for w in windows for n in w["rss_bytes"]}, key=lambda n: -windows[-1]["rss_bytes"].get(n, 0))
    for name in names:
        bottom.plot([w["at_s"] for w in windows], [w["rss_bytes"].get(name, 0) / 2**20 for w in windows], marker="o", ms=3, label=name)
    bottom.set_ylabel("resident memory (MiB)")
    bottom.set_xlabel("seconds into the soak")
    bottom.legend(loc="upper left", fontsize=7, ncol=3)
    bottom.grid(alpha=0.3)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path)
    plt.close(fig)
