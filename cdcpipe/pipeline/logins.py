"""A login (user and password) kept in a 0600 file, for the processes that get a path, not a
password: the Spark job and its executors (Spark pickles its configuration to them and shows it
in its UI), cqlsh (``--credentials``).

The file has cqlsh's credentials format, so one format serves every service::

    [plain_text_auth]
    username = cdcpipe_job
    password = ...
"""

from __future__ import annotations

import configparser
from dataclasses import dataclass, field
from pathlib import Path

from ..errors import ConfigError

#: The servlet filter (cdcpipe/jvm/spark) that asks for a login in front of a Spark web UI;
#: it reads the file this module writes.
UI_LOGIN_FILTER = "cdcpipe.spark.UiLoginFilter"


def ui_login_conf(credentials: str | Path) -> dict[str, str]:
    """The Spark settings that put the login filter in front of a web UI; ``credentials`` is
    the path of its 0600 credentials file (never the password: Spark settings are visible)."""
    return {"spark.ui.filters": UI_LOGIN_FILTER, f"spark.{UI_LOGIN_FILTER}.param.credentials": str(credentials)}


@dataclass(frozen=True)
class Login:
    """A user and its password (never shown by repr)."""

    username: str
    password: str = field(repr=False)

    def file_text(self) -> str:
        """This login as a credentials file."""
        return f"[plain_text_auth]\nusername = {self.username}\npassword = {self.password}\n"

    @property
    def pair(self) -> tuple[str, str]:
        """(username, password), as requests' ``auth=`` takes it."""
        return self.username, self.password

    def kafka_settings(self) -> dict[str, str]:
        """librdkafka's (confluent-kafka's) settings for this login on Kafka's SASL/PLAIN."""
        return {
            "security.protocol": "SASL_PLAINTEXT",
            "sasl.mechanisms": "PLAIN",
            "sasl.username": self.username,
            "sasl.password": self.password,
        }

    def kafka_jaas(self, server: bool = False) -> str:
        """The JAAS line of Java clients (Connect, Spark's Kafka source) for this login; with
        ``server``, the broker's too, which also lists this login as its one user."""
        for value in (self.username, self.password):
            if not value or any(c in value for c in '"\\;\n'):
                raise ValueError("a Kafka login cannot hold quotes, backslashes, semicolons or newlines")
        user = f' user_{self.username}="{self.password}"' if server else ""
        return (
            f'org.apache.kafka.common.security.plain.PlainLoginModule required username="{self.username}" password="{self.password}"{user};'
        )

    def kafka_java_settings(self) -> dict[str, str]:
        """A Java Kafka client's settings for this login (SASL/PLAIN)."""
        return {"security.protocol": "SASL_PLAINTEXT", "sasl.mechanism": "PLAIN", "sasl.jaas.config": self.kafka_jaas()}


def read_login(path: str | Path, what: str = "credentials") -> Login:
    """The login in a credentials file; ConfigError naming the file if it has none."""
    parser = configparser.RawConfigParser()
    try:
        with open(path, encoding="utf-8") as fh:
            parser.read_file(fh)
        return Login(parser.get("plain_text_auth", "username"), parser.get("plain_text_auth", "password"))
    except OSError as exc:
        raise ConfigError(f"{what} file {path}: {exc.strerror or exc}") from None
    except configparser.Error as exc:
        raise ConfigError(f"{what} file {path}: no [plain_text_auth] username and password ({exc.__class__.__name__})") from None
