"""A small client for Airflow 3's REST API (v2): trigger a DAG run and follow it."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import requests

from .errors import CdcpipeError, ServiceUnavailable

FINISHED = {"success", "failed"}


class DagRunFailed(CdcpipeError):
    exit_code = 8


class AirflowClient:
    def __init__(self, url: str, username: str, password: str, timeout: float = 30.0):
        self.url = url.rstrip("/")
        self.timeout = timeout
        self._auth = (username, password)
        self._token: str | None = None

    def _request(self, method: str, path: str, **kwargs: Any) -> requests.Response:
        if self._token is None:
            self._token = self._login()
        try:
            response = requests.request(
                method, self.url + path, headers={"Authorization": f"Bearer {self._token}"}, timeout=self.timeout, **kwargs
            )
        except requests.ConnectionError:
            raise ServiceUnavailable(f"Airflow is not reachable at {self.url}. Is the stack up? ('.venv/bin/cdcpipe up')") from None
        if response.status_code >= 400:
            raise CdcpipeError(f"Airflow {method} {path} answered {response.status_code}: {response.text[:500]}")
        return response

    def _login(self) -> str:
        try:
            response = requests.post(
                self.url + "/auth/token", json={"username": self._auth[0], "password": self._auth[1]}, timeout=self.timeout
            )
        except requests.ConnectionError:
            raise ServiceUnavailable(f"Airflow is not reachable at {self.url}. Is the stack up? ('.venv/bin/cdcpipe up')") from None
        if response.status_code not in (200, 201):
            raise CdcpipeError(f"Airflow login as {self._auth[0]} failed ({response.status_code}): {response.text[:300]}")
        return response.json()["access_token"]

    def wait_for_dag(self, dag_id: str, timeout: float = 120.0) -> dict[str, Any]:
        """Wait until the dag-processor has parsed ``dag_id``."""
        deadline = time.monotonic() + timeout
        while True:
            try:
                return self._request("GET", f"/api/v2/dags/{dag_id}").json()
            except CdcpipeError as exc:
                if "404" not in str(exc) or time.monotonic() > deadline:
                    raise CdcpipeError(f"DAG {dag_id} is not known to Airflow after {timeout:.0f}s: {exc}") from None
                time.sleep(2)

    def unpause(self, dag_id: str) -> None:
        self._request("PATCH", f"/api/v2/dags/{dag_id}", json={"is_paused": False})

    def trigger(self, dag_id: str, conf: dict[str, Any]) -> dict[str, Any]:
        return self._request("POST", f"/api/v2/dags/{dag_id}/dagRuns", json={"logical_date": None, "conf": conf}).json()

    def run(self, dag_id: str, run_id: str) -> dict[str, Any]:
        return self._request("GET", f"/api/v2/dags/{dag_id}/dagRuns/{run_id}").json()

    def task_instances(self, dag_id: str, run_id: str) -> list[dict[str, Any]]:
        return self._request("GET", f"/api/v2/dags/{dag_id}/dagRuns/{run_id}/taskInstances").json()["task_instances"]

    def xcom(self, dag_id: str, run_id: str, task_id: str) -> Any:
        path = f"/api/v2/dags/{dag_id}/dagRuns/{run_id}/taskInstances/{task_id}/xcomEntries/return_value"
        return self._request("GET", path, params={"deserialize": "true"}).json().get("value")

    def wait(self, dag_id: str, run_id: str, timeout: float = 600.0, on_change: Callable[[str], None] | None = None) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        last = None
        while time.monotonic() < deadline:
            run = self.run(dag_id, run_id)
            states = ", ".join(f"{t['task_id']}={t.get('state')}" for t in self.task_instances(dag_id, run_id))
            line = f"{run['state']} [{states}]"
            if line != last and on_change:
                on_change(line)
            last = line
            if run["state"] in FINISHED:
                return run
            time.sleep(0.5)
        raise CdcpipeError(f"run {run_id} of {dag_id} not finished after {timeout:.0f}s: {last}")
