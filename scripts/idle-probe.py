#!/usr/bin/env python3
"""One insert into public.users after each idle gap; prints how long until it is readable in
cdc.users and the job's newest micro-batch durations (a cold Python worker shows in the first
change after a pause of more than a minute). Stack, connector and job running.

    .venv/bin/python scripts/idle-probe.py 2 75 2 75    # seconds of idle before each probe
"""

from __future__ import annotations

import sys
import time
import uuid

import psycopg

from cdcpipe import runtime
from cdcpipe import settings as cdcpipe_settings
from cdcpipe.bench.latency import PROBE_PREFIX, until_readable
from cdcpipe.runtime import streaming_job


def main(gaps: list[float]) -> None:
    settings = cdcpipe_settings.load()
    svcs = runtime.by_name(settings, ["postgres", "cassandra"])
    session = svcs["cassandra"].session()
    select = session.prepare("SELECT id FROM cdc.users WHERE id = ?")
    try:
        with psycopg.connect(svcs["postgres"].dsn(), autocommit=True) as pg:
            for gap in gaps:
                time.sleep(gap)
                user_id = uuid.uuid4()
                pg.execute("INSERT INTO public.users (id, username) VALUES (%s, %s)", [user_id, f"{PROBE_PREFIX}idle"])
                waited = until_readable(session, select, user_id, 120)
                time.sleep(0.5)  # the batch's progress is written once it has committed
                last = ((streaming_job.read_progress(settings) or {}).get("recent") or [{}])[-1]
                print(f"gap {gap:5.0f} s  readable {waited * 1000:6.0f} ms  newest batch {last.get('batchId')}: {last.get('durationMs')}")
            pg.execute("DELETE FROM public.users WHERE username LIKE %s", [PROBE_PREFIX + "%"])
    finally:
        session.cluster.shutdown()


if __name__ == "__main__":
    main([float(arg) for arg in sys.argv[1:]])
