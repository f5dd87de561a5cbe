"""One way to open a Cassandra session, for the runtime, the CLI, the tests and the executors.

Protocol v5 and a DC-aware round-robin policy (the driver's default policy with an explicit
local DC warning silenced). The caller shuts the cluster down (``session.cluster.shutdown()``),
or uses :func:`session` as a context manager, which does it.

A login (:class:`cdcpipe.pipeline.logins.Login`) is given by the caller; the job's comes from
a 0600 credentials file in cqlsh's format, the same file ``cqlsh --credentials`` reads.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from .logins import Login

#: The consistency of the job's writes unless it is told otherwise: the one local node (on a
#: cluster with RF 3, LOCAL_QUORUM; ``--write-consistency``).
DEFAULT_WRITE_CONSISTENCY = "LOCAL_ONE"
#: Reads and writes on a cluster with RF 3: two of three replicas, so one node may be lost.
CLUSTER_CONSISTENCY = "LOCAL_QUORUM"


def contact_points(host: str, port: int) -> list[tuple[str, int]]:
    """``host`` is one address (served on ``port``) or a comma-separated list of
    ``address:port``, one per node of a cluster whose nodes share an address (the local
    runtime's cluster topology): the driver tries each until one answers, so a session opens
    with any node down."""
    points = []
    for item in (part.strip() for part in host.split(",")):
        if not item:
            continue
        address, sep, node_port = item.rpartition(":")
        if sep and address and node_port.isdigit():
            points.append((address, int(node_port)))
        else:
            points.append((item, port))
    if not points:
        raise ValueError(f"no Cassandra contact point in {host!r}")
    return points


def connect(
    host: str,
    port: int,
    keyspace: str | None = None,
    connect_timeout: float = 5,
    login: Login | None = None,
    consistency: str | None = None,
) -> Any:
    """A connected cassandra-driver session; its cluster is shut down if connecting fails.
    ``host``: see :func:`contact_points`. ``consistency``: the session's default level (the
    driver's, LOCAL_ONE, if None)."""
    from cassandra import ConsistencyLevel
    from cassandra.auth import PlainTextAuthProvider
    from cassandra.cluster import Cluster
    from cassandra.policies import DCAwareRoundRobinPolicy

    auth = PlainTextAuthProvider(login.username, login.password) if login else None
    cluster = Cluster(
        contact_points(host, port),
        port=port,
        connect_timeout=connect_timeout,
        protocol_version=5,
        load_balancing_policy=DCAwareRoundRobinPolicy(),
        auth_provider=auth,
    )
    try:
        opened = cluster.connect(keyspace)
    except Exception:
        cluster.shutdown()
        raise
    if consistency is not None:
        opened.default_consistency_level = ConsistencyLevel.name_to_value[consistency]
    return opened


@contextmanager
def session(host: str, port: int, keyspace: str | None = None, **options: Any) -> Iterator[Any]:
    """``with session(host, port) as s:`` — :func:`connect` (same options); the cluster is
    shut down on leaving."""
    opened = connect(host, port, keyspace, **options)
    try:
        yield opened
    finally:
        opened.cluster.shutdown()


def no_node_to_try(exc: Exception, cluster: Any) -> str | None:
    """When ``exc`` is a NoHostAvailable that names no node (the driver had none left to try:
    it had marked every one down, or the live ones' pools were gone), the state the driver
    sees each node in, e.g. ``127.0.0.1:9042 up, 127.0.0.1:9052 down``; else None. Without
    it the operator reads only "against any hosts, {}"."""
    from cassandra.cluster import NoHostAvailable

    if not isinstance(exc, NoHostAvailable) or exc.errors:
        return None
    hosts = sorted(cluster.metadata.all_hosts(), key=lambda h: str(h.endpoint))
    seen = ", ".join(f"{h.endpoint} {'up' if h.is_up else 'down'}" for h in hosts) or "no node at all"
    return f"no Cassandra node left to try; the driver sees {seen}"


def refused_login(exc: Exception) -> str | None:
    """The server's message when ``exc`` says the login was refused (bad or missing
    credentials), else None. The driver wraps it in NoHostAvailable, one error per host:
    a dict when the control connection failed, but only a list of addresses when that
    connection opened and every host's pool then failed (a node still starting) — no
    login refusal to read there."""
    from cassandra import AuthenticationFailed
    from cassandra.cluster import NoHostAvailable

    if isinstance(exc, NoHostAvailable):
        errors = list(exc.errors.values()) if isinstance(exc.errors, dict) else []
    else:
        errors = [exc]
    for error in errors:
        # A node that cannot read its roles (system_auth short of a quorum while nodes start)
        # says so as a failed authentication, though no credential was wrong.
        if "Unable to perform authentication" in str(error):
            continue
        if isinstance(error, AuthenticationFailed) or "AuthenticationFailed" in type(error).__name__:
            return str(error)
        if "Bad credentials" in str(error) or "requires authentication" in str(error):
            return str(error)
    return None
