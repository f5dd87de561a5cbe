"""The browser console (``python -m cdcpipe.console``): one Python process on 127.0.0.1.

A thin web layer over the package's own clients (Kafka admin and consumer, the registry's
Confluent-compatible API, Connect's REST API, the Spark job's progress file, Cassandra); see
:mod:`cdcpipe.console`. Every request needs the generated ``console`` login (user ``admin``).
"""

from __future__ import annotations

import sys
from typing import Any

import requests

from ...settings import private_dir
from .base import NotReady, Service

ADMIN_USER = "admin"


class Console(Service):
    name = "console"
    depends_on = ("kafka", "schema_registry", "connect", "cassandra")
    processes = ("console",)
    port_names = ("console",)
    start_timeout = 60.0

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port()}"

    @property
    def auth(self) -> tuple[str, str]:
        return ADMIN_USER, self.secrets["console"]

    def launch(self) -> None:
        private_dir(self.dir)
        # Settings (home, ports) reach it through the inherited environment; the password it
        # reads from secrets.json itself, so it is on no command line.
        self.spawn("console", [sys.executable, "-m", "cdcpipe.console"], cwd=self.dir)

    def probe(self) -> None:
        try:
            response = requests.get(self.url + "/api/health", auth=self.auth, timeout=5)
        except requests.RequestException as exc:
            raise NotReady(f"not answering on {self.url}: {exc.__class__.__name__}") from None
        if response.status_code != 200:
            raise NotReady(f"/api/health answered {response.status_code}")

    def info(self) -> dict[str, Any]:
        return {
            "url": self.url,
            "ui_url": self.url,
            "login": f"{ADMIN_USER}, password: cdcpipe secret console",
            "username": ADMIN_USER,
        }
