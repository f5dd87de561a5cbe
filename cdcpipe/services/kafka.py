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

from .. import java
from ..errors import ServiceFailed
from ..pipeline.logins import Login
from ..settings import private_dir, write_private
from .base import NotReady, Service
from .jvmconf import log4j2_config, properties

HEAP_MB = 512
#: The one Kafka user; its password is the ``kafka`` secret.
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
    processes = ("kafka",)
    port_names = ("kafka", "kafka_controller")
    start_timeout = 90.0

    @property
    def bootstrap(self) -> str:
        return f"{self.host}:{self.port()}"

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

    def _server_properties(self) -> dict[str, Any]:
        ctrl = self.port("kafka_controller")
        jaas = self.login.kafka_jaas(server=True)
        return {
            "process.roles": "broker,controller",
            "node.id": 1,
            "controller.quorum.voters": f"1@{self.host}:{ctrl}",
            "listeners": f"SASL_PLAINTEXT://{self.host}:{self.port()},CONTROLLER://{self.host}:{ctrl}",
            "advertised.listeners": f"SASL_PLAINTEXT://{self.bootstrap}",
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
            "log.dirs": self.dir / "data",
            "num.partitions": 1,
            # One node: every internal topic has a single replica.
            "offsets.topic.replication.factor": 1,
            "transaction.state.log.replication.factor": 1,
            "transaction.state.log.min.isr": 1,
            "share.coordinator.state.topic.replication.factor": 1,
            "share.coordinator.state.topic.min.isr": 1,
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
            f"-Dlog4j2.configurationFile={self.dir / 'log4j2.properties'}",
            "-cp",
            java.classpath(self.settings.jars / "kafka"),
            main,
            *args,
        ]

    def prepare(self) -> None:
        private_dir(self.dir)
        config = self.dir / "server.properties"
        write_private(config, properties(self._server_properties()))  # it holds the login
        write_private(self.credentials_file, self.login.file_text())
        (self.dir / "log4j2.properties").write_text(log4j2_config())
        if not (self.dir / "data" / "meta.properties").exists():
            self._format()

    def _format(self) -> None:
        """Format the KRaft storage in a scratch directory and rename it into place when
        complete, so a format killed half-way leaves nothing a later ``up`` would trust."""
        import shutil
        import subprocess

        data, scratch = self.dir / "data", self.dir / "data.format"
        if data.exists():
            if any(data.iterdir()):
                raise ServiceFailed(
                    "kafka",
                    f"{data} holds files but no meta.properties: not formatted storage. If it holds nothing "
                    f"you need: rm -rf '{data}' and run 'cdcpipe up' again",
                )
            data.rmdir()
        shutil.rmtree(scratch, ignore_errors=True)
        config = self.dir / "format.properties"
        write_private(config, properties({**self._server_properties(), "log.dirs": scratch}))
        cluster_id = new_cluster_id()
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
        self.spawn("kafka", self._jvm("kafka.Kafka", str(self.dir / "server.properties")))

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

    def after_ready(self) -> None:
        """The CDC topics of connectors/topics.json, before Connect writes or Spark reads them."""
        from ..clients import topics

        write_private(self.credentials_file, self.login.file_text())  # a broker started by an older cdcpipe
        topics.ensure(self.admin(), topics.load())

    def info(self) -> dict[str, Any]:
        return {"bootstrap": self.bootstrap, "data_dir": str(self.dir / "data")}
