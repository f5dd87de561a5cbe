"""A small client for Kafka Connect's REST API: validate, register, watch and steer connectors."""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import quote

import requests

from .. import jsonfile
from ..errors import (
    CdcpipeError,
    ConfigError,
    ConnectorFailed,
    ConnectorInvalid,
    ConnectorResetFailed,
    HttpError,
    NotFound,
    ServiceUnavailable,
)
from ..settings import REPO

#: The connector definition the CLI, the demo and the tests register by default.
DEFAULT_FILE = REPO / "connectors" / "users-cdc.json"
#: The local runtime's one REST user; its password is the ``connect`` secret.
RUNTIME_USER = "cdcpipe"

__all__ = [
    "DEFAULT_FILE",
    "RUNTIME_USER",
    "ConnectClient",
    "ConnectorFailed",
    "ConnectorFile",
    "ConnectorInvalid",
    "register_and_wait",
    "summarize",
]


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
    """Connect's REST API at ``url``, logged in with ``auth`` (user, password) when given: the
    local runtime's comes from ``runtime.service(settings, "connect").client()``; for another
    Connect, ``from_env`` reads ``CDCPIPE_CONNECT_USER`` and ``CDCPIPE_CONNECT_PASSWORD``."""

    def __init__(self, url: str, timeout: float = 30.0, auth: tuple[str, str] | None = None):
        self.url = url.rstrip("/")
        self.timeout = timeout
        self.auth = auth

    @classmethod
    def from_env(cls, url: str, timeout: float = 30.0) -> ConnectClient:
        user, password = os.environ.get("CDCPIPE_CONNECT_USER"), os.environ.get("CDCPIPE_CONNECT_PASSWORD")
        return cls(url, timeout, (user, password or "") if user else None)

    def _call(self, method: str, path: str, **kwargs: Any) -> requests.Response:
        try:
            response = requests.request(method, self.url + path, timeout=self.timeout, auth=self.auth, **kwargs)
        except requests.ConnectionError:
            raise ServiceUnavailable(f"Kafka Connect is not reachable at {self.url}. Is the stack up? ('.venv/bin/cdcpipe up')") from None
        except requests.Timeout:
            raise ServiceUnavailable(f"Kafka Connect at {self.url} did not answer {method} {path} in {self.timeout:.0f}s") from None
        except requests.RequestException as exc:  # e.g. the worker restarted in the middle of its answer
            raise ServiceUnavailable(f"Kafka Connect at {self.url} broke off {method} {path}: {exc.__class__.__name__}") from None
        if response.status_code == 401:
            raise ConfigError(
                f"Kafka Connect at {self.url} refused "
                + ("the login it was given" if self.auth else "a request without a login")
                + " (401). The local runtime's login is the 'connect' entry of its secrets.json;"
                " for another Connect set CDCPIPE_CONNECT_USER and CDCPIPE_CONNECT_PASSWORD."
            )
        return response

    def _body(self, response: requests.Response) -> Any:
        """The answer's JSON; ServiceUnavailable if it is not JSON (a worker still starting)."""
        try:
            return response.json()
        except ValueError:
            raise ServiceUnavailable(
                f"Kafka Connect at {self.url} answered {response.request.method} {response.url} with no JSON: {response.text[:120]!r}"
            ) from None

    def _json(self, method: str, path: str, ok: tuple[int, ...] = (200, 201, 202, 204), **kwargs: Any) -> Any:
        response = self._call(method, path, **kwargs)
        if response.status_code not in ok:
            try:
                message = response.json().get("message", response.text)
            except (ValueError, AttributeError):  # not JSON, or not an object
                message = response.text
            raise HttpError.of("Kafka Connect", method, self.url + path, response.status_code, message)
        return self._body(response) if response.content else None

    # --- configuration ---------------------------------------------------------------
    def validation(self, connector: ConnectorFile) -> dict[str, Any]:
        """Connect's answer to validating ``connector``'s config, as it gives it."""
        plugin = connector.config["connector.class"].rsplit(".", 1)[-1]
        return self._json("PUT", f"/connector-plugins/{plugin}/config/validate", json={**connector.config, "name": connector.name})

    def validate(self, connector: ConnectorFile) -> None:
        """Raise ConnectorInvalid listing every field Connect's validation rejects."""
        result = self.validation(connector)
        errors: dict[str, list[str]] = {}
        for entry in result.get("configs", []):
            value = entry.get("value", {})
            if value.get("errors"):
                errors[value["name"]] = value["errors"]
        if result.get("error_count", 0) and errors:
            raise ConnectorInvalid(connector.name, errors)

    def put_config(self, connector: ConnectorFile) -> bool:
        """Create or update the connector; True if it was created."""
        response = self._call("PUT", f"/connectors/{quote(connector.name, safe='')}/config", json=connector.config)
        if response.status_code not in (200, 201):
            raise HttpError.of(
                "Kafka Connect", "PUT", response.url, response.status_code, f"connector '{connector.name}' refused: {response.text}"
            )
        return response.status_code == 201

    def config(self, name: str) -> dict[str, str] | None:
        response = self._call("GET", f"/connectors/{quote(name, safe='')}/config")
        return self._body(response) if response.status_code == 200 else None

    # --- state -----------------------------------------------------------------------
    def status(self, name: str) -> dict[str, Any]:
        response = self._call("GET", f"/connectors/{quote(name, safe='')}/status")
        if response.status_code == 404:
            raise NotFound("Kafka Connect", "GET", response.url, 404, f"no connector named '{name}'")
        if response.status_code != 200:
            raise HttpError.of("Kafka Connect", "GET", response.url, response.status_code, response.text[:300])
        return self._body(response)

    def plugins(self) -> list[dict[str, Any]]:
        """The connector plugins the worker loaded: [{"class", "type", "version"}, ...]."""
        return self._json("GET", "/connector-plugins")

    def list(self) -> list[str]:
        return self._json("GET", "/connectors")

    def pause(self, name: str) -> None:
        self._json("PUT", f"/connectors/{quote(name, safe='')}/pause")

    def resume(self, name: str) -> None:
        self._json("PUT", f"/connectors/{quote(name, safe='')}/resume")

    def restart(self, name: str) -> None:
        self._json("POST", f"/connectors/{quote(name, safe='')}/restart?includeTasks=true&onlyFailed=false")

    def reset_offsets(self, name: str, timeout: float = 120.0, on_wait: Callable[[str], None] | None = None) -> dict[str, Any]:
        """Forget the connector's source offsets and run it again; returns its RUNNING status.

        After a lost slot Debezium refuses to start from offsets the new slot cannot serve;
        without offsets, with snapshot.mode=initial, it snapshots again and streams from a new
        slot (follow with ``cdcpipe resync``: the read model may still hold the gap's rows).

        Connect's offsets API (KIP-875, Connect 3.6+) is three asynchronous steps, each waited
        for here: ``PUT /stop`` answers 202 and the connector reaches STOPPED (no tasks) later;
        ``DELETE /offsets`` is refused until then; ``PUT /resume`` answers 202 too. A resume
        sent right after the reset was seen to leave the connector STOPPED, so it is sent again
        while the connector stays STOPPED, until the connector and its tasks are RUNNING.
        """
        deadline = time.monotonic() + timeout
        say = on_wait or (lambda message: None)

        def left() -> float:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise ConnectorResetFailed(name, f"not done in {timeout:.0f}s: {summarize(self._status_or_empty(name))}")
            return remaining

        self._retrying(lambda: self._json("PUT", f"/connectors/{quote(name, safe='')}/stop"), left)
        while not self._stopped(self._status_or_empty(name)):
            left()
            time.sleep(0.5)
        say("stopped")
        self._retrying(lambda: self._json("DELETE", f"/connectors/{quote(name, safe='')}/offsets"), left)
        say("offsets deleted")
        while True:
            self._json("PUT", f"/connectors/{quote(name, safe='')}/resume")
            try:
                status = self.wait_for_state(name, "RUNNING", timeout=min(15.0, left()))
            except ConnectorFailed:
                raise
            except CdcpipeError:
                if self._stopped(self._status_or_empty(name)):
                    say("still STOPPED after resume: resuming again")
                    continue
                status = self.wait_for_state(name, "RUNNING", timeout=left())
            say("running")
            return status

    def _status_or_empty(self, name: str) -> dict[str, Any]:
        try:
            return self.status(name)
        except (HttpError, ServiceUnavailable):  # a worker restarting: no status for now
            return {}

    @staticmethod
    def _stopped(status: dict[str, Any]) -> bool:
        """STOPPED with no task running. A task that started between a create and the stop can
        stay listed as UNASSIGNED for good (its config is gone: ``GET /tasks`` is empty, and
        Connect accepts ``DELETE /offsets``); waiting for an empty list then hung a resync until
        its timeout and left the connector STOPPED (seen in CI after a lost slot)."""
        tasks = status.get("tasks") or []
        return status.get("connector", {}).get("state") == "STOPPED" and all(t.get("state") == "UNASSIGNED" for t in tasks)

    @staticmethod
    def _retrying(call: Callable[[], Any], left: Callable[[], float]) -> Any:
        """``call`` until Connect accepts it: right after a create, a stop or a rebalance it
        answers 409 (rebalance in progress) or 400 (not yet STOPPED) for a while."""
        while True:
            try:
                return call()
            except HttpError as exc:
                if exc.status not in (400, 409, 500):
                    raise
                left()
                time.sleep(0.5)

    def delete(self, name: str) -> None:
        self._json("DELETE", f"/connectors/{quote(name, safe='')}", ok=(200, 204, 404))

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
            except (HttpError, ServiceUnavailable):  # not created yet, or a worker restarting
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


def register_and_wait(
    client: ConnectClient,
    connector: ConnectorFile,
    timeout: float = 120.0,
    progress: Callable[[str], None] | None = None,
) -> tuple[str, dict[str, Any]]:
    """Validate ``connector``, create or update it, and wait until it and its tasks are RUNNING.

    Returns what happened to the config ("created", "updated" or "unchanged") and the final
    status; ``progress`` hears each step and each change of state while waiting. Raises
    ConnectorInvalid (fields listed), ConnectorFailed (trace) or CdcpipeError on timeout.
    ``cdcpipe connector register``, the demo and the tests all register through here.
    """
    say = progress or (lambda _message: None)
    say(f"validating connector '{connector.name}' ...")
    client.validate(connector)
    before = client.config(connector.name)
    created = client.put_config(connector)
    verb = "created" if created else ("updated" if before != {**connector.config, "name": connector.name} else "unchanged")
    say(f"connector '{connector.name}' {verb}; waiting for RUNNING ...")
    started = time.monotonic()
    last = [""]

    def on_wait(status: dict[str, Any]) -> None:
        text = summarize(status)
        if text != last[0]:
            say(f"  {text} ({time.monotonic() - started:.0f}s)")
            last[0] = text

    return verb, client.wait_for_state(connector.name, "RUNNING", timeout=timeout, on_wait=on_wait)


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
