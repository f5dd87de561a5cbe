"""The capture watchdog (:mod:`cdcpipe.runtime.watchdog`) as a service of the local runtime."""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path
from typing import Any

from ...settings import Settings
from .base import NotReady, Service


def state_file(conf: Settings) -> Path:
    """Where the watchdog writes its last check (the process writes, everyone else reads)."""
    return conf.service_dir("watchdog") / "state.json"


def read_state(conf: Settings) -> dict[str, Any] | None:
    """The watchdog's last check, or None before its first."""
    try:
        return json.loads(state_file(conf).read_text())
    except (OSError, ValueError):
        return None


class Watchdog(Service):
    name = "watchdog"
    depends_on = ("postgres", "connect")
    processes = ("watchdog",)
    start_timeout = 60.0

    def launch(self) -> None:
        self.dir.mkdir(parents=True, exist_ok=True)
        self.spawn("watchdog", [sys.executable, "-m", "cdcpipe.runtime.watchdog"], cwd=self.dir)

    def probe(self) -> None:
        state = read_state(self.settings)
        pid = self.pids()["watchdog"]
        if not state or state.get("pid") != pid:
            raise NotReady("no check written yet")
        if time.time() - state["checked_at"] > 120:
            raise NotReady(f"last check {time.time() - state['checked_at']:.0f}s ago")

    def info(self) -> dict[str, Any]:
        state = read_state(self.settings) or {}
        return {
            "capture": state.get("state"),
            "capture_reason": state.get("reason"),
            "heartbeat_age_s": state.get("heartbeat_age_s"),
            "slot_lag_bytes": state.get("slot_lag_bytes"),
            "slot_still_s": state.get("slot_still_s"),
            "connector_restarts": len(state.get("restarts") or []),
        }
