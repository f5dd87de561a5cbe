"""Pure pieces that need no service: the liveness verdict, latency percentiles, topics.json, when Connect counts a connector as stopped."""

from __future__ import annotations

import json
import time

import pytest

from cdcpipe import settings
from cdcpipe.bench import latency
from cdcpipe.clients import topics
from cdcpipe.clients.connect import ConnectClient
from cdcpipe.errors import ConfigError
from cdcpipe.runtime import liveness

RUNNING = {"connector": {"state": "RUNNING"}, "tasks": [{"id": 0, "state": "RUNNING"}]}


@pytest.mark.parametrize(
    ("status", "age", "lag", "verdict"),
    [
        (RUNNING, 5.0, 1000, "moving"),
        (RUNNING, 90.0, 0, "moving"),  # no heartbeat, but nothing to capture either
        (RUNNING, 90.0, 4096, "stuck"),
        ({"connector": {"state": "RUNNING"}, "tasks": [{"id": 0, "state": "FAILED"}]}, 1.0, 0, "failed"),
        ({"connector": {"state": "PAUSED"}, "tasks": [{"id": 0, "state": "PAUSED"}]}, 90.0, 4096, "paused"),
        (None, None, None, "absent"),
        ({"connector": {"state": "RUNNING"}, "tasks": []}, 1.0, 0, "unknown"),
        # Left unassigned (or without tasks) by a worker that came back: stuck once no
        # heartbeat came for the threshold while WAL waits, so the watchdog restarts it.
        ({"connector": {"state": "UNASSIGNED"}, "tasks": [{"id": 0, "state": "UNASSIGNED"}]}, 10.0, 4096, "unknown"),
        ({"connector": {"state": "UNASSIGNED"}, "tasks": [{"id": 0, "state": "UNASSIGNED"}]}, 90.0, 4096, "stuck"),
        ({"connector": {"state": "RUNNING"}, "tasks": []}, 90.0, 4096, "stuck"),
        # Stopped on purpose (resync, reset-offsets): never restarted, however long.
        ({"connector": {"state": "STOPPED"}, "tasks": []}, 900.0, 4096, "stopped"),
    ],
)
def test_liveness_verdicts(status, age, lag, verdict):
    assert liveness.judge(status, age, lag, True, stuck_after=60).state == verdict


def test_a_snapshot_without_heartbeats_is_moving_while_its_topics_grow():
    """Debezium writes no heartbeat while it snapshots: a long snapshot is not stuck while
    records reach its topics (the watchdog restarted it over and over: issue 23)."""
    assert liveness.judge(RUNNING, 300.0, 4096, True, stuck_after=60, produced_age=2.0).state == "moving"
    assert liveness.judge(RUNNING, 300.0, 4096, True, stuck_after=60, produced_age=61.0).state == "stuck"
    assert liveness.judge(RUNNING, 300.0, 4096, True, stuck_after=60, produced_age=None).state == "stuck"


def test_a_slot_that_stands_still_while_heartbeats_arrive_is_stuck():
    """The task thread blocked in the converter (a registry call never answered) while
    Debezium's streaming loop kept beating: nothing reached Kafka and the slot stood still.
    The heartbeat alone called that moving; the slot does not."""
    assert liveness.judge(RUNNING, 1.0, 4096, True, stuck_after=60, slot_still=90.0).state == "stuck"
    assert "the slot has not moved for 90s" in liveness.judge(RUNNING, 1.0, 4096, True, stuck_after=60, slot_still=90.0).reason
    assert liveness.judge(RUNNING, 1.0, 4096, True, stuck_after=60, slot_still=30.0).state == "moving"
    assert liveness.judge(RUNNING, 1.0, 0, True, stuck_after=60, slot_still=900.0).state == "moving"  # nothing owed
    # records still reaching its topics (a snapshot flushes nothing to the slot): moving
    assert liveness.judge(RUNNING, 1.0, 4096, True, stuck_after=60, slot_still=90.0, produced_age=5.0).state == "moving"
    both = liveness.judge(RUNNING, 90.0, 4096, True, stuck_after=60, slot_still=90.0)
    assert both.state == "stuck" and "no heartbeat for 90s and the slot has not moved" in both.reason


def test_stillness_is_dated_from_the_first_sight_and_reset_by_a_move():
    still = liveness.Stillness()
    assert still.age(None, now=5.0) is None
    assert still.age(100, now=10.0) == 0.0  # first sight: still since now
    assert still.age(100, now=40.0) == 30.0
    assert still.age(None, now=50.0) is None  # not known this time: the date stands
    assert still.age(100, now=80.0) == 70.0
    assert still.age(164, now=81.0) == 0.0  # moved
    assert still.age(164, now=90.0) == 9.0
    still.reset()
    assert still.age(164, now=95.0) == 0.0


def test_the_slot_standing_still_counts_only_while_it_means_something():
    """Paused, or re-reading WAL after a restart (the sender not yet past the confirmed
    position), the slot stands still by design: the clock starts again. Kafka not answering
    skips a check without forgetting."""
    facts = liveness.CaptureFacts(0.5, 4096, True, flushed_lsn=100, sent_past_flushed=True)
    rereading = liveness.CaptureFacts(0.5, 4096, True, flushed_lsn=100, sent_past_flushed=False)
    paused = {"connector": {"state": "PAUSED"}, "tasks": [{"id": 0, "state": "PAUSED"}]}
    tracker = liveness.Stillness()
    assert liveness.slot_still(tracker, RUNNING, facts, True, now=0.0) == 0.0
    assert liveness.slot_still(tracker, RUNNING, facts, True, now=30.0) == 30.0
    assert liveness.slot_still(tracker, RUNNING, facts, False, now=40.0) is None  # Kafka away: not judged
    assert liveness.slot_still(tracker, RUNNING, facts, True, now=50.0) == 50.0  # ... and not forgotten
    assert liveness.slot_still(tracker, paused, facts, True, now=60.0) is None
    assert liveness.slot_still(tracker, RUNNING, facts, True, now=300.0) == 0.0  # resumed: a first sight
    assert liveness.slot_still(tracker, RUNNING, rereading, True, now=330.0) is None
    assert liveness.slot_still(tracker, RUNNING, facts, True, now=400.0) == 0.0
    assert liveness.slot_still(tracker, {"connector": {"state": "RUNNING"}, "tasks": []}, facts, True, now=410.0) is None
    assert liveness.slot_still(tracker, None, facts, True, now=420.0) is None


def test_growth_is_dated_from_the_first_seen_increase():
    growth = liveness.Growth()
    assert growth.age({"t": 5}, now=100.0) is None  # first sight: nothing to compare
    assert growth.age({"t": 5}, now=110.0) is None  # no growth yet
    assert growth.age({"t": 9}, now=120.0) == 0.0
    assert growth.age({"t": 9}, now=150.0) == 30.0
    assert growth.age(None, now=160.0) == 40.0  # Kafka away: the last known growth stands


def test_percentiles_by_nearest_rank():
    values = [i / 1000 for i in range(1, 101)]  # 1..100 ms
    assert latency.percentiles(values) == {"p50_ms": 50, "p90_ms": 90, "p99_ms": 99, "max_ms": 100, "n": 100}
    assert latency.percentiles([0.25]) == {"p50_ms": 250, "p90_ms": 250, "p99_ms": 250, "max_ms": 250, "n": 1}
    assert latency.percentiles([]) == {}


def test_the_shipped_topics_file_is_valid_and_compacted():
    spec = {s.name: s for s in topics.load()}["cdc.public.users"]
    assert spec.config["cleanup.policy"] == "compact" and spec.partitions >= 1
    assert set(json.loads(topics.TOPICS_FILE.read_text())["topics"][0]["why"]) >= {"cleanup.policy", "partitions"}


def test_a_bad_topics_file_is_named(tmp_path):
    bad = tmp_path / "topics.json"
    bad.write_text('{"topics": [{"name": "x", "partitions": 0, "replication_factor": 1}]}')
    with pytest.raises(ConfigError, match=r"topics\[0\] \(x\): 'partitions' must be a whole number of at least 1, not 0"):
        topics.load(bad)
    bad.write_text("{not json")
    with pytest.raises(ConfigError, match="not valid JSON"):
        topics.load(bad)


def test_a_kraft_cluster_id_never_starts_with_a_dash():
    from cdcpipe.runtime.services.kafka import new_cluster_id

    draws = iter([b"\xf8" + bytes(15), b"\x00" * 16])  # the first encodes as "-A...", an option to the tool
    assert new_cluster_id(lambda: next(draws)) == "AAAAAAAAAAAAAAAAAAAAAA"


@pytest.mark.parametrize(
    "tasks, stopped",
    [
        ([], True),
        # seen in CI: a task that started between the create and the stop stays listed, its
        # config gone; Connect accepted DELETE /offsets and the resume in that state
        ([{"id": 0, "state": "UNASSIGNED", "worker_id": "127.0.0.1:8083", "version": None}], True),
        ([{"id": 0, "state": "RUNNING", "worker_id": "127.0.0.1:8083"}], False),
        ([{"id": 0, "state": "FAILED", "worker_id": "127.0.0.1:8083"}], False),
    ],
)
def test_a_connector_is_stopped_once_no_task_runs(tasks, stopped):
    status = {"name": "users-cdc", "connector": {"state": "STOPPED"}, "tasks": tasks, "type": "source"}
    assert ConnectClient._stopped(status) is stopped
    assert ConnectClient._stopped({**status, "connector": {"state": "RUNNING"}}) is False


def test_the_watchdog_reads_no_topic_from_a_kafka_that_is_away(tmp_path):
    """Capture is judged from PostgreSQL; the topics' growth is an extra fact. With Kafka away
    it must come back as unknown at once: the client's reconnect loop held the watchdog's first
    check past its 60 s readiness deadline, and `cdcpipe up` failed."""
    import time

    from cdc_helpers import settings_where_nothing_listens

    from cdcpipe.runtime import watchdog

    conf = settings_where_nothing_listens(tmp_path / "home")
    started = time.monotonic()
    assert watchdog.topic_ends(conf, ["cdc.public.users"]) is None
    assert time.monotonic() - started < 5


def test_a_no_host_error_that_names_no_node_says_how_the_driver_sees_each():
    """A NoHostAvailable with no per-node error (the driver had no node left to try, seen with
    two of three cluster nodes killed) gets the state of each node as the driver sees it; one
    that names its nodes is left as it is."""
    from cassandra.cluster import Cluster, NoHostAvailable
    from cassandra.connection import DefaultEndPoint
    from cassandra.pool import Host

    from cdcpipe.pipeline.cassandra_session import no_node_to_try

    cluster = Cluster(contact_points=["127.0.0.1"], port=1)
    for port, up in ((9062, False), (9042, True), (9052, False)):
        host, _ = cluster.metadata.add_or_return_host(Host(DefaultEndPoint("127.0.0.1", port), cluster.conviction_policy_factory))
        host.set_up() if up else host.set_down()
    nobody = NoHostAvailable("Unable to complete the operation against any hosts", {})
    assert no_node_to_try(nobody, cluster) == (
        "no Cassandra node left to try; the driver sees 127.0.0.1:9042 up, 127.0.0.1:9052 down, 127.0.0.1:9062 down"
    )
    named = NoHostAvailable("Unable to connect to any servers", {"127.0.0.1:9042": ConnectionRefusedError(111, "refused")})
    assert no_node_to_try(named, cluster) is None and no_node_to_try(ValueError("x"), cluster) is None
    assert no_node_to_try(nobody, Cluster(contact_points=["127.0.0.1"], port=1)).endswith("sees no node at all")


def test_a_node_whose_pool_fails_after_the_control_connection_is_not_ready_not_a_crash(monkeypatch):
    """The cluster's first ``make demo`` in CI died in Cassandra's readiness probe: the driver
    opened its control connection, then every host's pool failed (a node still starting), and
    it raised NoHostAvailable with a *list* of addresses where it otherwise gives a dict of
    errors. Reading that as a dict raised AttributeError, which ``cdcpipe up`` does not take
    for "not ready yet", and the stack was torn down. The probe now says not ready."""
    from cassandra import AuthenticationFailed
    from cassandra.cluster import NoHostAvailable

    from cdcpipe.pipeline import cassandra_session
    from cdcpipe.runtime.services.base import NotReady
    from cdcpipe.runtime.services.cassandra import ROLES, Cassandra

    pools_failed = NoHostAvailable("Unable to connect to any servers", ["127.0.0.1"])  # Session.__init__'s shape
    refused = NoHostAvailable("Unable to connect to any servers", {"127.0.0.1:9042": AuthenticationFailed("Bad credentials")})
    assert cassandra_session.refused_login(pools_failed) is None
    assert cassandra_session.refused_login(refused) == "Bad credentials"
    assert cassandra_session.refused_login(NoHostAvailable("x", {})) is None
    # A node short of the quorum to read its roles says "Bad credentials" too: not a refusal.
    no_quorum = AuthenticationFailed(
        'Failed to authenticate to 127.0.0.1:9052: Error from server: code=0100 [Bad credentials] message="Unable to perform '
        'authentication: Cannot achieve consistency level LOCAL_QUORUM"'
    )
    assert cassandra_session.refused_login(NoHostAvailable("x", {"127.0.0.1:9052": no_quorum})) is None

    def pools_fail(*args, **kwargs):
        raise pools_failed

    monkeypatch.setattr(cassandra_session, "session", pools_fail)
    conf = settings.load({"CDCPIPE_TOPOLOGY": "cluster", "CDCPIPE_HOME": "/nonexistent/state"})
    node = Cassandra(conf, {secret: "x" for _, secret in ROLES.values()})
    with pytest.raises(NotReady, match=r"CQL not answering on 127\.0\.0\.1:9042: \['127\.0\.0\.1'\]"):
        node.probe()
    # The same a moment later, in the set-up after the probe: tried again, not a crash.
    monkeypatch.setattr(node, "_take_over", pools_fail)
    with pytest.raises(NotReady, match=r"set-up could not reach a node: \['127\.0\.0\.1'\]"):
        node.after_ready()


def test_up_tries_a_set_up_that_is_not_ready_again_and_names_it_when_it_never_is(monkeypatch, tmp_path):
    """A service's set-up (after_ready: roles, keyspaces, topics) runs seconds after its first
    answer, when a cluster's nodes are least steady; a NotReady from it is tried again like
    the probe's, and after the service's timeout ``up`` fails naming the last reason."""
    from cdcpipe import runtime
    from cdcpipe.errors import ServiceFailed
    from cdcpipe.runtime.services.base import NotReady, Service

    class Settling(Service):
        name = "settling"
        start_timeout = 3.0
        failures = 2

        def running(self) -> bool:
            return True

        def any_running(self) -> bool:
            return True

        def probe(self) -> None:
            pass

        def after_ready(self) -> None:
            self.calls = getattr(self, "calls", 0) + 1
            if self.calls <= self.failures:
                raise NotReady(f"quorum not there yet (call {self.calls})")

    conf = settings.load({"CDCPIPE_HOME": str(tmp_path / "state")})
    made: list[Settling] = []

    def only_settling(settings_, names=None, with_dependencies=True):
        made.append(Settling(settings_, {}))
        return made[-1:]

    monkeypatch.setattr(runtime, "services", only_settling)
    monkeypatch.setattr(runtime.jars, "require", lambda settings_: None)
    notes: list[str] = []
    began = time.monotonic()
    runtime.up(conf, ["settling"], progress=notes.append)
    assert made[0].calls == 3 and notes[-1].startswith("✓ settling")
    assert time.monotonic() - began >= 3.0  # a pause of 1 s, then 2 s, between the tries

    Settling.failures = 10**6
    with pytest.raises(ServiceFailed, match=r"not ready after \d+s \(its limit: 3s\): quorum not there yet"):
        runtime.up(conf, ["settling"], progress=notes.append)


def test_a_failed_batch_s_reason_names_the_exception_raised_on_the_driver():
    """The job's driver reads cdc.sync_state before each batch: with Cassandra down, that
    read raises cassandra's NoHostAvailable, whose text alone does not name it. The reason
    `cdcpipe spark status` shows must (an operator, and test_faults, look for it)."""
    from cassandra.cluster import NoHostAvailable
    from cdc_helpers import job_module

    first_line = job_module()._first_line
    down = NoHostAvailable("Unable to complete the operation against any hosts", {"127.0.0.1:9042": ConnectionRefusedError(111, "refused")})
    assert first_line(down).startswith("cassandra.cluster.NoHostAvailable: ('Unable to complete the operation")
    # A query failure from Spark keeps its error class and the Python cause at its root.
    spark_text = (
        "[FOREACH_BATCH_USER_FUNCTION_ERROR] An error occurred.\n"
        "Traceback (most recent call last):\ncassandra.cluster.NoHostAvailable: ('Unable', {})"
    )
    assert first_line(Exception(spark_text)) == "FOREACH_BATCH_USER_FUNCTION_ERROR: cassandra.cluster.NoHostAvailable: ('Unable', {})"


@pytest.mark.parametrize(
    "failure, raised, words",
    [
        ("fenced", "ServiceUnavailable", "All brokers are currently fenced"),
        ("timeout", "ServiceUnavailable", "within 1 s"),
        ("replication", "ConfigError", "topics.json: Kafka refused creating topic t"),
    ],
)
def test_a_topic_kafka_cannot_make_yet_is_kafka_busy_and_one_it_refuses_is_named(failure, raised, words):
    """Creating a topic while every broker is fenced (a broker that missed its heartbeats under
    load) comes back from KRaft as INVALID_REPLICATION_FACTOR, and a future can run out of time
    before librdkafka fails it: both are Kafka busy, which ``up`` tries again, not a wrong
    topics.json. A replication factor Kafka cannot meet still names the file."""
    from concurrent.futures import Future

    from confluent_kafka import KafkaError, KafkaException

    from cdcpipe import errors

    class Admin:
        def list_topics(self, timeout=None, topic=None):
            return type("Meta", (), {"topics": {}})()

        def create_topics(self, new_topics, operation_timeout=None):
            future: Future = Future()
            if failure == "fenced":
                message = "Unable to replicate the partition 3 time(s): All brokers are currently fenced or in controlled shutdown."
                future.set_exception(KafkaException(KafkaError(KafkaError.INVALID_REPLICATION_FACTOR, message)))
            elif failure == "replication":
                message = "Unable to replicate the partition 3 time(s): The target replication factor of 3 cannot be reached"
                future.set_exception(KafkaException(KafkaError(KafkaError.INVALID_REPLICATION_FACTOR, message)))
            return {t.topic: future for t in new_topics}  # "timeout": never completed

    spec = topics.TopicSpec(name="t", partitions=1, replication_factor=3)
    with pytest.raises(getattr(errors, raised), match=words):
        topics.ensure(Admin(), [spec], timeout=1)


@pytest.mark.parametrize(
    "answer, words",
    [
        (b'HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 80\r\n\r\n{"n', "broke off GET /connectors/users"),
        (b"HTTP/1.1 200 OK\r\nContent-Type: text/html\r\nContent-Length: 13\r\n\r\n<html></html>", "with no JSON: '<html></html>'"),
    ],
)
def test_a_connect_worker_that_breaks_off_or_answers_no_json_is_unavailable(answer, words):
    """A Connect worker restarting in the middle of an answer, or answering a page that is not
    JSON, is Connect unavailable (what the watchdog and ``up`` wait out), not a crash."""
    import socket
    import threading

    from cdcpipe.errors import ServiceUnavailable

    server = socket.create_server(("127.0.0.1", 0))
    port = server.getsockname()[1]

    def serve() -> None:
        conn, _ = server.accept()
        conn.recv(65536)
        conn.sendall(answer)
        conn.close()

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    try:
        with pytest.raises(ServiceUnavailable, match=words):
            ConnectClient(f"http://127.0.0.1:{port}", timeout=5).status("users")
    finally:
        thread.join(5)
        server.close()


def test_the_registry_is_not_ready_until_its_guard_has_armed_since_its_last_start(tmp_path):
    """The registry's management port is guarded only once the agent has rewritten Netty's
    accept, which it logs. ``up`` stops on a registry whose log shows no such line since its
    last start (an older one does not count), and a request path in the access log that
    quotes the line does not pass for it."""
    from cdcpipe.errors import ServiceFailed
    from cdcpipe.runtime import processes
    from cdcpipe.runtime.services.schema_registry import GUARD_ARMED, SchemaRegistry

    conf = settings.load({"CDCPIPE_HOME": str(tmp_path / "state")})
    registry = SchemaRegistry(conf, {})
    log = conf.log_file("schema_registry")
    log.parent.mkdir(parents=True)
    start = "\n=== 2026-12-07 10:00:0{} starting schema_registry: java -javaagent:cdcpipe-guard.jar=8082 -jar quarkus-run.jar\n"
    log.write_text(start.format(1) + f"{GUARD_ARMED} on port(s) [8082]: only uid 0 may connect\n" + "x" * 5000 + start.format(2))
    with pytest.raises(ServiceFailed, match="guard agent has not armed"):
        registry.require_guard()
    with log.open("a") as fh:
        fh.write(f'10:00:03 INFO [io.qu.ht.access-log] "method="GET" path="/{GUARD_ARMED}" response_code="401"\n')
    with pytest.raises(ServiceFailed, match="guard agent has not armed"):
        registry.require_guard()
    with log.open("a") as fh:
        fh.write(f"{GUARD_ARMED} on port(s) [8082]: only uid 0 may connect\n")
    registry.require_guard()
    # Read backwards in small pieces, the header split across them, it is still the last start.
    assert processes.log_since_start(conf, "schema_registry", chunk=7).startswith(start.format(2))
    # The last start far behind the end (many pieces back), and only ``limit`` bytes of it read.
    with log.open("a") as fh:
        fh.write("access line\n" * 5000)
    since = processes.log_since_start(conf, "schema_registry", chunk=1000, limit=300)
    assert since.startswith(start.format(2)) and len(since) == 300
