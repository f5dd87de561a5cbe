"""The local runtime's services, in start order, and the lookups by name.

The lookups are here, not in :mod:`cdcpipe.runtime`: the streaming job's module needs the
services' addresses, and the runtime needs the job (``up`` starts it again), so taking them
from the runtime made a circle.
"""

from __future__ import annotations

from collections.abc import Iterable

from ...errors import ConfigError
from ...settings import Settings
from .. import credentials
from .airflow import Airflow
from .base import NotReady, Service
from .cassandra import Cassandra
from .connect import Connect
from .console import Console
from .kafka import Kafka
from .postgres import Postgres
from .schema_registry import SchemaRegistry
from .spark import Spark
from .watchdog import Watchdog

SERVICES: tuple[type[Service], ...] = (Postgres, Kafka, SchemaRegistry, Connect, Cassandra, Spark, Airflow, Watchdog, Console)


def services(settings: Settings, names: Iterable[str] | None = None, *, with_dependencies: bool = True) -> list[Service]:
    """Service objects in start order: all, or ``names`` (and, by default, what they depend on)."""
    secrets = credentials.load(settings)
    all_services = {cls.name: cls(settings, secrets) for cls in SERVICES}
    if names is None:
        return list(all_services.values())
    unknown = set(names) - set(all_services)
    if unknown:
        raise ConfigError(f"unknown service(s): {', '.join(sorted(unknown))}; known: {', '.join(all_services)}")
    wanted: set[str] = set()

    def add(name: str) -> None:
        if name not in wanted:
            wanted.add(name)
            for dep in all_services[name].depends_on:
                add(dep)

    for name in names:
        if with_dependencies:
            add(name)
        else:
            wanted.add(name)
    return [svc for name, svc in all_services.items() if name in wanted]


def by_name(settings: Settings, names: Iterable[str]) -> dict[str, Service]:
    """``names`` (and what they depend on) as a dict by name: ``by_name(s, ["kafka"])["kafka"]``."""
    return {svc.name: svc for svc in services(settings, names)}


def service(settings: Settings, name: str) -> Service:
    """The one service called ``name`` (``kafka``, ``connect``, ...), for its address and secrets."""
    return services(settings, [name], with_dependencies=False)[0]


__all__ = ["SERVICES", "NotReady", "Service", "by_name", "service", "services"]
