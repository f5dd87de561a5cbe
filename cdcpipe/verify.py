"""Is the read model equal to the source? cdc.users vs public.users, column by column.

Both sides are compared in one representation: uuids as text, timestamps as epoch
milliseconds rounded down (Cassandra's precision), everything else as the drivers return it.
Only PostgreSQL's columns are compared (Cassandra may keep columns the source dropped).
"""

from __future__ import annotations

import datetime as dt
import time
import uuid
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


def source_rows(pg) -> dict[str, dict[str, Any]]:
    """public.users through a psycopg connection with a dict row factory."""
    from psycopg.rows import dict_row

    with pg.cursor(row_factory=dict_row) as cur:
        rows = cur.execute("SELECT * FROM public.users").fetchall()
    return {str(r["id"]): {k: comparable(v) for k, v in r.items()} for r in rows}


def read_model_rows(session, columns: list[str]) -> dict[str, dict[str, Any]]:
    from cassandra.query import SimpleStatement

    query = SimpleStatement(f"SELECT {', '.join(columns)} FROM cdc.users", fetch_size=5000)
    return {str(r.id): {c: comparable(getattr(r, c)) for c in columns} for r in session.execute(query, timeout=60)}


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


def compare(pg, session) -> tuple[dict[str, dict[str, Any]], list[str]]:
    """(read model rows, differences) right now."""
    from cassandra import InvalidRequest
    from psycopg.rows import tuple_row

    expected = source_rows(pg)
    with pg.cursor(row_factory=tuple_row) as cur:
        columns = [
            r[0]
            for r in cur.execute(
                "SELECT column_name FROM information_schema.columns "
                "WHERE table_schema = 'public' AND table_name = 'users' ORDER BY ordinal_position"
            )
        ]
    try:
        actual = read_model_rows(session, columns)
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
