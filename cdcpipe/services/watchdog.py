"""The capture watchdog (:mod:`cdcpipe.watchdog`) as a service of the local runtime."""

from __future__ import annotations

import sys
import time
from typing import Any

from .base import NotReady, Service


class Watchdog(Service):
    name = "watchdog"
    depends_on = ("postgres", "connect")
    processes = ("watchdog",)
    start_timeout = 60.0

    def launch(self) -> None:
        self.dir.mkdir(parents=True, exist_ok=True)
        self.spawn("watchdog", [sys.executable, "-m", "cdcpipe.watchdog"], cwd=self.dir)

    def probe(self) -> None:
        from ..watchdog import read_state

        state = read_state(self.settings)
        pid = self.pids()["watchdog"]
        if not state or state.get("pid") != pid:
            raise NotReady("no check written yet")
        if time.time() - state["checked_at"] > 120:
            raise NotReady(f"last check {time.time() - state['checked_at']:.0f}s ago")

    def info(self) -> dict[str, Any]:
        from ..watchdog import read_state

        state = read_state(self.settings) or {}
        return {
            "capture": state.get("state"),
            "capture_reason": state.get("reason"),
            "heartbeat_age_s": state.get("heartbeat_age_s"),
            "slot_lag_bytes": state.get("slot_lag_bytes"),
            "connector_restarts": len(state.get("restarts") or []),
        }
