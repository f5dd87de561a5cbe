"""The Docker stack's login files, made by its own commands, used against real services.

docker-compose.yml and its cluster override write each service's login files in the
service's command (``printf`` in ``bash -ec``, from the container's environment, under
``umask 077``): Kafka's CLI login, the curl logins of the healthchecks, Connect's REST users
and JAAS files, the registry's and Control Center's JAAS files. No Docker engine runs them
here, so this runs those very lines with bash, as Compose would hand them over (``$$`` is
``$``, each secret set), and gives what they write to the local runtime's real services,
which take the same logins (user cdcpipe: SASL/PLAIN on Kafka, HTTP Basic on the registry
and Connect), or to Java's own JAAS parser. A quoting slip in a compose file (an escape, a
``$`` Compose would eat) fails here, not on a user's first ``docker compose up``.
"""

from __future__ import annotations

import os
import stat
import subprocess
from pathlib import Path

import compose_file
import pytest
import requests
import yaml

from cdcpipe.runtime import java

#: The lines of a command that make its files (the rest starts daemons or runs CLIs).
FILE_LINES = ("umask ", "printf ", "test ")


def file_lines(script: str, tmp: Path) -> str:
    """``script``'s file-making lines as the container's shell gets them, writing under ``tmp``
    instead of /tmp."""
    lines = [line.strip() for line in script.replace("$$", "$").splitlines()]
    return "\n".join(line.replace("/tmp/", f"{tmp}/") for line in lines if line.startswith(FILE_LINES))


def run_files(script: str, tmp: Path, **env: str) -> subprocess.CompletedProcess:
    tmp.mkdir(parents=True, exist_ok=True)
    return subprocess.run(
        ["bash", "-ec", file_lines(script, tmp)],
        env={"PATH": os.environ["PATH"], **env},
        capture_output=True,
        text=True,
        timeout=30,
    )


def script(compose: dict, service: str) -> str:
    return compose["services"][service]["command"][-1]


def private(path: Path) -> Path:
    assert path.exists(), path
    assert stat.S_IMODE(path.stat().st_mode) == 0o600, f"{path.name}: {oct(path.stat().st_mode)}"
    return path


def topic_list(conf, stack, command_config: Path) -> subprocess.CompletedProcess:
    """Kafka's own CLI (TopicCommand, as kafka-topics runs it) against the local broker."""
    return subprocess.run(
        [
            java.java_bin(),
            "-cp",
            java.classpath(conf.jars / "kafka"),
            "org.apache.kafka.tools.TopicCommand",
            "--bootstrap-server",
            stack["kafka"].bootstrap,
            "--command-config",
            str(command_config),
            "--list",
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_kafka_s_cli_login_file_logs_in_to_a_sasl_plain_broker(conf, stack, tmp_path):
    """kafka's and topics-init's commands (and the cluster's nodes') write one client login;
    with the broker's password it lists the topics, with another it is refused."""
    password = stack["kafka"].login.password
    single, cluster = compose_file.load(), compose_file.load_cluster()
    made = []
    for where, text in (
        ("kafka", script(single, "kafka")),
        ("topics-init", script(single, "topics-init")),
        ("cluster-kafka-2", script(cluster, "kafka-2")),
    ):
        done = run_files(text, tmp_path / where, CDCPIPE_KAFKA_PASSWORD=password)
        assert done.returncode == 0, f"{where}: {done.stderr}"
        made.append(private(tmp_path / where / "client.properties").read_text())
    assert len(set(made)) == 1, "the commands write different logins"
    listed = topic_list(conf, stack, tmp_path / "kafka" / "client.properties")
    assert listed.returncode == 0, listed.stderr[-2000:]
    assert "cdc.public.users" in listed.stdout.split()
    run_files(script(single, "kafka"), tmp_path / "wrong", CDCPIPE_KAFKA_PASSWORD="not-the-brokers-password")
    refused = topic_list(conf, stack, tmp_path / "wrong" / "client.properties")
    assert refused.returncode != 0 and "cdc.public.users" not in refused.stdout
    assert "Authentication failed" in refused.stdout + refused.stderr


def test_the_healthchecks_curl_logins_are_taken_by_real_http_basic_apis(stack, tmp_path):
    """The registry's and Connect's curl files log in to the local runtime's registry and
    Connect (HTTP Basic, user cdcpipe); without them both answer 401."""
    compose = compose_file.load()
    registry, connect = stack["schema_registry"], stack["connect"]
    done = run_files(script(compose, "schema-registry"), tmp_path, CDCPIPE_REGISTRY_PASSWORD=registry.login.password)
    assert done.returncode == 0, done.stderr
    done = run_files(script(compose, "connect"), tmp_path, CDCPIPE_CONNECT_PASSWORD=connect.auth[1])
    assert done.returncode == 0, done.stderr
    for curl_file, url in (
        (tmp_path / "registry.curl", f"{registry.url}/subjects"),
        (tmp_path / "connect.curl", f"{connect.url}/connectors"),
    ):
        answer = subprocess.run(["curl", "-fsS", "-K", str(private(curl_file)), url], capture_output=True, text=True, timeout=30)
        assert answer.returncode == 0, f"{curl_file.name}: {answer.stderr}"
        assert requests.get(url, timeout=10).status_code == 401
    assert (
        "users-cdc"
        in subprocess.run(
            ["curl", "-fsS", "-K", str(tmp_path / "connect.curl"), f"{connect.url}/connectors"], capture_output=True, text=True, timeout=30
        ).stdout
    )


def test_connect_s_rest_login_files_are_the_local_runtime_s_and_an_empty_password_stops_it(stack, tmp_path):
    """The users and JAAS files Docker's Connect writes are, byte for byte, the ones the local
    runtime's Connect starts with (its REST API refuses anyone else: tests/test_security.py),
    but for the users file's path; both Connect workers of the cluster write the same. An
    empty password stops the command before the daemon: an empty users file lets anyone in."""
    connect = stack["connect"]
    password = connect.auth[1]
    for where, compose, service in (("single", compose_file.load(), "connect"), ("cluster", compose_file.load_cluster(), "connect-2")):
        done = run_files(script(compose, service), tmp_path / where, CDCPIPE_CONNECT_PASSWORD=password)
        assert done.returncode == 0, done.stderr
        users = private(tmp_path / where / "connect-users.properties")
        assert users.read_text() == (connect.dir / "rest-users.properties").read_text()
        local_jaas = (connect.dir / "rest-jaas.conf").read_text().replace(str(connect.dir / "rest-users.properties"), str(users))
        assert private(tmp_path / where / "connect-jaas.conf").read_text() == local_jaas
    stopped = run_files(script(compose_file.load(), "connect"), tmp_path / "empty", CDCPIPE_CONNECT_PASSWORD="")
    assert stopped.returncode != 0


JAAS_PARSER = """
import javax.security.auth.login.*;
import java.util.*;
public class JaasSections {
    public static void main(String[] args) throws Exception {
        java.security.URIParameter file = new java.security.URIParameter(new java.io.File(args[0]).toURI());
        Configuration config = Configuration.getInstance("JavaLoginConfig", file);
        for (int i = 1; i < args.length; i++) {
            AppConfigurationEntry[] entries = config.getAppConfigurationEntry(args[i]);
            if (entries == null) { System.out.println(args[i] + " MISSING"); continue; }
            for (AppConfigurationEntry e : entries)
                System.out.println(args[i] + " " + e.getLoginModuleName() + " " + e.getControlFlag() + " " + new TreeMap<>(e.getOptions()));
        }
    }
}
"""


def test_the_jaas_files_parse_as_java_reads_them(stack, tmp_path):
    """Java's own JAAS parser (the one the registry, Connect and Control Center use) reads each
    file: the section each server's realm names, its module, and the users file it points to.
    (``stack``: the runtime's JDK, which `make unit` on a fresh machine has not installed yet.)"""
    compose = compose_file.load()
    made = {
        "registry-jaas.conf": ("schema-registry", "SchemaRegistry", "CDCPIPE_REGISTRY_PASSWORD"),
        "connect-jaas.conf": ("connect", "KafkaConnect", "CDCPIPE_CONNECT_PASSWORD"),
        "c3-jaas.conf": ("control-center", "c3", "CDCPIPE_CONTROL_CENTER_PASSWORD"),
    }
    parser = tmp_path / "JaasSections.java"
    parser.write_text(JAAS_PARSER)
    for name, (service, section, secret) in made.items():
        done = run_files(script(compose, service), tmp_path, **{secret: "a-generated-password-123"})
        assert done.returncode == 0, done.stderr
        parsed = subprocess.run(
            [java.java_bin(), str(parser), str(private(tmp_path / name)), section], capture_output=True, text=True, timeout=120
        )
        assert parsed.returncode == 0, parsed.stderr
        line = parsed.stdout.strip()
        assert line.startswith(f"{section} ") and "MISSING" not in line, line
        assert "PropertyFileLoginModule LoginModuleControlFlag: required" in line, line
        users = line.split("file=")[1].split(",")[0].rstrip("}")
        assert Path(users).exists(), f"{name} points to {users}"
        # the users file: "cdcpipe: <password>[,<role>]"
        assert Path(users).read_text().startswith("cdcpipe: a-generated-password-123"), name
    # The realm each server asks for is the section's name.
    env = compose["services"]
    assert env["schema-registry"]["environment"]["SCHEMA_REGISTRY_AUTHENTICATION_REALM"] == "SchemaRegistry"
    assert env["control-center"]["environment"]["CONTROL_CENTER_REST_AUTHENTICATION_REALM"] == "c3"


@pytest.mark.parametrize("anchor", ["x-kafka-jaas", "x-kafka-server-jaas"])
def test_the_kafka_jaas_lines_are_the_same_in_both_files(anchor):
    """Anchors do not cross files: the cluster override restates docker-compose.yml's JAAS lines."""
    override = yaml.safe_load(compose_file.CLUSTER.read_text())
    assert override[anchor] == compose_file.load()[anchor]
