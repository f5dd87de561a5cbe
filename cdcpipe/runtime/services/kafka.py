"""Kafka 4 in KRaft mode: one process that is both broker and controller.

Both listeners want a login: SASL/PLAIN (``SASL_PLAINTEXT`` on 127.0.0.1), user ``cdcpipe``,
password the ``kafka`` secret, for every client (Connect, the Spark job, the CLI, the console,
the watchdog) and for the broker's own calls to its controller. Without it any local account
could read every user's personal data from ``cdc.public.users`` and write to it (issue 24).
PLAIN rather than SCRAM: the broker keeps its user in its own 0600 config, so a data directory
formatted before logins existed starts with one too (SCRAM users are added when the storage is
formatted). Clients get the password from :meth:`Kafka.client_config` in-process, or, the
Spark job, from a 0600 credentials file by path. A client without the login is disconnected
at once, and librdkafka's clients then retry quietly: readiness checks ask for metadata with a
timeout, and errors name the broker.
"""

from __future__ import annotations

import base64
import uuid
from typing import Any

from ...errors import ServiceFailed, ServiceUnavailable
from ...pipeline.logins import Login
from ...settings import private_dir, write_private
from .. import java
from .base import NotReady, Service
from .jvmconf import log4j2_config, properties

HEAP_MB = 512
#: The runtime's one Kafka user (SASL/PLAIN; its password is the ``kafka`` secret).
USER = "cdcpipe"


def new_cluster_id(random_bytes=lambda: uuid.uuid4().bytes) -> str:
    """A KRaft cluster id (base64url of 16 random bytes), never starting with '-': the storage
    tool would read it as an option ("--cluster-id: expected one argument"; a CI run met it,
    1 in 64 ids). Kafka's own ``Uuid.randomUuid()`` draws again for the same reason."""
    while True:
        cluster_id = base64.urlsafe_b64encode(random_bytes()).decode().rstrip("=")
        if not cluster_id.startswith("-"):
            return cluster_id


class Kafka(Service):
    name = "kafka"
    node_kind = "kafka"
    port_names = ("kafka", "kafka_controller")
    start_timeout = 90.0

    @property
    def bootstrap(self) -> str:
        """Every broker's address: a client starts with any one that answers."""
        return ",".join(f"{self.host}:{self.node_port(None, node)}" for node in self.nodes)

    @property
    def replication_factor(self) -> int:
        """Of every topic: one replica per broker, up to 3."""
        return min(3, self.node_count)

    @property
    def min_insync_replicas(self) -> int:
        """2 of 3 replicas acknowledge a write (``acks=all``), so one broker may be lost."""
        return 2 if self.replication_factor >= 3 else 1

    @property
    def login(self) -> Login:
        return Login(USER, self.secrets["kafka"])

    def client_config(self, **settings: Any) -> dict[str, Any]:
        """A confluent-kafka client's configuration for this broker, logged in, plus ``settings``
        (librdkafka names have dots: pass them as ``**{"group.id": ...}``)."""
        return {"bootstrap.servers": self.bootstrap, **self.login.kafka_settings(), **settings}

    @property
    def credentials_file(self):
        """The login as a 0600 credentials file (for the Spark job, which gets only its path)."""
        return self.dir / "client.credentials"

    def _server_properties(self, node: int = 1) -> dict[str, Any]:
        ctrl = self.node_port("kafka_controller", node)
        port = self.node_port(None, node)
        jaas = self.login.kafka_jaas(server=True)
        voters = ",".join(f"{n}@{self.host}:{self.node_port('kafka_controller', n)}" for n in self.nodes)
        rf, isr = self.replication_factor, self.min_insync_replicas
        return {
            # Every node is broker and controller: a quorum of 3 controllers survives one loss.
            "process.roles": "broker,controller",
            "node.id": node,
            "controller.quorum.voters": voters,
            "listeners": f"SASL_PLAINTEXT://{self.host}:{port},CONTROLLER://{self.host}:{ctrl}",
            "advertised.listeners": f"SASL_PLAINTEXT://{self.host}:{port}",
            "controller.listener.names": "CONTROLLER",
            "inter.broker.listener.name": "SASL_PLAINTEXT",
            "listener.security.protocol.map": "SASL_PLAINTEXT:SASL_PLAINTEXT,CONTROLLER:SASL_PLAINTEXT",
            # Both listeners want the login (see the module docstring); the broker logs in to
            # its own controller with it too.
            "sasl.enabled.mechanisms": "PLAIN",
            "sasl.mechanism.inter.broker.protocol": "PLAIN",
            "sasl.mechanism.controller.protocol": "PLAIN",
            "listener.name.sasl_plaintext.plain.sasl.jaas.config": jaas,
            "listener.name.controller.plain.sasl.jaas.config": jaas,
            "log.dirs": self.node_dir(node) / "data",
            "num.partitions": 1,
            # Every topic, internal ones included, has a replica per broker (up to 3), and a
            # write is acknowledged by 2 of 3 (one on a single node).
            "default.replication.factor": rf,
            "min.insync.replicas": isr,
            "offsets.topic.replication.factor": rf,
            "transaction.state.log.replication.factor": rf,
            "transaction.state.log.min.isr": isr,
            "share.coordinator.state.topic.replication.factor": rf,
            "share.coordinator.state.topic.min.isr": isr,
            "group.initial.rebalance.delay.ms": 0,
            # Change events are the source of truth downstream: keep them a week by default.
            "log.retention.hours": 168,
            "auto.create.topics.enable": "true",
        }

    def _jvm(self, main: str, *args: str) -> list[str]:
        return [
            java.java_bin(),
            *java.heap(HEAP_MB, 256),
            *java.COMMON_FLAGS,
            f"-Dlog4j2.configurationFile={self.dir / 'log4j2.properties'}",  # node 1's, for all
            "-cp",
            java.classpath(self.settings.jars / "kafka"),
            main,
            *args,
        ]

    def prepare(self) -> None:
        private_dir(self.dir)
        write_private(self.credentials_file, self.login.file_text())
        (self.dir / "log4j2.properties").write_text(log4j2_config())
        for node in self.nodes:
            node_dir = private_dir(self.node_dir(node))
            write_private(node_dir / "server.properties", properties(self._server_properties(node)))  # it holds the login
            if not (node_dir / "data" / "meta.properties").exists():
                self._format(node)

    def _cluster_id(self) -> str:
        """The KRaft cluster id, made once and kept (0600) in node 1's directory: every node's
        storage is formatted with it, also a node's whose storage was lost later."""
        path = self.dir / "cluster.id"
        if path.exists():
            return path.read_text().strip()
        for node in self.nodes:  # formatted before the id was kept
            meta = self.node_dir(node) / "data" / "meta.properties"
            if meta.exists():
                for line in meta.read_text().splitlines():
                    if line.startswith("cluster.id="):
                        write_private(path, line.split("=", 1)[1].strip() + "\n")
                        return line.split("=", 1)[1].strip()
        cluster_id = new_cluster_id()
        write_private(path, cluster_id + "\n")
        return cluster_id

    def _format(self, node: int = 1) -> None:
        """Format the KRaft storage in a scratch directory and rename it into place when
        complete, so a format killed half-way leaves nothing a later ``up`` would trust."""
        import shutil
        import subprocess

        node_dir = self.node_dir(node)
        data, scratch = node_dir / "data", node_dir / "data.format"
        if data.exists():
            if any(data.iterdir()):
                raise ServiceFailed(
                    "kafka",
                    f"{data} holds files but no meta.properties: not formatted storage. If it holds nothing "
                    f"you need: rm -rf '{data}' and run 'cdcpipe up' again",
                )
            data.rmdir()
        shutil.rmtree(scratch, ignore_errors=True)
        config = node_dir / "format.properties"
        write_private(config, properties({**self._server_properties(node), "log.dirs": scratch}))
        cluster_id = self._cluster_id()
        done = subprocess.run(
            self._jvm("kafka.tools.StorageTool", "format", "--cluster-id", cluster_id, "--config", str(config)),
            capture_output=True,
            text=True,
            umask=0o077,  # the storage it creates is private, like everything the broker writes
        )
        config.unlink(missing_ok=True)
        if done.returncode != 0:
            raise ServiceFailed("kafka", f"formatting the KRaft storage failed:\n{done.stdout}{done.stderr}")
        scratch.rename(data)

    def launch(self) -> None:
        for node in self.nodes:
            self.spawn(self.node_process(node), self._jvm("kafka.Kafka", str(self.node_dir(node) / "server.properties")))

    def admin(self):
        from confluent_kafka.admin import AdminClient

        # log_level 0: a broker that is still starting is expected here, not worth a log line.
        return AdminClient(self.client_config(**{"socket.timeout.ms": 5000, "log_level": 0}))

    def probe(self) -> None:
        from confluent_kafka import KafkaException

        try:
            meta = self.admin().list_topics(timeout=5)
        except KafkaException as exc:
            raise NotReady(str(exc)) from None
        if not meta.brokers:
            raise NotReady("no broker registered yet")
        missing = sorted(set(self.nodes) - set(meta.brokers))
        if missing:
            raise NotReady(f"broker(s) {', '.join(self.node_process(n) for n in missing)} not registered yet")

    def topic_specs(self) -> list[Any]:
        """connectors/topics.json's topics as this topology makes them (TopicSpecs)."""
        from ...clients import topics

        specs = topics.load()
        return [spec.on_cluster() for spec in specs] if self.node_count > 1 else specs

    def after_ready(self) -> None:
        """The CDC topics of connectors/topics.json, before Connect writes or Spark reads them."""
        from ...clients import topics

        write_private(self.credentials_file, self.login.file_text())  # a broker started by an older cdcpipe
        specs = self.topic_specs()
        # ensure() is idempotent, so a request lost on the way is simply made again: ``up``
        # tries a NotReady again until the service's timeout. With several brokers in the
        # bootstrap list, librdkafka replaces the bootstrap connections by the brokers the
        # metadata names, and a request in flight on one of those fails with _DESTROY_BROKER
        # ("broker handle destroyed"; seen on the cluster topology).
        try:
            topics.ensure(self.admin(), specs)
        except ServiceUnavailable as exc:
            raise NotReady(f"topics not set up yet: {exc}") from None

    def info(self) -> dict[str, Any]:
        return {"bootstrap": self.bootstrap, "data_dir": str(self.dir / "data")}
