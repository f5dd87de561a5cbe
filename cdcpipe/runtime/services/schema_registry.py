"""Apicurio Registry 3 with SQL storage on the runtime's PostgreSQL.

Schemas therefore survive restarts with the rest of the data. Clients use its
Confluent-compatible API (``/apis/ccompat/v7``); the Connect converter uses its native API.

Every API call wants a login (HTTP Basic, user ``cdcpipe``, password the ``registry_api``
secret): Quarkus' basic mechanism with its embedded user list, which the 3.3 app bundles and
enables at build time, so no OIDC server is needed. The password reaches Quarkus through its
environment (``QUARKUS_SECURITY_USERS_EMBEDDED_USERS_cdcpipe``), the Connect converter through
``${env:CDC_REGISTRY_PASSWORD}``, and the Spark job through a 0600 credentials file
(:attr:`SchemaRegistry.credentials_file`). Apicurio answers 401 without a
``WWW-Authenticate`` header, so clients send the login with every request. Every path of the
API port wants it (``quarkus.http.auth.permission``), ``system/info`` included.

The management port (health, metrics) has no login to turn on: Apicurio's build fixes its
authentication (``quarkus.management.auth.basic``) off, a runtime setting only draws a warning,
and no authorizer for that port exists in the app. So the registry's JVM runs the project's
guard agent (:func:`cdcpipe.runtime.jars.guard_jar`) on that port: a connection from any
account but the stack's own is closed before a byte is read, judged by the kernel's socket
table the way PostgreSQL's ``peer`` authentication judges a Unix socket. The stack's own
clients (this probe) are that account.
"""

from __future__ import annotations

import os
from typing import Any

import requests

from ...errors import ServiceFailed
from ...pipeline.avro_reader import SchemaCache
from ...pipeline.logins import Login
from ...settings import private_dir, write_private
from .. import java, processes
from ..jars import guard_jar
from .base import NotReady, Service

HEAP_MB = 256
#: Apicurio Registry 3.3 is compiled for Java 21.
JAVA_VERSION = 21
CCOMPAT_PATH = "/apis/ccompat/v7"
#: The registry's one user; its password is the ``registry_api`` secret.
API_USER = "cdcpipe"
#: What the guard agent logs once it guards the management port (OwnerOnlyAgent.java).
GUARD_ARMED = "cdcpipe guard: armed"


class SchemaRegistry(Service):
    name = "schema_registry"
    depends_on = ("postgres",)
    processes = ("schema_registry",)
    port_names = ("schema_registry", "schema_registry_management")
    start_timeout = 120.0

    @property
    def base_url(self) -> str:
        return f"http://{self.host}:{self.port()}"

    @property
    def url(self) -> str:
        """The Confluent-compatible base URL (what Confluent clients call the registry URL)."""
        return self.base_url + CCOMPAT_PATH

    @property
    def native_url(self) -> str:
        """Apicurio's own v2 REST API, which the Connect converter uses."""
        return self.base_url + "/apis/registry/v2"

    def launch(self) -> None:
        home = self.settings.jars / "apicurio-registry"
        pg = self.settings.port("postgres")
        system_properties = {
            "quarkus.http.host": self.host,
            "quarkus.http.port": self.port(),
            # Quarkus' management interface (health endpoints) defaults to 0.0.0.0:9000.
            "quarkus.management.host": self.host,
            "quarkus.management.port": self.port("schema_registry_management"),
            # Plain HTTP/1.1: the Connect converter's JDK HttpClient tries an h2c upgrade, and
            # one of its requests was seen to hang forever (after a 200) on the upgraded
            # connection, silently stopping capture.
            "quarkus.http.http2": "false",
            "apicurio.storage.kind": "sql",
            "apicurio.storage.sql.kind": "postgresql",
            "apicurio.datasource.url": f"jdbc:postgresql://{self.host}:{pg}/registry",
            "apicurio.datasource.username": "registry",
            # The password is not here: system properties are on the command line (ps, the
            # log header, the pid file). It comes from the environment (below).
            "apicurio.datasource.jdbc.initial-size": 2,
            "apicurio.datasource.jdbc.min-size": 2,
            "apicurio.datasource.jdbc.max-size": 10,
            # A login for every API call (see the module docstring); the user's password comes
            # from the environment.
            "quarkus.http.auth.basic": "true",
            "quarkus.security.users.embedded.plain-text": "true",
            # ... on every path, system/info and the UI's included.
            "quarkus.http.auth.permission.cdcpipe.paths": "/*",
            "quarkus.http.auth.permission.cdcpipe.policy": "authenticated",
            "quarkus.log.console.format": "%d{HH:mm:ss} %-5p [%c{2.}] %s%e%n",
        }
        private_dir(self.dir)
        argv = [
            java.java_bin(JAVA_VERSION),
            *java.heap(HEAP_MB, 128),
            *java.COMMON_FLAGS,
            *(f"-D{k}={v}" for k, v in system_properties.items()),
            # Only this account may connect to the management port (see the module docstring).
            f"-javaagent:{guard_jar(self.settings)}={self.port('schema_registry_management')}",
            "-jar",
            str(home / "quarkus-run.jar"),
        ]
        self.spawn("schema_registry", argv, cwd=self.dir, env=self.env())

    def env(self) -> dict[str, str]:
        """Quarkus reads apicurio.datasource.password from APICURIO_DATASOURCE_PASSWORD, and the
        embedded user's password from QUARKUS_SECURITY_USERS_EMBEDDED_USERS_<user>."""
        return {
            **os.environ,
            "APICURIO_DATASOURCE_PASSWORD": self.secrets["registry"],
            f"QUARKUS_SECURITY_USERS_EMBEDDED_USERS_{API_USER}": self.secrets["registry_api"],
        }

    @property
    def login(self) -> Login:
        return Login(API_USER, self.secrets["registry_api"])

    @property
    def auth(self) -> tuple[str, str]:
        """(user, password) for requests' ``auth=``."""
        return self.login.pair

    @property
    def credentials_file(self):
        """The login as a 0600 credentials file (for the Spark job, which gets only its path)."""
        return self.dir / "client.credentials"

    def cache(self, **options: Any) -> SchemaCache:
        """A schema cache on this registry, logged in."""
        return SchemaCache(self.url, auth=self.auth, **options)

    def prepare(self) -> None:
        private_dir(self.dir)
        write_private(self.credentials_file, self.login.file_text())

    def after_ready(self) -> None:
        write_private(self.credentials_file, self.login.file_text())  # a stack started by an older cdcpipe
        self.require_guard()

    def require_guard(self) -> None:
        """Stop the registry, and say so, unless its guard agent has armed since it last started:
        a registry without it (started by an older cdcpipe, or a Netty that accepts some other
        way) would leave the management port open to every local account."""
        # At the start of a line ("\n" only: str.splitlines also breaks at characters a client
        # can put in the access log, which quotes request paths and user agents).
        logged = processes.log_since_start(self.settings, "schema_registry")
        if any(line.startswith(GUARD_ARMED) for line in logged.split("\n")):
            return
        log = self.settings.log_file("schema_registry")
        tail = processes.log_tail(log)
        self.stop()
        raise ServiceFailed(
            self.name,
            f"its guard agent has not armed: its log has no '{GUARD_ARMED}' since it started, so port "
            f"{self.port('schema_registry_management')} would be open to every local account. It was stopped; "
            "'cdcpipe up' starts it again with the agent. If this comes back, see docs/security.md#the-registry",
            tail,
            str(log),
        )

    def probe(self) -> None:
        try:
            health = requests.get(f"http://{self.host}:{self.port('schema_registry_management')}/health/ready", timeout=5)
            subjects = requests.get(self.url + "/subjects", timeout=5, auth=self.auth)
        except requests.RequestException as exc:
            raise NotReady(f"not answering on {self.base_url}: {exc.__class__.__name__}") from None
        if health.status_code != 200:
            raise NotReady(f"/health/ready answered {health.status_code}: {health.text[:200]}")
        if subjects.status_code != 200:
            raise NotReady(f"{CCOMPAT_PATH}/subjects answered {subjects.status_code}")

    def info(self) -> dict[str, Any]:
        return {"url": self.url, "confluent_url": self.url, "native_url": self.native_url, "ui_url": None}
