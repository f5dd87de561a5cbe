"""Reading Kafka outside Spark: one way to make a consumer, and the topics' end offsets.

The CLI's tail, the console, the watchdog, resync, verify and the benchmarks read Kafka
without sharing work in a consumer group: each assigns its partitions itself, starts where it
chooses and commits nothing. So every consumer made here gets a group of its own (librdkafka
needs a ``group.id`` even when nothing joins or commits), named for what made it so that a
broker's log says who connected, and auto-commit off.

Only critical librdkafka logs (``log_level`` 2) unless the caller asks for more: closing a
consumer while it still connected to its group coordinator made librdkafka print
"GroupCoordinator: SASL authentication error: ... Broker transport failure" to stderr in the
middle of the demo's output, a login that works, cut short. What goes wrong for the caller
raises from the call it made, or reaches its ``error_cb``.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

from .topics import partitions

if TYPE_CHECKING:
    from confluent_kafka import Consumer


def consumer(kafka: Mapping[str, Any], purpose: str, **settings: Any) -> Consumer:
    """A consumer in a group of its own (``cdcpipe-<purpose>-<8 hex>``) that never commits.

    ``kafka``: a client configuration (``Kafka.client_config()``: address and login);
    ``settings``: librdkafka settings that replace the defaults (for example ``error_cb``,
    ``auto.offset.reset`` or ``log_level``). The caller closes it.
    """
    from confluent_kafka import Consumer

    return Consumer(
        {**kafka, "group.id": f"cdcpipe-{purpose}-{uuid.uuid4().hex[:8]}", "enable.auto.commit": False, "log_level": 2, **settings}
    )


@contextmanager
def opened(kafka: Mapping[str, Any], purpose: str, **settings: Any) -> Iterator[Consumer]:
    """:func:`consumer`, closed when the block ends."""
    made = consumer(kafka, purpose, **settings)
    try:
        yield made
    finally:
        made.close()


def partition_ends(client: Consumer, topic: str, timeout: float = 10.0) -> dict[int, int]:
    """Each partition's end offset (the next offset to be written) as ``client`` sees them.
    Raises KafkaException when Kafka does not answer within ``timeout`` or has no such topic."""
    from confluent_kafka import TopicPartition

    return {p: client.get_watermark_offsets(TopicPartition(topic, p), timeout=timeout)[1] for p in partitions(client, topic, timeout)}


def end_offsets(kafka: Mapping[str, Any], topic: str, timeout: float = 10.0) -> dict[int, int]:
    """Each partition's end offset of ``topic``, through a consumer made for the question."""
    with opened(kafka, "offsets") as client:
        return partition_ends(client, topic, timeout)
