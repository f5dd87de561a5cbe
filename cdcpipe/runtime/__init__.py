"""``up``, ``down`` and ``status`` of the local runtime.

``up`` starts services as soon as the services they depend on are ready, so the slow
starters (Cassandra, Kafka, Airflow) boot side by side, and waits for each one's real
readiness (a query answered), printing progress as it goes.
"""

from __future__ import annotations

import shutil
import sys
import time
from collections.abc import Callable, Iterable
from typing import Any

from ..errors import CdcpipeError, ConfigError, PortInUse, ServiceFailed
from ..settings import Settings, secure_home
from . import jars, processes
from .services import Service, services
from .services import by_name as by_name
from .services import service as service
from .services.base import NotReady

Progress = Callable[[str], None]


def _stderr(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def _check_ports(svc: Service) -> None:
    for port_name in svc.bound_ports():
        port = svc.port(port_name)
        if processes.port_in_use(svc.host, port):
            raise PortInUse(svc.name if port_name == svc.name else f"{svc.name} ({port_name})", port, svc.host)


def _fail(svc: Service, reason: str) -> ServiceFailed:
    logs = [svc.settings.log_file(p) for p in svc.processes]
    log = max((p for p in logs if p.exists()), key=lambda p: p.stat().st_mtime, default=logs[0])
    return ServiceFailed(svc.name, reason, processes.log_tail(log), str(log))


def up(settings: Settings, names: Iterable[str] | None = None, progress: Progress = _stderr) -> list[Service]:
    """Start the services (idempotent) and wait until each answers real queries."""
    jars.require(settings)
    todo = services(settings, names)
    secure_home(settings)  # 0700, also when an older cdcpipe left it 0755
    ready: set[str] = set()
    started: dict[str, float] = {}
    last_note: dict[str, float] = {}
    launched_by_us: set[str] = set()
    # A set-up (after_ready) that said NotReady is tried again after a growing pause: each try
    # opens connections and repeats idempotent DDL on a service that is still settling.
    set_up_failures: dict[str, int] = {}
    next_try: dict[str, float] = {}

    # Refuse early, before starting anything, if a port of a stopped service is taken.
    for svc in todo:
        if not svc.any_running():
            _check_ports(svc)

    while len(ready) < len(todo):
        for svc in todo:
            if svc.name in ready or svc.name in started:
                continue
            if not all(dep in ready for dep in svc.depends_on if dep in {s.name for s in todo}):
                continue
            if svc.running():
                progress(f"  {svc.name:<16} already running")
            else:
                if svc.any_running() and svc.revives_nodes:  # a node of a cluster died: start it alone
                    down = [p for p, pid in svc.pids().items() if pid is None]
                    progress(f"  {svc.name:<16} starting {', '.join(down)}")
                else:
                    if svc.any_running():  # half up (a process died): restart it whole
                        svc.stop()
                    progress(f"  {svc.name:<16} starting")
                svc.prepare()
                svc.launch()
                launched_by_us.add(svc.name)
            started[svc.name] = time.monotonic()
        waiting = [svc for svc in todo if svc.name in started and svc.name not in ready]
        if not waiting:
            raise CdcpipeError("dependency cycle among services")  # pragma: no cover
        for svc in waiting:
            elapsed = time.monotonic() - started[svc.name]
            if svc.name in launched_by_us and not svc.running():
                raise _fail(svc, f"a process exited during start-up after {elapsed:.0f}s")
            if time.monotonic() < next_try.get(svc.name, 0.0):
                continue
            try:
                svc.probe()
                # Set-up runs seconds after the first answer, when a service is least steady:
                # a failure it reports as NotReady is tried again, like the probe's.
                try:
                    svc.after_ready()
                except NotReady:
                    set_up_failures[svc.name] = set_up_failures.get(svc.name, 0) + 1
                    next_try[svc.name] = time.monotonic() + min(10.0, float(set_up_failures[svc.name]))
                    raise
            except NotReady as exc:
                elapsed = time.monotonic() - started[svc.name]  # a set-up try can take a while
                if elapsed > svc.ready_timeout:
                    raise _fail(svc, f"not ready after {elapsed:.0f}s (its limit: {svc.ready_timeout:.0f}s): {exc}") from None
                if time.monotonic() - last_note.get(svc.name, started[svc.name]) >= 15:
                    progress(f"  {svc.name:<16} still starting ({elapsed:.0f}s): {str(exc)[:120]}")
                    last_note[svc.name] = time.monotonic()
                continue
            elapsed = time.monotonic() - started[svc.name]
            ready.add(svc.name)
            progress(f"✓ {svc.name:<16} ready ({elapsed:.1f}s)")
        time.sleep(0.5)
    if names is None:  # the whole stack: the Spark job too, if it ran before a crash
        from . import streaming_job

        streaming_job.resume_if_wanted(settings, progress)
    return todo


def down(settings: Settings, names: Iterable[str] | None = None, *, purge: bool = False, progress: Progress = _stderr) -> None:
    """Stop services in reverse dependency order; ``purge`` also deletes the state dir.

    Stopping everything also stops the processes started beside the services: the Spark
    job, the randomuser stand-in, benchmark jobs.
    """
    if names is None:
        for pid_file in sorted(settings.run_dir.glob("*.pid")) if settings.run_dir.exists() else []:
            name = pid_file.stem
            if name not in {p for s in services(settings) for p in s.processes}:
                if processes.stop(settings, name, timeout=60):
                    progress(f"✓ {name:<16} stopped")
    for svc in reversed(services(settings, names, with_dependencies=False)):
        if svc.stop():
            progress(f"✓ {svc.name:<16} stopped")
    if purge:
        if names is not None:
            raise ConfigError("--purge deletes the whole state directory; use it without service names")
        for svc in services(settings):
            svc.purge()
        if settings.home.exists():
            shutil.rmtree(settings.home)
            progress(f"✓ removed {settings.home}")


def state_of(svc: Service) -> str:
    """'running' when every process is up and the service answers; 'degraded' when a node of a
    cluster is down and the others run; 'failed' when half up or unanswering."""
    if not svc.any_running():
        return "stopped"
    if not svc.running():
        return "degraded" if svc.revives_nodes and svc.live_nodes() else "failed"
    try:
        svc.probe()
    except NotReady:
        return "failed"
    return "running"


def pids(settings: Settings) -> dict[str, int]:
    """Every running process of the stack by name: each service's processes and the Spark job
    ("spark job"). What the benchmarks measure memory and CPU of."""
    from . import streaming_job

    out = {name: pid for svc in services(settings) for name, pid in svc.pids().items() if pid is not None}
    job = processes.pid_of(settings, streaming_job.PROCESS)
    if job is not None:
        out["spark job"] = job
    return out


def status(settings: Settings) -> dict[str, Any]:
    """Every service's state and details; on a cluster also every node as its own entry
    (``nodes``: ``cassandra``, ``cassandra-2``, ... ``connect-2``, ``spark-worker-2``)."""
    result: dict[str, Any] = {"home": str(settings.home), "topology": settings.topology, "services": {}, "nodes": {}}
    for svc in services(settings):
        state = state_of(svc)
        entry: dict[str, Any] = {"state": state}
        entry.update(svc.info())
        entry["pids"] = svc.pids()
        entry["rss_bytes"] = svc.rss_bytes() if state != "stopped" else 0
        entry["log"] = str(settings.log_file(svc.processes[0]))
        result["services"][svc.name] = entry
        result["nodes"].update(svc.node_status())
    result["total_rss_bytes"] = sum(s["rss_bytes"] for s in result["services"].values())
    return result
