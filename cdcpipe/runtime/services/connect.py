"""Kafka Connect, distributed mode, with Debezium's PostgreSQL plugin and Apicurio's converter.

The converters are set here, at the worker, so the connector config in ``connectors/``
carries none and serves the Docker stack (Confluent's converter) unchanged. Every key and
value is Avro in the Confluent wire format: magic byte 0, a 4-byte schema id that the
registry's Confluent-compatible API resolves, then the Avro body; no headers.

Its REST API needs a login (Kafka's ``BasicAuthSecurityRestExtension``, users in a 0600
file named by a JAAS file): without one, any local account could create, change or delete
connectors, and ``PUT .../config/validate`` with ``"database.user": "${env:...}"`` echoed any
variable of the worker's environment back in its error message (issue 24). The worker also
gets only the environment it needs (``CDC_*`` and a few basics), and its ``env`` config
provider resolves ``CDC_*`` names alone.
"""

from __future__ import annotations

import os
from typing import Any

import requests

from ...clients.connect import RUNTIME_USER, ConnectClient
from ...pipeline.logins import Login
from ...settings import private_dir, write_private
from .. import java
from .base import NotReady, Service
from .jvmconf import log4j2_config, properties
from .kafka import USER as KAFKA_USER
from .kafka import Kafka
from .schema_registry import API_USER as REGISTRY_USER

HEAP_MB = 512
BASIC_AUTH_EXTENSION = "org.apache.kafka.connect.rest.basic.auth.extension.BasicAuthSecurityRestExtension"
#: What the worker inherits from the environment of whoever ran ``cdcpipe up``, besides ``CDC_*``.
INHERITED_ENV = ("PATH", "LANG", "LC_ALL", "TZ", "TMPDIR")
POSTGRES_CONNECTOR = "io.debezium.connector.postgresql.PostgresConnector"
#: Apicurio's AvroConverter with its schema work once per schema, not per record: the same
#: bytes (cdcpipe/jvm/connect/, built by ``make jars``; its docstring says why).
AVRO_CONVERTER = "cdcpipe.connect.SchemaOnceAvroConverter"


def converter_settings(prefix: str, registry_url: str) -> dict[str, Any]:
    """Apicurio converter settings (2.x names) that produce the Confluent wire format."""
    return {
        prefix: AVRO_CONVERTER,
        f"{prefix}.apicurio.registry.url": registry_url,
        # The registry's login: with a user and no token endpoint the converter sends HTTP
        # Basic with every request; the password is resolved from the worker's environment.
        f"{prefix}.apicurio.auth.username": "${env:CDC_REGISTRY_USER}",
        f"{prefix}.apicurio.auth.password": "${env:CDC_REGISTRY_PASSWORD}",
        f"{prefix}.apicurio.registry.auto-register": "true",
        f"{prefix}.apicurio.registry.find-latest": "true",
        # Confluent framing: 4-byte id (the content id, which /apis/ccompat/v7/schemas/ids/{id}
        # resolves), in the payload, not in headers.
        f"{prefix}.apicurio.registry.as-confluent": "true",
        f"{prefix}.apicurio.registry.use-id": "contentId",
        f"{prefix}.apicurio.registry.headers.enabled": "false",
        # Cache schema lookups for an hour instead of re-registering every 30 s: a new schema
        # is new content and still registers at once; fewer calls, fewer chances to block.
        f"{prefix}.apicurio.registry.check-period-ms": "3600000",
        # Subjects <topic>-key / <topic>-value, as Confluent's TopicNameStrategy names them.
        f"{prefix}.apicurio.registry.artifact-resolver-strategy": "io.apicurio.registry.serde.strategy.TopicIdStrategy",
    }


class Connect(Service):
    name = "connect"
    node_kind = "connect"
    depends_on = ("kafka", "schema_registry", "postgres")
    port_names = ("connect",)
    start_timeout = 150.0

    def node_url(self, node: int) -> str:
        return f"http://{self.host}:{self.node_port(None, node)}"

    @property
    def url(self) -> str:
        """The REST API of the first worker that runs (any worker of the group forwards to
        the leader what needs it)."""
        live = self.live_nodes()
        return self.node_url(live[0] if live else 1)

    def worker_properties(self, node: int = 1) -> dict[str, Any]:
        registry = f"http://{self.host}:{self.settings.port('schema_registry')}/apis/registry/v2"
        kafka = Kafka(self.settings, self.secrets)
        port = self.node_port(None, node)
        return {
            "bootstrap.servers": kafka.bootstrap,
            "group.id": "cdcpipe-connect",
            "config.storage.topic": "_connect-configs",
            "offset.storage.topic": "_connect-offsets",
            "status.storage.topic": "_connect-status",
            # A replica on every broker (up to 3); the brokers' min.insync.replicas applies.
            "config.storage.replication.factor": kafka.replication_factor,
            "offset.storage.replication.factor": kafka.replication_factor,
            "status.storage.replication.factor": kafka.replication_factor,
            # Commit source offsets every second: a restart then re-sends few already-sent
            # changes, and the slot's confirmed_flush_lsn (what verify's live judgement waits
            # for, cdcpipe/verify.py) trails the WAL by about a second, not five.
            "offset.flush.interval.ms": 1000,
            # One worker: when it loses the group coordinator (Kafka frozen or restarting) it
            # revokes its own connector and task, and with the default delay (5 min, meant for
            # a departed worker of a cluster to come back) they were assigned again only after
            # 5 minutes (seen in CI: rejoined at 06:45:47, task started at 06:50:47). Reassign
            # at once; with several workers, a lost worker's tasks move right away too.
            "scheduled.rebalance.max.delay.ms": 0,
            "listeners": f"http://{self.host}:{port}",
            "rest.advertised.host.name": self.host,
            "rest.advertised.port": port,
            "plugin.path": self.settings.jars / "plugins",
            # Find plugins by their ServiceLoader manifests (cdcpipe jars writes the missing
            # ones), not by scanning every class of every jar: 60-130 s of each start.
            "plugin.discovery": "service_load",
            **converter_settings("key.converter", registry),
            **converter_settings("value.converter", registry),
            # Secrets and addresses reach connector configs as ${env:NAME}, never in the JSON.
            "config.providers": "env",
            "config.providers.env.class": "org.apache.kafka.common.config.provider.EnvVarConfigProvider",
            "config.providers.env.param.allowlist.pattern": "CDC_[A-Z0-9_]+",  # matched whole
            "rest.extension.classes": BASIC_AUTH_EXTENSION,
            # Kafka's login, for the worker's own clients and the ones it makes for connectors
            # (prefixes producer., consumer., admin.: without them a task's producer connects
            # unauthenticated and retries quietly while its status says RUNNING).
            **{f"{prefix}{k}": v for prefix in ("", "producer.", "consumer.", "admin.") for k, v in self._kafka_login().items()},
        }

    def _kafka_login(self) -> dict[str, str]:
        return Login(KAFKA_USER, self.secrets["kafka"]).kafka_java_settings()

    @property
    def auth(self) -> tuple[str, str]:
        return RUNTIME_USER, self.secrets["connect"]

    def client(self, timeout: float = 30.0) -> ConnectClient:
        """A REST client logged in as the runtime's user."""
        return ConnectClient(self.url, timeout=timeout, auth=self.auth)

    def worker_env(self) -> dict[str, str]:
        """The worker's whole environment: a few basics, and what the connector configs name."""
        return {**{k: v for k, v in os.environ.items() if k in INHERITED_ENV}, **self.connector_env()}

    def connector_env(self) -> dict[str, str]:
        """What ``${env:...}`` in connectors/*.json and the worker's converter settings resolve
        to in the local runtime."""
        return {
            "CDC_POSTGRES_HOST": self.host,
            "CDC_POSTGRES_PORT": str(self.settings.port("postgres")),
            "CDC_POSTGRES_DB": "users",
            "CDC_POSTGRES_USER": "debezium",
            "CDC_POSTGRES_PASSWORD": self.secrets["debezium"],
            "CDC_REGISTRY_USER": REGISTRY_USER,
            "CDC_REGISTRY_PASSWORD": self.secrets["registry_api"],
        }

    def properties_file(self, node: int):
        return self.dir / ("connect-distributed.properties" if node == 1 else f"connect-distributed-{node}.properties")

    def prepare(self) -> None:
        private_dir(self.dir)
        for node in self.nodes:
            write_private(self.properties_file(node), properties(self.worker_properties(node)))  # Kafka's login
        users = write_private(self.dir / "rest-users.properties", f"{RUNTIME_USER}: {self.secrets['connect']}\n")
        write_private(
            self.dir / "rest-jaas.conf",
            "KafkaConnect {\n  org.apache.kafka.connect.rest.basic.auth.extension.PropertyFileLoginModule required\n"
            f'  file="{users}";\n}};\n',
        )
        (self.dir / "log4j2.properties").write_text(log4j2_config())

    def launch(self) -> None:
        for node in self.nodes:
            argv = [
                java.java_bin(),
                *java.heap(HEAP_MB, 256),
                *java.COMMON_FLAGS,
                f"-Dlog4j2.configurationFile={self.dir / 'log4j2.properties'}",
                f"-Djava.security.auth.login.config={self.dir / 'rest-jaas.conf'}",
                "-cp",
                java.classpath(self.settings.jars / "kafka"),
                "org.apache.kafka.connect.cli.ConnectDistributed",
                str(self.properties_file(node)),
            ]
            self.spawn(self.node_process(node), argv, env=self.worker_env())

    def probe(self) -> None:
        for node in self.nodes:
            self._probe_worker(self.node_url(node))

    def _probe_worker(self, url: str) -> None:
        # /health (KIP-1017) answers 200 only once the worker has read its internal topics
        # and joined its group: before that, or with its herder thread dead, REST requests
        # such as /connector-plugins may still succeed while no connector can run.
        try:
            health = requests.get(url + "/health", timeout=5, auth=self.auth)
            response = requests.get(url + "/connector-plugins", timeout=5, auth=self.auth)
        except requests.RequestException as exc:
            raise NotReady(f"REST not answering on {url}: {exc.__class__.__name__}") from None
        if health.status_code != 200:
            raise NotReady(f"{url}/health answered {health.status_code}: {health.text[:200]}")
        if response.status_code != 200:
            raise NotReady(f"{url}/connector-plugins answered {response.status_code}")
        try:
            classes = {plugin["class"] for plugin in response.json()}
        except (ValueError, TypeError, KeyError):
            raise NotReady(f"{url}/connector-plugins answered no list of plugins: {response.text[:120]!r}") from None
        if POSTGRES_CONNECTOR not in classes:
            raise NotReady(f"{POSTGRES_CONNECTOR} not among the loaded plugins")

    def info(self) -> dict[str, Any]:
        return {"url": self.url, "plugin_path": str(self.settings.jars / "plugins")}
