"""Where the local runtime keeps things and which ports it binds.

Everything is read from the environment once, so the CLI, the tests and the Spark job
agree on addresses without any of them hard-coding one.

| env var               | default                     |
|-----------------------|-----------------------------|
| CDCPIPE_HOME          | <checkout>/.cdcpipe         |
| CDCPIPE_JARS          | <checkout>/build/jars       |
| CDCPIPE_PORT_<NAME>   | see DEFAULT_PORTS           |
| CDCPIPE_SPARK_MASTER  | local[2]                    |
| CDCPIPE_CONSOLE_ASSETS| <checkout>/build/console    |
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
    "airflow_log_server": 8793,  # Airflow's task log server (cdcpipe.airflow_log_server)
    "randomuser": 8089,  # the local randomuser.me stand-in (cdcpipe randomuser serve)
    "console": 8070,  # the browser console (cdcpipe console)
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

    def port(self, name: str) -> int:
        return self.ports[name]

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
    home = Path(env.get("CDCPIPE_HOME") or REPO / ".cdcpipe").resolve()
    jars = Path(env.get("CDCPIPE_JARS") or REPO / "build" / "jars").resolve()
    ports = {name: _port_from_env(env, name, default) for name, default in DEFAULT_PORTS.items()}
    return Settings(
        repo=REPO,
        home=home,
        jars=jars,
        ports=ports,
        spark_master=env.get("CDCPIPE_SPARK_MASTER") or "local[2]",
        console_assets=Path(env.get("CDCPIPE_CONSOLE_ASSETS") or REPO / "build" / "console").resolve(),
    )
