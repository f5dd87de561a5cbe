"""The local runtime and docker-compose.yml, held to the same values wherever they must agree
(issue #17): PostgreSQL's server settings, roles and grants; Kafka's broker defaults and the
CDC topic; Connect's worker settings and the connector's environment; the Spark daemons'
settings and the worker's size; the Spark image's Python and its packages.

No service and no jar: the local side is read from the code that starts the services (their
module constants, and the dicts they write into config files, built here without starting
anything); the Docker side from the parsed compose file and the Spark Dockerfile. Where the
two runtimes differ on purpose, the difference is allow-listed below with its reason, and an
entry that no longer differs fails too (remove it then)."""

from __future__ import annotations

import ast
import importlib.metadata
import re
import shlex
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest
from compose_file import (
    ADDRESS,
    SYNC_PERIOD_CLEARED,
    assert_same,
    cassandra_settings,
    env_properties,
    exec_line,
    load,
    option,
    topic_commands,
    yaml_value,
)
from compose_file import dockerfile as compose_dockerfile
from packaging.specifiers import SpecifierSet

from cdcpipe import settings
from cdcpipe.clients import topics
from cdcpipe.pipeline.logins import UI_LOGIN_FILTER, ui_login_conf
from cdcpipe.runtime import java
from cdcpipe.runtime.services import postgres, spark
from cdcpipe.runtime.services.cassandra import Cassandra
from cdcpipe.runtime.services.connect import Connect
from cdcpipe.runtime.services.kafka import Kafka
from cdcpipe.settings import REPO

#: The Apicurio registry of the local runtime keeps its schemas in PostgreSQL (role and
#: database "registry"); the Docker stack runs Confluent's registry, which keeps them in Kafka.
REGISTRY = "registry storage: Apicurio in PostgreSQL (local) vs Confluent's registry in Kafka (Docker)"


@pytest.fixture(scope="module")
def compose() -> dict:
    return load()


@pytest.fixture
def local(tmp_path) -> settings.Settings:
    """The local runtime's settings with default ports and a state directory nothing uses."""
    return settings.load({"CDCPIPE_HOME": str(tmp_path / "state"), "CDCPIPE_JARS": str(tmp_path / "jars")})


#: Stand-ins for the secrets the local Connect's settings name.
SECRETS = {"debezium": "x", "registry_api": "x", "kafka": "x"}


# --- Cassandra -------------------------------------------------------------------------

#: What a committed micro-batch's survival and a full scan depend on: the Docker node must set
#: each as the local runtime does (the stock image's values lose acknowledged writes in a crash
#: and fail a scan past 100,000 tombstones).
#: What the Docker node must set as the local runtime does: durability, the scan limit, logins.
CASSANDRA_DURABILITY = (
    "commitlog_sync",
    "concurrent_writes",
    "tombstone_failure_threshold",
    "authenticator",
    "authorizer",
    "role_manager",
)


def _docker_cassandra(compose) -> dict[str, str]:
    found = cassandra_settings(compose["services"]["cassandra"]["environment"])
    return {k: v for k, v in found.items() if v is not None}


def test_cassandra_commit_log_tombstone_limit_and_logins(compose, local):
    mine = Cassandra(local, {"cassandra_keystore": "x"})._yaml()
    docker = _docker_cassandra(compose)
    unset = set(CASSANDRA_DURABILITY) - set(docker)
    assert not unset, f"docker-compose.yml's cassandra does not set {sorted(unset)}"
    assert_same(
        {k: yaml_value(mine[k]) for k in docker if k in mine},
        docker,
        {"commitlog_sync_period": SYNC_PERIOD_CLEARED},
        "Cassandra._yaml in cdcpipe/runtime/services/cassandra.py",
        "services.cassandra.environment.JVM_EXTRA_OPTS",
    )


#: A cassandra.yaml with the stock image's values for what the compose file overrides.
STOCK_YAML = """cluster_name: 'Test Cluster'
num_tokens: 16
partitioner: org.apache.cassandra.dht.Murmur3Partitioner
commitlog_sync: periodic
commitlog_sync_period: 10000ms
concurrent_writes: 32
tombstone_failure_threshold: 100000
authenticator:
  class_name : org.apache.cassandra.auth.AllowAllAuthenticator
authorizer: AllowAllAuthorizer
role_manager: CassandraRoleManager
endpoint_snitch: SimpleSnitch
seed_provider:
  - class_name: org.apache.cassandra.locator.SimpleSeedProvider
    parameters:
      - seeds: "127.0.0.1:7000"
data_file_directories: [{home}/data]
commitlog_directory: {home}/commitlog
saved_caches_directory: {home}/saved_caches
hints_directory: {home}/hints
"""


def test_cassandra_5_reads_the_compose_overrides_over_the_stock_yaml(compose, local, tmp_path):
    """Cassandra 5.0.6's own config loader (the local runtime's cassandra-all jar), given the
    stock image's values and docker-compose.yml's JVM_EXTRA_OPTS, ends with the local runtime's
    commit log and limits. Without the cleared period it refuses 'batch'; without
    allow_system_properties it ignores them all: both are what a Docker node would do."""
    jars = local.jars / "cassandra"
    if not any(jars.glob("cassandra-all-*.jar")):
        jars = REPO / "build" / "jars" / "cassandra"  # the checkout's, which make builds
    if not any(jars.glob("cassandra-all-*.jar")):
        pytest.skip(f"no cassandra-all jar in {jars}: 'make jars' resolves it (make test does)")
    stock = tmp_path / "cassandra.yaml"
    stock.write_text(STOCK_YAML.format(home=tmp_path))
    opts = compose["services"]["cassandra"]["environment"]["JVM_EXTRA_OPTS"].split()
    program = Path(__file__).parent / "CassandraConfig.java"
    done = subprocess.run(
        [java.java_bin(), "-cp", java.classpath(jars), f"-Dcassandra.config=file://{stock}", *opts, str(program)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    loaded = dict(line.split("=", 1) for line in done.stdout.splitlines() if line.startswith("cdcpipe."))
    assert done.returncode == 0 and loaded, done.stderr[-3000:]
    mine = Cassandra(local, {"cassandra_keystore": "x"})._yaml()
    assert loaded == {
        "cdcpipe.commitlog_sync": mine["commitlog_sync"],
        "cdcpipe.commitlog_sync_period_ms": "0",
        "cdcpipe.concurrent_writes": str(mine["concurrent_writes"]),
        "cdcpipe.tombstone_failure_threshold": str(mine["tombstone_failure_threshold"]),
        "cdcpipe.authenticator": mine["authenticator"],
        "cdcpipe.authorizer": mine["authorizer"],
        "cdcpipe.role_manager": mine["role_manager"],
    }


# --- PostgreSQL ------------------------------------------------------------------------


def _postgres_command(compose) -> dict[str, str]:
    argv = shlex.split(compose["services"]["postgres"]["command"])
    assert argv[0] == "postgres", argv
    return dict(kv.split("=", 1) for kv in option(argv, "-c"))


def test_postgres_server_settings(compose):
    docker = _postgres_command(compose)
    assert_same(
        postgres.SERVER_SETTINGS,
        docker,
        # The local runtime leaves it at PostgreSQL's default, which is this value since 14
        # (it requires 15+); Docker states it for the passwords postgres-setup writes.
        {"password_encryption": "PostgreSQL's default locally"},
        "SERVER_SETTINGS in cdcpipe/runtime/services/postgres.py",
        "services.postgres.command",
    )
    assert docker["password_encryption"] == "scram-sha-256" and postgres.MIN_VERSION >= 14
    image = compose["services"]["postgres"]["image"]
    major = int(re.match(r"postgres:(\d+)", image).group(1))
    assert major >= postgres.MIN_VERSION, f"docker-compose.yml: {image} is older than the local runtime's minimum {postgres.MIN_VERSION}"


def _setup_sql(compose) -> str:
    return compose["services"]["postgres-setup"]["command"][-1]


def test_postgres_roles_databases_and_grants(compose, local):
    svc = compose["services"]
    script = _setup_sql(compose)
    where = "services.postgres-setup"
    env = svc["postgres"]["environment"]

    # Login roles whose password the runtime sets (besides the superuser's): the database
    # owners, and the role Connect logs in as (created without one by sql/postgres).
    connector_user = Connect(local, SECRETS).connector_env()["CDC_POSTGRES_USER"]
    local_pw = dict.fromkeys({*postgres.DATABASES.values(), connector_user}, "password set")
    docker_pw = dict.fromkeys(re.findall(r"^ALTER ROLE (\w+) PASSWORD", script, re.M), "password set")
    created = re.search(r"unnest\(ARRAY\[([^\]]*)\]\)", script).group(1)
    for role in re.findall(r"'(\w+)'", created):
        assert role in docker_pw, f"docker-compose.yml ({where}): role {role} is created but gets no password"
    assert_same(local_pw, docker_pw, {"registry": REGISTRY}, "DATABASES in cdcpipe/runtime/services/postgres.py", where)

    local_dbs = dict(postgres.DATABASES)
    docker_dbs = {env["POSTGRES_DB"]: env["POSTGRES_USER"], **dict(re.findall(r"CREATE DATABASE (\w+) OWNER (\w+)", script))}
    assert_same(
        local_dbs,
        docker_dbs,
        {
            "registry": REGISTRY,
            # The image creates users (POSTGRES_DB) owned by the superuser; the local runtime
            # makes cdcpipe its owner. cdcpipe needs neither (it writes through users_writer);
            # the Docker side is the tighter one. Aligning the local runtime changes behaviour.
            "users": "owner: cdcpipe (local) vs postgres (Docker); see the comment",
        },
        "DATABASES in cdcpipe/runtime/services/postgres.py",
        f"{where} and services.postgres.environment",
    )

    revoked = re.search(r"REVOKE CONNECT ON DATABASE ([\w, ]+) FROM PUBLIC", script).group(1)
    assert_same(
        dict.fromkeys(postgres.PRIVATE_DATABASES, "private"),
        dict.fromkeys((d.strip() for d in revoked.split(",")), "private"),
        {"registry": REGISTRY},
        "PRIVATE_DATABASES in cdcpipe/runtime/services/postgres.py",
        where,
    )
    assert_same(
        {db: postgres.DATABASES[db] for db in postgres.PRIVATE_DATABASES if db in postgres.DATABASES},
        dict(re.findall(r"GRANT CONNECT ON DATABASE (\w+) TO (\w+)", script)),
        {"registry": REGISTRY},
        "Postgres.after_ready (owners keep CONNECT)",
        where,
    )

    docker_grants = {" ".join(g.split()) for g in re.findall(r"^(GRANT (?!CONNECT ON DATABASE)[^;]+);", script, re.M)}
    assert_same(
        dict.fromkeys(postgres.USERS_DB_GRANTS, "granted"),
        dict.fromkeys(docker_grants, "granted"),
        {},
        "USERS_DB_GRANTS in cdcpipe/runtime/services/postgres.py",
        where,
    )


# --- Kafka: broker defaults and the CDC topic ---------------------------------------------


def test_kafka_broker_settings(compose, local):
    assert_same(
        Kafka(local, SECRETS)._server_properties(),
        env_properties(compose["services"]["kafka"]["environment"], "KAFKA_"),
        {
            "listeners": ADDRESS,
            "advertised.listeners": ADDRESS,
            "controller.quorum.voters": ADDRESS,
            # Docker adds a HOST listener for clients outside its network.
            "listener.security.protocol.map": ADDRESS,
            "log.dirs": ADDRESS,
            # Share groups (KIP-932) came with Kafka 4; the Docker image (Confluent 7.9) is Kafka 3.9.
            "share.coordinator.state.topic.replication.factor": "Kafka 4 only",
            "share.coordinator.state.topic.min.isr": "Kafka 4 only",
            # SASL/PLAIN on every listener on both (docs/security.md#kafka): the same mechanisms
            # (sasl.* compared); the listeners' names and the JAAS lines' secrets differ.
            "inter.broker.listener.name": "listener names: SASL_PLAINTEXT (local) vs INTERNAL and HOST (Docker)",
            "listener.name.*": "the login's JAAS line: the same module and user cdcpipe, each runtime's own secret",
        },
        "Kafka._server_properties in cdcpipe/runtime/services/kafka.py",
        "services.kafka.environment",
    )


def test_topics_init_applies_what_the_local_runtime_applies(compose):
    """tests/test_compose.py::test_topics_init_matches_topics_json checks topics-init's flags
    against connectors/topics.json; this holds it to what the local runtime's loader makes of
    that file (cdcpipe.clients.topics.load, the TopicSpecs ``cdcpipe up`` applies)."""
    commands = topic_commands(compose)
    docker = {}
    for cmd in commands:
        if cmd[0] == "kafka-topics" and "--create" in cmd:
            (name,) = option(cmd, "--topic")
            (partitions,) = option(cmd, "--partitions")
            (replicas,) = option(cmd, "--replication-factor")
            config = dict(kv.split("=", 1) for kv in option(cmd, "--config"))
            docker[name] = topics.TopicSpec(name, int(partitions), int(replicas), config)
    altered = {option(c, "--entity-name")[0]: option(c, "--add-config")[0] for c in commands if c[0] == "kafka-configs"}
    local = {spec.name: spec for spec in topics.load()}
    assert topics.TOPICS_FILE == REPO / "connectors" / "topics.json"
    assert docker == local, f"docker-compose.yml (services.topics-init) creates {docker}, the local runtime {local}"
    for name, spec in local.items():
        added = dict(kv.split("=", 1) for kv in altered.get(name, "").split(",") if kv)
        assert added == spec.config, f"docker-compose.yml (services.topics-init): kafka-configs --add-config for {name}"


# --- Kafka Connect --------------------------------------------------------------------------


def test_connect_worker_settings(compose, local):
    worker = Connect(local, SECRETS).worker_properties()
    docker_env = compose["services"]["connect"]["environment"]
    assert_same(
        worker,
        env_properties(docker_env, "CONNECT_"),
        {
            "bootstrap.servers": ADDRESS,
            "listeners": ADDRESS,
            "rest.advertised.host.name": ADDRESS,
            "rest.advertised.port": ADDRESS,
            "plugin.path": ADDRESS,
            # Apicurio's converter for Apicurio's registry (local), Confluent's for Confluent's
            # (Docker); both write the same bytes, as checked below.
            "key.converter*": REGISTRY,
            "value.converter*": REGISTRY,
            "plugin.discovery": "service_load needs a manifest for every plugin; `cdcpipe jars` writes the local runtime's, "
            "the image keeps Kafka's default scan (hybrid_warn) over Confluent's and Debezium's jars",
            # Kafka's login, for the worker and the clients it makes for connectors: the JAAS
            # line alone differs (the secret); protocol and mechanism are compared.
            "sasl.jaas.config": "the login's JAAS line: the same module and user cdcpipe, each runtime's own secret",
            **{
                f"{prefix}.sasl.jaas.config": "the login's JAAS line: the same module and user cdcpipe, each runtime's own secret"
                for prefix in ("producer", "consumer", "admin")
            },
        },
        "Connect.worker_properties in cdcpipe/runtime/services/connect.py",
        "services.connect.environment",
    )
    # What makes the two converters interchangeable: Confluent framing (magic byte, 4-byte
    # id, no headers) and <topic>-key / <topic>-value subjects (Confluent's default strategy).
    for prefix in ("key.converter", "value.converter"):
        assert worker[f"{prefix}.apicurio.registry.as-confluent"] == "true"
        assert worker[f"{prefix}.apicurio.registry.headers.enabled"] == "false"
        assert worker[f"{prefix}.apicurio.registry.artifact-resolver-strategy"].endswith(".TopicIdStrategy")
        env = prefix.upper().replace(".", "_")
        assert docker_env[f"CONNECT_{env}"] == "io.confluent.connect.avro.AvroConverter", f"services.connect: CONNECT_{env}"
    assert not [k for k in docker_env if "SUBJECT_NAME_STRATEGY" in k], "services.connect: a non-default subject strategy"


def test_connector_environment(compose, local):
    """What ``${env:...}`` in connectors/users-cdc.json resolves to in each runtime."""
    env = compose["services"]["connect"]["environment"]
    assert_same(
        Connect(local, SECRETS).connector_env(),
        {k: v for k, v in env.items() if k.startswith("CDC_")},
        {
            "CDC_POSTGRES_HOST": ADDRESS,
            "CDC_POSTGRES_PORT": ADDRESS,
            "CDC_POSTGRES_PASSWORD": "secrets.json (local) vs .env (Docker)",
            # The converter's registry login: the Docker stack's registry has none yet.
            "CDC_REGISTRY_*": "a registry login on the local runtime only (docs/security.md#docker)",
        },
        "Connect.connector_env in cdcpipe/runtime/services/connect.py",
        "services.connect.environment",
    )
    # ... and the password Connect gets is the one postgres-setup gives that role.
    variable = re.match(r"\$\{(\w+):\?", env["CDC_POSTGRES_PASSWORD"]).group(1)
    setup = compose["services"]["postgres-setup"]
    (psql_var,) = re.findall(r"ALTER ROLE " + env["CDC_POSTGRES_USER"] + r" PASSWORD :'(\w+)'", _setup_sql(compose))
    (shell_var,) = re.findall(r"-v " + psql_var + r'="\$\$(\w+)"', _setup_sql(compose))
    assert setup["environment"][shell_var].startswith("${" + variable + ":?"), (
        f"docker-compose.yml: Connect's CDC_POSTGRES_PASSWORD is ${variable}, postgres-setup sets the role's from {shell_var}"
    )


# --- Spark ----------------------------------------------------------------------------------


def _daemon_opts(value: str) -> dict[str, str]:
    return dict(arg[2:].split("=", 1) for arg in value.split() if arg.startswith("-D"))


def test_spark_worker_size_and_daemon_settings(compose):
    services = compose["services"]
    worker = exec_line(services["spark-worker"]["command"])
    assert_same(
        {"cores": spark.WORKER_CORES, "memory": spark.WORKER_MEMORY},
        {"cores": option(worker, "--cores")[0], "memory": option(worker, "--memory")[0]},
        {},
        "WORKER_CORES / WORKER_MEMORY in cdcpipe/runtime/services/spark.py",
        "services.spark-worker.command",
    )
    # The UIs' login filter and its credentials file, whose path differs.
    local = {**spark.DAEMON_CONF, **ui_login_conf("(path)")}
    credentials = f"spark.{UI_LOGIN_FILTER}.param.credentials"
    assert_same(
        local,
        _daemon_opts(services["spark-master"]["environment"]["SPARK_MASTER_OPTS"]),
        {credentials: ADDRESS},
        "DAEMON_CONF, ui_login_conf in cdcpipe/runtime/services/spark.py",
        "services.spark-master.environment.SPARK_MASTER_OPTS",
    )
    assert_same(
        local,
        _daemon_opts(services["spark-worker"]["environment"]["SPARK_WORKER_OPTS"]),
        # Read by the master only; the local runtime passes one set to both daemons.
        {"spark.master.rest.enabled": "master only", credentials: ADDRESS},
        "DAEMON_CONF, ui_login_conf in cdcpipe/runtime/services/spark.py",
        "services.spark-worker.environment.SPARK_WORKER_OPTS",
    )
    # Every UI's login file is the one the container writes, and the job's UI has the same.
    for name in ("spark-master", "spark-worker"):
        command = services[name]["command"][-1]
        path = _daemon_opts(services[name]["environment"][f"SPARK_{name.split('-')[1].upper()}_OPTS"])[credentials]
        assert f'"$$SPARK_UI_PASSWORD" > {path}' in command, name
    job = services["spark-job"]
    assert f'"$$SPARK_UI_PASSWORD" > {job["environment"]["CDC_UI_CREDENTIALS"]}' in job["command"][-1]


# --- The Spark image's Python -----------------------------------------------------------------


def _spark_dockerfile(compose) -> tuple[Path, list[str]]:
    path = compose_dockerfile(compose["services"]["spark-worker"]["build"])
    for name in ("spark-master", "spark-job"):
        assert compose_dockerfile(compose["services"][name]["build"]) == path, f"{name} builds another image"
    text = path.read_text().replace("\\\n", " ")
    return path, [line.strip() for line in text.splitlines() if line.strip() and not line.lstrip().startswith("#")]


def _pip_installs(lines: list[str]) -> list[list[str]]:
    """Every ``pip install`` command line of the Dockerfile's RUN instructions."""
    found = []
    for line in lines:
        if line.startswith("RUN "):
            for part in line[4:].split("&&"):
                argv = shlex.split(part)
                if argv and Path(argv[0]).name in ("pip", "pip3") and argv[1:2] == ["install"]:
                    found.append(argv)
    return found


def _lock() -> dict[str, str]:
    pins = re.findall(r"^([A-Za-z0-9_.-]+)==(\S+)$", (REPO / "requirements.lock").read_text(), re.M)
    return {_norm(name): version for name, version in pins}


def _norm(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def test_spark_image_python_is_the_local_runtimes(compose):
    """The local runtime's Spark runs the job's Python workers with its own interpreter
    (PYSPARK_PYTHON = sys.executable in cdcpipe/runtime/services/spark.py): the image's must be the
    same minor version, which pyproject.toml's requires-python also admits."""
    path, lines = _spark_dockerfile(compose)
    venv = re.search(r"python3\.(\d+) -m venv (\S+)", " ".join(lines))
    assert venv, f"{path}: no 'python3.X -m venv DIR' (the job's interpreter)"
    minor, directory = int(venv.group(1)), venv.group(2)
    assert (3, minor) == sys.version_info[:2], (
        f"{path}: the image's Python is 3.{minor}, the local runtime's {sys.version_info.major}.{sys.version_info.minor}"
    )
    requires = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["requires-python"]
    assert f"3.{minor}.0" in SpecifierSet(requires), f"{path}: Python 3.{minor} is outside pyproject.toml's requires-python {requires}"
    env = " ".join(line for line in lines if line.startswith("ENV "))
    for variable in ("PYSPARK_PYTHON", "PYSPARK_DRIVER_PYTHON"):
        assert f"{variable}={directory}/bin/python" in env, f"{path}: {variable} must be {directory}/bin/python"
    installs = _pip_installs(lines)
    assert installs, f"{path}: no pip install"
    for argv in installs:
        assert argv[0] == f"{directory}/bin/pip", f"{path}: {shlex.join(argv)} does not install into {directory}"


def test_spark_image_packages_are_pinned_by_requirements_lock(compose):
    path, lines = _spark_dockerfile(compose)
    copied = [shlex.split(line)[1:] for line in lines if line.startswith("COPY ")]
    lock_in_image = next((dest.rstrip("/") + "/requirements.lock" for *sources, dest in copied if "requirements.lock" in sources), None)
    assert lock_in_image, f"{path}: requirements.lock is not copied into the image"
    lock = _lock()
    installs = [argv[2:] for argv in _pip_installs(lines)]
    assert installs, f"{path}: no pip install"
    for args in installs:
        if "--no-deps" in args:  # the cdcpipe package itself, no dependency resolution
            assert [a for a in args if not a.startswith("-")] == ["/opt/cdcpipe"], f"{path}: pip install {args}"
            continue
        assert option(args, "-c") == [lock_in_image], (
            f"{path}: pip install {args} must use -c {lock_in_image} (the versions of every dependency)"
        )
        for requirement in (a for a in args if not a.startswith("-") and a != lock_in_image):
            name, _, version = requirement.partition("==")
            assert _norm(name) in lock, f"{path}: {name} is not in requirements.lock"
            assert version in ("", lock[_norm(name)]), f"{path}: {name}=={version}, requirements.lock has {lock[_norm(name)]}"


def _module_file(name: str) -> Path | None:
    base = REPO.joinpath(*name.split("."))
    for candidate in (base.with_suffix(".py"), base / "__init__.py"):
        if candidate.is_file():
            return candidate
    return None


def _job_imports() -> set[str]:
    """Top-level third-party modules the job's driver and executors import: the job script and
    every cdcpipe module it reaches, at any depth (imports inside functions included)."""
    third_party: set[str] = set()
    seen: set[Path] = set()
    todo = [(REPO / "spark_jobs" / "users_to_cassandra.py", "")]
    while todo:
        path, package = todo.pop()
        if path in seen:
            continue
        seen.add(path)
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom):
                if node.level:
                    base = ".".join(package.split(".")[: len(package.split(".")) - node.level + 1])
                    module = f"{base}.{node.module}" if node.module else base
                else:
                    module = node.module
                names = [module, *(f"{module}.{alias.name}" for alias in node.names)]
            else:
                continue
            for name in names:
                top = name.split(".")[0]
                if top == "cdcpipe":
                    found = _module_file(name)
                    if found:
                        is_pkg = found.name == "__init__.py"
                        todo.append((found, name if is_pkg else name.rpartition(".")[0]))
                elif top not in sys.stdlib_module_names and top != "__future__":
                    third_party.add(top)
    return third_party


def test_spark_image_installs_what_the_job_imports(compose):
    path, lines = _spark_dockerfile(compose)
    installs = [argv[2:] for argv in _pip_installs(lines)]
    installed = {_norm(a.partition("==")[0]) for args in installs for a in args if not a.startswith(("-", "/"))}
    provided = {"pyspark", "py4j"}  # the image's Spark, at the version tests/test_compose.py checks
    distributions = importlib.metadata.packages_distributions()
    imports = _job_imports()
    assert {"pyspark", "fastavro", "cassandra"} <= imports, imports  # the walk reaches the executors' code
    missing = {}
    for module in sorted(imports):
        dists = {_norm(d) for d in distributions.get(module, [module])}
        if not dists & (installed | provided):
            missing[module] = sorted(dists)
    assert not missing, f"{path}: the job imports {missing} but the image does not install them (pip install ... in {path.name})"
