"""The local runtime's services, in start order."""

from __future__ import annotations

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

__all__ = ["SERVICES", "NotReady", "Service"]
