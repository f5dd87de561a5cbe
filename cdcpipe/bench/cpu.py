"""CPU per change, per stage: the figure every tuning change of issue 27 is judged by.

A benchmark takes a :func:`snapshot` of every process's CPU seconds before and after the
changes it writes; :func:`per_1k_changes` turns the difference into core-milliseconds per
1,000 changes for each process, and :func:`pipeline_total` sums the ``STAGES`` a change passes
through. Airflow, the console, the watchdog and the benchmark itself (which writes the
changes and reads the topic) are reported apart: they are not what the pipeline costs.

A stage is a service, whatever its node: on the cluster topology ``cassandra-2`` is Cassandra
and ``connect-3`` is Connect, and the Spark workers are the job's (its executors run under
them there; on one node the job runs in its own process and the idle worker daemon adds its
heartbeats, about half a core-millisecond per 1,000 changes in a 100,000-change run).

Why a floor. On a machine with C cores, work that costs T core-seconds cannot finish in less
than T / C seconds, however well the stages overlap. :func:`floor_s` is that bound for the
work a run measured. It is the floor *of that run*: part of the cost is per micro-batch, per
poll or per second (Spark's planning, garbage collection), so the same changes in fewer,
larger batches can cost less, and a run can end below another run's floor. What it shows is
what a target needs: at the cost per change measured, a time below the floor cannot be reached
(the benchmark and the rest of the machine only push it up).
"""

from __future__ import annotations

import os
import re

from .. import runtime
from ..runtime import processes
from ..settings import Settings

#: The processes a change passes through: their sum is the pipeline's cost per change.
STAGES = ("postgres", "connect", "kafka", "schema_registry", "spark job", "cassandra")


def snapshot(settings: Settings) -> dict[str, float]:
    """CPU seconds so far of every process of the stack, the job, this command and the machine."""
    out = {name: processes.cpu_seconds(pid) for name, pid in runtime.pids(settings).items()}
    out["this command"] = processes.cpu_seconds(os.getpid())
    out["machine"] = processes.machine_busy_seconds()
    return out


def _used(before: dict[str, float], after: dict[str, float]) -> dict[str, float]:
    """CPU seconds each process used between two snapshots (the machine's left out)."""
    return {name: after[name] - before.get(name, 0.0) for name in after if name != "machine"}


def cores(before: dict[str, float], after: dict[str, float], seconds: float) -> dict[str, float]:
    """Average cores each process used between two snapshots, busiest first; ``other`` is the
    machine's busy time that none of them accounts for (other stacks, the kernel)."""
    used = _used(before, after)
    out = {name: round(value / seconds, 2) for name, value in sorted(used.items(), key=lambda kv: -kv[1]) if value > 0}
    if "machine" in after and "machine" in before:
        out["other"] = round(max(0.0, after["machine"] - before["machine"] - sum(used.values())) / seconds, 2)
    return out


def per_1k_changes(before: dict[str, float], after: dict[str, float], changes: int) -> dict[str, float]:
    """Core-milliseconds per 1,000 changes of each process that used any, costliest first."""
    if changes <= 0:
        return {}
    used = _used(before, after)
    return {name: round(1000 * value / (changes / 1000), 1) for name, value in sorted(used.items(), key=lambda kv: -kv[1]) if value > 0}


def stage_of(process: str) -> str | None:
    """The stage a process of :func:`snapshot` belongs to, or None (not the pipeline's)."""
    service = re.sub(r"-\d+$", "", process)  # a cluster's node: cassandra-2 is cassandra
    if service == "spark-worker":
        return "spark job"
    return service if service in STAGES else None


def pipeline_total(per_1k: dict[str, float]) -> float:
    """The sum of :func:`per_1k_changes` over the processes of the ``STAGES``."""
    return round(sum(v for k, v in per_1k.items() if stage_of(k) is not None), 1)


def available_cores() -> int:
    """The cores this machine lets the benchmark's processes run on."""
    return len(os.sched_getaffinity(0)) or 1


def floor_s(pipeline_per_1k: float, changes: int, cores_available: int) -> float:
    """The shortest time in which ``cores_available`` cores could do the pipeline's work for
    ``changes`` at ``pipeline_per_1k`` core-ms per 1,000 changes, however well it overlapped."""
    return round(pipeline_per_1k * (changes / 1000) / 1000 / cores_available, 1)
