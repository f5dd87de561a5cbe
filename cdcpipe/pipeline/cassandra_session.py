"""One way to open a Cassandra session, for the runtime, the CLI, the tests and the executors.

Protocol v5 and a DC-aware round-robin policy (the driver's default policy with an explicit
local DC warning silenced). The caller shuts the cluster down (``session.cluster.shutdown()``),
or uses :func:`session` as a context manager, which does it.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any


def connect(host: str, port: int, keyspace: str | None = None, connect_timeout: float = 5) -> Any:
    """A connected cassandra-driver session; its cluster is shut down if connecting fails."""
    from cassandra.cluster import Cluster
    from cassandra.policies import DCAwareRoundRobinPolicy

    cluster = Cluster(
        [host], port=port, connect_timeout=connect_timeout, protocol_version=5, load_balancing_policy=DCAwareRoundRobinPolicy()
    )
    try:
        return cluster.connect(keyspace)
    except Exception:
        cluster.shutdown()
        raise


@contextmanager
def session(host: str, port: int, keyspace: str | None = None, connect_timeout: float = 5) -> Iterator[Any]:
    """``with session(host, port) as s:`` — the cluster is shut down on leaving."""
    opened = connect(host, port, keyspace, connect_timeout)
    try:
        yield opened
    finally:
        opened.cluster.shutdown()
