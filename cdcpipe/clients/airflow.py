"""A small client for Airflow 3's REST API (v2), and :func:`run_dag`: trigger a DAG run and
follow it to its end — what ``cdcpipe ingest``/``churn``, the demo and the tests all use."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Any

import requests

from ..errors import CdcpipeError, DagRunFailed, HttpError, NotFound, ServiceUnavailable

if TYPE_CHECKING:
    pass

FINISHED = {"success", "failed"}


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
            raise HttpError.of("Airflow", method, self.url + path, response.status_code, response.text[:500])
        return response

    def _login(self) -> str:
        try:
            response = requests.post(
                self.url + "/auth/token", json={"username": self._auth[0], "password": self._auth[1]}, timeout=self.timeout
            )
        except requests.ConnectionError:
            raise ServiceUnavailable(f"Airflow is not reachable at {self.url}. Is the stack up? ('.venv/bin/cdcpipe up')") from None
        if response.status_code not in (200, 201):
            raise HttpError.of(
                "Airflow", "POST", self.url + "/auth/token", response.status_code, f"login as {self._auth[0]} failed: {response.text[:300]}"
            )
        return response.json()["access_token"]

    def wait_for_dag(self, dag_id: str, timeout: float = 120.0) -> dict[str, Any]:
        """Wait until the dag-processor has parsed ``dag_id``."""
        deadline = time.monotonic() + timeout
        while True:
            try:
                return self._request("GET", f"/api/v2/dags/{dag_id}").json()
            except NotFound as exc:  # the dag-processor has not parsed the file yet
                if time.monotonic() > deadline:
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


@dataclass(frozen=True)
class DagRun:
    """How a run ended: ``result`` is the XCom of the run's result task (None if it failed)."""

    dag_id: str
    run_id: str
    state: str
    seconds: float  # from the trigger to the end
    result: Any

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def run_dag(
    client: AirflowClient,
    dag_id: str,
    conf: dict[str, Any],
    result_task: str,
    timeout: float = 600.0,
    progress: Callable[[str], None] | None = None,
) -> DagRun:
    """Unpause ``dag_id`` (a paused DAG's run stays queued), trigger it with ``conf`` and wait
    for the end. Raises DagRunFailed naming the failed tasks; ``progress`` hears each change
    of the run's and its tasks' states."""
    say = progress or (lambda _message: None)
    client.wait_for_dag(dag_id)
    client.unpause(dag_id)
    run_id = client.trigger(dag_id, conf)["dag_run_id"]
    say(f"triggered {dag_id} run {run_id} with {conf}")
    started = time.monotonic()
    final = client.wait(dag_id, run_id, timeout, on_change=lambda line: say(f"  {time.monotonic() - started:5.0f}s {line}"))
    seconds = round(time.monotonic() - started, 1)
    if final["state"] != "success":
        failed = [t["task_id"] for t in client.task_instances(dag_id, run_id) if t.get("state") == "failed"]
        raise DagRunFailed(
            f"{dag_id} run {run_id} {final['state']} after {seconds}s (failed tasks: {', '.join(failed) or '?'}); "
            "see the task logs in the Airflow UI",
            run=DagRun(dag_id, run_id, final["state"], seconds, None),
        )
    return DagRun(dag_id, run_id, final["state"], seconds, client.xcom(dag_id, run_id, result_task))
