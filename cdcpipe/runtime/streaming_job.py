"""Running spark_jobs/users_to_cassandra.py against the local runtime: start, stop, progress."""

from __future__ import annotations

import json
import os
import signal
import sys
import time
from pathlib import Path
from typing import Any

from ..errors import CdcpipeError, ServiceFailed
from ..settings import REPO, Settings
from . import credentials, processes
from .services import by_name, service
from .services.spark import job_jars

PROCESS = "spark-job"
JOB = REPO / "spark_jobs" / "users_to_cassandra.py"


def checkpoint_dir(settings: Settings) -> Path:
    return settings.service_dir("spark") / "checkpoints" / "users_to_cassandra"


def progress_file(settings: Settings) -> Path:
    return settings.service_dir("spark") / "job-progress.json"


def job_argv(settings: Settings, master: str | None = None, checkpoint: Path | None = None, **extra: Any) -> list[str]:
    svcs = by_name(settings, ["kafka", "schema_registry", "cassandra", "spark"])
    argv = [
        sys.executable,
        str(JOB),
        "--bootstrap",
        svcs["kafka"].bootstrap,
        "--kafka-credentials",
        str(svcs["kafka"].credentials_file),
        "--registry-url",
        svcs["schema_registry"].url,
        "--registry-credentials",
        str(svcs["schema_registry"].credentials_file),
        "--cassandra-host",
        svcs["cassandra"].contact_points,
        "--cassandra-port",
        str(settings.port("cassandra")),
        "--cassandra-credentials",
        str(svcs["cassandra"].credentials_file("job")),
        "--ui-credentials",
        str(svcs["spark"].ui_credentials_file),
        "--checkpoint",
        str(checkpoint or checkpoint_dir(settings)),
        "--master",
        master or settings.spark_master,
        "--jars",
        ",".join(job_jars(settings.jars)),
        "--progress-file",
        str(progress_file(settings)),
    ]
    if svcs["cassandra"].consistency and extra.get("write_consistency") is None:  # a cluster: RF 3
        extra = {**extra, "write_consistency": svcs["cassandra"].consistency}
    for key, value in extra.items():
        if value is not None:
            argv += [f"--{key.replace('_', '-')}", str(value)]
    return argv


def job_env(settings: Settings) -> dict[str, str]:
    """The job's environment; the Spark RPC secret goes here, never on its command line."""
    return {
        **os.environ,
        "PYSPARK_PYTHON": sys.executable,
        "PYSPARK_DRIVER_PYTHON": sys.executable,
        "SPARK_LOCAL_IP": settings.host,
        "CDC_SPARK_AUTH_SECRET": credentials.load(settings)["spark_auth"],
    }


def wanted_file(settings: Settings) -> Path:
    """Present while the job should run: written by start(), removed by stop(). ``cdcpipe up``
    starts the job again when it finds this file and no job (after a crash or a reboot)."""
    return settings.service_dir("spark") / "job-wanted.json"


def read_progress(settings: Settings) -> dict[str, Any] | None:
    try:
        return json.loads(progress_file(settings).read_text())
    except (OSError, ValueError):
        return None


def start(
    settings: Settings,
    master: str | None = None,
    timeout: float = 180.0,
    progress=print,
    checkpoint: Path | None = None,
    **extra: Any,
) -> int:
    """Start the job detached (idempotent) and wait until its streaming query runs."""
    if checkpoint is None:  # the pipeline's own job (not a benchmark's): keep it running
        wanted_file(settings).parent.mkdir(parents=True, exist_ok=True)
        wanted_file(settings).write_text(json.dumps({"master": master, **extra}))
    pid = processes.pid_of(settings, PROCESS)
    if pid is not None:
        progress(f"spark job already running (pid {pid})")
        return pid
    checkpoint_dir(settings).parent.mkdir(parents=True, exist_ok=True)
    progress_file(settings).unlink(missing_ok=True)
    argv = job_argv(settings, master, checkpoint, **extra)
    pid = processes.spawn(settings, PROCESS, argv, env=job_env(settings), cwd=settings.service_dir("spark"))
    started = time.monotonic()
    while time.monotonic() - started < timeout:
        report = read_progress(settings)
        if report and report.get("state") in ("running", "waiting", "retrying"):
            state = report["state"] + (f": {report['reason']}" if report.get("reason") else "")
            progress(f"spark job started (pid {pid}, master {master or settings.spark_master}) - {state}")
            return pid
        if not processes.is_alive(pid):
            log = settings.log_file(PROCESS)
            raise ServiceFailed("spark job", "exited during start-up", processes.log_tail(log, 60), str(log))
        time.sleep(1)
    raise ServiceFailed(
        "spark job",
        f"query not running after {timeout:.0f}s",
        processes.log_tail(settings.log_file(PROCESS)),
        str(settings.log_file(PROCESS)),
    )


def stop(settings: Settings, timeout: float = 90.0) -> bool:
    """Ask the job to stop after its current batch (SIGTERM); force after ``timeout``.
    ``cdcpipe up`` no longer starts it either."""
    wanted_file(settings).unlink(missing_ok=True)
    return processes.stop(settings, PROCESS, sig=signal.SIGTERM, timeout=timeout)


def resume_if_wanted(settings: Settings, progress=print) -> int | None:
    """Start the job again if it should run and does not (``cdcpipe up`` calls this)."""
    try:
        wanted = json.loads(wanted_file(settings).read_text())
    except (OSError, ValueError):
        return None
    if processes.pid_of(settings, PROCESS) is not None:
        return None
    progress("  spark job        was running before: starting it again")
    return start(settings, progress=lambda m: progress(f"✓ {m}"), **wanted)


def kill(settings: Settings) -> bool:
    """SIGKILL the job's whole process tree at once (for crash tests)."""
    return processes.stop(settings, PROCESS, sig=signal.SIGKILL, timeout=5)


def dead_letter_count(settings: Settings) -> int:
    with service(settings, "cassandra").connected() as session:
        # Few rows by design; a full count is fine and exact.
        return session.execute("SELECT count(*) FROM cdc.dead_letters", timeout=30).one()[0]


def _offsets(value: Any) -> dict[str, Any] | None:
    """Spark reports Kafka offsets as a JSON string: {topic: {partition: offset}}."""
    if isinstance(value, str):
        try:
            return json.loads(value)
        except ValueError:
            return None
    return value


def progress(settings: Settings) -> dict[str, Any]:
    """The job's state and query progress, from its pid file and progress file only."""
    pid = processes.pid_of(settings, PROCESS)
    report = read_progress(settings) or {}
    last = report.get("last_progress") or {}
    sources = last.get("sources") or [{}]
    if pid is None:
        state = "stopped"
    elif report.get("pid") == pid and report.get("state") in ("waiting", "retrying"):
        state = report["state"]
    else:
        state = "running" if report.get("pid") == pid else "starting"
    return {
        "state": state,
        "reason": report.get("reason") if state in ("waiting", "retrying") else None,
        "failing_since": (report.get("failure") or {}).get("since") if state == "retrying" else None,
        "pid": pid,
        "batch_id": last.get("batchId"),
        "input_rows_per_second": last.get("inputRowsPerSecond"),
        "processed_rows_per_second": last.get("processedRowsPerSecond"),
        "batch_duration_ms": (last.get("durationMs") or {}).get("triggerExecution"),
        "latest_offsets": _offsets(sources[0].get("latestOffset")),
        "committed_offsets": _offsets(sources[0].get("endOffset")),
        "totals": report.get("totals"),
        "checkpoint": str(checkpoint_dir(settings)),
        "log": str(settings.log_file(PROCESS)),
        "progress_updated_at": report.get("updated_at"),
    }


def require_running(settings: Settings) -> dict[str, Any]:
    """progress(), or CdcpipeError unless the job is running (benchmarks need it in the loop)."""
    report = progress(settings)
    if report["state"] != "running":
        reason = f" ({report['reason']})" if report.get("reason") else ""
        raise CdcpipeError(f"the Spark job is {report['state']}{reason}: 'cdcpipe spark start' first, 'cdcpipe spark status' for details")
    return report


def status(settings: Settings) -> dict[str, Any]:
    """progress() plus the dead-letter count, which asks Cassandra."""
    report = progress(settings)
    try:
        report["dead_letters"] = dead_letter_count(settings)
    except Exception as exc:  # Cassandra down: say so rather than fail the whole status
        report["dead_letters"] = f"unknown ({exc.__class__.__name__})"
    return report


def wait_for_offsets(
    settings: Settings,
    end_offsets: dict[str, dict[str, int]],
    timeout: float = 120.0,
    stalled_after: float | None = None,
    stop_on_named_step: bool = False,
) -> None:
    """Wait until the job has committed at least ``end_offsets`` ({topic: {partition: offset}}).

    Gives up after ``timeout`` s, or, with ``stalled_after``, once the committed offsets have
    not moved for that long: a long replay is judged by whether it advances, not by a
    deadline guessed for a machine's speed. With ``stop_on_named_step``, also as soon as the
    job is stopped naming a step (``cdcpipe ...``): waiting cannot help then (verify uses it;
    a resync must not, since its own epoch is what lets the job go on).
    """
    started = last_move = time.monotonic()
    seen: object = None
    while True:
        job = progress(settings)
        committed = job.get("committed_offsets") or {}
        if all(
            int((committed.get(topic) or {}).get(str(part), -1)) >= offset
            for topic, parts in end_offsets.items()
            for part, offset in parts.items()
        ):
            return
        now = time.monotonic()
        if committed != seen:
            seen, last_move = committed, now
        if stop_on_named_step and "cdcpipe " in str(job.get("reason") or ""):
            raise CdcpipeError(f"spark job stopped at {committed}, short of {end_offsets}")
        if now - started > timeout:
            raise CdcpipeError(f"spark job did not reach offsets {end_offsets} in {timeout:.0f}s (at {committed})")
        if stalled_after is not None and now - last_move > stalled_after:
            raise CdcpipeError(f"spark job stopped advancing towards offsets {end_offsets}: at {committed} for {stalled_after:.0f}s")
        time.sleep(0.5)


def progress_seconds(timestamp: Any) -> float:
    """A progress report's timestamp ('2026-12-05T23:44:53.008Z', Spark's) as epoch seconds; 0 if absent."""
    import datetime as dt

    if not timestamp:
        return 0.0
    return dt.datetime.fromisoformat(str(timestamp).replace("Z", "+00:00")).timestamp()
