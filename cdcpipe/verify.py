"""Is the read model equal to the source? cdc.users vs public.users, column by column.

Both sides are compared in one representation: uuids as text, timestamps as epoch
milliseconds rounded down (Cassandra's precision), everything else as the drivers return it.
Every column both sides have is compared. A column only PostgreSQL has is a difference where
it holds a value (the job adds a new column with the first event that carries it); a column only Cassandra has
(dropped or renamed at the source) is reported, and is a difference wherever it still holds a
value: `cdcpipe resync` clears those. A source whose system identifier is not the one the
newest sync epoch recorded is a difference too (it needs `cdcpipe resync`).
"""

from __future__ import annotations

import datetime as dt
import time
import uuid
from collections.abc import Collection
from typing import Any

from .errors import Mismatch

EPOCH = dt.datetime(1970, 1, 1, tzinfo=dt.UTC)


def comparable(value: Any) -> Any:
    if isinstance(value, uuid.UUID):
        return str(value)
    if isinstance(value, dt.datetime):
        value = value if value.tzinfo else value.replace(tzinfo=dt.UTC)
        return ((value - EPOCH) // dt.timedelta(microseconds=1)) // 1000
    return value


def source_rows(pg, keys: Collection[str] | None = None) -> dict[str, dict[str, Any]]:
    """public.users (only ``keys`` if given) through a psycopg connection."""
    from psycopg.rows import dict_row
    from psycopg.types.string import TextLoader

    with pg.cursor(row_factory=dict_row) as cur:
        # json/jsonb as PostgreSQL's own text, which is what Debezium streams (and the job stores)
        cur.adapters.register_loader("json", TextLoader)
        cur.adapters.register_loader("jsonb", TextLoader)
        # prepare=False: a prepared SELECT * fails once the table's columns change ("cached
        # plan must not change result type"), and verify runs across schema changes.
        if keys is None:
            rows = cur.execute("SELECT * FROM public.users", prepare=False).fetchall()
        else:
            ids = [[uuid.UUID(k) for k in keys]]
            rows = cur.execute("SELECT * FROM public.users WHERE id = ANY(%s::uuid[])", ids, prepare=False).fetchall()
    return {str(r["id"]): {k: comparable(v) for k, v in r.items()} for r in rows}


def read_model_rows(session, columns: list[str], keys: Collection[str] | None = None, table: str = "users") -> dict[str, dict[str, Any]]:
    """cdc.<table> (only ``keys`` if given: IN queries of 100 keys, 16 in flight). Column names
    are quoted (mixed case, reserved words); rows come as tuples, whatever the session's factory."""
    from cassandra.concurrent import execute_concurrent_with_args
    from cassandra.query import SimpleStatement, tuple_factory

    from .pipeline.cassandra_sink import quote

    names = ["id", *[c for c in columns if c != "id"]]
    selected = ", ".join(map(quote, names))
    previous, session.row_factory = session.row_factory, tuple_factory
    try:
        if keys is None:
            rows = list(session.execute(SimpleStatement(f"SELECT {selected} FROM cdc.{table}", fetch_size=5000), timeout=60))
        else:
            select = session.prepare(f"SELECT {selected} FROM cdc.{table} WHERE id IN ?")
            ordered = [uuid.UUID(k) for k in keys]
            chunks = [(ordered[i : i + 100],) for i in range(0, len(ordered), 100)]
            rows = []
            for ok, result in execute_concurrent_with_args(session, select, chunks, concurrency=16, raise_on_first_error=False):
                if not ok:
                    raise result
                rows.extend(result)
    finally:
        session.row_factory = previous
    return {str(r[0]): {c: comparable(v) for c, v in zip(names, r) if c in columns} for r in rows}


def read_model_columns(session, table: str = "users") -> list[str]:
    session.cluster.refresh_table_metadata("cdc", table)
    return list(session.cluster.metadata.keyspaces["cdc"].tables[table].columns)


def differences(expected: dict, actual: dict, limit: int = 5) -> list[str]:
    out = []
    for key in sorted(set(expected) | set(actual)):
        if key not in actual:
            out.append(f"{key}: missing in Cassandra")
        elif key not in expected:
            out.append(f"{key}: in Cassandra but not in PostgreSQL")
        elif expected[key] != actual[key]:
            diff = {c: (expected[key][c], actual[key].get(c)) for c in expected[key] if expected[key][c] != actual[key].get(c)}
            out.append(f"{key}: {diff}")
        if len(out) >= limit:
            break
    return out


def compare(pg, session, keys: Collection[str] | None = None, table: str = "users") -> tuple[dict[str, dict[str, Any]], list[str]]:
    """(read model rows, differences) right now: every row, or only ``keys``, of cdc.<table>."""
    from cassandra import InvalidRequest
    from psycopg.rows import tuple_row

    expected = source_rows(pg, keys)
    with pg.cursor(row_factory=tuple_row) as cur:
        columns = [
            r[0]
            for r in cur.execute(
                "SELECT column_name FROM information_schema.columns "
                "WHERE table_schema = 'public' AND table_name = 'users' ORDER BY ordinal_position"
            )
        ]
    problems: list[str] = []
    identity = source_identity_problem(pg, session)
    if identity:
        problems.append(identity)
    try:
        cassandra_columns = read_model_columns(session, table)
    except (KeyError, InvalidRequest) as exc:
        return {}, [*problems, f"cdc.{table} unreadable: {exc}"]
    only_pg = [c for c in columns if c not in cassandra_columns]
    only_cassandra = [c for c in cassandra_columns if c not in columns]
    # A column only PostgreSQL has is equal wherever it is NULL (the job adds it with the first
    # event that carries a value; ADD COLUMN without DEFAULT emits no events).
    only_pg_holding = sorted({c for row in expected.values() for c in only_pg if row.get(c) is not None})
    if only_pg_holding:
        problems.append(f"columns only in PostgreSQL hold values: {', '.join(only_pg_holding)}")
    common = [c for c in columns if c in cassandra_columns]
    try:
        actual = read_model_rows(session, common + only_cassandra, keys, table)
    except InvalidRequest as exc:  # e.g. a column dropped meanwhile
        return {}, [*problems, str(exc)]
    if only_cassandra:
        holding = sorted({c for row in actual.values() for c in only_cassandra if row.get(c) is not None})
        if holding:
            problems.append(
                f"columns only in Cassandra still hold values (dropped or renamed at the source; "
                f"'cdcpipe resync' clears them): {', '.join(holding)}"
            )
        for row in actual.values():
            for c in only_cassandra:
                row.pop(c, None)
    expected = {k: {c: v for c, v in row.items() if c in common} for k, row in expected.items()}
    return actual, problems + differences(expected, actual)


def extra_columns(pg, session) -> list[str]:
    """Columns only Cassandra has (reported by ``cdcpipe verify``)."""
    from psycopg.rows import tuple_row

    with pg.cursor(row_factory=tuple_row) as cur:
        columns = {
            r[0]
            for r in cur.execute(
                "SELECT column_name FROM information_schema.columns WHERE table_schema = 'public' AND table_name = 'users'"
            )
        }
    return [c for c in read_model_columns(session) if c not in columns]


def source_identity_problem(pg, session) -> str | None:
    """A message when PostgreSQL's system identifier is not the one the newest epoch recorded."""
    from cassandra import InvalidRequest

    from .pipeline import sync_state
    from .resync import source_identity

    try:
        epochs = sync_state.load(session, "cdc.public.users")
    except InvalidRequest:  # no cdc.sync_state yet (a read model older than resync): nothing recorded
        return None
    recorded = next((e.system_identifier for e in reversed(epochs) if e.system_identifier), None)
    if recorded is None:
        return None
    current, _ = source_identity(pg, "cdc_users")
    if current != recorded:
        return (
            f"PostgreSQL's system identifier is {current}, but the read model was synced from {recorded}: "
            "the source was replaced; run 'cdcpipe resync'"
        )
    return None


def wait_until_equal(pg, session, timeout: float = 120.0, on_wait=None) -> dict[str, dict[str, Any]]:
    """Poll until cdc.users equals public.users; Mismatch with the first differences if not."""
    deadline = time.monotonic() + timeout
    while True:
        actual, diff = compare(pg, session)
        if not diff:
            return actual
        if time.monotonic() > deadline:
            raise Mismatch(f"cdc.users does not match public.users after {timeout:.0f}s: " + "; ".join(diff))
        if on_wait:
            on_wait(diff)
        time.sleep(1)
