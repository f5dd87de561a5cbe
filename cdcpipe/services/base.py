"""What every local-runtime service provides to ``up``, ``down`` and ``status``."""

from __future__ import annotations

import signal
from typing import Any, ClassVar

from .. import processes
from ..settings import Settings


class NotReady(Exception):
    """Raised by :meth:`Service.probe` while a service cannot answer yet."""


class Service:
    """A service of the local runtime: one or more processes and a readiness probe.

    Subclasses set the class attributes and implement ``prepare``, ``launch``, ``probe``
    and ``info``. ``after_ready`` runs once the probe passed (migrations, topics, ...).
    """

    name: ClassVar[str]
    #: Services that must be ready before this one starts.
    depends_on: ClassVar[tuple[str, ...]] = ()
    #: Names of the processes this service runs (pid files, logs).
    processes: ClassVar[tuple[str, ...]]
    #: Keys of Settings.ports this service binds.
    port_names: ClassVar[tuple[str, ...]] = ()
    #: Seconds to wait for readiness after launch.
    start_timeout: ClassVar[float] = 120.0
    #: The signal that asks the service's processes to shut down cleanly.
    stop_signal: ClassVar[int] = signal.SIGTERM
    stop_timeout: ClassVar[float] = 30.0

    def __init__(self, settings: Settings, secrets: dict[str, str]):
        self.settings = settings
        self.secrets = secrets
        self.dir = settings.service_dir(self.name)

    # --- lifecycle -------------------------------------------------------------------
    def prepare(self) -> None:
        """Create directories and configuration; idempotent."""

    def launch(self) -> None:
        """Start every process of the service that is not running."""
        raise NotImplementedError

    def probe(self) -> None:
        """Do real work against the service; raise NotReady while it cannot."""
        raise NotImplementedError

    def after_ready(self) -> None:
        """Runs after every successful probe in ``up``; must be idempotent."""

    def info(self) -> dict[str, Any]:
        """Connection details for ``status``."""
        return {}

    def purge(self) -> None:
        """Delete state kept outside the state directory (``down --purge``); most keep none."""

    # --- derived ---------------------------------------------------------------------
    def pids(self) -> dict[str, int | None]:
        return {proc: processes.pid_of(self.settings, proc) for proc in self.processes}

    def running(self) -> bool:
        return all(pid is not None for pid in self.pids().values())

    def any_running(self) -> bool:
        return any(pid is not None for pid in self.pids().values())

    def rss_bytes(self) -> int:
        return sum(processes.rss_bytes(pid) for pid in self.pids().values() if pid is not None)

    def stop(self) -> bool:
        """Stop the processes in reverse start order; True if any was running."""
        stopped = False
        for proc in reversed(self.processes):
            stopped |= processes.stop(self.settings, proc, sig=self.stop_signal, timeout=self.stop_timeout)
        return stopped

    def spawn(self, process: str, argv: list[str], **kwargs: Any) -> None:
        if processes.pid_of(self.settings, process) is None:
            processes.spawn(self.settings, process, argv, **kwargs)

    @property
    def host(self) -> str:
        return self.settings.host

    def port(self, name: str | None = None) -> int:
        return self.settings.port(name or self.name)
