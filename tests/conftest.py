"""Shared fixtures: the local runtime, started once per test session.

If the stack was already running, the session leaves it running; if the session started
it, it stops it again at the end when running in CI (CI=true).
"""

from __future__ import annotations

import os
import sys

import pytest

from cdcpipe import runtime, settings
from cdcpipe.services import Service


def _progress(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


@pytest.fixture(scope="session")
def conf() -> settings.Settings:
    return settings.load()


@pytest.fixture(scope="session")
def stack(conf) -> dict[str, Service]:
    """Every service of the local runtime, up and ready, by name."""
    was_running = all(svc.running() for svc in runtime.services(conf))
    services = runtime.up(conf, progress=_progress)
    yield {svc.name: svc for svc in services}
    if not was_running and os.environ.get("CI"):
        runtime.down(conf, progress=_progress)
