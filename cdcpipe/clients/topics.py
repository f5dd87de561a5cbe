"""The CDC topics, made deliberately before anything reads or writes them.

``connectors/topics.json`` names each topic with its partition count, replication factor and
configuration, and says why each value was chosen (its ``why``). ``cdcpipe up`` applies it
once Kafka is ready, idempotently: a missing topic is created; an existing one gets the
file's configuration and, if it has fewer partitions than the file asks for, more
partitions. Partitions are never removed (Kafka cannot) and a larger count is left alone
with a warning. The Docker stack's ``topics-init`` applies the same values
(``tests/test_compose.py`` holds the two together).

Why a file and not Kafka's auto-creation: an auto-created topic gets the broker's defaults
(time retention), and it only exists once Debezium writes its first event, so a reader that
starts first (the Spark job on a fresh stack with an empty table) finds no topic at all.

Why ``ensure`` waits until the broker *reports* the file's values: in KRaft the controller
answers CreateTopics and IncrementalAlterConfigs once the change is in its metadata log, and
the broker applies that log a moment later. Until then the broker's metadata and
DescribeConfigs answer with the old state. Measured on the local runtime (one combined
broker+controller, Kafka 4.3.1 KRaft, 2 shared cores), 200 rounds of create, alter, alter: 5 of
the 600 acknowledged changes were not yet visible to the first describe (one 50 ms poll
later they were), and 3 of 6 runs of a 100-round probe died on "Unknown topic or partition"
describing a topic whose creation had been acknowledged. CI once read back the previous
``cleanup.policy`` right after an acknowledged alter. So ``ensure`` does not return on the
acknowledgement: it polls ``describe`` until partitions and settings match and raises
ServiceUnavailable if Kafka never shows them within ``timeout``.
A topic created meanwhile by someone else ("already exists") is reconciled like any
existing topic, not skipped.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .. import jsonfile
from ..errors import ConfigError, ServiceUnavailable
from ..settings import REPO

TOPICS_FILE = REPO / "connectors" / "topics.json"


@dataclass(frozen=True)
class TopicSpec:
    name: str
    partitions: int
    replication_factor: int
    config: dict[str, str] = field(default_factory=dict)
    #: What the cluster topology changes (the file's ``cluster``: partitions,
    #: replication_factor, config), applied by :meth:`on_cluster`.
    cluster: dict[str, Any] = field(default_factory=dict, compare=False)

    def on_cluster(self) -> TopicSpec:
        """This topic as the cluster topology makes it (the file's ``cluster`` block)."""
        return TopicSpec(
            self.name,
            int(self.cluster.get("partitions", self.partitions)),
            int(self.cluster.get("replication_factor", self.replication_factor)),
            {**self.config, **{str(k): str(v) for k, v in self.cluster.get("config", {}).items()}},
        )


def load(path: Path = TOPICS_FILE) -> list[TopicSpec]:
    """The topics of ``path``; a ConfigError names the file and what is wrong in it."""
    data = jsonfile.read(path)
    entries = data.get("topics") if isinstance(data, dict) else None
    if not isinstance(entries, list) or not entries:
        raise ConfigError(f'{path}: expected {{"topics": [{{"name", "partitions", "replication_factor", "config"}}, ...]}}')
    specs = []
    for i, entry in enumerate(entries):
        where = f"{path}: topics[{i}]"
        if not isinstance(entry, dict) or not isinstance(entry.get("name"), str) or not entry["name"]:
            raise ConfigError(f"{where}: needs a non-empty string 'name'")
        for key in ("partitions", "replication_factor"):
            value = entry.get(key)
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise ConfigError(f"{where} ({entry['name']}): '{key}' must be a whole number of at least 1, not {value!r}")
        config = entry.get("config", {})
        if not isinstance(config, dict):
            raise ConfigError(f"{where} ({entry['name']}): 'config' must be an object of topic settings")
        cluster = entry.get("cluster", {})
        if not isinstance(cluster, dict) or not set(cluster) <= {"partitions", "replication_factor", "config"}:
            raise ConfigError(f"{where} ({entry['name']}): 'cluster' may set partitions, replication_factor and config only")
        specs.append(
            TopicSpec(entry["name"], entry["partitions"], entry["replication_factor"], {str(k): str(v) for k, v in config.items()}, cluster)
        )
    return specs


def ensure(admin: Any, specs: list[TopicSpec], progress: Callable[[str], None] = lambda _m: None, timeout: float = 30.0) -> None:
    """Create missing topics, bring existing ones to the spec (config, more partitions), and
    return once Kafka reports every topic as the spec says.

    ``admin`` is a confluent_kafka AdminClient. Raises ServiceUnavailable when Kafka does not
    answer or never shows the change, ConfigError when Kafka refuses a setting (the message
    names topic and setting).
    """
    from confluent_kafka import KafkaError, KafkaException
    from confluent_kafka.admin import AlterConfigOpType, ConfigEntry, ConfigResource, NewPartitions, NewTopic

    def result(future: Any, what: str) -> Any:
        try:
            return future.result(timeout=timeout)
        except TimeoutError:  # the future's own wait ran out before librdkafka failed the request
            raise ServiceUnavailable(f"Kafka did not complete {what} within {timeout:.0f} s") from None
        except KafkaException as exc:
            error = exc.args[0] if exc.args else None
            # KRaft answers INVALID_REPLICATION_FACTOR also while every broker is fenced (a
            # broker that missed its heartbeats under load): Kafka busy, not topics.json wrong.
            fenced = isinstance(error, KafkaError) and "fenced" in error.str().lower()
            if (
                isinstance(error, KafkaError)
                and not fenced
                and error.code()
                in (
                    KafkaError.INVALID_CONFIG,
                    KafkaError.INVALID_REPLICATION_FACTOR,
                    KafkaError.INVALID_PARTITIONS,
                    KafkaError.POLICY_VIOLATION,
                )
            ):
                raise ConfigError(f"{TOPICS_FILE.name}: Kafka refused {what}: {error.str()}") from None
            raise ServiceUnavailable(f"Kafka did not complete {what}: {exc}") from None

    try:
        existing = admin.list_topics(timeout=timeout).topics
    except KafkaException as exc:
        raise ServiceUnavailable(f"Kafka did not list its topics: {exc}") from None
    missing = [s for s in specs if s.name not in existing]
    created: set[str] = set()
    if missing:
        futures = admin.create_topics(
            [NewTopic(s.name, num_partitions=s.partitions, replication_factor=s.replication_factor, config=s.config) for s in missing],
            operation_timeout=timeout,
        )
        for spec in missing:
            try:
                result(futures[spec.name], f"creating topic {spec.name}")
            except ServiceUnavailable as exc:
                if "TOPIC_ALREADY_EXISTS" not in str(exc):
                    raise
                continue  # created meanwhile by someone else (or not yet in our metadata): reconcile it below
            created.add(spec.name)
            progress(f"topic {spec.name} created ({spec.partitions} partition(s), {spec.config.get('cleanup.policy', 'default')})")
    for spec in specs:
        if spec.name in created:
            continue
        have = _settled_partitions(admin, spec.name, timeout) if spec.name not in existing else len(existing[spec.name].partitions)
        if have < spec.partitions:
            result(admin.create_partitions([NewPartitions(spec.name, spec.partitions)])[spec.name], f"adding partitions to {spec.name}")
            progress(f"topic {spec.name}: partitions {have} -> {spec.partitions}")
        elif have > spec.partitions:
            progress(f"topic {spec.name} has {have} partitions, more than the {spec.partitions} of {TOPICS_FILE.name}; left as it is")
        if spec.config:
            resource = ConfigResource(
                ConfigResource.Type.TOPIC,
                spec.name,
                incremental_configs=[ConfigEntry(k, v, incremental_operation=AlterConfigOpType.SET) for k, v in spec.config.items()],
            )
            result(admin.incremental_alter_configs([resource])[resource], f"setting the configuration of {spec.name}")
    for spec in specs:
        _wait_until_shown(admin, spec, timeout)


def partitions(client: Any, topic: str, timeout: float = 10.0) -> list[int]:
    """The partition numbers of ``topic`` as a confluent_kafka Consumer or AdminClient sees
    them; [0] for a topic not made yet (its first partition, where it will start)."""
    meta = client.list_topics(topic, timeout=timeout).topics.get(topic)
    return sorted(meta.partitions) if meta is not None and meta.error is None and meta.partitions else [0]


def _settled_partitions(admin: Any, name: str, timeout: float) -> int:
    """The partition count of a topic that exists but was missing from our first listing."""
    from confluent_kafka import KafkaException

    deadline = time.monotonic() + timeout
    while True:
        try:
            meta = admin.list_topics(topic=name, timeout=timeout).topics.get(name)
        except KafkaException as exc:
            raise ServiceUnavailable(f"Kafka did not list topic {name}: {exc}") from None
        if meta is not None and meta.error is None and meta.partitions:
            return len(meta.partitions)
        if time.monotonic() > deadline:
            raise ServiceUnavailable(f"Kafka said topic {name} exists but did not list it within {timeout:.0f} s")
        time.sleep(0.05)


def _wait_until_shown(admin: Any, spec: TopicSpec, timeout: float) -> None:
    """Poll until the brokers report ``spec``'s partitions and settings (see the module docstring).

    With several brokers each applies the controller's log on its own, and librdkafka sends
    each describe to whichever broker it picks: on the cluster topology a describe right after
    one broker had shown a new topic failed on another with "Unknown topic or partition". So
    there the change must be shown by two describes per broker in a row, 50 ms apart (a lagging
    broker catches up within milliseconds; this makes meeting one likely, it cannot name each)."""
    from confluent_kafka import KafkaException

    deadline = time.monotonic() + timeout
    shown: dict[str, Any] | str = "nothing"
    in_a_row = 0
    wanted: int | None = None
    while True:
        try:
            shown = describe(admin, spec.name, timeout=max(1.0, deadline - time.monotonic()))
            if wanted is None:
                wanted = 2 * len(admin.list_topics(timeout=max(1.0, deadline - time.monotonic())).brokers) - 1
        except (KafkaException, KeyError, TimeoutError) as exc:  # not yet in the broker's metadata, or Kafka busy
            shown, in_a_row = f"an error: {exc}", 0
        else:
            if shown["partitions"] >= spec.partitions and all(shown["config"].get(k) == v for k, v in spec.config.items()):
                in_a_row += 1
                if in_a_row >= wanted:
                    return
                time.sleep(0.05)
                continue
            in_a_row = 0
        if time.monotonic() > deadline:
            raise ServiceUnavailable(
                f"Kafka accepted topic {spec.name} as {TOPICS_FILE.name} says but after {timeout:.0f} s still reports {shown}; "
                "see its log (cdcpipe status shows where)"
            )
        time.sleep(0.05)


def describe(admin: Any, name: str, timeout: float = 10.0) -> dict[str, Any]:
    """Partitions and the settings of ``name`` that topics.json chooses, as Kafka reports them."""
    from confluent_kafka.admin import ConfigResource

    meta = admin.list_topics(topic=name, timeout=timeout).topics[name]
    resource = ConfigResource(ConfigResource.Type.TOPIC, name)
    config = admin.describe_configs([resource])[resource].result(timeout=timeout)
    return {"partitions": len(meta.partitions), "config": {k: v.value for k, v in config.items()}}
