"""`cdcpipe verify` on a live pipeline: changes in flight are not differences, real ones are counted.

A writer changes rows at about 100 changes/s for the whole test. Against that load:
verify exits 0; with two real differences planted in Cassandra, it exits 9 and counts
exactly those two (one row only Cassandra has, one column that differs) and none of the
writer's keys; once they are repaired it exits 0 again.
"""

from __future__ import annotations

import json
import time
import uuid

import pytest
from cdc_helpers import run_cli, wait_for

from cdcpipe import verify
from cdcpipe.bench.latency import Load


@pytest.fixture
def writer(stack, spark_job):
    """``latency.Load``: inserts, updates and deletes at 100 changes/s until the test ends."""
    load = Load(stack["postgres"].dsn(), rate=100, seed=23)
    load.start()
    yield load
    load.stop.set()
    load.join(30)
    assert load.error is None, f"the writer failed: {load.error!r}"


def verify_json(*extra: str) -> tuple[int, dict]:
    result = run_cli("verify", "--json", *extra, timeout=300)
    assert result.stdout.strip(), result.stderr
    return result.returncode, json.loads(result.stdout.strip().splitlines()[-1])


def test_verify_under_live_writes_finds_exactly_the_real_differences(stack, pg, cassandra, writer):
    # The pipeline is caught up on the test's own rows first (the writer's rows come and go).
    extra_key = str(uuid.uuid4())
    changed_key = str(uuid.uuid4())
    pg.execute(
        "INSERT INTO public.users (id, username, email, city) VALUES (%s, %s, %s, %s)",
        (changed_key, f"verify-{changed_key[:8]}", f"{changed_key[:8]}@example.com", "Leuven"),
    )
    wait_for(
        lambda: cassandra.execute("SELECT city FROM cdc.users WHERE id = %s", (uuid.UUID(changed_key),)).one(),
        timeout=90,
        what="the test's row in cdc.users",
    )
    time.sleep(5)  # the writer is well under way

    code, report = verify_json()
    print("verify under load, nothing planted:", report["counts"], "rounds", report["rounds"], "rechecked", report["rechecked"])
    assert code == 0, report
    assert report["equal"] and report["rows"] > 0

    # Two real differences: a row only Cassandra has, and a column written in Cassandra just
    # above the pipeline's own write (so the next change of that row repairs it).
    written = cassandra.execute("SELECT writetime(city) FROM cdc.users WHERE id = %s", (uuid.UUID(changed_key),)).one()[0]
    cassandra.execute("UPDATE cdc.users USING TIMESTAMP %s SET city = 'planted' WHERE id = %s", (written + 1, uuid.UUID(changed_key)))
    cassandra.execute(
        "INSERT INTO cdc.users (id, username, city) VALUES (%s, 'planted', 'nowhere') USING TIMESTAMP 1", (uuid.UUID(extra_key),)
    )
    try:
        code, report = verify_json()
        print("verify under load, two planted:", report["counts"], report["differing_per_column"], "rounds", report["rounds"])
        assert code == 9, report
        assert report["extra"] == [extra_key]
        assert report["missing"] == []
        assert list(report["differing"]) == [changed_key]
        assert report["differing"][changed_key] == {"city": ["'Leuven'", "'planted'"]}
        assert report["differing_per_column"] == {"city": 1}
        assert report["counts"] == {"missing": 0, "extra": 1, "differing": 1, "unsettled": report["counts"]["unsettled"]}
        text = run_cli("verify", timeout=300)
        assert text.returncode == 9
        assert "DIFFERENT: 0 missing in Cassandra; 1 only in Cassandra; 1 differing (city 1)" in text.stdout, text.stdout
    finally:
        cassandra.execute("DELETE FROM cdc.users USING TIMESTAMP 2 WHERE id = %s", (uuid.UUID(extra_key),))
        pg.execute("UPDATE public.users SET city = 'Leuven again' WHERE id = %s", (changed_key,))

    wait_for(
        lambda: cassandra.execute("SELECT city FROM cdc.users WHERE id = %s", (uuid.UUID(changed_key),)).one()[0] == "Leuven again",
        timeout=60,
        what="the pipeline's next write over the planted value",
    )
    code, report = verify_json()
    print(f"verify after the repair: exit {code}, {report['counts']}; the writer made {writer.done} changes so far")
    assert code == 0, report


def test_resync_under_live_writes_ends_with_a_live_verify_that_passes(stack, writer, connector):
    """Issue 23: resync's own verify compared one instant, so rows changed in its last second
    counted as differences and the command exited 9 while writes went on."""
    time.sleep(3)  # the writer is well under way
    result = run_cli("resync", "--json", timeout=600)
    print(result.stderr[-2000:])
    assert result.returncode == 0, result.stdout + result.stderr
    summary = json.loads(result.stdout.strip().splitlines()[-1])
    print("resync under load:", {k: summary[k] for k in ("epoch", "rows_scanned", "seconds")}, summary["verify"]["counts"])
    assert summary["verify"]["equal"] and summary["verify"]["rows"] > 0
    assert writer.done > 300 and writer.error is None


def test_the_streamed_comparison_pages_both_sides_and_finds_what_the_whole_one_finds(pg, cassandra, scratch_users_table):
    """``judge_streamed`` (what `cdcpipe verify` runs) holds a page of rows per side, not both
    tables. Against a read model copied in part from cdc.users, with a row removed, a row
    added and a value changed, and pages small enough that both passes take several, it finds
    exactly what the whole-table ``judge`` finds, and the three planted differences."""
    table = scratch_users_table
    cassandra.cluster.refresh_table_metadata("cdc", table)
    names = [c for c in verify.read_model_columns(cassandra, table) if c in verify.read_model_columns(cassandra)]
    selected = ", ".join(f'"{c}"' for c in names)
    copied = list(cassandra.execute(f"SELECT {selected} FROM cdc.users LIMIT 600"))
    assert len(copied) >= 50, "the read model has too few rows to copy"
    insert = cassandra.prepare(f"INSERT INTO cdc.{table} ({selected}) VALUES ({', '.join('?' * len(names))})")
    for row in copied:
        cassandra.execute(insert, tuple(row))
    removed, changed = str(copied[0].id), copied[1].id
    cassandra.execute(f"DELETE FROM cdc.{table} WHERE id = %s", (uuid.UUID(removed),))
    cassandra.execute(f"UPDATE cdc.{table} SET city = 'planted' WHERE id = %s", (changed,))
    extra = str(uuid.uuid4())
    cassandra.execute(f"INSERT INTO cdc.{table} (id, username) VALUES (%s, 'planted')", (uuid.UUID(extra),))

    source_count = pg.execute("SELECT count(*) AS n FROM public.users").fetchone()["n"]
    # Several pages in each pass, and a bounded number of them: pass 1 reads the copy's rows.
    page = min(max(97, source_count // 200), len(copied) // 3)
    streamed = verify.judge_streamed(pg, cassandra, table=table, page=page)
    _, whole = verify.judge(pg, cassandra, table=table)
    print(f"streamed in pages of {page}: {streamed.summary()}")

    assert (sorted(streamed.missing), sorted(streamed.extra), streamed.differing, streamed.problems) == (
        sorted(whole.missing),
        sorted(whole.extra),
        whole.differing,
        whole.problems,
    )
    assert (streamed.source_rows, streamed.read_model_rows) == (whole.source_rows, whole.read_model_rows) == (source_count, len(copied))
    assert removed in streamed.missing and extra in streamed.extra
    source = pg.execute("SELECT city FROM public.users WHERE id = %s", (changed,)).fetchone()
    if source is not None:  # (a row the pipeline had not yet deleted is an extra instead)
        assert streamed.differing[str(changed)]["city"] == (source["city"], "planted")


def test_a_key_that_moves_between_the_passes_is_counted_once(pg, cassandra, scratch_users_table, monkeypatch):
    """Pass 1 finds a row different; the pipeline deletes it from the read model before pass 2
    looks the source's keys up (here: deleted right before that lookup). It is one differing
    key, not also a missing one."""
    table = scratch_users_table
    row = pg.execute("SELECT id, city FROM public.users LIMIT 1").fetchone()
    assert row is not None, "public.users is empty"
    cassandra.execute(f"INSERT INTO cdc.{table} (id, city) VALUES (%s, 'planted')", (row["id"],))
    lookup = verify.read_model_rows

    def deleted_first(session, names, keys, table_name="users"):
        cassandra.execute(f"DELETE FROM cdc.{table} WHERE id = %s", (row["id"],))
        return lookup(session, names, keys, table_name)

    monkeypatch.setattr(verify, "read_model_rows", deleted_first)
    report = verify.judge_streamed(pg, cassandra, table=table)
    assert str(row["id"]) in report.differing and report.differing[str(row["id"])]["city"] == (row["city"], "planted")
    assert str(row["id"]) not in report.missing
    assert len(report.missing) == report.source_rows - 1  # every other source key: the copy holds none of them


def test_the_report_counts_what_one_comparison_finds():
    report = verify.key_differences(
        {"a": {"id": "a", "city": "x"}, "b": {"id": "b", "city": "y"}, "c": {"id": "c", "city": "z"}},
        {"b": {"id": "b", "city": "y"}, "c": {"id": "c", "city": "w"}, "d": {"id": "d", "city": "v"}},
        verify.Report(source_rows=3, read_model_rows=3),
    )
    assert (report.missing, report.extra, list(report.differing)) == (["a"], ["d"], ["c"])
    assert report.per_column() == {"city": 1}
    assert report.summary() == "DIFFERENT: 1 missing in Cassandra; 1 only in Cassandra; 1 differing (city 1); 0 table-level problem(s)"
    assert report.to_json()["differing"] == {"c": {"city": ["'z'", "'w'"]}}
    assert not report.equal and verify.Report(source_rows=2).summary() == "equal: 2 rows"


def test_a_read_a_replica_failed_is_tried_again_until_the_deadline():
    """On the cluster a replica that had not yet applied a column the job had just added failed
    the scan (ReadFailure, "Unknown column ... during deserialization"): a judgement not made
    yet, tried again; one that keeps failing is raised as it came once the time is up."""
    from cassandra import ConsistencyLevel, ReadFailure

    failure = ReadFailure(
        "Unknown column rewritten_b3fd34", consistency=ConsistencyLevel.LOCAL_QUORUM, required_responses=2, received_responses=1, failures=1
    )
    answers = iter([failure, failure, ("rows", [])])

    def judge_once():
        answer = next(answers)
        if isinstance(answer, Exception):
            raise answer
        return answer

    assert verify._poll_until_equal(judge_once, timeout=30) == "rows"

    def always_fails():
        raise failure

    with pytest.raises(ReadFailure):
        verify._poll_until_equal(always_fails, timeout=1.5)
