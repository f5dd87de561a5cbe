"""What every local-runtime service provides to ``up``, ``down`` and ``status``."""

from __future__ import annotations

import signal
from typing import Any, ClassVar

from ...settings import NODE_PORTS, Settings, node_port_name, node_process
from .. import processes


class NotReady(Exception):
    """Raised by :meth:`Service.probe` while a service cannot answer yet."""


class Service:
    """A service of the local runtime: one or more processes and a readiness probe.

    Subclasses set the class attributes and implement ``prepare``, ``launch``, ``probe``
    and ``info``. ``after_ready`` runs once the probe passed (migrations, topics, ...).
    """

    name: ClassVar[str]
    #: The kind of node this service runs several of on a cluster topology (settings.TOPOLOGIES:
    #: cassandra, kafka, connect), or None. Its processes are then one per node (``cassandra``,
    #: ``cassandra-2``, ...), and ``up`` starts a node that died without touching the others.
    node_kind: ClassVar[str | None] = None
    #: Services that must be ready before this one starts.
    depends_on: ClassVar[tuple[str, ...]] = ()
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
        """Runs after every successful probe in ``up``; must be idempotent. It raises
        NotReady for what may pass (a node still settling): ``up`` then probes and runs it
        again, until the service's ``ready_timeout``."""

    def info(self) -> dict[str, Any]:
        """Connection details for ``status``."""
        return {}

    def purge(self) -> None:
        """Delete state kept outside the state directory (``down --purge``); most keep none."""

    @property
    def ready_timeout(self) -> float:
        """``start_timeout``, doubled on a cluster topology: three times the processes start
        on the same cores, and a node restarted under load recovers its logs first (a Kafka
        broker SIGKILLed under load took 80 s to be unfenced)."""
        return self.start_timeout * (2 if self.settings.clustered else 1)

    # --- nodes -----------------------------------------------------------------------
    @property
    def processes(self) -> tuple[str, ...]:
        """Names of the processes this service runs (pid files, logs): one per node, named
        after the service (``cassandra``, ``cassandra-2``, ...). A service whose processes are
        not its nodes names them in a class attribute (``processes = ("postgres",)``)."""
        return tuple(self.node_process(node) for node in self.nodes)

    @property
    def node_count(self) -> int:
        return self.settings.nodes(self.node_kind) if self.node_kind else 1

    @property
    def nodes(self) -> range:
        """1-based node numbers."""
        return range(1, self.node_count + 1)

    def node_process(self, node: int) -> str:
        return node_process(self.name, node)

    def node_port(self, name: str | None, node: int) -> int:
        """Port ``name`` (default: the service's own) of ``node``."""
        return self.settings.port(node_port_name(name or self.name, node))

    def node_dir(self, node: int):
        """Node 1's state is the service's directory; node N's is ``<service>-N``."""
        return self.dir if node == 1 else self.settings.service_dir(self.node_process(node))

    def live_nodes(self) -> list[int]:
        return [node for node in self.nodes if processes.pid_of(self.settings, self.node_process(node)) is not None]

    def bound_ports(self) -> list[str]:
        """Keys of Settings.ports this service binds: its own and its nodes'."""
        names = list(self.port_names)
        if self.node_kind:
            names += [node_port_name(port, node) for node in self.nodes if node > 1 for port in NODE_PORTS[self.node_kind]]
        return names

    def node_status(self) -> dict[str, dict[str, Any]]:
        """Each node's process (running or stopped), pid, port and memory, by process name;
        empty for a service that runs one node."""
        if self.node_count == 1 or not self.node_kind:
            return {}
        out = {}
        for node in self.nodes:
            proc = self.node_process(node)
            pid = processes.pid_of(self.settings, proc)
            out[proc] = {
                "service": self.name,
                "node": node,
                "state": "running" if pid is not None else "stopped",
                "pid": pid,
                "port": self.node_port(NODE_PORTS[self.node_kind][0], node),
                "rss_bytes": processes.rss_bytes(pid) if pid is not None else 0,
                "log": str(self.settings.log_file(proc)),
            }
        return out

    @property
    def revives_nodes(self) -> bool:
        """True when ``up`` may start the missing nodes of a half-running service alone
        (a cluster's nodes), instead of stopping and starting the whole service."""
        return self.node_count > 1

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
