"""docker-compose.yml and its Dockerfiles, read without a Docker engine: helpers shared by
tests/test_compose.py (the file on its own) and tests/test_runtime_parity.py (the file
against the local runtime)."""

from __future__ import annotations

import shlex
from pathlib import Path

import yaml

from cdcpipe.settings import REPO

COMPOSE = REPO / "docker-compose.yml"


def load() -> dict:
    return yaml.safe_load(COMPOSE.read_text())


def dockerfile(build) -> Path:
    """The Dockerfile a service's ``build:`` (a path or a mapping) names."""
    if isinstance(build, str):
        return REPO / build / "Dockerfile"
    return REPO / build.get("context", ".") / build.get("dockerfile", "Dockerfile")


def topic_commands(compose: dict) -> list[list[str]]:
    """topics-init's script, one argv per command (continuation lines joined)."""
    script = "\n".join(compose["services"]["topics-init"]["command"]).replace("\\\n", " ")
    return [shlex.split(line) for line in script.splitlines() if line.strip()]


def option(argv: list[str], flag: str) -> list[str]:
    """Every value given to ``flag`` in ``argv`` (``--config a --config b`` -> [a, b])."""
    return [argv[i + 1] for i, arg in enumerate(argv) if arg == flag]
