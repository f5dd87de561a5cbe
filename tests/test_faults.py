"""Faults are normal: a service killed with SIGKILL under load, and the pipeline heals with
no step beyond `cdcpipe up`. Each test prints how long recovery took."""

from __future__ import annotations

import signal
import time
import uuid

from cdc_helpers import TOPIC, wait_until_read_model_matches
from cdcpipe import processes, runtime
from test_capture import ROW, insert


def kill(conf, service: str) -> None:
    """SIGKILL every process of ``service`` (whole trees), as a crash would."""
    for svc in runtime.services(conf, [service], with_dependencies=False):
        for proc in svc.processes:
            processes.stop(conf, proc, sig=signal.SIGKILL, timeout=5)


def _end_offset(bootstrap: str) -> int:
    from confluent_kafka import Consumer, TopicPartition

    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": f"test-{uuid.uuid4()}"})
    try:
        return consumer.get_watermark_offsets(TopicPartition(TOPIC, 0), timeout=10)[1]
    finally:
        consumer.close()


def wait_for(predicate, timeout: float, what: str):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.5)
    raise AssertionError(f"not within {timeout:.0f}s: {what}")


def test_cassandra_killed_right_after_a_batch_commits_loses_nothing(conf, stack, pg, spark_job):
    """Cassandra acknowledged a batch, the job committed its offsets, then Cassandra died.

    With a commit log that syncs before it acknowledges, those writes survive the crash; with
    the periodic one (sync every 10 s) they were gone and the checkpoint had moved past them.
    Then, with Cassandra down, the job retries (it does not exit), and once `cdcpipe up`
    brings Cassandra back it applies what arrived meanwhile.
    """
    acknowledged = [insert(pg, {**ROW, "city": f"acked-{i}"}) for i in range(40)]
    session = stack["cassandra"].session()
    try:
        select = session.prepare("SELECT id FROM cdc.users WHERE id = ?")
        wait_for(lambda: all(session.execute(select, [uuid.UUID(i)]).one() for i in acknowledged),
                 180, "the acknowledged rows readable in Cassandra")
    finally:
        session.cluster.shutdown()
    # ... and the batch that wrote them has committed its offsets: the checkpoint is past them.
    end = _end_offset(stack["kafka"].bootstrap)
    wait_for(lambda: int(((spark_job.progress(conf)["committed_offsets"] or {}).get(TOPIC) or {}).get("0", -1)) >= end,
             60, f"the job's committed offset at the topic's end ({end})")
    kill(conf, "cassandra")
    killed_at = time.monotonic()

    during = [insert(pg, {**ROW, "city": f"during-{i}"}) for i in range(30)]
    pg.execute("UPDATE public.users SET city = 'updated-during' WHERE id = ANY(%s)", (acknowledged[:10],))
    pg.execute("DELETE FROM public.users WHERE id = ANY(%s)", (acknowledged[10:20],))
    status = wait_for(lambda: (s := spark_job.status(conf))["state"] == "retrying" and s, 90, "the job reports 'retrying'")
    assert "NoHostAvailable" in (status["reason"] or ""), status
    assert status["pid"] is not None  # the job process lives on

    runtime.up(conf, ["cassandra"], progress=lambda _m: None)
    session = stack["cassandra"].session()
    try:
        model = wait_until_read_model_matches(pg, session, timeout=180)
    finally:
        session.cluster.shutdown()
    print(f"\ncassandra SIGKILL: read model equal again {time.monotonic() - killed_at:.1f}s after the kill")
    assert all(i in model for i in during)
    assert {model[i]["city"] for i in acknowledged[:10]} == {"updated-during"}
    assert not set(acknowledged[10:20]) & set(model)
    assert {model[i]["city"] for i in acknowledged[20:]} == {f"acked-{i}" for i in range(20, 40)}
    wait_for(lambda: spark_job.status(conf)["state"] == "running", 60, "the job back to 'running'")


def test_up_starts_again_a_job_that_was_killed(conf, stack, pg, spark_job):
    """A job that was running before `cdcpipe up` is running after it: a crash (SIGKILL of
    its whole tree) needs no `cdcpipe spark start` from anyone."""
    assert spark_job.status(conf)["state"] in ("running", "retrying")
    spark_job.kill(conf)
    killed_at = time.monotonic()
    ids = [insert(pg, {**ROW, "city": f"while-dead-{i}"}) for i in range(20)]
    said: list[str] = []
    runtime.up(conf, progress=said.append)
    assert any("spark job" in line and "again" in line for line in said), said
    assert spark_job.status(conf)["pid"] is not None
    session = stack["cassandra"].session()
    try:
        model = wait_until_read_model_matches(pg, session, timeout=120)
    finally:
        session.cluster.shutdown()
    print(f"\nspark job SIGKILL: read model equal again {time.monotonic() - killed_at:.1f}s after the kill (cdcpipe up)")
    assert all(i in model for i in ids)


def test_spark_stop_means_up_leaves_the_job_stopped(conf, stack, spark_job):
    """`cdcpipe spark stop` is a decision, not a crash: `up` respects it."""
    spark_job.stop(conf)
    try:
        said: list[str] = []
        runtime.up(conf, progress=said.append)
        assert spark_job.status(conf)["state"] == "stopped"
        assert not any("spark job" in line for line in said)
    finally:
        spark_job.start(conf, progress=lambda _m: None)
