"""The Spark job keeps cdc.users equal to public.users: values, order, deletes, crashes,
replays, poison records and new columns."""

from __future__ import annotations

import datetime as dt
import random
import struct
import uuid

from cdc_helpers import ROW, TOPIC, insert, wait_for, wait_until_read_model_matches
from confluent_kafka import Producer

from cdcpipe import runtime
from cdcpipe.clients import kafka_io
from cdcpipe.verify import read_model_rows

UTC = dt.UTC


def hard_row(i: int) -> dict:
    """Values that break naive pipelines, varied by i."""
    return {
        **ROW,
        "username": f"user-{i} 🐘𝔘 漢字",
        "email": "" if i % 5 == 0 else (None if i % 7 == 0 else f"o'brien\"{i}@example.com"),
        "first_name": 'back\\slash "quoted"',
        "street_name": f"line {i}\nsecond line\ttab",
        "street_number": 2147483647 if i % 2 else -2147483648,
        "latitude": 90.0 if i % 2 else -90.0,
        "longitude": -180.0 if i % 3 else 180.0,
        "dob": dt.datetime(1900 + i % 60, 1 + i % 12, 1 + i % 28, 3, 4, 5, 678901, tzinfo=UTC),
        "registered_at": dt.datetime(2039 + i % 50, 6, 15, 12, 0, 0, 999999, tzinfo=UTC),
        "postcode": str(10000 + i) if i % 2 else "",
    }


def test_mixed_writes_are_reflected_exactly(pg, cassandra, spark_job):
    ids = [insert(pg, hard_row(i)) for i in range(60)]  # M inserts
    rng = random.Random(7)
    for user_id in rng.sample(ids, 25):  # K updates, NULLs included
        pg.execute(
            "UPDATE public.users SET city = %s, email = NULL, latitude = %s, dob = %s WHERE id = %s",
            ("Zürich\n", rng.uniform(-90, 90), dt.datetime(1969, 12, 31, 23, 59, 59, 999500, tzinfo=UTC), user_id),
        )
    deleted = rng.sample(ids, 15)  # J deletes
    pg.execute("DELETE FROM public.users WHERE id = ANY(%s)", (deleted,))
    model = wait_until_read_model_matches(pg, cassandra)
    assert not set(deleted) & set(model)
    assert model[ids[1]]["username"] == "user-1 🐘𝔘 漢字"


def test_every_task_of_a_batch_gets_the_driver_s_one_view_of_epochs_and_floors(conf, pg, cassandra, spark_job):
    """Issue 23: each task read cdc.sync_state and cdc.schema_changes itself, so a resync
    writing an epoch while a batch ran gave its tasks different views (and every task paid two
    reads). The driver now reads both once per batch and hands them to every task (Spark local
    properties); the job counts the tasks that had to read either themselves."""

    def totals() -> dict:
        return spark_job.progress(conf).get("totals") or {}

    before = totals().get("tasks_batch_view", 0)
    user_id = insert(pg, ROW)
    assert user_id in wait_until_read_model_matches(pg, cassandra)
    after = wait_for(lambda: totals() if totals().get("tasks_batch_view", 0) > before else None, 30, "a batch's task counted")
    assert after["tasks_own_view"] == 0, after  # no task of this job read either table itself


def test_the_progress_file_follows_every_batch(stack, conf, pg, cassandra, spark_job):
    """The job's listener (Spark's Python listener interface, taken directly: see the job's
    ProgressReport) writes each completed batch into the progress file that ``cdcpipe spark
    status``, the benchmarks and ``wait_for_offsets`` read: the query's own name, offsets that
    reach the change just made, and the same batch as the newest of the recent ones."""
    user_id = insert(pg, ROW)
    assert user_id in wait_until_read_model_matches(pg, cassandra)
    ends = kafka_io.end_offsets(stack["kafka"].client_config(), TOPIC)
    spark_job.wait_for_offsets(conf, {TOPIC: {str(p): o for p, o in ends.items() if o > 0}}, timeout=30)
    report = spark_job.read_progress(conf)
    last = report["last_progress"]
    assert last["name"] == "users_to_cassandra" and report["state"] == "running" and report["failure"] is None
    newest = report["recent"][-1]
    assert newest["batchId"] == last["batchId"] and set(newest) >= {"durationMs", "numInputRows", "timestamp"}
    assert any(batch["numInputRows"] for batch in report["recent"]), report["recent"]


def test_pk_update_txn_and_twenty_updates_end_exact(pg, cassandra, spark_job):
    old_id, new_id = uuid.uuid4(), uuid.uuid4()
    insert(pg, ROW, old_id)
    pg.execute("UPDATE public.users SET id = %s WHERE id = %s", (new_id, old_id))
    ephemeral = uuid.uuid4()
    with pg.transaction():
        insert(pg, ROW, ephemeral)
        pg.execute("DELETE FROM public.users WHERE id = %s", (ephemeral,))
    counter = insert(pg, ROW)
    for i in range(20):
        pg.execute("UPDATE public.users SET street_number = %s WHERE id = %s", (i, counter))
    model = wait_until_read_model_matches(pg, cassandra)
    assert str(old_id) not in model and str(ephemeral) not in model
    assert model[counter]["street_number"] == 19


def test_sigkill_mid_stream_then_restart_is_exact(conf, pg, cassandra, spark_job):
    ids = [insert(pg, hard_row(i)) for i in range(200)]
    pg.execute("UPDATE public.users SET city = 'before-kill' WHERE id = ANY(%s)", (ids,))
    spark_job.kill(conf)  # SIGKILL, whatever batch is in flight
    assert spark_job.status(conf)["state"] != "running"
    doomed = ids[:50]
    pg.execute("DELETE FROM public.users WHERE id = ANY(%s)", (doomed,))  # while the job is down
    pg.execute("UPDATE public.users SET city = 'after-kill' WHERE id = ANY(%s)", (ids[50:],))
    spark_job.start(conf, progress=lambda _m: None)
    model = wait_until_read_model_matches(pg, cassandra)
    assert not set(doomed) & set(model), "a deleted row was resurrected"
    assert {model[i]["city"] for i in ids[50:]} == {"after-kill"}


def test_replaying_the_whole_topic_changes_nothing(conf, pg, cassandra, spark_job, tmp_path):
    before = wait_until_read_model_matches(pg, cassandra)
    writetimes = {str(r.id): r.wt for r in cassandra.execute("SELECT id, writetime(username) AS wt FROM cdc.users")}
    spark_job.stop(conf)
    fresh = conf.service_dir("spark") / f"replay-{uuid.uuid4().hex[:8]}"
    try:
        # A fresh checkpoint starts from the earliest offset: every event is applied again.
        spark_job.start(conf, checkpoint=fresh, progress=lambda _m: None)
        ends = kafka_io.end_offsets(runtime.service(conf, "kafka").client_config(), TOPIC)
        # The topic holds every change of the session (1 h before compaction), so the replay's
        # length grows with the suite: judged by whether it advances, not by a fixed deadline.
        spark_job.wait_for_offsets(conf, {TOPIC: {str(p): o for p, o in ends.items() if o > 0}}, timeout=1200, stalled_after=120)
        after = read_model_rows(cassandra, list(next(iter(before.values())).keys()))
        assert after == before
        assert {str(r.id): r.wt for r in cassandra.execute("SELECT id, writetime(username) AS wt FROM cdc.users")} == writetimes
        # The job read up to the topic's end (wait_for_offsets). The topic is compacted, so an
        # old topic holds fewer records than its end offset: superseded events are gone.
        assert spark_job.status(conf)["totals"]["records"] > 0
    finally:
        spark_job.stop(conf)
        spark_job.start(conf, progress=lambda _m: None)


def test_poison_records_go_to_dead_letters_and_the_stream_goes_on(stack, conf, pg, cassandra, spark_job):
    from cdc_helpers import TopicReader

    reader = TopicReader(stack["kafka"], stack["schema_registry"])
    good = insert(pg, ROW)
    reader.read_until(lambda evs: any(e["key"] and e["key"]["id"] == good for e in evs))
    real_value = next(v for k, v, _ in reader.raw if v)
    reader.close()

    poison = {
        b"\x01\x00\x00\x00\x05garbage": "bad magic byte",
        b"\x00" + struct.pack(">I", 987654) + b"\x02\x04": "unknown schema id 987654",
        real_value[: len(real_value) // 2]: "truncated or corrupt Avro body",
    }
    delivered: list = []
    producer = Producer(stack["kafka"].client_config())
    for n, value in enumerate(poison):
        # With a key: the topic is compacted, and Kafka refuses key-less records on it.
        producer.produce(TOPIC, key=f"poison-{n}".encode(), value=value, on_delivery=lambda err, msg: delivered.append((err, msg)))
    assert producer.flush(30) == 0
    assert [err for err, _ in delivered if err is not None] == []
    offsets = {(msg.partition(), msg.offset()): msg.value() for _, msg in delivered}  # partitions: 3 on a cluster

    after = insert(pg, {**ROW, "username": "after-poison"})  # a good change behind them
    model = wait_until_read_model_matches(pg, cassandra)
    assert model[after]["username"] == "after-poison"

    # The poison and `after` may be read by different tasks of the batch (the job splits the
    # partition into ranges), and a task writes its rows before its dead letters: poll.
    def dead_letters():
        query = "SELECT kafka_offset, record_value, error FROM cdc.dead_letters WHERE topic = %s AND kafka_partition = %s"
        found = {
            (partition, r.kafka_offset): r
            for partition in {p for p, _ in offsets}
            for r in cassandra.execute(query, (TOPIC, partition))
            if (partition, r.kafka_offset) in offsets
        }
        return found if set(found) == set(offsets) else None

    rows = wait_for(dead_letters, 60, f"dead letters at offsets {sorted(offsets)}")
    for position, raw in offsets.items():
        assert rows[position].record_value == raw
        assert f"value: DecodeError: {poison[raw]}" in rows[position].error
    assert spark_job.status(conf)["dead_letters"] >= 3


def test_a_new_source_column_reaches_cassandra(stack, pg, cassandra, spark_job):
    with stack["postgres"].connect(dbname="users", autocommit=True) as admin:
        admin.execute("ALTER TABLE public.users ADD COLUMN IF NOT EXISTS loyalty_points integer")
    user_id = None
    try:
        user_id = insert(pg, {**ROW, "loyalty_points": 4200})
        model = wait_until_read_model_matches(pg, cassandra)
        assert model[user_id]["loyalty_points"] == 4200
        column = cassandra.execute(
            "SELECT type FROM system_schema.columns WHERE keyspace_name='cdc' AND table_name='users' AND column_name='loyalty_points'"
        ).one()
        assert column.type == "int"
    finally:
        # Delete the row first: dropping the column emits no row events, so a later re-add
        # (NULL everywhere in PostgreSQL) would otherwise disagree with Cassandra's 4200.
        if user_id:
            pg.execute("DELETE FROM public.users WHERE id = %s", (user_id,))
        with stack["postgres"].connect(dbname="users", autocommit=True) as admin:
            admin.execute("ALTER TABLE public.users DROP COLUMN IF EXISTS loyalty_points")


def _python_workers(conf, driver_pid: int) -> set[int]:
    """The job's Python worker processes: children of the spark_daemon its executors' JVM
    forked (the driver's own JVM in local mode; on a cluster, the executors the Spark workers
    started)."""
    import psutil

    from cdcpipe import runtime
    from cdcpipe.runtime import processes

    roots = [driver_pid]
    if conf.clustered:
        spark = runtime.service(conf, "spark")
        roots = [pid for proc in spark.processes if proc.startswith("spark-worker") and (pid := processes.pid_of(conf, proc))]
    workers = set()
    for proc in (child for root in roots for child in psutil.Process(root).children(recursive=True)):
        try:
            if "cdcpipe.pipeline.spark_daemon" in " ".join(proc.cmdline()) and "spark_daemon" in " ".join(proc.parent().cmdline()):
                workers.add(proc.pid)
        except psutil.NoSuchProcess:
            pass
    return workers


def test_an_idle_job_keeps_its_python_workers(conf, pg, cassandra, spark_job):
    """Spark's JVM kills every Python worker unused for a minute (a fixed timeout); the job's
    keep-warm task (--keep-warm-seconds, default 30) keeps them, so the first change after a
    pause does not fork, import and connect a new worker. Fails if the task stops running."""
    import time

    insert(pg, {**ROW, "username": "before-the-pause"})
    wait_until_read_model_matches(pg, cassandra)
    driver = spark_job.status(conf)["pid"]
    before = _python_workers(conf, driver)
    assert before, f"no Python workers under the job's driver (pid {driver})"
    time.sleep(85)  # the JVM checks every 10 s for workers idle more than 60 s
    assert before <= _python_workers(conf, driver), "Spark stopped idle Python workers: the keep-warm task did not run"
    insert(pg, {**ROW, "username": "after-the-pause"})
    wait_until_read_model_matches(pg, cassandra)


def _driver_jvm(conf, spark_job):
    import psutil

    driver = psutil.Process(spark_job.status(conf)["pid"])
    jvms = [child for child in driver.children() if child.name() == "java"]
    assert len(jvms) == 1, f"the job's driver (pid {driver.pid}) should have one JVM child, has {jvms}"
    return jvms[0]


def test_the_driver_starts_no_process_per_micro_batch(conf, pg, cassandra, spark_job, tmp_path):
    """Spark's default checkpoint file manager forked a chmod or readlink for nearly every
    offset and commit file, about twenty processes per micro-batch, on every change's path.
    The job's own manager (cdcpipe/jvm/spark) writes them without one: Java Flight Recorder,
    in the driver's JVM, records every process start while changes flow, and the newest offset
    and commit files have no Hadoop .crc beside them (so the job's manager wrote them, and the
    zero is not Hadoop's native library doing the chmods). Fails with Spark's default manager
    (checked: 160 process starts in 7 batches)."""
    import subprocess
    import time
    from pathlib import Path

    jvm = _driver_jvm(conf, spark_job)
    jdk = Path(jvm.exe()).parent
    jcmd, jfr = jdk / "jcmd", jdk / "jfr"
    assert jcmd.exists() and jfr.exists(), f"the driver's Java ({jdk}) has no jcmd/jfr: a JDK is needed (make jars compiles with it)"
    recording = tmp_path / "driver.jfr"
    insert(pg, {**ROW, "username": "no-fork-warm-up"})  # a job just started applies its first batches slowly
    wait_until_read_model_matches(pg, cassandra)

    def run(*argv) -> str:
        done = subprocess.run([str(a) for a in argv], capture_output=True, text=True, timeout=120)
        assert done.returncode == 0, done.stdout + done.stderr
        return done.stdout

    run(jcmd, jvm.pid, "JFR.start", "name=cdcpipe-test", "settings=default")
    try:
        first = spark_job.progress(conf)["batch_id"]
        for i in range(10):  # ten changes, a batch or more each
            insert(pg, {**ROW, "username": f"no-fork-{i}"})
            time.sleep(0.6)
        wait_until_read_model_matches(pg, cassandra)
        batches = spark_job.progress(conf)["batch_id"] - first
        run(jcmd, jvm.pid, "JFR.dump", "name=cdcpipe-test", f"filename={recording}")
    finally:
        subprocess.run([str(jcmd), str(jvm.pid), "JFR.stop", "name=cdcpipe-test"], capture_output=True, timeout=60)
    assert batches >= 3, f"only {batches} micro-batches ran while recording"
    started = [line.strip() for line in run(jfr, "print", "--events", "jdk.ProcessStart", recording).splitlines() if "command =" in line]
    print(f"{batches} micro-batches, {len(started)} processes started by the driver's JVM")
    assert not started, started[:10]
    checkpoint = spark_job.checkpoint_dir(conf)
    for log in ("offsets", "commits"):
        newest = max((f for f in (checkpoint / log).iterdir() if f.name.isdigit()), key=lambda f: int(f.name))
        assert not (checkpoint / log / f".{newest.name}.crc").exists(), f"{newest} was written by Hadoop's checkpoint manager"


def test_the_job_stops_at_start_and_names_its_jar_when_it_is_missing(conf, tmp_path):
    """Without cdcpipe-spark.jar the query would fail at every start (its checkpoint file
    manager) and be retried forever; the job stops before that and says what to add."""
    import subprocess
    import sys

    from cdcpipe.runtime import streaming_job

    argv = [sys.executable, str(streaming_job.JOB), "--master", "local[1]", "--checkpoint", str(tmp_path / "checkpoint"), "--jars", ""]
    done = subprocess.run(argv, capture_output=True, text=True, timeout=180, cwd=tmp_path)
    assert done.returncode != 0
    assert "cdcpipe.spark.LocalCheckpointFileManager is not on the job's class path: add cdcpipe-spark.jar" in done.stderr, done.stderr[
        -2000:
    ]
