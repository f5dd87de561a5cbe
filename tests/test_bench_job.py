"""`cdcpipe bench` (``make bench``: the job alone) on the real stack, small: its own job
applies a backlog into ``cdc.users_bench`` and must leave exactly the rows its events leave.
No timed assertion: the figures are printed, not judged.

Added after the command had hung for a day unnoticed: its job has no schema-change journal,
and every micro-batch asked Cassandra for the epochs of an empty topic name ("Key may not be
empty"), retried for good while the bench waited 900 s for it.
"""

from __future__ import annotations

import json
import os
import sys

import pytest
from cdc_helpers import run_cli

from cdcpipe.bench import job
from cdcpipe.errors import CdcpipeError


def test_the_job_alone_applies_its_backlog_exactly(stack, spark_job, cassandra):
    done = run_cli("bench", "--events", "4000", "--keys", "800", "--warmup", "400", "--json", timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    print(done.stderr, file=sys.stderr)
    report = json.loads(done.stdout)
    assert report["correct"] is True and report["rows_in_cassandra"] == report["rows_expected"] > 0, report
    assert report["events"] == 4000 and report["batches"] >= 1
    assert report["sustained_events_per_s"] > 0 and report["rows_written_per_s"] > 0
    # it cleans up after itself: its table emptied, its topic deleted
    assert cassandra.execute("SELECT count(*) FROM cdc.users_bench").one()[0] == 0
    assert report["topic"].startswith("bench.")
    assert report["topic"] not in stack["kafka"].admin().list_topics(timeout=30).topics


def _progress_file(tmp_path, failure):
    progress = tmp_path / "progress.json"
    progress.write_text(
        json.dumps({"state": "retrying" if failure else "running", "failure": failure, "recent": [], "totals": {"records": 0}})
    )
    log = tmp_path / "job.log"
    log.write_text("the job's log\n")
    return progress, log


def test_a_bench_job_that_keeps_failing_is_reported_with_its_reason_not_waited_for(tmp_path):
    failure = {"reason": "InvalidRequest: Key may not be empty", "since": 0, "attempts": job.RETRIES_TOLERATED}
    progress, log = _progress_file(tmp_path, failure)
    with pytest.raises(CdcpipeError, match=f"failed {job.RETRIES_TOLERATED} times in a row: InvalidRequest: Key may not be empty"):
        job._wait_done(progress, 10, os.getpid(), log, timeout=30)


@pytest.mark.parametrize("failure", [None, {"reason": "OperationTimedOut", "since": 0, "attempts": 2}], ids=["recovered", "failed twice"])
def test_a_bench_job_that_failed_less_often_is_waited_for(tmp_path, failure):
    progress, log = _progress_file(tmp_path, failure)
    with pytest.raises(CdcpipeError, match="did not finish 10 events in 2s"):
        job._wait_done(progress, 10, os.getpid(), log, timeout=2)
