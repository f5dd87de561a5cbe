"""The CDC topic is made deliberately (connectors/topics.json), and the Spark job waits for
a topic that does not exist yet instead of dying."""

from __future__ import annotations

import argparse
import threading
import time
import uuid

from cdc_helpers import job_module

from cdcpipe.clients import topics


def test_up_made_the_cdc_topic_as_topics_json_says(stack):
    spec = {s.name: s for s in stack["kafka"].topic_specs()}["cdc.public.users"]  # the cluster's block on the cluster
    described = topics.describe(stack["kafka"].admin(), spec.name)
    assert described["partitions"] == spec.partitions
    for key, value in spec.config.items():
        assert described["config"][key] == value, key
    assert described["config"]["cleanup.policy"] == "compact"


def test_ensure_creates_and_repairs_a_topic(stack):
    admin = stack["kafka"].admin()
    name = f"test.topics.{uuid.uuid4().hex[:8]}"
    spec = topics.TopicSpec(name, 2, 1, {"cleanup.policy": "compact", "delete.retention.ms": "123456"})
    said: list[str] = []
    topics.ensure(admin, [spec], progress=said.append)
    assert said and name in said[0] and "created" in said[0]
    assert topics.describe(admin, name)["partitions"] == 2
    # Someone changed it by hand: the next ensure (every `up`) puts the file's values back,
    # and adds partitions the file asks for.
    topics.ensure(admin, [topics.TopicSpec(name, 3, 1, {"cleanup.policy": "delete", "delete.retention.ms": "1000"})])
    topics.ensure(admin, [topics.TopicSpec(name, 3, 1, spec.config)])
    described = topics.describe(admin, name)
    assert described["partitions"] == 3
    assert described["config"]["cleanup.policy"] == "compact" and described["config"]["delete.retention.ms"] == "123456"
    admin.delete_topics([name])[name].result(timeout=30)


def test_ensure_returns_only_once_kafka_shows_the_change(stack):
    """KRaft acknowledges a create or an alter before the broker shows it (topics.py's
    docstring: about 1 in 120 changes here, more under load). ``ensure`` waits until it is
    shown, so a describe right after it never reads the old state; 40 rounds of three
    ensures make a regression likely to show."""
    admin = stack["kafka"].admin()
    stale = []
    for round_ in range(40):
        name = f"test.shown.{uuid.uuid4().hex[:8]}"
        for partitions, policy in ((1, "compact"), (2, "delete"), (2, "compact")):
            topics.ensure(admin, [topics.TopicSpec(name, partitions, 1, {"cleanup.policy": policy})])
            described = topics.describe(admin, name)
            if (described["partitions"], described["config"]["cleanup.policy"]) != (partitions, policy):
                stale.append((round_, partitions, policy, described["partitions"], described["config"]["cleanup.policy"]))
        admin.delete_topics([name])[name].result(timeout=30)
    assert stale == []


class _Report:
    def __init__(self):
        self.writes: list[tuple[str, str | None]] = []

    def write(self, state, reason=None):
        self.writes.append((state, reason))


def test_the_job_waits_for_a_missing_topic_and_says_so(stack):
    """Subscribing to a topic that does not exist fails a Spark query at start; the job
    waits for it instead, reporting 'waiting' with the reason, and goes on once it exists."""
    job = job_module()
    name = f"test.notyet.{uuid.uuid4().hex[:8]}"
    args = argparse.Namespace(
        topic=name, topic_pattern=None, bootstrap=stack["kafka"].bootstrap, kafka_credentials=str(stack["kafka"].credentials_file)
    )
    report = _Report()
    admin = stack["kafka"].admin()

    def create_later():
        time.sleep(4)
        topics.ensure(admin, [topics.TopicSpec(name, 1, 1, {})])

    creator = threading.Thread(target=create_later)
    creator.start()
    started = time.monotonic()
    assert job.wait_for_topic(args, report, job.Stopping()) is True
    creator.join()
    assert time.monotonic() - started >= 4
    assert report.writes and all(state == "waiting" for state, _ in report.writes)
    assert report.writes[0][1] == f"waiting for topic {name} to exist on {stack['kafka'].bootstrap}"
    admin.delete_topics([name])[name].result(timeout=30)


def test_waiting_for_a_topic_ends_when_the_job_is_asked_to_stop(stack):
    job = job_module()
    args = argparse.Namespace(
        topic=f"test.never.{uuid.uuid4().hex[:8]}",
        topic_pattern=None,
        bootstrap=stack["kafka"].bootstrap,
        kafka_credentials=str(stack["kafka"].credentials_file),
    )
    stopping = job.Stopping()
    threading.Timer(2, lambda: setattr(stopping, "now", True)).start()
    assert job.wait_for_topic(args, _Report(), stopping) is False
