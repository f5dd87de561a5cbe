"""`cdcpipe topic tail`: print decoded change events as JSON lines, following new ones."""

from __future__ import annotations

import argparse
import json
import os
import signal
import sys
import time
from typing import Any

from .. import runtime, settings
from ..clients import kafka_io
from ..errors import CdcpipeError, DecodeError, ServiceUnavailable
from ..pipeline.avro_reader import SchemaCache, decode, to_json
from ..pipeline.logins import Login
from ..pipeline.schema_changes import USERS_TOPIC

DEFAULT_TOPIC = USERS_TOPIC


def cmd_tail(args: argparse.Namespace) -> int:
    from confluent_kafka import KafkaError

    conf = settings.load()
    if args.bootstrap:  # another Kafka: its SASL/PLAIN login, if any, from the environment
        bootstrap, user = args.bootstrap, os.environ.get("CDCPIPE_KAFKA_USER")
        kafka = {"bootstrap.servers": bootstrap}
        if user:
            kafka.update(Login(user, os.environ.get("CDCPIPE_KAFKA_PASSWORD", "")).kafka_settings())
    else:
        kafka = runtime.service(conf, "kafka").client_config()
        bootstrap = kafka["bootstrap.servers"]
    if args.registry_url:  # another registry: its login, if any, from the environment
        user = os.environ.get("CDCPIPE_REGISTRY_USER")
        auth = (user, os.environ.get("CDCPIPE_REGISTRY_PASSWORD", "")) if user else None
        registry = SchemaCache(args.registry_url, auth=auth)
    else:
        registry = runtime.service(conf, "schema_registry").cache()
    errors: list[str] = []

    def on_error(err: KafkaError) -> None:
        if err.fatal() or err.code() == KafkaError._ALL_BROKERS_DOWN:
            errors.append(str(err))

    # never commits: tailing changes nothing; connection trouble is reported once, below, not per retry
    consumer = kafka_io.consumer(
        kafka, "tail", **{"auto.offset.reset": "earliest" if args.from_beginning else "latest", "error_cb": on_error}
    )
    stop = {"now": False}

    def on_signal(signum, _frame):
        stop["now"] = True

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    consumer.subscribe([args.topic])
    printed = 0
    bad = 0
    idle_since = time.monotonic()
    waiting_note = [False]
    try:
        while not stop["now"]:
            if errors:
                raise ServiceUnavailable(f"Kafka at {bootstrap}: {errors[-1]}")
            msg = consumer.poll(0.5)
            if msg is None:
                if args.idle_timeout and time.monotonic() - idle_since > args.idle_timeout:
                    break
                continue
            if msg.error():
                code = msg.error().code()
                if code == KafkaError._PARTITION_EOF:
                    continue
                if code == KafkaError.UNKNOWN_TOPIC_OR_PART:
                    # Debezium creates the topic with the first change: keep following.
                    if not waiting_note[0]:
                        print(f"waiting for topic {args.topic} to exist ...", file=sys.stderr)
                        waiting_note[0] = True
                    continue
                raise ServiceUnavailable(f"reading {args.topic} from {bootstrap}: {msg.error().str()}")
            idle_since = time.monotonic()
            line: dict[str, Any] = {"topic": msg.topic(), "partition": msg.partition(), "offset": msg.offset()}
            for part, data in (("key", msg.key()), ("value", msg.value())):
                try:
                    line[part] = to_json(decode(data, registry))
                except DecodeError as exc:
                    line[part] = None
                    line[f"{part}_error"] = exc.reason
                    bad += 1
            print(json.dumps(line, ensure_ascii=False), flush=True)
            printed += 1
            if args.max and printed >= args.max:
                break
    finally:
        consumer.close()
    if bad:
        raise CdcpipeError(f"{bad} part(s) could not be decoded (see the *_error fields above)")
    return 0


def register(sub: argparse._SubParsersAction) -> None:
    parser = sub.add_parser("topic", help="read CDC topics")
    actions = parser.add_subparsers(dest="action", required=True, metavar="ACTION")
    p = actions.add_parser("tail", help="print decoded change events as JSON lines, following new ones")
    p.add_argument("topic", nargs="?", default=DEFAULT_TOPIC, help=f"topic (default {DEFAULT_TOPIC})")
    p.add_argument("--from-beginning", action="store_true", help="start at the earliest offset, not the end")
    p.add_argument("--max", type=int, default=0, help="stop after N records")
    p.add_argument("--idle-timeout", type=float, default=0, help="stop after S seconds without a record")
    p.add_argument(
        "--bootstrap",
        help="Kafka bootstrap servers (default: the local runtime's; a SASL/PLAIN login, if it wants one, "
        "from CDCPIPE_KAFKA_USER and CDCPIPE_KAFKA_PASSWORD)",
    )
    p.add_argument(
        "--registry-url",
        help="Confluent-compatible registry URL (default: the local runtime's; "
        "its login, if it wants one, from CDCPIPE_REGISTRY_USER and CDCPIPE_REGISTRY_PASSWORD)",
    )
    p.set_defaults(func=cmd_tail)
