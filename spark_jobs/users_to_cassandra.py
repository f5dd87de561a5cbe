"""Spark Structured Streaming: Debezium change events on Kafka -> the Cassandra read model.

This file is the driver side only; what the executors run is :mod:`cdcpipe.pipeline.apply`.
Each micro-batch is applied on the executors, partition by partition: every record is
decoded with its own writer schema (Confluent framing, schemas from the registry), only the
newest change per key is kept, and the writes go to Cassandra concurrently with prepared
statements and ``USING TIMESTAMP`` = the change's position, so replays and restarts are
harmless (see cdcpipe/pipeline/changes.py). Records that cannot be decoded or applied go to
``cdc.dead_letters`` with their raw bytes; the stream goes on.

Run it with ``cdcpipe spark start`` (local runtime), or submit it yourself:

    spark-submit --jars <spark-sql-kafka and its dependencies>,<cdcpipe-spark.jar> \\
        spark_jobs/users_to_cassandra.py \\
        --bootstrap kafka:9092 --registry-url http://schema-registry:8081 --cassandra-host cassandra \\
        --checkpoint /checkpoints/users_to_cassandra

``cdcpipe-spark.jar`` holds the project's Spark classes (cdcpipe/jvm/spark: the checkpoint file
manager, the UI login filter); ``cdcpipe jars`` builds it into build/jars/spark-extras/, and the
Docker image has it in Spark's own jars. The job stops at start, naming it, when it is missing.

Every option also reads an environment variable (shown in --help).
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import signal
import sys
import threading
import time
from collections import deque
from pathlib import Path
from typing import Any

from pyspark.errors import StreamingQueryException

from cdcpipe.pipeline.apply import apply_arrow, consistency, executor_sink, explain_unreached, keep_warm_arrow
from cdcpipe.pipeline.cassandra_session import DEFAULT_WRITE_CONSISTENCY
from cdcpipe.pipeline.config import SinkConfig
from cdcpipe.pipeline.logins import ui_login_conf
from cdcpipe.pipeline.schema_changes import FLOORS_PROPERTY, USERS_TOPIC, SchemaChange, floors_snapshot, load_floors
from cdcpipe.pipeline.schema_changes import apply as apply_schema_changes
from cdcpipe.pipeline.sync_state import BATCH_PROPERTY as SYNC_BATCH_PROPERTY
from cdcpipe.pipeline.sync_state import snapshot as sync_snapshot

log = logging.getLogger("users_to_cassandra")


def options(argv: list[str] | None = None) -> argparse.Namespace:
    env = os.environ.get
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument(
        "--bootstrap", default=env("CDC_KAFKA_BOOTSTRAP", "127.0.0.1:9092"), help="Kafka bootstrap servers [CDC_KAFKA_BOOTSTRAP]"
    )
    p.add_argument("--topic", default=env("CDC_TOPIC", USERS_TOPIC), help="topic to read [CDC_TOPIC]")
    p.add_argument(
        "--schema-changes-topic",
        default=env("CDC_SCHEMA_CHANGES_TOPIC", "cdc.public.cdc_schema_changes"),
        help="the source table's schema-change journal, read with --topic ('' for none; "
        "cdcpipe/pipeline/schema_changes.py) [CDC_SCHEMA_CHANGES_TOPIC]",
    )
    p.add_argument("--topic-pattern", default=env("CDC_TOPIC_PATTERN"), help="regex of topics, instead of --topic [CDC_TOPIC_PATTERN]")
    p.add_argument(
        "--registry-url",
        default=env("CDC_REGISTRY_URL", "http://127.0.0.1:8081/apis/ccompat/v7"),
        help="Confluent-compatible registry URL [CDC_REGISTRY_URL]",
    )
    p.add_argument(
        "--kafka-credentials",
        default=env("CDC_KAFKA_CREDENTIALS", ""),
        help="a credentials file ([plain_text_auth] username, password) for Kafka's SASL/PLAIN login; empty: "
        "no login [CDC_KAFKA_CREDENTIALS]",
    )
    p.add_argument(
        "--registry-credentials",
        default=env("CDC_REGISTRY_CREDENTIALS", ""),
        help="a credentials file ([plain_text_auth] username, password) for the registry's login; empty: no login "
        "[CDC_REGISTRY_CREDENTIALS]",
    )
    p.add_argument("--cassandra-host", default=env("CDC_CASSANDRA_HOST", "127.0.0.1"), help="[CDC_CASSANDRA_HOST]")
    p.add_argument("--cassandra-port", type=int, default=int(env("CDC_CASSANDRA_PORT", "9042")), help="[CDC_CASSANDRA_PORT]")
    p.add_argument(
        "--cassandra-credentials",
        default=env("CDC_CASSANDRA_CREDENTIALS", ""),
        help="a credentials file in cqlsh's format ([plain_text_auth] username, password) for Cassandra's login; "
        "empty: no login [CDC_CASSANDRA_CREDENTIALS]",
    )
    p.add_argument(
        "--ui-credentials",
        default=env("CDC_UI_CREDENTIALS", ""),
        help="a credentials file (username = ..., password = ...) that the job's web UI asks for, through the "
        "login filter cdcpipe.spark.UiLoginFilter (in cdcpipe-spark.jar); empty: no web UI at all, since Spark's "
        "has no login of its own [CDC_UI_CREDENTIALS]",
    )
    p.add_argument("--keyspace", default=env("CDC_KEYSPACE", "cdc"), help="[CDC_KEYSPACE]")
    p.add_argument("--table", default=env("CDC_TABLE", "users"), help="[CDC_TABLE]")
    p.add_argument(
        "--write-consistency",
        default=env("CDC_WRITE_CONSISTENCY", DEFAULT_WRITE_CONSISTENCY),
        help="consistency level of every write; a batch's offsets are committed once its writes are acknowledged "
        "at this level (default LOCAL_ONE: the one local node; on a cluster with RF 3 use LOCAL_QUORUM) "
        "[CDC_WRITE_CONSISTENCY]",
    )
    p.add_argument(
        "--checkpoint",
        default=env("CDC_CHECKPOINT", "/tmp/cdcpipe-checkpoints/users_to_cassandra"),
        help="checkpoint directory [CDC_CHECKPOINT]",
    )
    p.add_argument("--master", default=env("CDC_SPARK_MASTER"), help="Spark master; default: spark-submit's or local[2] [CDC_SPARK_MASTER]")
    p.add_argument("--jars", default=env("CDC_SPARK_JARS", ""), help="comma-separated jars to add (Kafka source) [CDC_SPARK_JARS]")
    p.add_argument(
        "--trigger-seconds",
        type=float,
        default=float(env("CDC_TRIGGER_SECONDS", "0.1")),
        help="micro-batch interval (default 0.1: a change waits at most that long for its batch; "
        "0.25 measured 60-75 ms more at the idle p50; a busy job runs batches back to back anyway) "
        "[CDC_TRIGGER_SECONDS]",
    )
    p.add_argument(
        "--max-offsets-per-trigger",
        type=int,
        default=int(env("CDC_MAX_OFFSETS_PER_TRIGGER", "200000")),
        help="[CDC_MAX_OFFSETS_PER_TRIGGER]",
    )
    p.add_argument(
        "--min-partitions",
        type=int,
        default=int(env("CDC_MIN_PARTITIONS", "2")),
        help="Spark tasks per micro-batch at least; a busy Kafka partition is split into offset "
        "ranges applied in parallel, safe because every write carries its position as "
        "timestamp (default 2: both cores of a small machine) [CDC_MIN_PARTITIONS]",
    )
    p.add_argument(
        "--starting-offsets", default=env("CDC_STARTING_OFFSETS", "earliest"), help="for a fresh checkpoint [CDC_STARTING_OFFSETS]"
    )
    p.add_argument(
        "--keep-warm-seconds",
        type=float,
        default=float(env("CDC_KEEP_WARM_SECONDS", "30")),
        help="an idle job runs a tiny Python task this often so Spark keeps its Python workers "
        "(it kills them after 60 s unused); 0: never [CDC_KEEP_WARM_SECONDS]",
    )
    p.add_argument("--progress-file", default=env("CDC_PROGRESS_FILE"), help="write the query's progress here as JSON [CDC_PROGRESS_FILE]")
    return p.parse_args(argv)


def job_topics(topic: str | None, schema_changes_topic: str | None) -> list[str]:
    """The topics the job reads and keeps sync epochs for: the change events and the
    schema-change journal, when it has one (``cdcpipe bench``'s job has none: an empty name,
    which Kafka cannot subscribe to and Cassandra refuses as a key)."""
    return [t for t in (topic, schema_changes_topic) if t]


def subscribed(args: argparse.Namespace) -> str:
    """The topics the query reads (:func:`job_topics`), as Spark's ``subscribe`` option."""
    return ",".join(job_topics(args.topic, getattr(args, "schema_changes_topic", None)))


# --- driver side ---------------------------------------------------------------------------
QUERY_NAME = "users_to_cassandra"
HEARTBEAT_SECONDS = 5
#: Backoff between restarts of a failed query: 2, 4, 8, ... seconds, at most 30.
RETRY_FIRST_SECONDS = 2.0
RETRY_MAX_SECONDS = 30.0


#: The checkpoint's file manager: the project's, in the jar of its Spark classes (Spark's
#: default forks a chmod or readlink for nearly every file of every micro-batch).
CHECKPOINT_FILE_MANAGER = "cdcpipe.spark.LocalCheckpointFileManager"
#: The Kafka source's columns the executors read, and what each partition returns.
COLUMNS = ("key", "value", "topic", "partition", "offset")
APPLIED_SCHEMA = "records long, writes long, dead long, schema_changes array<string>, view string"


class ArrowMapper:
    """``batch.mapInArrow(func, schema)`` with the UDF built once for the job, not per batch.

    ``DataFrame.mapInArrow`` makes a new pandas UDF on every call: it parses the DDL schema
    through the JVM, pickles the function and creates its JVM PythonFunction again. On an idle
    job that was ~37 ms of each one-row micro-batch's driver time (py-spy on the driver, 40
    batches, 2026-11-22), before any task ran. A UserDefinedFunction keeps its JVM function
    after the first call, so this builds one and applies it as PySpark 4.0's mapInArrow does
    (pyspark/sql/pandas/map_ops.py: ``self._jdf.mapInArrow(udf_column._jc, barrier, profile)``;
    pyspark is pinned, and every test that streams a change goes through here)."""

    def __init__(self, func, schema: str, columns: tuple[str, ...]):
        from pyspark.rdd import PythonEvalType
        from pyspark.sql.functions import col
        from pyspark.sql.pandas.functions import pandas_udf

        udf = pandas_udf(func, returnType=schema, functionType=PythonEvalType.SQL_MAP_ARROW_ITER_UDF)
        # By name, resolved against each batch's plan by the analyzer: one JVM expression for
        # the job, so a batch costs one Py4J call here instead of ~15 (each 1-4 ms on this
        # busy 2-core machine: 52 ms per batch in py-spy with batch[name] columns).
        self.expression = udf(*[col(name) for name in columns])._jc

    def __call__(self, batch):
        from pyspark.sql import DataFrame

        return DataFrame(batch._jdf.mapInArrow(self.expression, False, None), batch.sparkSession)


class ProgressReport:
    """The query's progress as a JSON file for ``cdcpipe spark status``, written when a batch
    ends (a query listener) and as a heartbeat. Never polls ``recentProgress``: each poll is
    hundreds of Py4J calls, which kept an idle job at most of a core.

    It is Spark's ``PythonStreamingQueryListener`` itself, a Py4J callback (:meth:`register`),
    not a pyspark ``StreamingQueryListener``: pyspark turns every event into Python objects
    field by field before a listener sees it, hundreds of Py4J calls per batch, and each Java
    collection it walks ends in an exception that pyspark matches against a dozen class names,
    each looked up in every jar. Java Flight Recorder put that at a fifth of the driver JVM's
    CPU at 2,000 changes/s. This reads the event's JSON: two calls per batch."""

    class Java:
        implements = ["org.apache.spark.sql.streaming.PythonStreamingQueryListener"]

    RECENT = 20
    FIELDS = ("batchId", "numInputRows", "inputRowsPerSecond", "processedRowsPerSecond", "durationMs", "timestamp")

    def __init__(self, path: str | None, totals: dict[str, int]):
        self.path = Path(path) if path else None
        self.totals = totals
        self.last: dict[str, Any] | None = None
        self.query: Any = None  # set once started: asked for its last progress until a batch ends
        self.recent: deque[dict[str, Any]] = deque(maxlen=self.RECENT)
        self.failure: dict[str, Any] | None = None  # the query failed and is being restarted
        self.cause: str | None = None  # why the last batch failed, as the batch function saw it
        self.lock = threading.Lock()
        self.stopped = False  # "stopped" written: the last word
        # When a batch last ran Python tasks (monotonic); never yet, so the first heartbeat of a
        # job that starts idle forks and connects its workers before the first change arrives.
        self.python_used_at = float("-inf")

    def register(self, spark) -> None:
        """Receive the session's query events (as ``spark.streams.addListener`` would)."""
        from pyspark.java_gateway import ensure_callback_server_started

        ensure_callback_server_started(spark.sparkContext._gateway)
        wrapper = spark._jvm.org.apache.spark.sql.streaming.PythonStreamingQueryListenerWrapper(self)
        spark._jsparkSession.streams().addListener(wrapper)

    def onQueryStarted(self, event: Any) -> None:
        pass

    def onQueryProgress(self, event: Any) -> None:
        progress = json.loads(event.progress().json())
        if progress.get("name") != QUERY_NAME:
            return
        if progress.get("numInputRows"):
            self.python_used_at = time.monotonic()
        with self.lock:
            self.last = progress
            self.recent.append({k: progress.get(k) for k in self.FIELDS})
            self.failure = None  # a batch completed: whatever failed before works again
        self.write("running")

    def onQueryIdle(self, event: Any) -> None:
        pass

    def onQueryTerminated(self, event: Any) -> None:
        pass

    def failed(self, reason: str) -> int:
        """The query failed: remember why and since when (until a batch completes again);
        returns how many times in a row it has failed."""
        with self.lock:
            previous = self.failure or {"since": time.time(), "attempts": 0}
            self.failure = {"reason": reason, "since": previous["since"], "attempts": previous["attempts"] + 1}
            return self.failure["attempts"]

    def write(self, state: str, reason: str | None = None) -> None:
        """Write the report; once "stopped" is written, nothing after it (``spark.stop()``
        still delivers the events queued before it)."""
        if self.path is None or self.stopped:
            return
        if self.last is None and self.query is not None:  # e.g. just restarted, nothing new to read yet
            progress = self.query._jsq.lastProgress()  # its JSON: pyspark's lastProgress converts field by field
            self.last = json.loads(progress.json()) if progress is not None else None
        with self.lock:
            if self.stopped:
                return
            self.stopped = state == "stopped"
            if state == "running" and self.failure:  # restarted, but no batch has completed yet
                state, reason = "retrying", reason or self.failure["reason"]
            report = {
                "state": state,
                "reason": reason,
                "updated_at": time.time(),
                "pid": os.getpid(),
                "failure": self.failure,
                "last_progress": self.last,
                "recent": list(self.recent),
                "totals": dict(self.totals),
            }
            tmp = self.path.with_suffix(".tmp")
            tmp.write_text(json.dumps(report, default=str))
            tmp.replace(self.path)


def kafka_login(args: argparse.Namespace, form: str) -> dict[str, str]:
    """Kafka's login from ``--kafka-credentials`` as a client's settings: ``form`` is
    ``kafka_settings`` (confluent-kafka) or ``kafka_java_settings`` (Spark's Kafka source);
    {} without a file."""
    from cdcpipe.pipeline.logins import read_login

    if not args.kafka_credentials:
        return {}
    return getattr(read_login(args.kafka_credentials, "Kafka credentials"), form)()


def wait_for_topic(args: argparse.Namespace, report: ProgressReport, stopping: Stopping) -> bool:
    """Wait until the subscribed topic exists (False if asked to stop meanwhile).

    On a fresh stack nothing may have been written yet; ``cdcpipe up`` creates the topic, but
    another deployment may not. Subscribing to a missing topic fails the query, so the job
    waits, and says so in its progress file (``cdcpipe spark status``). A pattern needs no
    wait: it matches topics as they appear.
    """
    if args.topic_pattern:
        return True
    wanted = subscribed(args).split(",")
    from confluent_kafka import KafkaException
    from confluent_kafka.admin import AdminClient

    admin = AdminClient(
        {"bootstrap.servers": args.bootstrap, **kafka_login(args, "kafka_settings"), "socket.timeout.ms": 5000, "log_level": 0}
    )
    since, logged = time.monotonic(), 0.0
    while not stopping.now:
        try:
            meta = admin.list_topics(timeout=5)
            missing = [name for name in wanted if not (t := meta.topics.get(name)) or t.error is not None or not t.partitions]
            if not missing:
                return True
            reason = f"waiting for topic {', '.join(missing)} to exist on {args.bootstrap}"
        except KafkaException as exc:
            reason = f"waiting for Kafka at {args.bootstrap}: {exc}"
        report.write("waiting", reason)
        if time.monotonic() - logged > 30:
            log.info("%s (%.0fs)", reason, time.monotonic() - since)
            logged = time.monotonic()
        time.sleep(1)
    return False


#: The Spark RPC secret (spark.authenticate) of a standalone cluster, if it has one.
AUTH_SECRET_ENV = "CDC_SPARK_AUTH_SECRET"


def authenticated(builder, secret: str | None):
    """``builder`` with ``spark.authenticate`` and its secret, the secret kept off every command line.

    A spark:// master whose cluster runs with ``spark.authenticate=true`` refuses a driver
    without the shared secret, and the driver reads it only from its SparkConf. But pyspark
    starts the driver JVM as ``spark-submit --conf key=value ...`` with every builder option,
    visible to every account in ``ps``. So the JVM is started first with the other options,
    and the secret is set afterwards in the JVM's own SparkConf (SparkContext below). On a
    local[N] master the setting is harmless.
    """
    if not secret:
        return builder
    from pyspark import SparkConf, SparkContext
    from pyspark.java_gateway import launch_gateway

    options = dict(builder._options)  # noqa: SLF001 - pyspark has no public getter
    if SparkContext._gateway is None:  # noqa: SLF001
        launch_conf = SparkConf(loadDefaults=False).setAll(list(options.items()))
        gateway = launch_gateway(launch_conf)  # the command line: no secret in launch_conf
    else:
        gateway = SparkContext._gateway  # noqa: SLF001
    conf = SparkConf(_jvm=gateway.jvm).setAll(list(options.items()))
    conf.set("spark.authenticate", "true").set("spark.authenticate.secret", secret)
    if SparkContext._active_spark_context is None:  # noqa: SLF001
        SparkContext(conf=conf, gateway=gateway)  # getOrCreate() below takes this context
    return builder


def spark_session(args: argparse.Namespace):
    """The driver's SparkSession, configured for this job (the RPC secret kept off the command line)."""
    from pyspark.sql import SparkSession

    builder = SparkSession.builder.appName("cdcpipe-users-to-cassandra")
    if args.master:
        builder = builder.master(args.master)
    if args.jars:
        builder = builder.config("spark.jars", args.jars)
    builder = (
        builder.config("spark.sql.shuffle.partitions", "2")
        .config("spark.sql.execution.arrow.maxRecordsPerBatch", "20000")
        .config("spark.streaming.stopGracefullyOnShutdown", "true")
        .config("spark.ui.showConsoleProgress", "false")
        .config("spark.ui.killEnabled", "false")
        # The Kafka source's options carry its login (sasl.jaas.config): Spark redacts the
        # option by name, but not inside a plan's string (explain); this covers both.
        .config("spark.sql.redaction.string.regex", '(?i)password="[^"]*"')
        # The executors' Python daemon without Spark's zips on sys.path (see the module).
        .config("spark.python.daemon.module", "cdcpipe.pipeline.spark_daemon")
        # Offset and commit files written without forking chmod/readlink per file
        # (cdcpipe/jvm/spark/cdcpipe/spark/LocalCheckpointFileManager.java).
        .config("spark.sql.streaming.checkpointFileManagerClass", CHECKPOINT_FILE_MANAGER)
    )
    if args.ui_credentials:
        for key, value in ui_login_conf(args.ui_credentials).items():
            builder = builder.config(key, value)
    else:
        builder = builder.config("spark.ui.enabled", "false")
    spark = authenticated(builder, os.environ.get(AUTH_SECRET_ENV)).getOrCreate()
    spark.sparkContext.setLogLevel("WARN")
    require_project_classes(spark)
    return spark


def require_project_classes(spark) -> None:
    """Stop now, naming the jar, when the project's Spark classes are not on the driver's class
    path: the query would fail at every start (its checkpoint file manager) and be retried forever."""
    try:  # the loader Spark itself takes the checkpoint file manager from
        spark.sparkContext._jvm.org.apache.spark.util.Utils.classForName(CHECKPOINT_FILE_MANAGER, False, False)  # noqa: SLF001
    except Exception:  # py4j's error for a ClassNotFoundException
        spark.stop()
        raise SystemExit(
            f"{CHECKPOINT_FILE_MANAGER} is not on the job's class path: add cdcpipe-spark.jar "
            "(built by 'cdcpipe jars' into build/jars/spark-extras/) to --jars"
        ) from None


def executor_conf(args: argparse.Namespace) -> SinkConfig:
    """What every task needs to reach Cassandra and the registry (``executor_sink``'s key)."""
    return {
        "cassandra_host": args.cassandra_host,
        "cassandra_port": args.cassandra_port,
        "cassandra_credentials": args.cassandra_credentials,
        "keyspace": args.keyspace,
        "table": args.table,
        "registry_url": args.registry_url,
        "registry_credentials": args.registry_credentials,
        "write_consistency": args.write_consistency,
        "topic": args.topic,
        "schema_changes_topic": args.schema_changes_topic,
    }


class Stopping:
    """Set by SIGTERM or SIGINT: the query stops after its current batch."""

    def __init__(self) -> None:
        self.now = False

    def install(self) -> None:
        signal.signal(signal.SIGTERM, self._on_signal)
        signal.signal(signal.SIGINT, self._on_signal)

    def _on_signal(self, signum, _frame) -> None:
        log.info("signal %s: stopping the query after the current batch", signum)
        self.now = True

    def pause(self, seconds: float) -> None:
        """Sleep up to ``seconds``, less if asked to stop meanwhile."""
        deadline = time.monotonic() + seconds
        while not self.now and time.monotonic() < deadline:
            time.sleep(0.2)


class BatchApplier:
    """``foreachBatch``'s function: the batch applied on the executors, its schema changes on
    the driver after them, and the counts added to the totals of the progress file."""

    def __init__(self, spark, conf: SinkConfig, report: ProgressReport, keep_warm_seconds: float):
        self.spark, self.conf, self.report = spark, conf, report
        self.keep_warm_seconds = keep_warm_seconds
        self.epoch_topics = job_topics(conf["topic"], conf["schema_changes_topic"])
        self.on_executors = ArrowMapper(lambda it: apply_arrow(it, conf), APPLIED_SCHEMA, COLUMNS)

    def __call__(self, batch, batch_id: int) -> None:
        # The work happens on the executors; only one row of counts per partition returns.
        conf = self.conf
        try:
            # One view of cdc.sync_state and of the floors for every task of the batch
            # (pipeline/sync_state.py, pipeline/schema_changes.py), read here once instead of
            # by every task. pyspark pins this thread to a JVM thread, whose local properties
            # the batch's job takes to its tasks.
            session = executor_sink(conf)[0].session
            context = self.spark.sparkContext
            context.setLocalProperty(SYNC_BATCH_PROPERTY, sync_snapshot(session, self.epoch_topics, conf["keyspace"]))
            context.setLocalProperty(FLOORS_PROPERTY, floors_snapshot(load_floors(session, conf["keyspace"], conf["table"])))
            counts = self.on_executors(batch).collect()
            # DDL after the batch's row writes, on the driver: a TRUNCATE or DROP COLUMN then
            # covers every write of the batch older than it (pipeline/schema_changes.py).
            changes = [SchemaChange.from_json(text) for row in counts for text in row.schema_changes or []]
            if changes:
                for done in apply_schema_changes(executor_sink(conf)[0], changes):
                    log.warning("schema change: %s", done)
        except Exception as exc:  # the executors' Python traceback is in this one, not in the query's
            unreached = explain_unreached(exc)  # "against any hosts, {}" says nothing by itself
            self.report.cause = _first_line(exc) + (f" ({unreached})" if unreached else "")
            raise
        totals = self.report.totals
        for row in counts:
            totals["records"] += row.records
            totals["writes"] += row.writes
            totals["dead"] += row.dead
            totals["tasks_batch_view" if row.view == "batch" else "tasks_own_view"] += 1
        totals["batches"] += 1

    def keep_warm(self, query) -> None:
        """Run a Python task on both cores when no batch has for --keep-warm-seconds (and none
        is running). Spark's JVM stops every idle Python worker once none has been used for a
        minute (PythonWorkerFactory.IDLE_WORKER_TIMEOUT_NS, fixed, checked every 10 s); the next
        change then waited for a new worker to import, connect to Cassandra and fetch schemas
        (the first change after 75 s idle took 1.7-1.8 s on a quiet machine, 0.2-0.5 s after a
        1-2 s pause)."""
        idle = time.monotonic() - self.report.python_used_at
        if not self.keep_warm_seconds or idle < self.keep_warm_seconds or query.status.get("isTriggerActive"):
            return
        self.report.python_used_at = time.monotonic()
        conf = self.conf
        try:
            self.spark.range(0, 2, 1, 2).mapInArrow(lambda it: keep_warm_arrow(it, conf), "ready long").collect()
        except Exception as exc:  # e.g. Cassandra away: the next batch will say so, and retry
            log.warning("keep-warm task failed: %s", _first_line(exc))


def start_query(spark, args: argparse.Namespace, apply_batch: BatchApplier):
    """The streaming query: the CDC topics from Kafka, each micro-batch to ``apply_batch``."""
    reader = (
        spark.readStream.format("kafka")
        .option("kafka.bootstrap.servers", args.bootstrap)
        .option("startingOffsets", args.starting_offsets)
        .option("maxOffsetsPerTrigger", str(args.max_offsets_per_trigger))
        .option("minPartitions", str(args.min_partitions))
        .option("failOnDataLoss", "true")  # never skip silently past lost offsets
        # A task reads up to the partition's end; the broker then held each fetch for the
        # default 500 ms waiting for more. Measured: a one-record batch 800 -> 300 ms.
        .option("kafka.fetch.max.wait.ms", "10")
        # The driver's AdminClient lists the latest offsets before each batch. A request
        # for a partition whose leader just died stays pinned to that broker until it
        # answers or default.api.timeout.ms (60 s) ends: on the cluster a leader-broker
        # kill stalled the job 53 s, until the dead broker was back. With 10 s the call
        # fails, Spark retries it (fetchOffset.numRetries) on a new AdminClient, which
        # finds the new leader. request.timeout.ms must not exceed it (the client refuses).
        .option("kafka.request.timeout.ms", "10000")
        .option("kafka.default.api.timeout.ms", "10000")
        .options(**{f"kafka.{k}": v for k, v in kafka_login(args, "kafka_java_settings").items()})
    )
    reader = reader.option("subscribePattern", args.topic_pattern) if args.topic_pattern else reader.option("subscribe", subscribed(args))
    stream = reader.load().select(*COLUMNS)
    return (
        stream.writeStream.queryName(QUERY_NAME)
        .foreachBatch(apply_batch)
        .option("checkpointLocation", args.checkpoint)
        .trigger(processingTime=f"{args.trigger_seconds} seconds")
        .start()
    )


def supervise(spark, args: argparse.Namespace, apply_batch: BatchApplier, stopping: Stopping) -> None:
    """Run the query until asked to stop, restarting it with backoff whenever it fails.

    A failed query is never given up on: anything that escapes apply_partition is the
    system's fault (Cassandra, the registry or Kafka away; a record's own faults are
    dead-lettered there), so the same batch is retried, with backoff, until it succeeds.
    The checkpoint has not moved past it, so nothing is skipped.
    """
    report = apply_batch.report
    query = None
    try:
        while not stopping.now:
            if not wait_for_topic(args, report, stopping):
                break
            try:
                query = start_query(spark, args, apply_batch)
            except Exception as exc:  # e.g. Kafka unreachable while planning
                error = f"{exc.__class__.__name__}: {str(exc).splitlines()[0] if str(exc) else ''}"
            else:
                report.query = query
                log.info(
                    "started: %s -> %s.%s, checkpoint %s", args.topic_pattern or args.topic, args.keyspace, args.table, args.checkpoint
                )
                try:
                    while not stopping.now and not query.awaitTermination(HEARTBEAT_SECONDS):
                        report.write("running")  # a heartbeat; batches are reported as they end
                        apply_batch.keep_warm(query)
                except StreamingQueryException:
                    pass  # awaitTermination raises what failed the query; query.exception() has it
                if stopping.now:
                    break
                failure = query.exception()
                if failure is None:  # stopped from outside (not by us): nothing to retry
                    break
                error, report.cause = report.cause or _first_line(failure), None
            attempts = report.failed(error)
            delay = min(RETRY_MAX_SECONDS, RETRY_FIRST_SECONDS * 2 ** (attempts - 1))
            log.error("query failed (%d in a row): %s; restarting in %.0fs", attempts, error, delay)
            report.write("retrying", f"{error} (attempt {attempts}, next in {delay:.0f}s)")
            stopping.pause(delay)
    finally:
        if query is not None and query.isActive:
            query.stop()


def main(argv: list[str] | None = None) -> int:
    args = options(argv)
    consistency(args.write_consistency)  # a misspelt level fails here, not on every batch
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s %(message)s")
    spark = spark_session(args)
    # tasks_*_view: how the batches' tasks got their sync epochs and floors (the driver's one
    # view per batch, or each reading the tables); the tests check the first is what happens.
    totals = {"records": 0, "writes": 0, "dead": 0, "batches": 0, "tasks_batch_view": 0, "tasks_own_view": 0}
    report = ProgressReport(args.progress_file, totals)
    report.register(spark)
    stopping = Stopping()
    stopping.install()
    try:
        supervise(spark, args, BatchApplier(spark, executor_conf(args), report, args.keep_warm_seconds), stopping)
    finally:
        report.write("stopped")
        spark.stop()
    return 0


def _first_line(exc: Any) -> str:
    """A failed query's reason in one line: Spark's error class and the exception at the root
    (the Python one when the batch function raised, e.g. cassandra's NoHostAvailable)."""
    import re

    text = str(exc)
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    codes = [c for c in re.findall(r"\[([A-Z][A-Z_]+)\]", text) if c != "STREAM_FAILED"]
    causes = [
        line
        for line in lines
        if re.match(r"^(?:(?:[A-Za-z_]\w*\.)+[A-Z]\w*|[A-Z]\w*(?:Error|Exception|Unavailable|Timeout|Failure)): ", line)
        and not line.startswith(("pyspark.", "py4j.", "org.apache.spark.", "Traceback"))
    ]
    kind = type(exc)
    if not codes and not causes and not kind.__module__.startswith(("pyspark", "py4j")):
        # Raised on the driver by our own code (e.g. its read of cdc.sync_state while Cassandra
        # is down): a Python exception whose text alone may not say what it is.
        return f"{kind.__module__}.{kind.__qualname__}: {lines[0] if lines else ''}"[:600]
    parts = [codes[0]] if codes else []
    parts.append(causes[-1] if causes else (lines[0] if lines else kind.__name__))
    return ": ".join(parts)[:600]


if __name__ == "__main__":
    sys.exit(main())
