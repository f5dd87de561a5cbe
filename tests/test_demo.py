"""`make demo`'s steps, end to end on the session's stack: Cassandra equals PostgreSQL after."""

from __future__ import annotations

import psycopg
from cdc_helpers import run_cli

from cdcpipe import verify


def test_demo_journey_ends_with_an_equal_read_model(stack):
    out = run_cli("demo", "--results", "50", timeout=1500)
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
    # This machine cannot reach randomuser.me: the demo must say so and use the stand-in.
    assert "is not reachable from here: using the local stand-in" in out.stdout
    assert "cdc.users equals public.users" in out.stdout
    assert "first_name" in out.stdout  # the cqlsh query ran
    # It ends with the console's address and login.
    assert out.stdout.rstrip().splitlines()[-1].startswith("Watch the pipeline in the console: http://127.0.0.1:")
    with stack["cassandra"].connected() as session, psycopg.connect(stack["postgres"].dsn()) as pg:
        rows, diff = verify.compare(pg, session)
    assert diff == [] and len(rows) >= 50
