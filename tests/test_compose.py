"""docker-compose.yml, checked without a Docker engine: it parses, every image is pinned,
long-running services have healthchecks, referenced paths and variables exist, published
ports do not collide, and Connect's Debezium matches the local runtime's manifest. And its
security defaults: ports on 127.0.0.1, no default secrets (preflight and
scripts/docker-env.py run here for real), Spark RPC authentication, the connector PUT
(against a fake Connect on 127.0.0.1) and the topic as connectors/topics.json says."""

from __future__ import annotations

import base64
import http.server
import importlib.util
import json
import os
import re
import shlex
import stat
import subprocess
import sys
import threading
from pathlib import Path

import compose_file
import pytest
import yaml
from compose_file import CASSANDRA_PASSWORDS, CLUSTER, COMPOSE, COMPOSE_FILES, load, load_cluster, run_cassandra_init
from compose_file import dockerfile as _dockerfile
from compose_file import option as opt
from compose_file import topic_commands as _topic_commands

from cdcpipe.runtime.jars import manifest_version
from cdcpipe.settings import REPO


@pytest.fixture(scope="module")
def compose() -> dict:
    return load()


@pytest.fixture(scope="module", params=["docker-compose.yml", "cluster"])
def any_compose(request) -> dict:
    """docker-compose.yml, and the cluster variant (merged with docker-compose.cluster.yml):
    the rules every stack follows."""
    return load() if request.param == "docker-compose.yml" else load_cluster()


def _compose_text() -> str:
    return "\n".join(path.read_text() for path in COMPOSE_FILES)


def _pinned(image: str) -> bool:
    name, _, tag = image.rpartition(":") if ":" in image.split("/")[-1] else (image, "", "")
    return bool(tag) and tag != "latest" and not tag.startswith("latest-")


def test_every_image_is_pinned(any_compose):
    for name, svc in any_compose["services"].items():
        if "image" in svc:
            assert _pinned(svc["image"]), f"{name}: image {svc['image']} is not pinned"
        if "build" in svc:
            dockerfile = _dockerfile(svc["build"])
            bases = re.findall(r"^FROM\s+(\S+)", dockerfile.read_text(), re.M)
            assert bases and all(_pinned(b) for b in bases), f"{dockerfile}: unpinned base {bases}"


def test_long_running_services_have_healthchecks(any_compose):
    one_shots = {n for n, s in any_compose["services"].items() if s.get("restart") == "no"}
    assert {"preflight", "postgres-setup", "topics-init", "connector-init", "cassandra-init", "airflow-init"} <= one_shots
    for name, svc in any_compose["services"].items():
        if name not in one_shots:
            assert "healthcheck" in svc, f"{name} has no healthcheck"
            assert "mem_limit" in svc, f"{name} has no memory limit"


def test_dependencies_use_conditions(any_compose):
    for name, svc in any_compose["services"].items():
        deps = svc.get("depends_on", {})
        assert isinstance(deps, dict), f"{name}: depends_on without conditions"
        for dep, spec in deps.items():
            assert dep in any_compose["services"], f"{name} depends on unknown {dep}"
            assert spec["condition"] in ("service_healthy", "service_completed_successfully"), (name, dep)


def test_referenced_paths_exist(any_compose):
    for name, svc in any_compose["services"].items():
        for volume in svc.get("volumes", []):
            source = volume.split(":")[0]
            if source.startswith("."):
                assert (REPO / source).exists(), f"{name}: {source} does not exist"
        if "build" in svc:
            assert _dockerfile(svc["build"]).exists(), f"{name}: no Dockerfile"
    for dockerfile in (REPO / "connectors" / "Dockerfile", REPO / "spark_jobs" / "Dockerfile"):
        for src in re.findall(r"^COPY\s+(.+)\s+\S+$", dockerfile.read_text(), re.M):
            if src.startswith("--from="):
                continue  # from an earlier stage, not from the repository
            for path in src.split():
                assert (REPO / path).exists(), f"{dockerfile}: COPY {path} does not exist"


def test_pipeline_files_are_mounted_not_copied(compose):
    mounts = {v.split(":")[0] for s in compose["services"].values() for v in s.get("volumes", [])}
    assert {"./airflow/dags", "./connectors", "./sql/postgres", "./sql/cassandra", "./spark_jobs", "./scripts"} <= mounts


def test_every_variable_is_in_env_example():
    used = set(re.findall(r"(?<!\$)\$\{([A-Z0-9_]+)", _compose_text()))
    example = REPO / ".env.example"
    defined = {line.split("=", 1)[0] for line in example.read_text().splitlines() if "=" in line and not line.startswith("#")}
    assert used and used <= defined, f"missing from .env.example: {sorted(used - defined)}"


def test_published_ports_do_not_collide(any_compose):
    published = [_host_port(p) for _, p in _ports(any_compose)]
    assert len(published) == len(set(published)), published
    assert {"8080", "9021", "8083", "8081", "8090", "9042", "5432"} <= set(published)


def test_debezium_version_matches_the_local_manifest():
    dockerfile = (REPO / "connectors" / "Dockerfile").read_text()
    assert re.search(r"ARG DEBEZIUM_VERSION=(\S+)", dockerfile).group(1) == manifest_version("debezium.version")
    spark = (REPO / "spark_jobs" / "Dockerfile").read_text()
    assert re.search(r"ARG SPARK_VERSION=(\S+)", spark).group(1) == manifest_version("spark.version")
    assert f"apache/spark:{manifest_version('spark.version')}-" in spark


# --- Security defaults (docs/security.md, "Docker") -------------------------------------

ENV_SCRIPT = REPO / "scripts" / "docker-env.py"
REGISTER_SCRIPT = REPO / "scripts" / "register-connector.py"
EXAMPLE = REPO / ".env.example"
# Variables compose may fill from a default: the port switch and the optional API URL.
OPTIONAL = {"CDCPIPE_BIND_ADDRESS": "127.0.0.1", "RANDOMUSER_URL": ""}
_VAR = re.compile(r"(?<!\$)\$\{([A-Za-z0-9_]+)(?:(:?[-?])([^}]*))?\}")


def _load_script(path: Path):
    spec = importlib.util.spec_from_file_location(path.stem.replace("-", "_"), path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def docker_env():
    return _load_script(ENV_SCRIPT)


def _interpolate(value: str, env: dict[str, str]) -> str:
    """Compose's ${VAR}, ${VAR:-default} and ${VAR:?message}, enough for these tests."""

    def one(match: re.Match) -> str:
        name, op, arg = match.group(1), match.group(2), match.group(3)
        current = env.get(name)
        if op == ":-" and not current:
            return arg
        if op == ":?" and not current:
            raise LookupError(f"{name}: {arg}")
        return current or ""

    return _VAR.sub(one, value).replace("$$", "$")


def _host_ip(entry, env: dict[str, str]) -> str:
    if isinstance(entry, dict):  # long syntax
        return _interpolate(str(entry.get("host_ip", "")), env)
    parts = _interpolate(str(entry), env).split(":")
    # ip:host:container; host:container and a bare container port bind every address.
    return parts[0] if len(parts) == 3 else "0.0.0.0"


def _host_port(entry) -> str:
    if isinstance(entry, dict):
        return str(entry["published"])
    parts = _interpolate(str(entry), {}).split(":")
    return parts[-2] if len(parts) >= 2 else parts[-1]


def _ports(compose):
    return [(name, p) for name, svc in compose["services"].items() for p in svc.get("ports", [])]


def _example_values() -> dict[str, str]:
    return _load_script(ENV_SCRIPT).read_env_file(EXAMPLE)


def _generated(docker_env, tmp_path) -> Path:
    out = tmp_path / ".env"
    assert docker_env.main(["--output", str(out)]) == 0
    return out


def _check(env: dict[str, str]) -> subprocess.CompletedProcess:
    """scripts/docker-env.py --check as the preflight container runs it: values in its environment."""
    clean = {k: v for k, v in os.environ.items() if k not in _load_script(ENV_SCRIPT).GENERATED}
    return subprocess.run([sys.executable, str(ENV_SCRIPT), "--check"], env={**clean, **env}, capture_output=True, text=True, timeout=30)


def test_ports_are_published_on_localhost_by_default(any_compose):
    assert _ports(any_compose)
    for name, entry in _ports(any_compose):
        assert _host_ip(entry, {}) == "127.0.0.1", f"{name}: {entry} is published beyond this machine"
        assert _host_ip(entry, {"CDCPIPE_BIND_ADDRESS": ""}) == "127.0.0.1", f"{name}: {entry}"
        # ... and the one documented switch exposes them.
        assert _host_ip(entry, {"CDCPIPE_BIND_ADDRESS": "0.0.0.0"}) == "0.0.0.0", f"{name}: {entry}"
    assert "CDCPIPE_BIND_ADDRESS" in EXAMPLE.read_text()


def test_no_variable_has_a_default_except_the_optional_ones(compose, docker_env):
    text = _compose_text()
    found = list(_VAR.finditer(text))
    assert found and _VAR.search(CLUSTER.read_text())
    for match in found:
        name, op = match.group(1), match.group(2)
        if name in OPTIONAL:
            assert op == ":-" and match.group(3) == OPTIONAL[name], match.group(0)
        else:
            assert op == ":?" and match.group(3).strip(), f"{match.group(0)}: a required variable needs :?message"
    required = {m.group(1) for m in found if m.group(2) == ":?"}
    assert set(docker_env.GENERATED) == required, "scripts/docker-env.py and the compose file disagree on secrets"
    # preflight sees every one of them.
    assert set(compose["services"]["preflight"]["environment"]) == set(docker_env.GENERATED)


def test_env_example_holds_no_secret(docker_env):
    values = _example_values()
    for name in docker_env.GENERATED:
        assert name in values, f".env.example does not mention {name}"
        assert values[name] == "", f".env.example: {name} must stay empty (compose then refuses to start)"


def test_preflight_refuses_env_example_and_placeholders(docker_env, tmp_path):
    example = _example_values()
    result = _check(example)
    assert result.returncode == 1
    assert "refusing to start" in result.stderr and "scripts/docker-env.py" in result.stderr
    # The old .env.example's placeholders, as a .env copied from it still holds them.
    old = {name: f"change-me-{name.lower()}" for name in docker_env.SECRETS}
    result = _check({**old, "KAFKA_CLUSTER_ID": "MkU3OEVBNTcwNTJENDM2Qk"})
    assert result.returncode == 1 and "placeholder" in result.stderr

    good = docker_env.read_env_file(_generated(docker_env, tmp_path))
    assert docker_env.problems(good) == []
    for name in docker_env.SECRETS:
        # Each of .env.example's values is refused on its own, and so are typed placeholders.
        for bad in (example[name], "change-me", "change-me-postgres", "CHANGEME-please-now", "short-pw", "password"):
            found = docker_env.problems({**good, name: bad})
            assert found and all(p.startswith(name) for p in found), (name, bad, found)
    for name, bad in (
        # The Fernet key an earlier .env.example shipped is public, hence refused.
        ("AIRFLOW_FERNET_KEY", "TNnW3f0ZfkNvsp0aJHV8iqN2DT7o0ac8dVJ3OYPUCkI="),
        ("AIRFLOW_FERNET_KEY", "not-base64-but-long-enough!"),
        ("KAFKA_CLUSTER_ID", "too-short"),
        ("AIRFLOW_DB_PASSWORD", "long-enough-but-has@and:"),
    ):
        found = docker_env.problems({**good, name: bad})
        assert found and all(p.startswith(name) for p in found), (name, bad, found)


def test_preflight_accepts_generated_env(docker_env, tmp_path):
    env_file = _generated(docker_env, tmp_path)
    result = _check(docker_env.read_env_file(env_file))
    assert result.returncode == 0, result.stderr
    assert docker_env.main(["--check", "--env-file", str(env_file)]) == 0


def test_generated_env_is_complete_private_and_not_overwritten(docker_env, tmp_path):
    env_file = _generated(docker_env, tmp_path)
    assert stat.S_IMODE(env_file.stat().st_mode) == 0o600
    values = docker_env.read_env_file(env_file)
    used = {m.group(1) for m in _VAR.finditer(_compose_text())}
    assert used <= set(values), f"missing from the generated .env: {sorted(used - set(values))}"
    for name in docker_env.GENERATED:
        assert values[name], name
    assert len(base64.urlsafe_b64decode(values["AIRFLOW_FERNET_KEY"])) == 32
    assert len(values["KAFKA_CLUSTER_ID"]) == 22
    assert len(base64.urlsafe_b64decode(values["KAFKA_CLUSTER_ID"] + "==")) == 16
    assert len({values[name] for name in docker_env.SECRETS}) == len(docker_env.SECRETS), "secrets repeat"
    # Comments of .env.example carried over, so .env documents itself.
    assert "CDCPIPE_BIND_ADDRESS" in env_file.read_text() and values["CDCPIPE_BIND_ADDRESS"] == "127.0.0.1"

    before = env_file.read_text()
    assert docker_env.main(["--output", str(env_file)]) == 1
    assert env_file.read_text() == before, "refused, yet changed"
    env_file.chmod(0o644)
    assert docker_env.main(["--output", str(env_file), "--force"]) == 0
    assert env_file.read_text() != before
    assert stat.S_IMODE(env_file.stat().st_mode) == 0o600
    assert [p.name for p in tmp_path.iterdir()] == [".env"], "temporary files left behind"


def test_add_missing_keeps_every_value_and_adds_what_a_newer_version_needs(docker_env, tmp_path, capsys):
    """An .env written before a secret existed (here: without the Cassandra passwords):
    compose refuses it, a plain run says what it lacks, --add-missing appends fresh values for
    exactly that and keeps every other line; a second run adds nothing."""
    env_file = _generated(docker_env, tmp_path)
    old = [line for line in env_file.read_text().splitlines() if not line.startswith("CASSANDRA_")]
    env_file.write_text("\n".join(old) + "\n")
    before = docker_env.read_env_file(env_file)
    assert docker_env.main(["--output", str(env_file)]) == 1
    assert "lacks CASSANDRA_ADMIN_PASSWORD, CASSANDRA_JOB_PASSWORD, CASSANDRA_READER_PASSWORD" in capsys.readouterr().err
    assert docker_env.main(["--output", str(env_file), "--add-missing"]) == 0
    after = docker_env.read_env_file(env_file)
    assert {k: v for k, v in after.items() if k in before} == before
    assert set(after) - set(before) == {"CASSANDRA_ADMIN_PASSWORD", "CASSANDRA_JOB_PASSWORD", "CASSANDRA_READER_PASSWORD"}
    assert docker_env.problems(after) == [] and stat.S_IMODE(env_file.stat().st_mode) == 0o600
    text = env_file.read_text()
    assert docker_env.main(["--output", str(env_file), "--add-missing"]) == 0 and env_file.read_text() == text


def test_every_service_waits_for_preflight(any_compose):
    services = any_compose["services"]
    assert services["preflight"]["restart"] == "no"
    assert services["preflight"]["command"][-2:] == ["/scripts/docker-env.py", "--check"]

    def reaches(name: str, seen=()) -> bool:
        deps = services[name].get("depends_on", {})
        if deps.get("preflight", {}).get("condition") == "service_completed_successfully":
            return True
        return any(reaches(dep, seen + (name,)) for dep in deps if dep not in seen)

    for name in services:
        if name != "preflight":
            assert reaches(name), f"{name} can start before preflight has passed"


def test_postgres_uses_scram(compose):
    env = compose["services"]["postgres"]["environment"]
    assert env["POSTGRES_HOST_AUTH_METHOD"] == "scram-sha-256"
    assert "--auth-host=scram-sha-256" in env["POSTGRES_INITDB_ARGS"]


def test_spark_authenticates_and_keeps_the_secret_off_command_lines(any_compose):
    services = any_compose["services"]
    workers = [(name, "SPARK_WORKER_OPTS") for name in services if name.startswith("spark-worker")]
    for name, opts_var in (("spark-master", "SPARK_MASTER_OPTS"), *workers):
        env = services[name]["environment"]
        opts = env[opts_var].split()
        assert "-Dspark.authenticate=true" in opts and "-Dspark.ui.killEnabled=false" in opts, name
        assert env["_SPARK_AUTH_SECRET"].startswith("${SPARK_AUTH_SECRET:?"), name
    job = services["spark-job"]
    assert job["environment"]["_SPARK_AUTH_SECRET"].startswith("${SPARK_AUTH_SECRET:?")
    script = job["command"][-1]
    submit = shlex.split(script[script.index("exec ") :].replace("\\\n", " "))
    confs = [submit[i + 1] for i, arg in enumerate(submit) if arg == "--conf"]
    assert "spark.authenticate=true" in confs and "spark.ui.killEnabled=false" in confs
    assert "--properties-file" in submit
    # The secret reaches no command line: only printf (a bash builtin) writes it to the file.
    for line in script.splitlines():
        if "_SPARK_AUTH_SECRET" in line:
            assert line.startswith("printf ") and "> /tmp/spark-auth.properties" in line, line
    for name, svc in services.items():
        for arg in [*svc.get("command", []), *(str(v) for v in (svc.get("environment") or {}).values())]:
            assert "-Dspark.authenticate.secret" not in arg and "--conf spark.authenticate.secret" not in arg, name


def test_topics_init_matches_topics_json(compose):
    topics = json.loads((REPO / "connectors" / "topics.json").read_text())["topics"]
    assert topics
    commands = _topic_commands(compose)
    creates = [c for c in commands if c[0] == "kafka-topics" and "--create" in c]
    alters = [c for c in commands if c[0] == "kafka-configs" and "--alter" in c]
    assert len(creates) == len(alters) == len(topics)
    for topic in topics:
        create = next(c for c in creates if opt(c, "--topic") == [topic["name"]])
        assert "--if-not-exists" in create
        assert opt(create, "--bootstrap-server") == ["kafka:29092"]
        assert opt(create, "--partitions") == [str(topic["partitions"])]
        assert opt(create, "--replication-factor") == [str(topic["replication_factor"])]
        configs = dict(kv.split("=", 1) for kv in opt(create, "--config"))
        assert configs == {k: str(v) for k, v in topic["config"].items()}
        alter = next(c for c in alters if opt(c, "--entity-name") == [topic["name"]])
        assert opt(alter, "--entity-type") == ["topics"]
        assert opt(alter, "--bootstrap-server") == ["kafka:29092"]
        (added,) = opt(alter, "--add-config")
        assert dict(kv.split("=", 1) for kv in added.split(",")) == configs
    services = compose["services"]
    assert services["topics-init"]["restart"] == "no"
    for reader in ("connect", "connector-init", "spark-job"):
        assert services[reader]["depends_on"]["topics-init"]["condition"] == "service_completed_successfully"


def test_connector_init_puts_the_config(compose):
    init = compose["services"]["connector-init"]
    assert init["command"] == ["python3", "/scripts/register-connector.py", "/connectors/users-cdc.json", "http://connect:8083"]
    assert {"./connectors:/connectors:ro", "./scripts:/scripts:ro"} <= set(init["volumes"])


class _FakeConnect(http.server.BaseHTTPRequestHandler):
    answers: list[int] = []
    requests: list[tuple[str, str, object]] = []
    logins: list[str | None] = []

    def do_PUT(self):
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        type(self).requests.append(("PUT", self.path, body))
        type(self).logins.append(self.headers.get("Authorization"))
        status = type(self).answers.pop(0)
        payload = json.dumps({"error_code": status, "message": "fake"} if status >= 300 else {"name": "x"}).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)

    def do_POST(self):
        type(self).requests.append(("POST", self.path, None))
        self.send_response(405)
        self.end_headers()

    def log_message(self, *args):
        pass


@pytest.fixture
def fake_connect():
    _FakeConnect.answers, _FakeConnect.requests, _FakeConnect.logins = [], [], []
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _FakeConnect)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield _FakeConnect, f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


def _register(url: str, **env: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, str(REGISTER_SCRIPT), str(REPO / "connectors" / "users-cdc.json"), url],
        env={
            **{k: v for k, v in os.environ.items() if not k.startswith("CDCPIPE_CONNECT_")},
            "REGISTER_RETRY_DELAY": "0",
            "REGISTER_ATTEMPTS": "3",
            **env,
        },
        capture_output=True,
        text=True,
        timeout=60,
    )


@pytest.mark.parametrize(
    "answers, ok", [([201], True), ([200], True), ([409, 200], True), ([400], False), ([409, 409, 409], False), ([500, 500, 500], False)]
)
def test_register_connector_puts_only_the_config(fake_connect, answers, ok):
    handler, url = fake_connect
    handler.answers = list(answers)
    result = _register(url)
    connector = json.loads((REPO / "connectors" / "users-cdc.json").read_text())
    assert (result.returncode == 0) == ok, result.stderr
    assert handler.requests and all(r == ("PUT", f"/connectors/{connector['name']}/config", connector["config"]) for r in handler.requests)
    if not ok:
        assert "NOT registered" in result.stderr and "fake" in result.stderr
    # 409 and 5xx are retried (3 attempts here), a 400 is not.
    assert handler.answers == [] and len(handler.requests) == len(answers)
    assert handler.logins == [None] * len(answers)  # no password in the environment: no login sent


def test_register_connector_sends_the_rest_login_with_every_request(fake_connect):
    """Connect answers 401 without a challenge, so the login goes with the first request (and
    every retry), and the password shows nowhere in the script's output."""
    handler, url = fake_connect
    handler.answers = [409, 201]
    secret = "a-long-generated-secret-42"
    result = _register(url, CDCPIPE_CONNECT_PASSWORD=secret)
    assert result.returncode == 0, result.stderr
    expected = "Basic " + base64.b64encode(f"cdcpipe:{secret}".encode()).decode()
    assert handler.logins == [expected, expected]
    assert secret not in result.stdout + result.stderr


# --- Nothing without a credential: every Kafka client and HTTP API of the stack logs in -----

KAFKA_JAAS = 'org.apache.kafka.common.security.plain.PlainLoginModule required username="cdcpipe" password="${CDCPIPE_KAFKA_PASSWORD'


def _env(service: dict) -> dict:
    env = service.get("environment") or {}
    return env if isinstance(env, dict) else dict(str(e).partition("=")[::2] for e in env)


@pytest.mark.parametrize("which", ["single", "cluster"])
def test_kafka_wants_a_login_on_every_listener(which):
    compose = compose_file.load() if which == "single" else compose_file.load_cluster()
    for name in compose_file.node_services(compose, "kafka"):
        env = _env(compose["services"][name])
        listeners = [entry.split("://")[0] for entry in env["KAFKA_LISTENERS"].split(",")]
        protocols = dict(pair.split(":") for pair in env["KAFKA_LISTENER_SECURITY_PROTOCOL_MAP"].split(","))
        assert {protocols[listener] for listener in listeners} == {"SASL_PLAINTEXT"}, f"{name}: a listener without a login"
        assert env["KAFKA_SASL_ENABLED_MECHANISMS"] == "PLAIN"
        for listener in listeners:
            jaas = env[f"KAFKA_LISTENER_NAME_{listener}_PLAIN_SASL_JAAS_CONFIG"]
            assert 'user_cdcpipe="${CDCPIPE_KAFKA_PASSWORD' in jaas and jaas.startswith(KAFKA_JAAS), f"{name}: {listener}'s users"
        # the healthcheck's CLI logs in with the file the command writes
        assert "--command-config" in compose["services"][name]["healthcheck"]["test"]
        assert "/tmp/client.properties" in compose["services"][name]["command"][-1]


@pytest.mark.parametrize("which", ["single", "cluster"])
def test_every_kafka_client_of_the_stack_logs_in(which):
    """Each service that reaches a broker (an address on port 29092) carries the login its
    client takes: a Java client's JAAS line, the CLI's --command-config, or the job's
    credentials file."""
    compose = compose_file.load() if which == "single" else compose_file.load_cluster()
    kafka_nodes = set(compose_file.node_services(compose, "kafka"))
    clients = []
    for name, service in compose["services"].items():
        text = yaml.safe_dump(service)
        if name in kafka_nodes or ":29092" not in text:
            continue
        clients.append(name)
        env = _env(service)
        jaas = [k for k, v in env.items() if str(v).startswith(KAFKA_JAAS)]
        if name == "topics-init":
            commands = compose_file.topic_commands(compose)
            assert all("--command-config" in c for c in commands if c[0] in ("kafka-topics", "kafka-configs")), name
        elif name == "spark-job":
            assert env["CDC_KAFKA_CREDENTIALS"] == "/tmp/kafka.credentials" and "/tmp/kafka.credentials" in service["command"][-1]
        else:
            assert jaas, f"{name} reaches Kafka without a login"
            for key in jaas:
                assert env[key.replace("_SASL_JAAS_CONFIG", "_SECURITY_PROTOCOL")] == "SASL_PLAINTEXT", f"{name}: {key}"
                assert env[key.replace("_SASL_JAAS_CONFIG", "_SASL_MECHANISM")] == "PLAIN", f"{name}: {key}"
    assert {"topics-init", "schema-registry", "connect", "control-center", "spark-job"} <= set(clients)


@pytest.mark.parametrize("which", ["single", "cluster"])
def test_every_http_api_wants_a_login_and_its_healthcheck_sends_one(which):
    """The registry, Connect and Control Center turn their login on (Jetty's JAAS, Kafka's
    REST extension), from a users file their command writes; their healthchecks log in with
    curl -K, and every client of theirs in the stack sends the login."""
    compose = compose_file.load() if which == "single" else compose_file.load_cluster()
    services = compose["services"]
    registry = services["schema-registry"]
    env = _env(registry)
    assert env["SCHEMA_REGISTRY_AUTHENTICATION_METHOD"] == "BASIC"
    assert env["SCHEMA_REGISTRY_AUTHENTICATION_REALM"] == "SchemaRegistry" and "SchemaRegistry {" in registry["command"][-1]
    assert env["SCHEMA_REGISTRY_KAFKASTORE_BOOTSTRAP_SERVERS"].startswith("SASL_PLAINTEXT://")
    for name in compose_file.node_services(compose, "connect"):
        env = _env(services[name])
        assert env["CONNECT_REST_EXTENSION_CLASSES"].endswith("BasicAuthSecurityRestExtension"), name
        assert env["KAFKA_OPTS"] == "-Djava.security.auth.login.config=/tmp/connect-jaas.conf", name
        assert (
            "KafkaConnect {" in services[name]["command"][-1] and "test -s /tmp/connect-users.properties" in services[name]["command"][-1]
        )
        for side in ("KEY", "VALUE"):
            assert env[f"CONNECT_{side}_CONVERTER_BASIC_AUTH_CREDENTIALS_SOURCE"] == "USER_INFO", name
            assert env[f"CONNECT_{side}_CONVERTER_BASIC_AUTH_USER_INFO"].startswith("cdcpipe:${CDCPIPE_REGISTRY_PASSWORD"), name
    c3 = _env(services["control-center"])
    assert c3["CONTROL_CENTER_REST_AUTHENTICATION_METHOD"] == "BASIC" and "c3 {" in services["control-center"]["command"][-1]
    assert c3["CONTROL_CENTER_SCHEMA_REGISTRY_BASIC_AUTH_USER_INFO"].startswith("cdcpipe:${CDCPIPE_REGISTRY_PASSWORD")
    assert not [k for k in c3 if k.startswith("CONTROL_CENTER_CONNECT_")], "Control Center cannot log in to Connect's API"
    for name, service in services.items():
        test = " ".join(map(str, (service.get("healthcheck") or {}).get("test", [])))
        for port in ("8081/", "8083/", "9021/", "8080/json", "8081/json"):
            if f"localhost:{port}" in test:
                assert " -K /tmp/" in test, f"{name}'s healthcheck calls an API without its login: {test}"
    assert _env(services["connector-init"])["CDCPIPE_CONNECT_PASSWORD"].startswith("${CDCPIPE_CONNECT_PASSWORD:?")
    worker_commands = [services[n]["command"][-1] for n in services if n.startswith("spark-worker")]
    assert worker_commands and all("/tmp/registry.credentials" in c for c in worker_commands), "executors decode: the registry's login"


def test_control_center_is_local_and_explained(compose):
    assert "delete topics" in COMPOSE.read_text()


def test_cassandra_init_makes_the_local_runtime_s_roles_and_drops_the_default(compose, tmp_path):
    """scripts/cassandra-init.sh (cassandra-init's entrypoint) makes the roles and grants of
    ROLES and GRANTS in cdcpipe/runtime/services/cassandra.py, takes a new node over from the
    default superuser and drops it, applies sql/cassandra in order, and never puts a password on
    a command line or in its output (run against a cqlsh that records what it is asked)."""
    from cdcpipe.runtime.services.cassandra import GRANTS, ROLES

    init = compose["services"]["cassandra-init"]
    assert init["entrypoint"] == ["bash", "/scripts/cassandra-init.sh", "cassandra", "9042"]
    assert set(init["environment"]) == set(CASSANDRA_PASSWORDS) and "./scripts:/scripts:ro" in init["volumes"]
    password_of = {ROLES["admin"][0]: "CASSANDRA_ADMIN_PASSWORD", ROLES["job"][0]: "CASSANDRA_JOB_PASSWORD"}
    password_of[ROLES["reader"][0]] = "CASSANDRA_READER_PASSWORD"
    sql_files = sorted(str(p) for p in (REPO / "sql" / "cassandra").glob("*.cql"))
    for new_node in (False, True):
        code, output, calls = run_cassandra_init(tmp_path / str(new_node), CASSANDRA_PASSWORDS, ("cdcpipe",) if new_node else ())
        assert code == 0, output
        statements = [s for call in calls for s in call["statements"] if not call["file"] or "/sql/cassandra/" not in call["file"]]
        assert "DROP ROLE IF EXISTS cassandra" in statements
        assert not [s for s in statements if "KEYSPACE" in s and "GRANT" not in s], "one node: no replication change"
        grants = {m.groups() for s in statements if (m := re.fullmatch(r"GRANT (\w+) ON KEYSPACE cdc TO (\w+)", s))}
        assert grants == {(p, ROLES[use][0]) for use, permissions in GRANTS.items() for p in permissions}
        made = {
            m.group(1): m.group(2) for s in statements if (m := re.match(r"CREATE ROLE IF NOT EXISTS (\w+) WITH .*PASSWORD = '([^']*)'", s))
        }
        expected = {ROLES[use][0] for use in GRANTS} | ({ROLES["admin"][0]} if new_node else set())
        assert made == {role: CASSANDRA_PASSWORDS[password_of[role]] for role in expected}
        if new_node:
            assert [c["user"] for c in calls if any(s.startswith("CREATE ROLE IF NOT EXISTS cdcpipe ") for s in c["statements"])] == [
                "cassandra"
            ]
        assert [c["file"] for c in calls if c["file"] and "/sql/cassandra/" in c["file"]] == sql_files
        assert all(c["user"] == ROLES["admin"][0] for c in calls if c["file"] and "/sql/cassandra/" in c["file"])
        for secret in CASSANDRA_PASSWORDS.values():
            assert not any(secret in arg for call in calls for arg in call["argv"]), "a password on cqlsh's command line"
            assert secret not in output
    # Neither login accepted (the admin password of .env is not the one the node has): a step.
    code, output, _ = run_cassandra_init(tmp_path / "refused", CASSANDRA_PASSWORDS, ("cdcpipe", "cassandra"))
    assert code == 1 and "CASSANDRA_ADMIN_PASSWORD" in output and "docker compose down -v" in output
    assert not any(secret in output for secret in CASSANDRA_PASSWORDS.values())
