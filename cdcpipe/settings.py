"""Where the local runtime keeps things and which ports it binds.

Everything is read from the environment once, so the CLI, the tests and the Spark job
agree on addresses without any of them hard-coding one.

| env var               | default                                          |
|-----------------------|--------------------------------------------------|
| CDCPIPE_TOPOLOGY      | single (or cluster: see TOPOLOGIES)              |
| CDCPIPE_HOME          | <checkout>/.cdcpipe (cluster: .cdcpipe-cluster)  |
| CDCPIPE_JARS          | <checkout>/build/jars                            |
| CDCPIPE_PORT_<NAME>   | see DEFAULT_PORTS and node_ports                 |
| CDCPIPE_SPARK_MASTER  | local[2] (cluster: the standalone master)        |
| CDCPIPE_CONSOLE_ASSETS| <checkout>/build/console                         |

**Topologies.** ``single`` runs one node of every service. ``cluster`` runs several nodes of
the distributed ones (:data:`TOPOLOGIES`), all on 127.0.0.1 with a port each: node 1 keeps the
service's ports, node N adds ``10 * (N - 1)`` to each (``cassandra_2`` = 9052, ``kafka_3`` =
9112), overridable as ``CDCPIPE_PORT_CASSANDRA_2``. Distinct ports rather than 127.0.0.2-4:
every service stays on the one address the project promises (127.0.0.1), and Cassandra 5,
Kafka 4, Connect and Spark all take a port per node. A cluster keeps its own state directory,
so the two topologies never share data; they share ports, so one runs at a time.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from .errors import ConfigError

REPO = Path(__file__).resolve().parent.parent
HOST = "127.0.0.1"

#: Default ports, one per listening socket. Override any with CDCPIPE_PORT_<NAME>.
DEFAULT_PORTS: dict[str, int] = {
    "postgres": 5432,
    "kafka": 9092,
    "kafka_controller": 9093,
    "schema_registry": 8081,
    "schema_registry_management": 8082,
    "connect": 8083,
    "cassandra": 9042,
    "cassandra_storage": 7000,
    "cassandra_jmx": 7199,
    "spark_master": 7077,
    "spark_master_ui": 8090,
    "spark_worker_ui": 8091,
    "airflow": 8080,
    "airflow_log_server": 8793,  # Airflow's task log server (cdcpipe.runtime.airflow_log_server)
    "randomuser": 8089,  # the local randomuser.me stand-in (cdcpipe randomuser serve)
    "console": 8070,  # the browser console (cdcpipe console)
}


#: Nodes per distributed service, by topology. What is not named runs one node.
TOPOLOGIES: dict[str, dict[str, int]] = {
    "single": {},
    "cluster": {"cassandra": 3, "kafka": 3, "connect": 2, "spark_worker": 2},
}
#: The ports that each node of a multi-node service has its own of, by node kind.
NODE_PORTS: dict[str, tuple[str, ...]] = {
    "cassandra": ("cassandra", "cassandra_storage", "cassandra_jmx"),
    "kafka": ("kafka", "kafka_controller"),
    "connect": ("connect",),
    "spark_worker": ("spark_worker_ui",),
}
NODE_PORT_STEP = 10


def node_port_name(name: str, node: int) -> str:
    """The ports-table key of port ``name`` on ``node`` (1-based): ``cassandra`` on node 2 is
    ``cassandra_2``; node 1 keeps the plain name."""
    return name if node == 1 else f"{name}_{node}"


def node_process(name: str, node: int) -> str:
    """The process (pid file, log) of ``node`` of ``name``: ``cassandra``, ``cassandra-2``, ..."""
    return name if node == 1 else f"{name}-{node}"


def node_ports(nodes: Mapping[str, int]) -> dict[str, int]:
    """Default ports of nodes 2.. of each multi-node service (node 1 has DEFAULT_PORTS')."""
    return {
        node_port_name(port, node): DEFAULT_PORTS[port] + NODE_PORT_STEP * (node - 1)
        for kind, count in nodes.items()
        for port in NODE_PORTS[kind]
        for node in range(2, count + 1)
    }


@dataclass(frozen=True)
class Settings:
    """The local runtime's layout. Build it with :func:`load`."""

    repo: Path
    home: Path
    jars: Path
    ports: dict[str, int] = field(default_factory=dict)
    spark_master: str = "local[2]"
    host: str = HOST
    #: The console's browser assets (htmx, Chart.js), installed by 'make console-assets'.
    console_assets: Path = REPO / "build" / "console"
    #: ``single`` or ``cluster`` (:data:`TOPOLOGIES`).
    topology: str = "single"

    def port(self, name: str) -> int:
        return self.ports[name]

    def nodes(self, kind: str) -> int:
        """How many nodes of ``kind`` (cassandra, kafka, connect, spark_worker) this topology runs."""
        return TOPOLOGIES[self.topology].get(kind, 1)

    @property
    def clustered(self) -> bool:
        return self.topology != "single"

    def service_dir(self, service: str) -> Path:
        return self.home / service

    @property
    def run_dir(self) -> Path:
        """Pid files of the processes `up` started."""
        return self.home / "run"

    @property
    def logs_dir(self) -> Path:
        return self.home / "logs"

    @property
    def secrets_file(self) -> Path:
        return self.home / "secrets.json"

    def log_file(self, process: str) -> Path:
        return self.logs_dir / f"{process}.log"


def private_dir(path: Path) -> Path:
    """Create ``path`` (and missing parents) as 0700, and tighten it to 0700 if it exists.

    The state directory and everything the runtime creates in it hold data and passwords of
    services that have no authentication of their own: only the account running ``cdcpipe``
    may enter them.
    """
    path.mkdir(mode=0o700, parents=True, exist_ok=True)
    if path.stat().st_mode & 0o077:
        path.chmod(0o700)
    return path


def write_private(path: Path, text: str) -> Path:
    """Write ``text`` to ``path`` as a 0600 file (created so, never world-readable for a moment)."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as fh:
        fh.write(text)
    if path.stat().st_mode & 0o077:  # it existed with a looser mode
        path.chmod(0o600)
    return path


def secure_home(settings: Settings) -> Path:
    """The state directory, created or tightened to 0700 (every ``up`` calls this)."""
    return private_dir(settings.home)


def _port_from_env(env: Mapping[str, str], name: str, default: int) -> int:
    var = f"CDCPIPE_PORT_{name.upper()}"
    raw = env.get(var)
    if raw is None or raw == "":
        return default
    try:
        value = int(raw)
    except ValueError:
        raise ConfigError(f"{var}={raw!r} is not a port number") from None
    if not 0 < value < 65536:
        raise ConfigError(f"{var}={value} is outside 1-65535")
    return value


def load(environ: Mapping[str, str] | None = None) -> Settings:
    env = os.environ if environ is None else environ
    topology = env.get("CDCPIPE_TOPOLOGY") or "single"
    if topology not in TOPOLOGIES:
        raise ConfigError(f"CDCPIPE_TOPOLOGY={topology!r}: not one of {', '.join(TOPOLOGIES)}")
    clustered = topology != "single"
    home = Path(env.get("CDCPIPE_HOME") or REPO / (".cdcpipe-cluster" if clustered else ".cdcpipe")).resolve()
    jars = Path(env.get("CDCPIPE_JARS") or REPO / "build" / "jars").resolve()
    defaults = {**DEFAULT_PORTS, **node_ports(TOPOLOGIES[topology])}
    ports = {name: _port_from_env(env, name, default) for name, default in defaults.items()}
    # On a cluster the job runs on the standalone master, with executors on every worker.
    default_master = f"spark://{HOST}:{ports['spark_master']}" if clustered else "local[2]"
    return Settings(
        repo=REPO,
        home=home,
        jars=jars,
        ports=ports,
        spark_master=env.get("CDCPIPE_SPARK_MASTER") or default_master,
        console_assets=Path(env.get("CDCPIPE_CONSOLE_ASSETS") or REPO / "build" / "console").resolve(),
        topology=topology,
    )
