"""Faults are normal: a service killed with SIGKILL under load, and the pipeline heals with
no step beyond `cdcpipe up`. Each test prints how long recovery took."""

from __future__ import annotations

import contextlib
import signal
import time
import uuid
from collections.abc import Iterator

from cdc_helpers import ROW, TOPIC, insert, pipeline_facts, wait_for, wait_until_read_model_matches

from cdcpipe import runtime
from cdcpipe.bench.latency import Load
from cdcpipe.runtime import processes
from cdcpipe.runtime.services.watchdog import read_state as read_watchdog_state


def kill(conf, service: str) -> None:
    """SIGKILL every process of ``service`` (whole trees), as a crash would."""
    for svc in runtime.services(conf, [service], with_dependencies=False):
        for proc in svc.processes:
            processes.stop(conf, proc, sig=signal.SIGKILL, timeout=5)


def read_model_equal(stack, pg, timeout: float) -> dict:
    """Wait until cdc.users equals public.users, on a Cassandra session of its own (the
    fixture's may predate a Cassandra restart)."""
    with stack["cassandra"].connected() as session:
        return wait_until_read_model_matches(pg, session, timeout=timeout)


def test_cassandra_killed_right_after_a_batch_commits_loses_nothing(conf, stack, pg, spark_job):
    """Cassandra acknowledged a batch, the job committed its offsets, then Cassandra died.

    With a commit log that syncs before it acknowledges, those writes survive the crash; with
    the periodic one (sync every 10 s) they were gone and the checkpoint had moved past them.
    Then, with Cassandra down, the job retries (it does not exit), and once `cdcpipe up`
    brings Cassandra back it applies what arrived meanwhile.
    """
    acknowledged = [insert(pg, {**ROW, "city": f"acked-{i}"}) for i in range(40)]
    with stack["cassandra"].connected() as session:
        select = session.prepare("SELECT id FROM cdc.users WHERE id = ?")
        wait_for(
            lambda: all(session.execute(select, [uuid.UUID(i)]).one() for i in acknowledged),
            180,
            "the acknowledged rows readable in Cassandra",
        )
    # ... and the batch that wrote them has committed its offsets: the checkpoint is past them.
    from cdcpipe.clients.kafka_io import end_offsets

    ends = end_offsets(stack["kafka"].client_config(), TOPIC)  # each partition's (3 on a cluster)

    def committed_to_the_end() -> bool:
        committed = (spark_job.progress(conf)["committed_offsets"] or {}).get(TOPIC) or {}
        return all(int(committed.get(str(p), -1)) >= end for p, end in ends.items())

    wait_for(committed_to_the_end, 60, f"the job's committed offsets at the topic's end ({ends})")
    kill(conf, "cassandra")
    killed_at = time.monotonic()

    during = [insert(pg, {**ROW, "city": f"during-{i}"}) for i in range(30)]
    pg.execute("UPDATE public.users SET city = 'updated-during' WHERE id = ANY(%s)", (acknowledged[:10],))
    pg.execute("DELETE FROM public.users WHERE id = ANY(%s)", (acknowledged[10:20],))
    # The first failed write may report how its connection ended (a timeout, a shut-down
    # connection); while Cassandra stays down the retries then name NoHostAvailable.
    status = wait_for(
        lambda: (s := spark_job.status(conf))["state"] == "retrying" and "NoHostAvailable" in (s["reason"] or "") and s,
        90,
        "the job reports 'retrying' because no Cassandra host is available",
    )
    assert status["pid"] is not None  # the job process lives on

    runtime.up(conf, ["cassandra"], progress=lambda _m: None)
    model = read_model_equal(stack, pg, timeout=180)
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
    model = read_model_equal(stack, pg, timeout=120)
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


def _restart_watchdog(conf, env: dict[str, str]) -> None:
    """The watchdog again, with ``env`` added to its environment ({}: as shipped)."""
    import os

    runtime.down(conf, ["watchdog"], progress=lambda _m: None)
    saved = {k: os.environ.get(k) for k in env}
    os.environ.update(env)
    try:
        runtime.up(conf, ["watchdog"], progress=lambda _m: None)
    finally:
        for k, v in saved.items():
            os.environ.pop(k) if v is None else os.environ.__setitem__(k, v)


@contextlib.contextmanager
def quick_watchdog(conf) -> Iterator[None]:
    """The watchdog with its thresholds shortened for a test (stuck after 20 s, a check every
    5 s) inside the block, and as shipped again after it, whatever happened."""
    try:
        _restart_watchdog(conf, {"CDCPIPE_WATCHDOG_STUCK_AFTER": "20", "CDCPIPE_WATCHDOG_INTERVAL": "5"})
        yield
    finally:
        _restart_watchdog(conf, {})


def watchdog_restarts(conf) -> list[dict]:
    return (read_watchdog_state(conf) or {}).get("restarts") or []


def test_a_stuck_connector_is_restarted_by_the_watchdog(conf, stack, pg, spark_job, connector):
    """RUNNING but not moving: Debezium's heartbeat query blocks on a lock held by someone
    else, so its streaming loop stops while Connect still says RUNNING. The watchdog sees no
    heartbeat while the slot falls behind, restarts the connector, and once the lock is gone
    every change arrives. (Thresholds shortened for the test: 20 s, checks every 5 s.)"""
    import psycopg

    from cdcpipe.runtime import credentials

    ids = []
    with quick_watchdog(conf):
        secrets = credentials.load(conf)
        locker = psycopg.connect(host=conf.host, port=conf.port("postgres"), dbname="users", user="postgres", password=secrets["postgres"])
        try:
            locker.execute("LOCK TABLE public.cdc_heartbeat IN EXCLUSIVE MODE")  # writes wait, reads don't
            stuck_at = time.monotonic()

            def restarted():
                ids.append(insert(pg, {**ROW, "city": "while-stuck"}))
                state = read_watchdog_state(conf) or {}
                return state.get("restarts") and state

            state = wait_for(restarted, 120, "the watchdog restarting a stuck connector")
            assert "no heartbeat" in state["restarts"][-1]["why"], state
            print(f"\nstuck connector: restarted by the watchdog {time.monotonic() - stuck_at:.0f}s after it stopped moving")
        finally:
            locker.rollback()
            locker.close()
    model = read_model_equal(stack, pg, timeout=180)
    assert all(i in model for i in ids)
    wait_for(lambda: (read_watchdog_state(conf) or {}).get("state") == "moving", 120, "capture moving again")
    assert runtime.status(conf)["services"]["watchdog"]["capture"] == "moving"


def test_a_task_blocked_on_the_registry_is_restarted_though_heartbeats_arrive(conf, stack, pg, spark_job, connector):
    """The hang seen in CI: the task thread waited for good on the converter's registry call
    (a new schema, after a column was added) while Debezium's streaming loop kept writing
    heartbeats, so the watchdog called it moving. Here the registry is frozen (SIGSTOP) when
    a column is added: the slot stands still while heartbeats arrive, the watchdog restarts
    the connector naming the slot, and once the registry answers again every change arrives."""
    import os

    column = f"hang_{uuid.uuid4().hex[:8]}"
    frozen: list[int] = []
    ids: list[str] = []
    with quick_watchdog(conf):
        before = len(watchdog_restarts(conf))
        registry_pid = runtime.services(conf, ["schema_registry"], with_dependencies=False)[0].pids()["schema_registry"]
        try:
            with stack["postgres"].connect(dbname="users", autocommit=True) as su:  # DDL is the table owner's
                for pid in processes.tree(registry_pid):
                    os.kill(pid, signal.SIGSTOP)
                    frozen.append(pid)
                frozen_at = time.monotonic()
                su.execute(f"ALTER TABLE public.users ADD COLUMN {column} text")
            ids.append(insert(pg, {**ROW, "city": "while-the-registry-is-frozen"}))
            pg.execute(f"UPDATE public.users SET {column} = 'written-while-frozen' WHERE id = %s", (ids[0],))

            def restarted():
                fresh = watchdog_restarts(conf)[before:]
                return fresh and fresh[-1]

            why = wait_for(restarted, 120, "the watchdog restarting a task blocked on the registry")["why"]
            assert "the slot has not moved" in why, why
            assert "no heartbeat" not in why, why  # the streaming loop kept beating: the heartbeat alone said moving
            print(f"\ntask blocked on the registry: restarted by the watchdog {time.monotonic() - frozen_at:.0f}s after the freeze ({why})")
        finally:
            for pid in frozen:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGCONT)
    try:
        ids.append(insert(pg, {**ROW, "city": "after-the-registry-answers"}))
        model = read_model_equal(stack, pg, timeout=240)
        assert all(i in model for i in ids), ids
        assert model[ids[0]][column] == "written-while-frozen", model[ids[0]]
        wait_for(lambda: (read_watchdog_state(conf) or {}).get("state") == "moving", 120, "capture moving again")
    finally:  # a column left in public.users would be in every later rebuild of cdc.users
        with stack["postgres"].connect(dbname="users", autocommit=True) as su:
            su.execute(f"ALTER TABLE public.users DROP COLUMN IF EXISTS {column}")  # the job clears it in cdc.users
    read_model_equal(stack, pg, timeout=120)


def _healed(conf, stack, started: float, timeout: float = 240.0) -> float:
    """Seconds from ``started`` until a row written now is readable in Cassandra."""
    import psycopg

    user_id = None
    deadline = time.monotonic() + timeout
    while user_id is None:
        try:
            with psycopg.connect(stack["postgres"].dsn(), autocommit=True, connect_timeout=3) as conn:
                user_id = insert(conn, {**ROW, "city": "probe"})
        except psycopg.Error:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.5)
    while time.monotonic() < deadline:
        try:
            session = stack["cassandra"].session()
        except Exception:
            time.sleep(1)
            continue
        try:
            select = session.prepare("SELECT id FROM cdc.users WHERE id = ?")
            while time.monotonic() < deadline:
                if session.execute(select, [uuid.UUID(user_id)]).one():
                    return time.monotonic() - started
                time.sleep(0.25)
        except Exception:
            time.sleep(1)
        finally:
            session.cluster.shutdown()
    raise AssertionError(f"the pipeline did not heal within {timeout:.0f}s\n{pipeline_facts(conf)}")


def test_every_service_killed_under_load_then_a_freeze(conf, stack, spark_job, connector):
    """The promise, under a steady ~300 changes/s: each of postgres, kafka, connect,
    schema_registry, cassandra and the Spark job in turn is SIGKILLed (whole process trees)
    and brought back with `cdcpipe up` alone; then Kafka is frozen (SIGSTOP) for 30 s. After
    the writes stop, Cassandra equals PostgreSQL row by row within 5 minutes. Prints the time
    from each fault until a new change is readable in Cassandra again."""
    import os

    writer = Load(stack["postgres"].dsn(), rate=300, seed=3)  # what bench --latency writes, reconnecting
    writer.start()
    recovery: dict[str, float] = {}
    try:
        time.sleep(5)
        for victim in ("postgres", "kafka", "connect", "schema_registry", "cassandra", "spark job"):
            started = time.monotonic()
            if victim == "spark job":
                spark_job.kill(conf)
            else:
                kill(conf, victim)
            time.sleep(2)  # under load, with the service gone
            runtime.up(conf, progress=lambda _m: None)
            recovery[victim] = _healed(conf, stack, started)
            print(f"\n  {victim:<16} SIGKILL -> a new change readable again after {recovery[victim]:.1f}s")
        kafka_pid = runtime.services(conf, ["kafka"], with_dependencies=False)[0].pids()["kafka"]
        members = processes.tree(kafka_pid)
        started = time.monotonic()
        for pid in members:
            os.kill(pid, signal.SIGSTOP)
        try:
            time.sleep(30)
        finally:
            for pid in members:
                os.kill(pid, signal.SIGCONT)
        recovery["kafka frozen 30 s"] = _healed(conf, stack, started)
        print(f"  {'kafka SIGSTOP 30s':<16} -> a new change readable again after {recovery['kafka frozen 30 s']:.1f}s")
    finally:
        writer.stop.set()
        writer.join(10)
    assert writer.error is None, writer.error
    assert writer.done > 1000, writer.done
    import psycopg

    # New connections: the fixture's died with PostgreSQL.
    with stack["cassandra"].connected() as session, psycopg.connect(stack["postgres"].dsn(), autocommit=True) as fresh:
        model = wait_until_read_model_matches(fresh, session, timeout=300)
    print(f"  {writer.done} changes written ({writer.reconnects} reconnects); read model equal: {len(model)} rows")
    # The state clears on the job's next successful batch, which may trail the writes that
    # made the model equal.
    wait_for(lambda: spark_job.status(conf)["state"] == "running", 60, "the job back to 'running'")
