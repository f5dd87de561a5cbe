"""Writing rows to public.users in one transaction, touching only rows that changed."""

from __future__ import annotations

from typing import Any

from .transform import COLUMNS

_UPDATABLE = [c for c in COLUMNS if c != "id"]

# ON CONFLICT ... DO UPDATE ... WHERE IS DISTINCT FROM: an identical row is not updated, so a
# rerun with the same data writes no WAL for it and Debezium emits no event.
UPSERT = (
    f"INSERT INTO public.users ({', '.join(COLUMNS)}) VALUES ({', '.join(['%s'] * len(COLUMNS))}) "
    f"ON CONFLICT (id) DO UPDATE SET {', '.join(f'{c} = EXCLUDED.{c}' for c in _UPDATABLE)} "
    f"WHERE ({', '.join(f'users.{c}' for c in _UPDATABLE)}) IS DISTINCT FROM "
    f"({', '.join(f'EXCLUDED.{c}' for c in _UPDATABLE)}) "
    "RETURNING (xmax = 0) AS inserted"
)


def upsert_rows(conn, rows: list[dict[str, Any]]) -> dict[str, int]:
    """Upsert in the caller's transaction; counts of inserted, updated and unchanged rows."""
    inserted = updated = 0
    with conn.cursor() as cur:
        for row in rows:
            cur.execute(UPSERT, [row[c] for c in COLUMNS])
            result = cur.fetchone()
            if result is None:
                continue  # identical: nothing written
            if result[0]:
                inserted += 1
            else:
                updated += 1
    return {"inserted": inserted, "updated": updated, "unchanged": len(rows) - inserted - updated}
