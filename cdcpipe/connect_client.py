"""A small client for Kafka Connect's REST API: validate, register, watch and steer connectors."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import requests

from . import jsonfile
from .errors import CdcpipeError, ConfigError, ServiceUnavailable


class ConnectorInvalid(ConfigError):
    """Connect's validate endpoint rejected the config; ``errors`` maps field -> messages."""

    def __init__(self, name: str, errors: dict[str, list[str]]):
        self.errors = errors
        lines = [f"connector '{name}' config is invalid ({len(errors)} field(s)):"]
        lines += [f"  {field}: {'; '.join(msgs)}" for field, msgs in sorted(errors.items())]
        super().__init__("\n".join(lines))


class ConnectorFailed(CdcpipeError):
    """The connector or one of its tasks is FAILED; carries the first lines of the trace."""

    exit_code = 7


@dataclass(frozen=True)
class ConnectorFile:
    """A connector definition as Connect's POST /connectors takes it: {"name", "config"}."""

    name: str
    config: dict[str, str]

    @classmethod
    def load(cls, path: Path) -> ConnectorFile:
        data = jsonfile.read(path)
        if not isinstance(data, dict) or not isinstance(data.get("name"), str) or not isinstance(data.get("config"), dict):
            raise ConfigError(f'{path}: expected {{"name": "...", "config": {{...}}}}')
        config = {str(k): str(v) for k, v in data["config"].items()}
        if "connector.class" not in config:
            raise ConfigError(f"{path}: config has no connector.class")
        return cls(name=data["name"], config=config)


def _first_lines(trace: str | None, n: int = 8) -> str:
    return "\n".join((trace or "").strip().splitlines()[:n])


class ConnectClient:
    def __init__(self, url: str, timeout: float = 30.0):
        self.url = url.rstrip("/")
        self.timeout = timeout

    def _call(self, method: str, path: str, **kwargs: Any) -> requests.Response:
        try:
            return requests.request(method, self.url + path, timeout=self.timeout, **kwargs)
        except requests.ConnectionError:
            raise ServiceUnavailable(f"Kafka Connect is not reachable at {self.url}. Is the stack up? ('.venv/bin/cdcpipe up')") from None
        except requests.Timeout:
            raise ServiceUnavailable(f"Kafka Connect at {self.url} did not answer {method} {path} in {self.timeout:.0f}s") from None

    def _json(self, method: str, path: str, ok: tuple[int, ...] = (200, 201, 202, 204), **kwargs: Any) -> Any:
        response = self._call(method, path, **kwargs)
        if response.status_code not in ok:
            try:
                message = response.json().get("message", response.text)
            except ValueError:
                message = response.text
            raise CdcpipeError(f"Connect {method} {path} answered {response.status_code}: {message}")
        return response.json() if response.content else None

    # --- configuration ---------------------------------------------------------------
    def validate(self, connector: ConnectorFile) -> None:
        """Raise ConnectorInvalid listing every field Connect's validation rejects."""
        plugin = connector.config["connector.class"].rsplit(".", 1)[-1]
        result = self._json("PUT", f"/connector-plugins/{plugin}/config/validate", json={**connector.config, "name": connector.name})
        errors: dict[str, list[str]] = {}
        for entry in result.get("configs", []):
            value = entry.get("value", {})
            if value.get("errors"):
                errors[value["name"]] = value["errors"]
        if result.get("error_count", 0) and errors:
            raise ConnectorInvalid(connector.name, errors)

    def put_config(self, connector: ConnectorFile) -> bool:
        """Create or update the connector; True if it was created."""
        response = self._call("PUT", f"/connectors/{connector.name}/config", json=connector.config)
        if response.status_code not in (200, 201):
            raise CdcpipeError(f"Connect refused connector '{connector.name}' ({response.status_code}): {response.text}")
        return response.status_code == 201

    def config(self, name: str) -> dict[str, str] | None:
        response = self._call("GET", f"/connectors/{name}/config")
        return response.json() if response.status_code == 200 else None

    # --- state -----------------------------------------------------------------------
    def status(self, name: str) -> dict[str, Any]:
        response = self._call("GET", f"/connectors/{name}/status")
        if response.status_code == 404:
            raise CdcpipeError(f"no connector named '{name}' in Connect at {self.url}")
        response.raise_for_status()
        return response.json()

    def list(self) -> list[str]:
        return self._json("GET", "/connectors")

    def pause(self, name: str) -> None:
        self._json("PUT", f"/connectors/{name}/pause")

    def resume(self, name: str) -> None:
        self._json("PUT", f"/connectors/{name}/resume")

    def restart(self, name: str) -> None:
        self._json("POST", f"/connectors/{name}/restart?includeTasks=true&onlyFailed=false")

    def reset_offsets(self, name: str) -> None:
        """Forget the connector's source offsets (Connect 3.6+: stop, DELETE offsets, resume).
        With snapshot.mode=initial it then snapshots again and streams from a new slot; follow
        with `cdcpipe resync` so the new snapshot outranks what the read model holds."""
        deadline = time.monotonic() + 60
        while True:  # a connector created a moment ago may not answer yet
            try:
                self._json("PUT", f"/connectors/{name}/stop")
                break
            except CdcpipeError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.5)
        while self.status(name)["connector"]["state"] != "STOPPED":
            if time.monotonic() > deadline:
                raise CdcpipeError(f"connector '{name}' did not stop")
            time.sleep(0.5)
        self._json("DELETE", f"/connectors/{name}/offsets")
        self._json("PUT", f"/connectors/{name}/resume")

    def delete(self, name: str) -> None:
        self._json("DELETE", f"/connectors/{name}", ok=(200, 204, 404))

    def wait_for_state(
        self,
        name: str,
        want: str = "RUNNING",
        timeout: float = 90.0,
        on_wait: Callable[[dict[str, Any]], None] | None = None,
    ) -> dict[str, Any]:
        """Wait until the connector and all its tasks are ``want``; raise on FAILED or timeout."""
        deadline = time.monotonic() + timeout
        status: dict[str, Any] = {}
        while time.monotonic() < deadline:
            try:
                status = self.status(name)
            except CdcpipeError:
                time.sleep(0.5)
                continue
            failed = describe_failure(status)
            if failed:
                raise ConnectorFailed(failed)
            tasks = status.get("tasks", [])
            if status["connector"]["state"] == want and tasks and all(t["state"] == want for t in tasks):
                return status
            if on_wait:
                on_wait(status)
            time.sleep(0.5)
        raise CdcpipeError(f"connector '{name}' not {want} after {timeout:.0f}s: {summarize(status)}")


def summarize(status: dict[str, Any]) -> str:
    if not status:
        return "no status yet"
    tasks = ", ".join(f"task {t['id']} {t['state']}" for t in status.get("tasks", [])) or "no tasks yet"
    return f"connector {status['connector']['state']}, {tasks}"


def describe_failure(status: dict[str, Any]) -> str | None:
    """A message with the first lines of the trace if the connector or a task FAILED."""
    name = status.get("name", "?")
    if status.get("connector", {}).get("state") == "FAILED":
        return f"connector '{name}' FAILED:\n{_first_lines(status['connector'].get('trace'))}"
    for task in status.get("tasks", []):
        if task.get("state") == "FAILED":
            return f"connector '{name}' task {task['id']} FAILED:\n{_first_lines(task.get('trace'))}"
    return None
