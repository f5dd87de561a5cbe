"""A node lost under load stops nothing: the cluster topology's node-loss tests.

They run on the cluster topology only (``CDCPIPE_TOPOLOGY=cluster make test-cluster``; CI runs
them on a cluster stack of their own) and are skipped on the single-node one, where losing a
node is an outage by definition (tests/test_faults.py covers that: retry, then heal).

Each test writes 200 changes/s of mixed inserts, updates and deletes (the benchmarks' ``Load``),
SIGKILLs one or two nodes, and prints two figures. 200, not the 300 of issue 25: on the shared
2-core machine the whole cluster (three of each node, one set of cores) applies about 260
changes/s, and runs at 300 ended 25-35 s behind, so they measured a backlog more than a node
loss (docs/benchmarks.md).

* **stall**: the longest stretch, from the kill until the writes stop, in which the job's
  count of applied writes did not move (the job's progress file, written after every
  micro-batch; so a stall is never shorter than a batch);
* **equal after**: seconds from the end of the writes until cdc.users equals public.users.
"""

from __future__ import annotations

import re
import signal
import threading
import time
from typing import Any

import pytest
import requests
from cdc_helpers import pipeline_facts, wait_for

from cdcpipe import runtime, settings, verify
from cdcpipe.bench.latency import Load
from cdcpipe.runtime import processes, streaming_job

pytestmark = pytest.mark.skipif(
    settings.load().topology != "cluster", reason="node-loss tests of the cluster topology: CDCPIPE_TOPOLOGY=cluster"
)

RATE = 200
TOPIC = "cdc.public.users"


@pytest.fixture(autouse=True)
def whole_cluster_again(conf, stack, spark_job):
    """Every node up again after each test, passed or failed, and the job applying again
    (a job that retried waits up to 30 s between attempts): the next test starts whole."""
    yield
    runtime.up(conf, progress=lambda _m: None)
    wait_for(lambda: streaming_job.status(conf)["state"] == "running", 180, "the job running again on the whole cluster")


class Applied(threading.Thread):
    """Samples the job's applied-write total and state every 0.2 s (its progress file)."""

    def __init__(self, conf: Any):
        super().__init__(daemon=True)
        self.conf = conf
        self.stop = threading.Event()
        self.moves: list[float] = []  # when the total went up
        self.states: list[tuple[float, str, str]] = []  # (when, state, reason)
        self._last: int | None = None

    def run(self) -> None:
        while not self.stop.is_set():
            report = streaming_job.read_progress(self.conf) or {}
            now = time.monotonic()
            writes = (report.get("totals") or {}).get("writes")
            if writes is not None and self._last is not None and writes > self._last:
                self.moves.append(now)
            if writes is not None:
                self._last = writes
            state = report.get("state") or "?"
            if not self.states or self.states[-1][1] != state:
                self.states.append((now, state, str(report.get("reason") or "")))
            time.sleep(0.2)

    def stall(self, start: float, end: float) -> float:
        """The longest stretch within [start, end] with no applied write."""
        marks = [start, *(t for t in self.moves if start < t < end), end]
        return max(b - a for a, b in zip(marks, marks[1:], strict=False))

    def states_since(self, since: float) -> list[tuple[str, str]]:
        earlier = [s for s in self.states if s[0] <= since][-1:]
        return [(state, reason) for _, state, reason in earlier + [s for s in self.states if s[0] > since]]


class UnderLoad:
    """``with UnderLoad(conf, stack) as run:`` RATE changes/s and an :class:`Applied` watch;
    on leaving, the writes stop and the read model must become equal (``run.equal_after``)."""

    def __init__(self, conf: Any, stack: dict[str, Any], seed: int):
        self.conf, self.stack = conf, stack
        self.writer = Load(stack["postgres"].dsn(), rate=RATE, seed=seed)
        self.applied = Applied(conf)
        self.fault_at = self.writes_stopped_at = 0.0
        self.equal_after = 0.0
        self.rows = 0

    def __enter__(self) -> UnderLoad:
        self.writer.start()
        self.applied.start()
        time.sleep(8)  # the job applying the load before any fault
        return self

    def fault(self) -> None:
        self.fault_at = time.monotonic()

    def stall(self) -> float:
        return self.applied.stall(self.fault_at, self.writes_stopped_at)

    def __exit__(self, *exc: Any) -> None:
        self.writer.stop.set()
        self.writer.join(10)
        self.writes_stopped_at = time.monotonic()
        try:
            if exc[0] is None:
                assert self.writer.error is None, self.writer.error
                assert self.writer.done > RATE * 10, self.writer.done
                import psycopg

                with self.stack["cassandra"].connected() as session, psycopg.connect(self.stack["postgres"].dsn(), autocommit=True) as pg:
                    try:
                        model = verify.wait_until_equal(pg, session, timeout=300)
                    except verify.Mismatch as mismatch:
                        raise AssertionError(f"{mismatch}\n{pipeline_facts(self.conf)}") from None
                self.equal_after = time.monotonic() - self.writes_stopped_at
                self.rows = len(model)
        finally:
            self.applied.stop.set()
            self.applied.join(5)


def kill_node(conf: Any, process: str) -> None:
    """SIGKILL one node's process tree, as a crash of that machine would."""
    assert processes.pid_of(conf, process) is not None, f"{process} is not running"
    processes.stop(conf, process, sig=signal.SIGKILL, timeout=5)


def report(what: str, run: UnderLoad, **more: Any) -> None:
    extra = "".join(f", {k.replace('_', ' ')} {v}" for k, v in more.items())
    print(
        f"\n  {what}: stall {run.stall():.1f}s, read model equal {run.equal_after:.1f}s after the writes stopped "
        f"({run.writer.done} changes, {run.rows} rows){extra}"
    )


def hint_files(cassandra: Any, *nodes: int) -> list[str]:
    """The hint files ``nodes`` keep for a peer that is down (``<host id>-<time>-<version>.hints``
    in each node's hints directory; replayed and deleted once the peer is back). Read from
    disk: ``nodetool listpendinghints`` did not list a hint file still being written (seen in
    CI, while the file was there)."""
    return sorted(str(p) for node in nodes for p in (cassandra.node_dir(node) / "data" / "hints").glob("*.hints"))


def test_one_cassandra_node_lost_stops_nothing_and_hints_catch_it_up(conf, stack, spark_job, connector):
    """RF 3 and LOCAL_QUORUM: with one node of three gone the job's writes still reach a
    quorum, so it never retries. The two live nodes keep hints for the dead one; once `up`
    starts it again they replay them, and a read at ALL (every replica) equals PostgreSQL."""
    cassandra = stack["cassandra"]
    with UnderLoad(conf, stack, seed=11) as run:
        kill_node(conf, "cassandra-2")
        run.fault()
        stored = wait_for(lambda: hint_files(cassandra, 1, 3), 90, "the live nodes keeping hints for the dead one")
        time.sleep(15)  # under load, one node down
        states = run.applied.states_since(run.fault_at)
        runtime.up(conf, ["cassandra"], progress=lambda _m: None)
        back_at = time.monotonic()
    assert [s for s in states if s[0] != "running"] == [], states
    assert [s for s in run.applied.states_since(run.fault_at) if s[0] != "running"] == []
    wait_for(lambda: not hint_files(cassandra, 1, 3), 180, "the hints replayed (no hint file left)")
    replayed = time.monotonic() - back_at
    import psycopg

    with cassandra.connected(consistency="ALL") as session, psycopg.connect(stack["postgres"].dsn(), autocommit=True) as pg:
        model = verify.wait_until_equal(pg, session, timeout=60)
    assert len(model) == run.rows
    report("cassandra-2 SIGKILL", run, hints_replayed_within=f"{replayed:.0f}s of its return (hint files kept: {len(stored)})")


def test_two_cassandra_nodes_lost_the_job_retries_and_names_it_then_heals(conf, stack, spark_job, connector):
    """Two of three nodes gone: no quorum. The job retries (never skips) and its reason names
    the consistency it cannot reach; one node back is a quorum again, and the job goes on by
    itself, with no step from anyone."""
    cassandra = stack["cassandra"]
    with UnderLoad(conf, stack, seed=12) as run:
        kill_node(conf, "cassandra-2")
        kill_node(conf, "cassandra-3")
        run.fault()
        # Cassandra names it in one of two ways: too few replicas alive for the write
        # (Unavailable), or, for a new connection's login and permission reads, a read that
        # got "only 1 responses" of the quorum. (The first attempt may fail before that, with
        # the driver left no node to try: "against any hosts", which must then say how the
        # driver sees each node.)
        named = re.compile(r"Unavailable|LOCAL_QUORUM|received only 1 responses")
        reasons: list[str] = []

        def retrying_and_named() -> dict | None:
            s = streaming_job.status(conf)
            if s["state"] == "retrying":
                reasons.append(s["reason"] or "")
                return s if named.search(s["reason"] or "") else None
            return None

        try:
            status = wait_for(retrying_and_named, 180, "the job retrying, naming the consistency it cannot reach")
        except AssertionError as exc:
            raise AssertionError(f"{exc}; reasons seen: {sorted(set(reasons))}") from None
        unexplained = [r for r in reasons if "any hosts', {})" in r and "the driver sees" not in r]
        assert not unexplained, unexplained
        cassandra.launch([2])  # one node back: a quorum again
        wait_for(lambda: streaming_job.status(conf)["state"] == "running", 240, "the job running again with two nodes")
        healed = time.monotonic() - run.fault_at
    runtime.up(conf, ["cassandra"], progress=lambda _m: None)  # the third node too
    report("cassandra-2 and -3 SIGKILL", run, reason=repr((status["reason"] or "")[:100]), running_again_after=f"{healed:.0f}s")


def _leader_of_partition_0(kafka: Any) -> int:
    meta = kafka.admin().list_topics(TOPIC, timeout=10)
    return meta.topics[TOPIC].partitions[0].leader


def test_the_broker_leading_the_cdc_partition_lost_stops_nothing(conf, stack, spark_job, connector):
    """Every partition has a replica on each broker and a write needs two (acks=all,
    min.insync.replicas 2): when the leader dies another in-sync replica takes over, Debezium's
    producer and the job's consumer follow it, and nothing is lost or applied out of order."""
    kafka = stack["kafka"]
    with UnderLoad(conf, stack, seed=13) as run:
        leader = _leader_of_partition_0(kafka)
        victim = kafka.node_process(leader)
        kill_node(conf, victim)
        run.fault()
        new_leader = wait_for(lambda: (n := _leader_of_partition_0(kafka)) not in (leader, -1) and n, 60, "a new leader")
        time.sleep(20)
        states = run.applied.states_since(run.fault_at)
        runtime.up(conf, ["kafka"], progress=lambda _m: None)
    assert [s for s in states if s[0] != "running"] == [], states
    report(f"{victim} (leader of partition 0) SIGKILL", run, new_leader=kafka.node_process(new_leader))


def _task_worker(connect: Any) -> str:
    tasks = connect.client().status("users-cdc").get("tasks") or []
    return tasks[0]["worker_id"] if tasks and tasks[0]["state"] == "RUNNING" else ""


def test_a_connect_worker_lost_its_task_moves_to_the_other(conf, stack, spark_job, connector):
    """Two workers in one group: the task of a worker that dies is assigned to the other once
    the group notices (its session timeout; scheduled.rebalance.max.delay.ms is 0, so no
    waiting for the worker to come back), and capture goes on from the last committed offset."""
    connect = stack["connect"]
    with UnderLoad(conf, stack, seed=14) as run:
        worker = _task_worker(connect)
        assert worker, connect.client().status("users-cdc")
        port = int(worker.rsplit(":", 1)[1])
        victim = next(connect.node_process(n) for n in connect.nodes if connect.node_port(None, n) == port)
        kill_node(conf, victim)
        run.fault()
        moved_to = wait_for(lambda: (w := _task_worker(connect)) not in ("", worker) and w, 180, "the task running on the other worker")
        moved = time.monotonic() - run.fault_at
        time.sleep(10)
        runtime.up(conf, ["connect"], progress=lambda _m: None)
    report(f"{victim} SIGKILL", run, task_moved_to=f"{moved_to} after {moved:.1f}s")


def test_a_spark_worker_lost_its_tasks_run_on_the_other(conf, stack, spark_job, connector):
    """The job's executors run on both workers. A worker killed with its executor: the tasks
    it had are run again on the other executor (Spark's task retry; the sink writes are
    idempotent), the job never reports a failed batch, and `up` starts the worker again, which
    the master gives a new executor of the job."""
    spark = stack["spark"]
    with UnderLoad(conf, stack, seed=15) as run:
        # The premise: the job has an executor (a core in use) on each worker, the killed one too.
        master = requests.get(spark.ui_url + "/json/", auth=spark.ui_login.pair, timeout=10).json()
        assert [w["coresused"] for w in master["workers"] if w["state"] == "ALIVE"] == [1, 1], master["workers"]
        kill_node(conf, "spark-worker-2")
        run.fault()
        time.sleep(20)
        states = run.applied.states_since(run.fault_at)
        runtime.up(conf, ["spark"], progress=lambda _m: None)
    assert [s for s in states if s[0] != "running"] == [], states
    assert spark.running()
    report("spark-worker-2 SIGKILL (and its executor)", run)


def test_the_console_shows_every_node_and_the_one_lost(conf, stack, spark_job, page):
    """The console's overview, in a real browser: a row per node, all running; a Spark worker
    SIGKILLed shows as stopped (its service degraded) within a sample or two, and as running
    again once `up` has started it."""
    from cdc_helpers import shot
    from playwright.sync_api import expect

    nodes = runtime.status(conf)["nodes"]
    page.goto("/")
    for name in nodes:
        expect(page.locator(f'tr[data-node="{name}"] td.state')).to_have_text("running", timeout=60_000)
    expect(page.locator("#nodes-card")).to_contain_text(f"{len(nodes)}/{len(nodes)} running")
    kill_node(conf, "spark-worker-2")
    expect(page.locator('tr[data-node="spark-worker-2"] td.state')).to_have_text("stopped", timeout=60_000)
    expect(page.locator('tr[data-service="spark"] td.state')).to_have_text("degraded")
    expect(page.locator("#nodes-card")).to_contain_text(f"{len(nodes) - 1}/{len(nodes)} running")
    shot(page, "cluster-node-lost")
    runtime.up(conf, ["spark"], progress=lambda _m: None)
    expect(page.locator('tr[data-node="spark-worker-2"] td.state')).to_have_text("running", timeout=60_000)
