"""What every executor task is given: the one home for the keys of the sink's configuration.

The job's driver builds it from its options (``executor_conf`` in
spark_jobs/users_to_cassandra.py) and the benchmarks from the running job's settings
(``bench.end_to_end.job_writer_conf``); ``apply.executor_sink`` keeps one Cassandra session
and one registry client per worker process for each distinct configuration. It stays a plain
dict at run time: Spark pickles it into every task, and its JSON is the session's cache key.
"""

from __future__ import annotations

from typing import TypedDict


class SinkConfig(TypedDict, total=False):
    """The executors' settings; every key but the topics is needed to write."""

    cassandra_host: str  # one address, or "address:port" pairs (contact points)
    cassandra_port: int
    cassandra_credentials: str | None  # a 0600 login file; None on a Cassandra without authentication
    keyspace: str
    table: str
    registry_url: str
    registry_credentials: str | None  # a 0600 login file; None on a registry without one
    write_consistency: str  # a consistency level's name, e.g. LOCAL_QUORUM
    topic: str  # the table's CDC topic (default pipeline.schema_changes.USERS_TOPIC)
    schema_changes_topic: str  # the DDL journal's topic (default pipeline.schema_changes.JOURNAL_TOPIC)
