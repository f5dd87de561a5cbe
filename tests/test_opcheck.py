"""The operations checker in CI: a bounded run of random operations on the session's stack.

Every operation (DML, DDL, kill -9 and `cdcpipe up`, resyncs, slot loss) is judged at the
quiet point after it: equal by the live verify, or the step the pipeline names is taken
and then equal (cdcpipe/opcheck.py). conftest runs this module last: it truncates
public.users and adds columns. Longer runs are on demand:
``make opcheck OPCHECK_ARGS="--seed 7 --ops 300 --budget 3600"``.
"""

from __future__ import annotations

import os

from cdc_helpers import wait_until_read_model_matches

from cdcpipe import opcheck, runtime

SEED = int(os.environ.get("CDCPIPE_OPCHECK_SEED", "20261205"))
BUDGET = float(os.environ.get("CDCPIPE_OPCHECK_BUDGET", "240"))


def test_random_operations_end_equal_or_with_a_step_that_works(conf, stack, connector, spark_job):
    checker = opcheck.Checker(conf, SEED, say=lambda m: print(m, flush=True))
    try:
        log = checker.run(ops=60, budget=BUDGET)
    finally:
        # Its columns and rows go also after a failure, so a rerun on this stack starts from
        # the usual table (the CLI keeps them after a failure, to be looked at).
        tidied = checker.tidy()
    print(f"\nopcheck seed {SEED}: {opcheck.summary(log)}")
    assert len(log) >= 10, log  # the budget let a real sequence run
    assert all(e.verdict.startswith("equal") for e in log), [(e.index, e.op, e.verdict) for e in log]
    assert log[-1] is tidied
    with runtime.service(conf, "postgres").connect(dbname="users", autocommit=True) as pg:
        columns = [c for (c,) in pg.execute("SELECT column_name FROM information_schema.columns WHERE table_name = 'users'")]
        assert not [c for c in columns if c.startswith("op")], columns
        assert pg.execute("SELECT count(*) FROM public.users WHERE username LIKE 'opcheck-%'").fetchone()[0] == 0
        with stack["cassandra"].connected() as session:
            wait_until_read_model_matches(pg, session)
