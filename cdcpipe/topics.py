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
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from . import jsonfile
from .errors import ConfigError, ServiceUnavailable
from .settings import REPO

TOPICS_FILE = REPO / "connectors" / "topics.json"


@dataclass(frozen=True)
class TopicSpec:
    name: str
    partitions: int
    replication_factor: int
    config: dict[str, str] = field(default_factory=dict)


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
        specs.append(
            TopicSpec(entry["name"], entry["partitions"], entry["replication_factor"], {str(k): str(v) for k, v in config.items()})
        )
    return specs


def ensure(admin: Any, specs: list[TopicSpec], progress: Callable[[str], None] = lambda _m: None, timeout: float = 30.0) -> None:
    """Create missing topics and bring existing ones to the spec (config, more partitions).

    ``admin`` is a confluent_kafka AdminClient. Raises ServiceUnavailable when Kafka does not
    answer, ConfigError when Kafka refuses a setting (the message names topic and setting).
    """
    from confluent_kafka import KafkaError, KafkaException
    from confluent_kafka.admin import AlterConfigOpType, ConfigEntry, ConfigResource, NewPartitions, NewTopic

    def result(future: Any, what: str) -> Any:
        try:
            return future.result(timeout=timeout)
        except KafkaException as exc:
            error = exc.args[0] if exc.args else None
            if isinstance(error, KafkaError) and error.code() in (
                KafkaError.INVALID_CONFIG,
                KafkaError.INVALID_REPLICATION_FACTOR,
                KafkaError.INVALID_PARTITIONS,
                KafkaError.POLICY_VIOLATION,
            ):
                raise ConfigError(f"{TOPICS_FILE.name}: Kafka refused {what}: {error.str()}") from None
            raise ServiceUnavailable(f"Kafka did not complete {what}: {exc}") from None

    try:
        existing = admin.list_topics(timeout=timeout).topics
    except KafkaException as exc:
        raise ServiceUnavailable(f"Kafka did not list its topics: {exc}") from None
    missing = [s for s in specs if s.name not in existing]
    if missing:
        futures = admin.create_topics(
            [NewTopic(s.name, num_partitions=s.partitions, replication_factor=s.replication_factor, config=s.config) for s in missing],
            operation_timeout=timeout,
        )
        for spec in missing:
            try:
                result(futures[spec.name], f"creating topic {spec.name}")
            except ServiceUnavailable as exc:
                if "TOPIC_ALREADY_EXISTS" not in str(exc):  # created meanwhile by someone else: fine
                    raise
            progress(f"topic {spec.name} created ({spec.partitions} partition(s), {spec.config.get('cleanup.policy', 'default')})")
    for spec in specs:
        if spec in missing:
            continue
        have = len(existing[spec.name].partitions)
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


def describe(admin: Any, name: str, timeout: float = 10.0) -> dict[str, Any]:
    """Partitions and the settings of ``name`` that topics.json chooses, as Kafka reports them."""
    from confluent_kafka.admin import ConfigResource

    meta = admin.list_topics(topic=name, timeout=timeout).topics[name]
    resource = ConfigResource(ConfigResource.Type.TOPIC, name)
    config = admin.describe_configs([resource])[resource].result(timeout=timeout)
    return {"partitions": len(meta.partitions), "config": {k: v.value for k, v in config.items()}}
