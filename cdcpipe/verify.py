"""Is the read model equal to the source? cdc.users vs public.users, column by column.

Both sides are compared in one representation: uuids as text, timestamps as epoch
milliseconds rounded down (Cassandra's precision), everything else as the drivers return it.
Only PostgreSQL's columns are compared (Cassandra may keep columns the source dropped).
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

    with pg.cursor(row_factory=dict_row) as cur:
        if keys is None:
            rows = cur.execute("SELECT * FROM public.users").fetchall()
        else:
            rows = cur.execute("SELECT * FROM public.users WHERE id = ANY(%s::uuid[])", [[uuid.UUID(k) for k in keys]]).fetchall()
    return {str(r["id"]): {k: comparable(v) for k, v in r.items()} for r in rows}


def read_model_rows(session, columns: list[str], keys: Collection[str] | None = None, table: str = "users") -> dict[str, dict[str, Any]]:
    """cdc.<table> (only ``keys`` if given: IN queries of 100 keys, 16 in flight)."""
    from cassandra.concurrent import execute_concurrent_with_args
    from cassandra.query import SimpleStatement

    if keys is None:
        query = SimpleStatement(f"SELECT {', '.join(columns)} FROM cdc.{table}", fetch_size=5000)
        rows = session.execute(query, timeout=60)
    else:
        select = session.prepare(f"SELECT {', '.join(columns)} FROM cdc.{table} WHERE id IN ?")
        ordered = [uuid.UUID(k) for k in keys]
        chunks = [(ordered[i : i + 100],) for i in range(0, len(ordered), 100)]
        rows = []
        for ok, result in execute_concurrent_with_args(session, select, chunks, concurrency=16, raise_on_first_error=False):
            if not ok:
                raise result
            rows.extend(result)
    return {str(r.id): {c: comparable(getattr(r, c)) for c in columns} for r in rows}


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
    try:
        actual = read_model_rows(session, columns, keys, table)
    except InvalidRequest as exc:  # e.g. a new column the job has not added yet
        return {}, [str(exc)]
    return actual, differences(expected, actual)


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
