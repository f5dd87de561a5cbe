"""Security of the local runtime, checked on the running stack.

Listeners on loopback only; no secret in command lines, logs or pid files; a private state
directory; the replication role confined to the users database; Spark RPC authentication.
"""

from __future__ import annotations

import ipaddress
import json
import os
import stat
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import psycopg
import pytest
from cdc_helpers import standalone_cores_free

from cdcpipe.clients.connect import ConnectorFile
from cdcpipe.runtime import processes

LOOPBACK = {ipaddress.ip_address("127.0.0.1"), ipaddress.ip_address("::1"), ipaddress.ip_address("::ffff:127.0.0.1")}


def stack_pids(conf, stack) -> set[int]:
    """Every process of the stack: each service's process trees, plus whatever else `up`,
    the demo or the Spark job started (every live pid file: spark-job, randomuser, ...)."""
    roots = {pid for svc in stack.values() for pid in svc.pids().values() if pid is not None}
    roots |= {pid for f in conf.run_dir.glob("*.pid") if (pid := processes.pid_of(conf, f.stem)) is not None}
    return {member for root in roots for member in processes.tree(root)}


def _socket_inodes(pid: int) -> set[str]:
    inodes = set()
    try:
        for fd in Path(f"/proc/{pid}/fd").iterdir():
            try:
                target = os.readlink(fd)
            except OSError:
                continue
            if target.startswith("socket:["):
                inodes.add(target[8:-1])
    except OSError:
        pass
    return inodes


def _address(hex_addr: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address:
    raw = bytes.fromhex(hex_addr)
    # /proc/net/tcp{,6} print the address as 32-bit words in host (little-endian) order.
    words = b"".join(raw[i : i + 4][::-1] for i in range(0, len(raw), 4))
    return ipaddress.ip_address(words)


def listening_sockets() -> dict[str, tuple[ipaddress._BaseAddress, int]]:
    """inode -> (address, port) of every listening TCP socket, IPv4 and IPv6."""
    found = {}
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        for line in Path(table).read_text().splitlines()[1:]:
            fields = line.split()
            local, state, inode = fields[1], fields[3], fields[9]
            if state != "0A":  # TCP_LISTEN
                continue
            addr, port = local.rsplit(":", 1)
            found[inode] = (_address(addr), int(port, 16))
    return found


def test_every_listening_socket_of_the_stack_is_on_loopback(conf, stack):
    sockets = listening_sockets()
    pids = stack_pids(conf, stack)
    listeners = {}  # (address, port) -> pid
    for pid in pids:
        for inode in _socket_inodes(pid) & sockets.keys():
            listeners[sockets[inode]] = pid
    ports = {port for _, port in listeners}
    # The mapping works: every configured port of every service is among the listeners found.
    expected = {svc.port(name) for svc in stack.values() for name in svc.bound_ports()}
    assert expected <= ports, f"configured ports not found listening: {sorted(expected - ports)}"
    exposed = {
        f"{addr}:{port} ({Path(f'/proc/{pid}/comm').read_text().strip()}, pid {pid})"
        for (addr, port), pid in listeners.items()
        if addr not in LOOPBACK
    }
    assert not exposed, f"listening beyond loopback: {sorted(exposed)}"


def _secrets(conf) -> dict[str, str]:
    values = json.loads(conf.secrets_file.read_text())
    assert "spark_auth" in values and all(len(v) >= 16 for v in values.values())
    return values


def test_no_secret_in_command_lines_logs_or_pid_files(conf, stack):
    secrets = _secrets(conf)
    leaks = []
    pids = stack_pids(conf, stack)
    assert len(pids) >= len(stack)
    for pid in pids:
        try:
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().decode("utf-8", "replace")
        except OSError:
            continue
        leaks += [f"{name} in the command line of pid {pid}" for name, value in secrets.items() if value in cmdline]
    files = [p for d in (conf.logs_dir, conf.run_dir) for p in d.rglob("*") if p.is_file()]
    assert any(p.suffix == ".pid" for p in files) and any(p.suffix == ".log" for p in files)
    for path in files:
        text = path.read_bytes().decode("utf-8", "replace")
        leaks += [f"{name} in {path}" for name, value in secrets.items() if value in text]
    assert not leaks


def test_status_prints_no_password_and_secret_prints_one_on_request(conf, stack):
    """status (and its --json) used to print the console's and Airflow's passwords, so make
    demo's output put them in CI logs and scrollback. Now they name the command that prints one."""
    secrets = _secrets(conf)
    cdcpipe = str(Path(sys.executable).parent / "cdcpipe")
    for argv in ([cdcpipe, "status"], [cdcpipe, "status", "--json"]):
        shown = subprocess.run(argv, capture_output=True, text=True, timeout=120)
        assert "cdcpipe secret console" in shown.stdout, shown.stdout
        assert not [name for name, value in secrets.items() if value in shown.stdout + shown.stderr]
    asked = subprocess.run([cdcpipe, "secret", "console"], capture_output=True, text=True, timeout=60)
    assert asked.returncode == 0 and asked.stdout.strip() == secrets["console"]
    unknown = subprocess.run([cdcpipe, "secret", "no-such-secret"], capture_output=True, text=True, timeout=60)
    assert unknown.returncode == 2 and "'cdcpipe secret' lists them" in unknown.stderr


def _in_shared_tmp(path: str, conf) -> bool:
    """A file in the machine's shared /tmp: not the JVM's own hsperfdata (per account, made and
    emptied by the JVM, at a path java.io.tmpdir does not move), and not inside this checkout,
    its virtualenv or its state directory (CI clones the project under /tmp)."""
    if not path.startswith("/tmp/") or path.startswith("/tmp/hsperfdata_"):
        return False
    ours = {Path(__file__).resolve().parents[1], Path(sys.prefix).resolve(), conf.home.resolve()}
    return not any(Path(path).is_relative_to(root) for root in ours)


def test_no_process_of_the_stack_uses_the_shared_tmp(conf, stack, spark_job):
    """Issue 24: every JVM unpacked native libraries (lz4, snappy) and Spark its block managers
    into /tmp, never removed; a /tmp/vertx-cache a root run left there stopped another account's
    registry. Each process now has <state>/tmp/<name>: no process of the stack, the job and
    its Python workers included, has a file under /tmp mapped or open."""
    from cdcpipe.runtime import streaming_job

    shared = []
    pids = stack_pids(conf, stack)
    job = processes.pid_of(conf, streaming_job.PROCESS)
    assert job in pids
    for pid in pids:
        try:
            mapped = {
                line.split(None, 5)[5] for line in Path(f"/proc/{pid}/maps").read_text().splitlines() if len(line.split(None, 5)) == 6
            }
            opened = set()
            for fd in Path(f"/proc/{pid}/fd").iterdir():
                try:
                    opened.add(os.readlink(fd))
                except OSError:
                    continue
        except OSError:  # it ended meanwhile
            continue
        # /tmp/hsperfdata_<account>/<pid> is the JVM's own (jps, jstat): one directory per
        # account, made and emptied by the JVM, at a path java.io.tmpdir does not move.
        shared += [f"pid {pid}: {path}" for path in sorted(mapped | opened) if _in_shared_tmp(path, conf)]
    assert not shared, shared[:20]
    environ = Path(f"/proc/{job}/environ").read_bytes().decode().split("\0")
    own = conf.home / "tmp" / streaming_job.PROCESS
    assert f"TMPDIR={own}" in environ and own.is_dir()
    assert any(e.startswith("JAVA_TOOL_OPTIONS=") and f"-Djava.io.tmpdir={own}" in e for e in environ), environ


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.lstat().st_mode)


def test_state_directory_and_files_are_private(conf, stack):
    assert _mode(conf.home) == 0o700
    assert _mode(conf.secrets_file) == 0o600
    assert _mode(conf.logs_dir) == 0o700 and _mode(conf.run_dir) == 0o700
    loose = [f"{p} {oct(_mode(p))}" for d in (conf.logs_dir, conf.run_dir) for p in d.rglob("*") if _mode(p) & 0o077]
    # Data of the two services the state directory holds most of; all new files are private.
    for data in (stack["kafka"].dir / "data", stack["cassandra"].dir / "data"):
        assert data.is_dir()
        loose += [f"{p} {oct(_mode(p))}" for p in [data, *data.rglob("*")] if not p.is_symlink() and _mode(p) & 0o077]
    assert not loose


def test_connect_refuses_every_request_without_its_login(conf, stack):
    """Issue 24: any local account could create, change or delete connectors. Now every
    endpoint, reads included, answers 401 without the runtime's login or with a wrong one."""
    import requests

    url = stack["connect"].url
    calls = [
        ("GET", "/connectors"),
        ("GET", "/connector-plugins"),
        ("GET", "/connectors/users-cdc/status"),
        ("POST", "/connectors"),
        ("PUT", "/connectors/users-cdc/pause"),
        ("DELETE", "/connectors/users-cdc"),
        ("PUT", "/connector-plugins/PostgresConnector/config/validate"),
    ]
    for auth in (None, ("cdcpipe", "not-the-password"), ("admin", _secrets(conf)["connect"])):
        answers = {f"{m} {p}": requests.request(m, url + p, json={}, auth=auth, timeout=10).status_code for m, p in calls}
        assert set(answers.values()) == {401}, (auth and auth[0], answers)
    client = stack["connect"].client()
    assert client.status("users-cdc")["connector"]["state"] == "RUNNING"  # still there, with the login
    assert client.plugins()


def test_connect_resolves_only_the_variables_connector_configs_name(conf, stack):
    """Issue 24: ``${env:NAME}`` in a validated config echoed any variable of the worker back
    (the Debezium password came back in an error message). The worker now inherits only a few
    basics and ``CDC_*``, and its provider resolves ``CDC_*`` alone: asked for ``PATH``, which
    the worker has, validation answers without its value."""
    pid = processes.pid_of(conf, "connect")
    environ = dict(item.split("=", 1) for item in Path(f"/proc/{pid}/environ").read_bytes().decode().split("\0") if "=" in item)
    basics = {"PATH", "LANG", "LC_ALL", "TZ", "TMPDIR", "JAVA_TOOL_OPTIONS"}  # the last two: its own temp dir
    assert set(environ) <= basics | {k for k in environ if k.startswith("CDC_")}, sorted(environ)
    assert environ["PATH"] and "CDC_POSTGRES_PASSWORD" in environ
    config = {
        "connector.class": "io.debezium.connector.postgresql.PostgresConnector",
        "name": "leak-probe",
        "topic.prefix": "leak",
        "database.hostname": "${env:CDC_POSTGRES_HOST}",
        "database.port": "${env:CDC_POSTGRES_PORT}",
        "database.dbname": "${env:CDC_POSTGRES_DB}",
        "database.user": "${env:PATH}",
        "database.password": "${env:PATH}",
    }
    answer = stack["connect"].client().validation(ConnectorFile(name="leak-probe", config=config))
    text = json.dumps(answer)
    assert environ["PATH"] not in text
    assert "${env:PATH}" in text  # left unresolved, so its user is refused by name


def test_kafka_refuses_a_client_without_its_login(conf, stack):
    """Issue 24: any local account could read every user's personal data from cdc.public.users
    and write to it. Both listeners now want the login: without one a client gets no metadata
    (the broker disconnects it), a wrong password is refused by name, and the controller's
    port is refused too. With the login the CDC topic is there."""
    from confluent_kafka import KafkaException
    from confluent_kafka.admin import AdminClient

    from cdcpipe.pipeline.logins import Login

    kafka = stack["kafka"]
    controller = f"{kafka.host}:{kafka.port('kafka_controller')}"
    quiet = {"socket.timeout.ms": 3000, "log_level": 0}
    for address, login in ((kafka.bootstrap, None), (kafka.bootstrap, Login("cdcpipe", "not-the-password")), (controller, None)):
        errors: list[str] = []
        settings = login.kafka_settings() if login else {}
        admin = AdminClient({"bootstrap.servers": address, **settings, **quiet, "error_cb": lambda e, seen=errors: seen.append(str(e))})
        with pytest.raises(KafkaException):
            admin.list_topics(timeout=5)
        admin.poll(1)  # serves error_cb
        if login:
            assert any("Authentication failed" in e or "invalid credentials" in e.lower() for e in errors), errors
    topics = kafka.admin().list_topics(timeout=10).topics
    assert "cdc.public.users" in topics


def test_the_registry_refuses_every_call_without_its_login(conf, stack):
    """Issue 24: any local account could register, change or delete schemas (and so stop
    capture, or make every record undecodable). Every API call, reads included, on the
    Confluent-compatible API and Apicurio's own, now answers 401 without the login."""
    import requests

    from cdcpipe.errors import RegistryMisconfigured
    from cdcpipe.pipeline.avro_reader import SchemaCache, decode

    registry = stack["schema_registry"]
    calls = [
        ("GET", registry.url + "/subjects"),
        ("GET", registry.url + "/schemas/ids/1"),
        ("POST", registry.url + "/subjects/probe-value/versions"),
        ("DELETE", registry.url + "/subjects/cdc.public.users-value"),
        ("GET", registry.base_url + "/apis/registry/v2/groups/default/artifacts"),
        ("GET", registry.base_url + "/apis/registry/v3/groups"),
        ("GET", registry.base_url + "/apis/registry/v3/system/info"),
        ("GET", registry.base_url + "/q/health"),
        ("GET", registry.base_url + "/"),
    ]
    for auth in (None, ("cdcpipe", "not-the-password"), ("admin", _secrets(conf)["registry_api"])):
        answers = {f"{m} {u}": requests.request(m, u, json={"schema": '"string"'}, auth=auth, timeout=10).status_code for m, u in calls}
        assert set(answers.values()) == {401}, (auth and auth[0], answers)
    subjects = requests.get(registry.url + "/subjects", auth=registry.auth, timeout=10)
    assert subjects.status_code == 200 and "cdc.public.users-value" in subjects.json()
    with pytest.raises(RegistryMisconfigured, match="refused a request without a login"):
        decode(b"\x00\x00\x00\x00\x01\x02", SchemaCache(registry.url, timeout=5))
    # The management port has no login (Apicurio's build fixes its authentication off); the guard
    # agent closes it to other accounts (test_other_account), and the stack's own account, this
    # test's, gets its answers. Even so it holds nothing: status and counters, no subject, no schema.
    registry.require_guard()  # its log says the agent armed since it started
    management = f"http://{registry.host}:{registry.port('schema_registry_management')}"
    for path in ("/health", "/health/ready", "/metrics"):
        answer = requests.get(management + path, timeout=10)
        assert answer.status_code == 200, (path, answer.status_code)
        assert "cdc.public.users" not in answer.text and '"type":"record"' not in answer.text.replace(" ", ""), path


@pytest.mark.stack  # needs the built jars, which make unit does not build
def test_the_guard_agent_stops_its_jvm_rather_than_guard_nothing(conf):
    """The registry's guard agent given no port to guard must not start a JVM that looks
    guarded: it stops it (exit 70), naming why. Given a port, the JVM runs."""
    from cdcpipe.runtime import java
    from cdcpipe.runtime.jars import guard_jar

    jar = guard_jar(conf)
    done = subprocess.run([java.java_bin(21), f"-javaagent:{jar}", "-version"], capture_output=True, text=True, timeout=60)
    assert done.returncode == 70 and "no port to guard was given" in done.stderr, (done.returncode, done.stderr[-1000:])
    guarded = subprocess.run([java.java_bin(21), f"-javaagent:{jar}=8082", "-version"], capture_output=True, text=True, timeout=60)
    assert guarded.returncode == 0, guarded.stderr[-1000:]


def _nodetool(conf, stack, *login: str) -> subprocess.CompletedProcess[str]:
    argv = stack["cassandra"].nodetool_argv(*login, "version", login=False)
    return subprocess.run(argv, capture_output=True, text=True, timeout=120)


def test_cassandra_jmx_refuses_a_client_without_the_login(conf, stack, tmp_path):
    """Issue 24: JMX on 7199 took anyone, and its MBeans can load code that runs as the stack's
    account. nodetool (JMX) is refused without the login and with a wrong password, and works
    with the password file the runtime writes."""
    wrong = tmp_path / "wrong.password"
    wrong.write_text("cdcpipe not-the-password\n")
    wrong.chmod(0o600)
    for login in ((), ("-u", "cdcpipe", "-pwf", str(wrong))):
        refused = _nodetool(conf, stack, *login)
        assert refused.returncode != 0 and "ReleaseVersion" not in refused.stdout, (login, refused.stdout, refused.stderr)
        said = refused.stdout + refused.stderr
        assert "Credentials required" in said or "Invalid username or password" in said, said[-2000:]
    allowed = _nodetool(conf, stack, "-u", "cdcpipe", "-pwf", str(stack["cassandra"].jmx_password_file))
    assert allowed.returncode == 0, allowed.stdout + allowed.stderr
    assert "ReleaseVersion: 5.0" in allowed.stdout


def _cql(stack, login, query: str, params=None):
    """Run one CQL statement as ``login`` (None: no login)."""
    from cdcpipe.pipeline.cassandra_session import session

    cass = stack["cassandra"]
    with session(cass.host, cass.port(), login=login) as opened:
        return list(opened.execute(query, params, timeout=30))


def test_cassandra_refuses_a_client_without_a_login(conf, stack):
    """Issue 24: CQL on 9042 took anyone: every local account could read every user's personal
    data in cdc.users and write it. Now no login, a wrong password and the well-known default
    superuser are all refused; the runtime's login reads."""
    from cassandra.cluster import NoHostAvailable

    from cdcpipe.pipeline.cassandra_session import refused_login
    from cdcpipe.pipeline.logins import Login

    for login in (None, Login("cdcpipe", "not-the-password"), Login("cassandra", "cassandra")):
        with pytest.raises(NoHostAvailable) as refused:
            _cql(stack, login, "SELECT id FROM cdc.users LIMIT 1")
        assert refused_login(refused.value), (login, refused.value)
    assert _cql(stack, stack["cassandra"].login(), "SELECT release_version FROM system.local")[0].release_version.startswith("5.0")


def test_cassandra_roles_do_only_their_job(conf, stack):
    """The job's role reads and writes keyspace cdc and adds columns, but cannot drop or create
    a table; the console's reader cannot write. The admin's does all (the CLI, resync)."""
    import uuid

    from cassandra import Unauthorized

    cass = stack["cassandra"]
    job, reader = cass.login("job"), cass.login("reader")
    key = uuid.uuid4()
    try:
        _cql(stack, job, "INSERT INTO cdc.users (id, username) VALUES (%s, 'role-probe') USING TIMESTAMP 1", (key,))
        assert _cql(stack, reader, "SELECT username FROM cdc.users WHERE id = %s", (key,))[0].username == "role-probe"
        for login, statement in (
            (reader, f"INSERT INTO cdc.users (id, username) VALUES ({key}, 'reader-wrote')"),
            (reader, "ALTER TABLE cdc.users ADD IF NOT EXISTS role_probe text"),
            (job, "DROP TABLE IF EXISTS cdc.users"),
            (job, "CREATE TABLE IF NOT EXISTS cdc.role_probe (id int PRIMARY KEY)"),
            (job, "CREATE ROLE IF NOT EXISTS probe WITH LOGIN = true AND PASSWORD = 'x'"),
        ):
            with pytest.raises(Unauthorized):
                _cql(stack, login, statement)
        assert _cql(stack, reader, "SELECT username FROM cdc.users WHERE id = %s", (key,))[0].username == "role-probe"
    finally:
        _cql(stack, cass.login(), "DELETE FROM cdc.users USING TIMESTAMP 2 WHERE id = %s", (key,))


def test_cqlsh_logs_in_through_the_credentials_file(conf, stack):
    """The README's `cdcpipe cqlsh -e ...` works (a 0600 credentials file, no password on its
    command line), and cqlsh without the file is refused."""
    cass = stack["cassandra"]
    assert _mode(cass.credentials_file()) == 0o600
    cdcpipe = Path(sys.executable).parent / "cdcpipe"
    query = "SELECT count(*) FROM system_auth.roles"
    ok = subprocess.run([str(cdcpipe), "cqlsh", "-e", query], capture_output=True, text=True, timeout=120)
    assert ok.returncode == 0, ok.stdout + ok.stderr
    assert "(1 rows)" in ok.stdout
    cqlsh = Path(sys.executable).parent / "cqlsh"
    refused = subprocess.run(
        [str(cqlsh), cass.host, str(cass.port()), "-e", "SELECT id FROM cdc.users LIMIT 1"],
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, "HOME": str(conf.home / "no-such-home")},
    )
    assert refused.returncode != 0 and "requires authentication" in refused.stdout + refused.stderr


@pytest.mark.parametrize("dbname", ["airflow", "registry", "postgres"])
def test_replication_role_cannot_connect_to_other_databases(stack, conf, dbname):
    pg = stack["postgres"]
    password = _secrets(conf)["debezium"]
    with pytest.raises(psycopg.OperationalError, match="permission denied for database"):
        psycopg.connect(host=pg.host, port=pg.port(), dbname=dbname, user="debezium", password=password, connect_timeout=5)
    # ... while each owner still can.
    owner = {"airflow": "airflow", "registry": "registry", "postgres": "postgres"}[dbname]
    with pg.connect(dbname=dbname, user=owner) as conn:
        assert conn.execute("SELECT current_database()").fetchone()[0] == dbname


def test_replication_role_reads_users_but_cannot_write_it(stack, conf):
    pg = stack["postgres"]
    password = _secrets(conf)["debezium"]
    with psycopg.connect(host=pg.host, port=pg.port(), dbname="users", user="debezium", password=password, connect_timeout=5) as conn:
        conn.execute("SELECT count(*) FROM public.users").fetchone()
        conn.rollback()
        with pytest.raises(psycopg.errors.InsufficientPrivilege, match="permission denied for table users"):
            conn.execute("INSERT INTO public.users (first_name) VALUES ('intruder')")


# --- Spark ----------------------------------------------------------------------------------
APP = textwrap.dedent(
    """
    import os, sys
    sys.path.insert(0, sys.argv[2])
    from users_to_cassandra import authenticated  # the job's own way of presenting the secret
    from pyspark.sql import SparkSession

    builder = (SparkSession.builder.master(sys.argv[1]).appName("cdcpipe-security-check")
               .config("spark.executor.memory", "512m").config("spark.cores.max", "1")
               .config("spark.ui.enabled", "false"))
    spark = authenticated(builder, os.environ.get("CDC_SPARK_AUTH_SECRET")).getOrCreate()
    print("RESULT", spark.sparkContext.parallelize(range(10), 1).sum(), flush=True)
    spark.stop()
    """
)


def _run_app(conf, stack, tmp_path, secret: str | None, timeout: float, stop_at: str | None = None):
    """Run a small application on the standalone master; return (output, command lines seen)."""
    script = tmp_path / "app.py"
    script.write_text(APP)
    env = {k: v for k, v in os.environ.items() if k != "CDC_SPARK_AUTH_SECRET"}
    env.update(SPARK_LOCAL_IP=conf.host, PYSPARK_PYTHON=sys.executable, PYSPARK_DRIVER_PYTHON=sys.executable)
    env["JAVA_TOOL_OPTIONS"] = f"-Djava.io.tmpdir={tmp_path}"  # the driver's scratch: not the machine's /tmp
    if secret:
        env["CDC_SPARK_AUTH_SECRET"] = secret
    log = tmp_path / "app.log"
    with open(log, "wb") as out:
        proc = subprocess.Popen(
            [sys.executable, str(script), stack["spark"].master_url, str(conf.repo / "spark_jobs")],
            stdout=out,
            stderr=subprocess.STDOUT,
            env=env,
            start_new_session=True,
        )
    cmdlines = set()
    deadline = time.monotonic() + timeout
    try:
        while proc.poll() is None and time.monotonic() < deadline:
            for member in processes.tree(proc.pid):
                try:
                    cmdlines.add(Path(f"/proc/{member}/cmdline").read_bytes().decode("utf-8", "replace"))
                except OSError:
                    pass
            if stop_at and stop_at in log.read_text(errors="replace"):
                break
            time.sleep(1)
    finally:
        for member in processes.tree(proc.pid):
            try:
                os.kill(member, 9)
            except ProcessLookupError:
                pass
        proc.wait(timeout=10)
    return log.read_text(errors="replace"), cmdlines


def _http_listeners(conf, stack, process: str) -> list[int]:
    """The listening ports of one process tree (by pid-file name) that answer HTTP."""
    import requests

    root = processes.pid_of(conf, process)
    assert root is not None, f"{process} is not running"
    sockets = listening_sockets()
    ports = {sockets[i][1] for pid in processes.tree(root) for i in _socket_inodes(pid) & sockets.keys()}
    found = []
    for port in sorted(ports):
        try:
            requests.get(f"http://127.0.0.1:{port}/", timeout=3, allow_redirects=False)
        except requests.RequestException:
            continue  # RPC, block manager, py4j: not HTTP
        found.append(port)
    return found


def test_every_spark_ui_refuses_a_client_without_the_login(conf, stack, spark_job):
    import requests

    spark = stack["spark"]
    login = spark.ui_login.pair
    uis = {
        "master": spark.port("spark_master_ui"),
        "worker": spark.port("spark_worker_ui"),
        **{f"job:{port}": port for port in _http_listeners(conf, stack, "spark-job")},
    }
    assert any(name.startswith("job:") for name in uis), "the job's web UI was not found among its listeners"
    # Pages, the JSON and REST APIs, static files and the worker's executor log pages.
    paths = ["/", "/json/", "/api/v1/applications", "/static/spark-logo-77x50px-hd.png", "/logPage/?appId=a&executorId=0&logType=stdout"]
    opened = []
    for name, port in uis.items():
        for path in paths:
            url = f"http://127.0.0.1:{port}{path}"
            for auth in (None, ("cdcpipe", "not-the-password"), ("admin", login[1])):
                answer = requests.get(url, auth=auth, timeout=10, allow_redirects=False)
                if answer.status_code != 401 or "cdcpipe spark" not in answer.headers.get("WWW-Authenticate", ""):
                    opened.append(f"{name} {path} with {auth and auth[0]}: {answer.status_code}")
        # The filter stands in front of a working UI: the login opens it.
        assert requests.get(f"http://127.0.0.1:{port}/", auth=login, timeout=10).status_code == 200, name
    assert not opened, opened
    assert stat.S_IMODE(spark.ui_credentials_file.stat().st_mode) == 0o600


def test_spark_master_refuses_an_application_without_the_secret(conf, stack, tmp_path):
    output, _ = _run_app(conf, stack, tmp_path, None, timeout=60, stop_at="SASL")
    assert "RESULT" not in output
    assert "Expected SaslMessage" in output or "SASL" in output, output[-3000:]


def test_spark_master_runs_an_application_with_the_secret(conf, stack, tmp_path):
    secret = _secrets(conf)["spark_auth"]
    with standalone_cores_free(conf):
        output, cmdlines = _run_app(conf, stack, tmp_path, secret, timeout=120)
    assert "RESULT 45" in output, output[-3000:]
    assert any("SparkSubmit" in c or "spark-submit" in c for c in cmdlines), "the driver JVM was not seen"
    assert not [c for c in cmdlines if secret in c], "the secret is on a command line"
