"""Airflow 3: api-server (UI + REST), scheduler and dag-processor, LocalExecutor.

Metadata lives in the runtime's PostgreSQL (database ``airflow``); the DAGs folder is the
repository's ``airflow/dags``; the ``users_db`` connection comes from the environment.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any
from urllib.parse import quote

import requests

from ...clients.airflow import AirflowClient
from ...errors import MissingDependency, ServiceFailed
from ...settings import private_dir, write_private
from .base import NotReady, Service

ADMIN_USER = "admin"


def airflow_bin() -> str:
    path = Path(sys.executable).parent / "airflow"
    if not path.exists():
        raise MissingDependency(f"{path} not found: Airflow is installed by 'make venv'")
    return str(path)


class Airflow(Service):
    name = "airflow"
    depends_on = ("postgres",)
    processes = ("airflow-api-server", "airflow-scheduler", "airflow-dag-processor", "airflow-log-server")
    port_names = ("airflow", "airflow_log_server")
    start_timeout = 240.0

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port()}"

    @property
    def dags_folder(self) -> Path:
        return self.settings.repo / "airflow" / "dags"

    def env(self) -> dict[str, str]:
        pg_host, pg_port = self.host, self.settings.port("postgres")
        pw = lambda user: quote(self.secrets[user], safe="")  # noqa: E731
        # A Fernet key is 32 url-safe base64 bytes; derive it from the runtime's secret.
        fernet = base64.urlsafe_b64encode(hashlib.sha256(self.secrets["airflow_jwt"].encode()).digest()).decode()
        env = {
            **os.environ,
            "AIRFLOW_HOME": str(self.dir),
            "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": f"postgresql+psycopg2://airflow:{pw('airflow')}@{pg_host}:{pg_port}/airflow",
            "AIRFLOW__CORE__EXECUTOR": "LocalExecutor",
            "AIRFLOW__CORE__DAGS_FOLDER": str(self.dags_folder),
            "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
            "AIRFLOW__CORE__FERNET_KEY": fernet,
            "AIRFLOW__CORE__PARALLELISM": "4",
            "AIRFLOW__CORE__EXECUTION_API_SERVER_URL": f"{self.url}/execution/",
            "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_USERS": f"{ADMIN_USER}:admin",
            "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_PASSWORDS_FILE": str(self.passwords_file),
            "AIRFLOW__API__HOST": self.host,
            "AIRFLOW__API__PORT": str(self.port()),
            "AIRFLOW__API__WORKERS": "1",
            "AIRFLOW__API__BASE_URL": self.url,
            "AIRFLOW__API__SECRET_KEY": self.secrets["airflow_jwt"],
            "AIRFLOW__API_AUTH__JWT_SECRET": self.secrets["airflow_jwt"],
            "AIRFLOW__DAG_PROCESSOR__PARSING_PROCESSES": "1",
            "AIRFLOW__DAG_PROCESSOR__REFRESH_INTERVAL": "30",
            "AIRFLOW__SCHEDULER__ENABLE_HEALTH_CHECK": "False",
            "AIRFLOW__LOGGING__BASE_LOG_FOLDER": str(self.dir / "logs"),
            # Task logs are served by cdcpipe.runtime.airflow_log_server on 127.0.0.1 (the scheduler's
            # own log server would listen on every interface), and the api-server asks for
            # them at 127.0.0.1, not at the machine's name.
            "AIRFLOW__LOGGING__WORKER_LOG_SERVER_PORT": str(self.port("airflow_log_server")),
            "AIRFLOW__CORE__HOSTNAME_CALLABLE": "cdcpipe.runtime.airflow_log_server.loopback_hostname",
            # The pipeline's database, for the DAGs (PostgresHook conn id users_db).
            "AIRFLOW_CONN_USERS_DB": f"postgresql://cdcpipe:{pw('cdcpipe')}@{pg_host}:{pg_port}/users",
            # The local randomuser stand-in's origin and API key (users_etl/api.py sends the key
            # to that origin only).
            "AIRFLOW_CONN_RANDOMUSER_API": json.dumps(
                {
                    "conn_type": "http",
                    "host": f"http://{self.host}:{self.settings.port('randomuser')}",
                    "password": self.secrets["randomuser"],
                }
            ),
        }
        return env

    @property
    def passwords_file(self) -> Path:
        return self.dir / "passwords.json"

    def prepare(self) -> None:
        private_dir(self.dir)
        # The simple auth manager generates passwords only for users missing from this file.
        write_private(self.passwords_file, json.dumps({ADMIN_USER: self.secrets["airflow_admin"]}))
        done = subprocess.run([airflow_bin(), "db", "migrate"], env=self.env(), capture_output=True, text=True, cwd=self.dir)
        if done.returncode != 0:
            raise ServiceFailed("airflow", "'airflow db migrate' failed", (done.stdout + done.stderr)[-4000:], "airflow db migrate")

    def launch(self) -> None:
        env = self.env()
        self.spawn("airflow-api-server", [airflow_bin(), "api-server"], env=env, cwd=self.dir)
        self.spawn("airflow-scheduler", [airflow_bin(), "scheduler", "--skip-serve-logs"], env=env, cwd=self.dir)
        self.spawn("airflow-dag-processor", [airflow_bin(), "dag-processor"], env=env, cwd=self.dir)
        self.spawn("airflow-log-server", [sys.executable, "-m", "cdcpipe.runtime.airflow_log_server"], env=env, cwd=self.dir)

    def health(self) -> dict[str, Any]:
        return requests.get(self.url + "/api/v2/monitor/health", timeout=5).json()

    def probe(self) -> None:
        try:
            health = self.health()
        except (requests.RequestException, ValueError) as exc:
            raise NotReady(f"api-server not answering on {self.url}: {exc.__class__.__name__}") from None
        for part in ("metadatabase", "scheduler", "dag_processor"):
            status = (health.get(part) or {}).get("status")
            if status != "healthy":
                raise NotReady(f"{part} is {status or 'not reporting'}")
        log_server = f"http://{self.host}:{self.port('airflow_log_server')}/log/"
        try:
            requests.get(log_server, timeout=5)  # any answer will do: it wants a signed token
        except requests.RequestException as exc:
            raise NotReady(f"task log server not answering on {log_server}: {exc.__class__.__name__}") from None

    def token(self) -> str:
        """A JWT for the REST API, for the admin login."""
        response = requests.post(
            self.url + "/auth/token",
            json={"username": ADMIN_USER, "password": self.secrets["airflow_admin"]},
            timeout=10,
        )
        response.raise_for_status()
        return response.json()["access_token"]

    def client(self) -> AirflowClient:
        """A REST client logged in as the runtime's admin."""
        return AirflowClient(self.url, ADMIN_USER, self.secrets["airflow_admin"])

    def info(self) -> dict[str, Any]:
        return {
            "url": self.url,
            "ui_url": self.url,
            "login": f"{ADMIN_USER}, password: cdcpipe secret airflow_admin",
            "username": ADMIN_USER,
            "dags_folder": str(self.dags_folder),
        }
