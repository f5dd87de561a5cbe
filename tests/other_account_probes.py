"""What another local account tries against the running stack: run *as that account* by
tests/test_other_account.py, one JSON line per attempt on stdout.

    python tests/other_account_probes.py CONFIG.json

The account has no login and cannot read ``.cdcpipe/``. Each attempt uses the service's own
client where there is one (confluent-kafka, cqlsh, nodetool, pyspark, psycopg; HTTP for the
REST APIs) and says whether it was refused, with the words that show it. An attempt counts as
refused only when the answer says so (401/403, an authentication error, no metadata, no
result); anything else, an unexpected error included, counts as *not* refused, so a broken
probe fails the test instead of passing it.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import requests

CONF: dict = {}
#: (what is tried, the port it goes to (a settings.DEFAULT_PORTS name, or None for files), how)
ATTEMPTS: list[tuple[str, str | None, Callable[[], tuple[bool, str]]]] = []


def attempt(name: str, port: str | None = None):
    def register(fn: Callable[[], tuple[bool, str]]):
        ATTEMPTS.append((name, port, fn))
        return fn

    return register


def url(port_name: str, path: str = "/") -> str:
    return f"http://{CONF['host']}:{CONF['ports'][port_name]}{path}"


def http(method: str, target: str, **kw) -> tuple[bool, str]:
    answer = requests.request(method, target, timeout=15, allow_redirects=False, **kw)
    return answer.status_code in (401, 403), f"HTTP {answer.status_code}"


# --- files -----------------------------------------------------------------------------------
def _read(path: str) -> tuple[bool, str]:
    try:
        Path(path).read_bytes()
    except PermissionError as exc:
        return True, f"PermissionError: {exc.strerror}"
    except OSError as exc:
        return False, f"{exc.__class__.__name__}: {exc.strerror} (the test named a file that is not there)"
    return False, "read it"


@attempt("read the secrets file (.cdcpipe/secrets.json)")
def secrets_file():
    return _read(CONF["files"]["secrets"])


@attempt("read Kafka's client login file")
def kafka_file():
    return _read(CONF["files"]["kafka"])


@attempt("read Cassandra's cqlsh credentials file")
def cassandra_file():
    return _read(CONF["files"]["cassandra"])


@attempt("list the state directory")
def state_dir():
    try:
        os.listdir(CONF["files"]["state_dir"])
    except PermissionError as exc:
        return True, f"PermissionError: {exc.strerror}"
    return False, "listed it"


# --- Kafka -----------------------------------------------------------------------------------
def _kafka_errors(extra: dict, port_name: str = "kafka") -> tuple[bool, str]:
    from confluent_kafka import KafkaException
    from confluent_kafka.admin import AdminClient

    errors: list[str] = []
    admin = AdminClient(
        {
            "bootstrap.servers": f"{CONF['host']}:{CONF['ports'][port_name]}",
            "error_cb": lambda err: errors.append(str(err)),
            "log_level": 0,
            **extra,
        }
    )
    try:
        topics = admin.list_topics(timeout=8).topics
    except KafkaException as exc:
        admin.poll(0)
        return True, f"no metadata: {exc.args[0].str()}; {'; '.join(errors[:2])}"[:300]
    return False, f"listed {len(topics)} topics"


@attempt("Kafka 9092: list topics with no login", "kafka")
def kafka_no_login():
    return _kafka_errors({})


@attempt("Kafka 9092: list topics as cdcpipe with a guessed password", "kafka")
def kafka_guessed():
    return _kafka_errors(
        {"security.protocol": "SASL_PLAINTEXT", "sasl.mechanisms": "PLAIN", "sasl.username": "cdcpipe", "sasl.password": "cdcpipe"}
    )


@attempt("Kafka 9093 (controller): list topics with no login", "kafka_controller")
def kafka_controller():
    return _kafka_errors({}, "kafka_controller")


@attempt("Kafka 9092: write a record to cdc.public.users with no login", "kafka")
def kafka_produce():
    from confluent_kafka import Producer

    delivered: list[object] = []
    producer = Producer(
        {
            "bootstrap.servers": f"{CONF['host']}:{CONF['ports']['kafka']}",
            "message.timeout.ms": 8000,
            "error_cb": lambda err: None,
            "log_level": 0,
        }
    )
    producer.produce("cdc.public.users", b"forged", on_delivery=lambda err, msg: delivered.append(err))
    left = producer.flush(15)
    if left or (delivered and delivered[0] is not None):
        return True, f"not delivered: {delivered[0] if delivered else f'{left} still queued'}"
    return False, "delivered"


# --- Cassandra -------------------------------------------------------------------------------
def _cqlsh(*login: str) -> tuple[bool, str]:
    done = subprocess.run(
        [CONF["cqlsh"], *login, CONF["host"], str(CONF["ports"]["cassandra"]), "-e", "SELECT count(*) FROM cdc.users"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    said = (done.stdout + done.stderr).strip()
    refused = done.returncode != 0 and ("requires authentication" in said or "are incorrect" in said or "AuthenticationFailed" in said)
    return refused, said.splitlines()[-1][:300] if said else f"exit {done.returncode}"


@attempt("CQL 9042: cqlsh with no login", "cassandra")
def cql_no_login():
    return _cqlsh()


@attempt("CQL 9042: cqlsh as the default superuser cassandra/cassandra", "cassandra")
def cql_default():
    return _cqlsh("-u", "cassandra", "-p", "cassandra")


@attempt("Cassandra 7000 (internode): open a messaging connection, plain and over TLS", "cassandra_storage")
def cassandra_storage():
    import socket
    import ssl

    address = (CONF["host"], CONF["ports"]["cassandra_storage"])
    hello = bytes.fromhex("ca552dfa") + bytes(8)  # the messaging protocol's magic, then a header
    with socket.create_connection(address, timeout=10) as plain:
        plain.sendall(hello)
        if plain.recv(64):
            return False, "answered a plain connection"
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.check_hostname, context.verify_mode = False, ssl.CERT_NONE  # we have no certificate to present
    try:
        with socket.create_connection(address, timeout=10) as raw, context.wrap_socket(raw) as tls:
            tls.sendall(hello)
            answer = tls.recv(64)
    except ssl.SSLError as exc:
        refused = "CERTIFICATE_REQUIRED" in str(exc) or "HANDSHAKE_FAILURE" in str(exc)
        return refused, f"plain: closed; TLS: {exc.reason or exc}"
    return False, f"answered over TLS without a certificate: {answer!r}"


@attempt("JMX 7199: nodetool with no login", "cassandra_jmx")
def jmx():
    done = subprocess.run(
        [
            "java",
            *CONF["nodetool_jvm_options"],
            f"-Duser.home={os.environ['HOME']}",
            "-cp",
            f"{CONF['jars']}/cassandra/*",
            "org.apache.cassandra.tools.NodeTool",
            "-h",
            CONF["host"],
            "-p",
            str(CONF["ports"]["cassandra_jmx"]),
            "version",
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    said = done.stdout + done.stderr
    refused = done.returncode != 0 and "Credentials required" in said and "ReleaseVersion" not in said
    return refused, next((line for line in said.splitlines() if "uthentication" in line), said[-200:]).strip()[:300]


# --- Connect, registry -----------------------------------------------------------------------
@attempt("Connect 8083: list connectors", "connect")
def connect_list():
    return http("GET", url("connect", "/connectors"))


@attempt("Connect 8083: validate a config that names ${env:CDC_POSTGRES_PASSWORD}", "connect")
def connect_validate():
    config = {**CONF["connector"], "database.user": "${env:CDC_POSTGRES_PASSWORD}"}
    return http("PUT", url("connect", "/connector-plugins/io.debezium.connector.postgresql.PostgresConnector/config/validate"), json=config)


@attempt("Connect 8083: create a connector", "connect")
def connect_create():
    return http("POST", url("connect", "/connectors"), json={"name": "forged", "config": CONF["connector"]})


@attempt("registry 8081: list subjects", "schema_registry")
def registry_list():
    return http("GET", url("schema_registry", "/apis/ccompat/v7/subjects"))


@attempt("registry 8081: write a schema", "schema_registry")
def registry_write():
    return http("POST", url("schema_registry", "/apis/ccompat/v7/subjects/cdc.public.users-value/versions"), json={"schema": '"string"'})


def _closed_unanswered(port_name: str, path: str) -> tuple[bool, str]:
    """An HTTP GET on a raw socket: refused only when the port accepts and then closes the
    connection without a byte of answer. Nothing listening proves nothing, so it is not refused."""
    import socket

    try:
        with socket.create_connection((CONF["host"], CONF["ports"][port_name]), timeout=15) as conn:
            conn.sendall(f"GET {path} HTTP/1.1\r\nHost: {CONF['host']}\r\nConnection: close\r\n\r\n".encode())
            answer = conn.recv(200)
    except ConnectionRefusedError:
        return False, "nothing listens there (is the service down?)"
    except (ConnectionResetError, BrokenPipeError) as exc:
        return True, f"{exc.__class__.__name__} before any answer"
    if not answer:
        return True, "connection closed before any answer"
    status_line = answer.split(b"\r\n", 1)[0].decode(errors="replace")
    return False, f"answered: {status_line}"


@attempt("registry 8082 (management): health", "schema_registry_management")
def registry_health():
    return _closed_unanswered("schema_registry_management", "/health")


@attempt("registry 8082 (management): metrics", "schema_registry_management")
def registry_metrics():
    return _closed_unanswered("schema_registry_management", "/metrics")


# --- Spark -----------------------------------------------------------------------------------
@attempt("Spark 7077: run an application on the cluster", "spark_master")
def spark_app():
    script = Path(os.environ["HOME"]) / "app.py"
    script.write_text(
        "from pyspark.sql import SparkSession\n"
        f"spark = SparkSession.builder.master('spark://{CONF['host']}:{CONF['ports']['spark_master']}')"
        ".config('spark.ui.enabled', 'false').config('spark.driver.host', '127.0.0.1').getOrCreate()\n"
        "print('RESULT', spark.sparkContext.parallelize(range(10), 2).sum(), flush=True)\n"
    )
    proc = subprocess.Popen(
        [sys.executable, str(script)], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, start_new_session=True
    )
    seen: list[str] = []
    deadline = time.monotonic() + 90
    try:  # stop at the answer: the driver retries its registration for a minute otherwise
        for line in proc.stdout:
            seen.append(line.rstrip())
            if "RESULT" in line or "Expected SaslMessage" in line or time.monotonic() > deadline:
                break
    finally:
        os.killpg(proc.pid, 9)
        proc.wait()
    out = "\n".join(seen)
    said = [line for line in seen if "SASL" in line or "RESULT" in line or "authenticat" in line.lower()]
    refused = "RESULT" not in out and any("SASL" in line or "authenticat" in line.lower() for line in said)
    return refused, (said[0] if said else out[-300:]).strip()[:300]


@attempt("Spark 8090: the master's web UI", "spark_master_ui")
def spark_master_ui():
    return http("GET", url("spark_master_ui", "/json/"))


@attempt("Spark 8091: the worker's web UI", "spark_worker_ui")
def spark_worker_ui():
    return http("GET", url("spark_worker_ui", "/"))


# --- PostgreSQL, Airflow, console, stand-in ---------------------------------------------------
@attempt("PostgreSQL 5432: connect as postgres, cdcpipe, debezium without a password", "postgres")
def postgres():
    import psycopg

    said = []
    for user in ("postgres", "cdcpipe", "debezium"):
        try:
            psycopg.connect(host=CONF["host"], port=CONF["ports"]["postgres"], user=user, dbname="users", connect_timeout=10).close()
        except psycopg.OperationalError as exc:
            text = str(exc).strip().splitlines()[-1]
            if "password" not in text:
                return False, f"{user}: {text}"
            said.append(f"{user}: {text}")
            continue
        return False, f"{user}: connected"
    return True, "; ".join(said)[:300]


@attempt("Airflow 8080: list DAGs", "airflow")
def airflow_api():
    return http("GET", url("airflow", "/api/v2/dags"))


@attempt("Airflow 8080: get a token as admin/admin", "airflow")
def airflow_token():
    return http("POST", url("airflow", "/auth/token"), json={"username": "admin", "password": "admin"})


@attempt("Airflow 8793: read a task log", "airflow_log_server")
def airflow_logs():
    return http("GET", url("airflow_log_server", "/log/dag_id=ingest_users/attempt=1.log"))


@attempt("console 8070: the overview", "console")
def console_page():
    return http("GET", url("console", "/"))


@attempt("console 8070: pause the connector", "console")
def console_action():
    return http("POST", url("console", "/connector/users-cdc/pause"), headers={"HX-Request": "true"})


@attempt("randomuser stand-in 8089: fetch users", "randomuser")
def standin():
    return http("GET", url("randomuser", "/api/?results=1"))


@attempt("randomuser stand-in 8089: queue a fault", "randomuser")
def standin_faults():
    return http("POST", url("randomuser", "/__faults"), json={"status": [500]})


def _nodes(port: str | None) -> list[tuple[str | None, str]]:
    """(port name, what to add to the attempt's name) for ``port`` and, on the cluster
    topology, each other node's port of the same kind (``kafka`` -> ``kafka_2``, ``kafka_3``):
    every node is tried as node 1 is."""
    if port is None:
        return [(None, "")]
    others = sorted(
        (name for name in CONF["ports"] if name.startswith(f"{port}_") and name[len(port) + 1 :].isdigit()),
        key=lambda name: int(name.rsplit("_", 1)[1]),
    )
    return [(port, ""), *((name, f" (node {name.rsplit('_', 1)[1]}, port {CONF['ports'][name]})") for name in others)]


def main() -> int:
    CONF.update(json.loads(Path(sys.argv[1]).read_text()))
    for name, port, fn in ATTEMPTS:
        for node_port, suffix in _nodes(port):
            first = CONF["ports"].get(port) if port else None
            if node_port != port:  # the probe reads its port by the kind's name: point it at this node
                CONF["ports"][port] = CONF["ports"][node_port]
            started = time.monotonic()
            try:
                refused, said = fn()
            except Exception as exc:  # reported as *not* refused: a probe that breaks must not pass
                refused, said = False, f"probe failed: {exc.__class__.__name__}: {str(exc)[:300]}"
            finally:
                if port:
                    CONF["ports"][port] = first
            seconds = round(time.monotonic() - started, 1)
            print(
                json.dumps({"attempt": name + suffix, "port": node_port, "refused": refused, "said": said, "seconds": seconds}),
                flush=True,
            )
    return 0


if __name__ == "__main__":
    sys.exit(main())
