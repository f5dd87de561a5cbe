"""What a row's nulls cost the reads after it: null cells against a row replacement (issue 27).

Until 2026-12-07 the sink wrote each null of a row image as a null, a cell tombstone; it now
writes a row image as a replacement, a partition tombstone just below the change and the
non-null values (``cassandra_sink``'s docstring). This writes the same changes both ways, into
two scratch tables made from ``cdc.users``' CQL, alternated, and then reads each table back as
``cdcpipe verify`` does (a full scan, 5,000 rows a page):

* the changes: ``--keys`` rows, each written ``--rewrites`` times with the soak's shape (id,
  username and the two timestamps set, every other column null), through the job's own sink;
* per table: seconds to write, seconds to scan after a flush, and the tombstone cells the scan
  read per live row (Cassandra's trace of the first page: "Read N live rows and M tombstone
  cells").

The null-cell write is a stand-in made here from the sink's own statements, its unset values
bound as nulls again: the old write, value for value. The tables are dropped whatever happens.

    .venv/bin/cdcpipe bench --null-cells --keys 50000
"""

from __future__ import annotations

import datetime as dt
import json
import re
import subprocess
import time
import uuid
from collections.abc import Callable
from typing import Any

from cassandra.query import UNSET_VALUE, SimpleStatement

from .. import runtime
from ..pipeline.cassandra_sink import CassandraSink
from ..pipeline.changes import STREAMING_BASE, Change
from ..runtime import migrations
from ..settings import Settings

MODES = ("null_cells", "replacement")


class NullCellSink(CassandraSink):
    """The write before 2026-12-07: one INSERT, each null bound as a null (a cell tombstone)."""

    def statements_for(self, change: Change):
        statements, size = super().statements_for(change)
        if change.is_delete:
            return statements, size
        upsert = statements[-1]
        upsert.values = [None if value is UNSET_VALUE else value for value in upsert.values]
        return [upsert], size - 24


def changes(keys: list[str], rewrites: int) -> list[list[Change]]:
    """Per rewrite round, one change of every key (the soak's row shape), positions ascending."""
    created = dt.datetime(2026, 12, 7, tzinfo=dt.UTC).isoformat()
    position = 1000
    rounds = []
    for round_ in range(rewrites):
        batch = []
        for key in keys:
            position += 100
            row = {"id": key, "username": f"nullbench-{round_}-{key[:8]}", "created_at": created, "updated_at": created}
            batch.append(Change(key, "c" if round_ == 0 else "u", row, STREAMING_BASE + position, position))
        rounds.append(batch)
    return rounds


def scan(session: Any, table: str) -> dict[str, Any]:
    """A full scan as verify pages it: seconds, live rows, and tombstone cells per live row."""
    started = time.monotonic()
    rows = sum(1 for _ in session.execute(SimpleStatement(f"SELECT * FROM cdc.{table}", fetch_size=5000), timeout=300))
    seconds = time.monotonic() - started
    traced = session.execute(SimpleStatement(f"SELECT * FROM cdc.{table}", fetch_size=5000), trace=True, timeout=300)
    found = [
        re.search(r"Read (\d+) live rows and (\d+) tombstone cells", event.description)
        for event in traced.get_query_trace(max_wait_sec=20).events
    ]
    live, tombstones = map(sum, zip(*[(int(m[1]), int(m[2])) for m in found if m])) if any(found) else (0, 0)
    return {"scan_s": round(seconds, 2), "rows": rows, "tombstones_per_live_row": round(tombstones / live, 1) if live else None}


def run(conf: Settings, keys: int, rewrites: int, rounds: int, say: Callable[[str], None] = print) -> list[dict[str, Any]]:
    """Both writes, ``rounds`` times alternated; one result per table (also passed to ``say``)."""
    cassandra = runtime.service(conf, "cassandra")
    ids = [str(uuid.uuid4()) for _ in range(keys)]
    results = []
    with cassandra.connected() as session:
        for round_ in range(rounds):
            for mode in MODES if round_ % 2 == 0 else reversed(MODES):
                table = f"users_nullbench_{uuid.uuid4().hex[:8]}"
                migrations.create_users_copy(session, table)
                try:
                    sink = (NullCellSink if mode == "null_cells" else CassandraSink)(session, "cdc", table)
                    started = time.monotonic()
                    for batch in changes(ids, rewrites):
                        for i in range(0, len(batch), 2000):
                            assert sink.apply(batch[i : i + 2000]) == []
                    written = time.monotonic() - started
                    flushed = subprocess.run(cassandra.nodetool_argv("flush", "cdc", table), capture_output=True, text=True, timeout=120)
                    if flushed.returncode != 0:
                        raise RuntimeError(f"nodetool flush: {flushed.stderr.strip() or flushed.stdout.strip()}")
                    result = {
                        "round": round_ + 1,
                        "mode": mode,
                        "changes": keys * rewrites,
                        "write_s": round(written, 2),
                        **scan(session, table),
                    }
                    say(json.dumps(result))
                    results.append(result)
                finally:
                    session.execute(f"DROP TABLE IF EXISTS cdc.{table}", timeout=120)
    return results


def summary(results: list[dict[str, Any]]) -> str:
    """One line per table written."""
    return "\n".join(
        f"round {r['round']} {r['mode']:<11} {r['changes']} changes written in {r['write_s']} s; "
        f"{r['rows']} rows scanned in {r['scan_s']} s, {r['tombstones_per_live_row']} tombstone cells per live row"
        for r in results
    )
