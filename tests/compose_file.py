"""docker-compose.yml, its cluster override and their Dockerfiles, read without a Docker
engine: helpers shared by tests/test_compose.py (the files on their own),
tests/test_runtime_parity.py (docker-compose.yml against the local runtime) and
tests/test_compose_cluster.py (the merged cluster variant against the local cluster)."""

from __future__ import annotations

import copy
import shlex
from pathlib import Path

import yaml

from cdcpipe.settings import REPO

COMPOSE = REPO / "docker-compose.yml"


def load() -> dict:
    return yaml.safe_load(COMPOSE.read_text())


def dockerfile(build) -> Path:
    """The Dockerfile a service's ``build:`` (a path or a mapping) names."""
    if isinstance(build, str):
        return REPO / build / "Dockerfile"
    return REPO / build.get("context", ".") / build.get("dockerfile", "Dockerfile")


def topic_commands(compose: dict) -> list[list[str]]:
    """topics-init's script, one argv per command (continuation lines joined)."""
    script = "\n".join(compose["services"]["topics-init"]["command"]).replace("\\\n", " ")
    return [shlex.split(line) for line in script.splitlines() if line.strip()]


def option(argv: list[str], flag: str) -> list[str]:
    """Every value given to ``flag`` in ``argv`` (``--config a --config b`` -> [a, b])."""
    return [argv[i + 1] for i, arg in enumerate(argv) if arg == flag]


# --- The cluster variant: docker-compose.yml merged with docker-compose.cluster.yml -----------

CLUSTER = REPO / "docker-compose.cluster.yml"
#: Every compose file of the repository: docker-compose.yml and its override(s).
COMPOSE_FILES = (COMPOSE, CLUSTER)

#: Service attributes an override replaces instead of merging (Compose's "shell commands").
_REPLACED = {"command", "entrypoint"}
#: Service attributes written as a list or a mapping, merged as mappings (by variable, by name).
_MAPPINGS = {"environment", "labels", "annotations", "sysctls", "extra_hosts", "depends_on"}


def _as_mapping(key: str, value) -> dict:
    if isinstance(value, dict):
        return value
    if key == "depends_on":  # the short form: a list of names, each "started"
        return {name: {"condition": "service_started"} for name in value}
    out = {}
    for item in value:
        name, sep, val = str(item).partition("=")
        out[name] = val if sep else None
    return out


def _port_key(entry) -> tuple:
    """Compose's unique key of a ports entry: {ip, target, published, protocol}."""
    if isinstance(entry, dict):
        return (entry.get("host_ip", ""), str(entry["target"]), str(entry.get("published", "")), entry.get("protocol", "tcp"))
    spec, _, protocol = str(entry).partition("/")
    # Split on the colons outside ${...} (an address may come from ${VAR:-default}).
    parts, depth, current = [], 0, ""
    for ch in spec:
        depth += ch == "{"
        depth -= ch == "}"
        if ch == ":" and depth == 0:
            parts.append(current)
            current = ""
        else:
            current += ch
    parts.append(current)
    ip, published, target = ([""] * (3 - len(parts)) + parts)[-3:]
    return (ip, target, published, protocol or "tcp")


def _volume_key(entry) -> str:
    """Compose's unique key of a service's volumes entry: its target (mount path)."""
    if isinstance(entry, dict):
        return entry["target"]
    parts = str(entry).split(":")
    return parts[1] if len(parts) > 1 else parts[0]


def _merge_unique(base: list, override: list, key) -> list:
    """Entries of ``override`` replace those of ``base`` with the same key; others are added."""
    out = {key(e): e for e in base}
    out.update({key(e): e for e in override})
    return list(out.values())


def merge(base, override, path: tuple = ()):
    """``override`` merged into ``base`` by Compose's rules for several ``-f`` files
    (https://docs.docker.com/reference/compose-file/merge/): mappings key by key, scalars
    replaced, sequences appended, except a service's ``command``, ``entrypoint`` and
    ``healthcheck.test`` (replaced), its ``ports`` and ``volumes``, ``secrets`` and
    ``configs`` (unique by address or target), and its environment, labels and depends_on
    (as mappings, whichever form each file uses). ``!reset`` and ``!override`` are not
    supported (yaml.safe_load refuses their tags), nor is ``extends``."""
    in_service = len(path) == 3 and path[0] == "services"
    key = path[-1] if path else None
    if in_service and key in _MAPPINGS:
        base, override = _as_mapping(key, base), _as_mapping(key, override)
    if in_service and key == "build" and isinstance(base, str) != isinstance(override, str):
        base, override = ({"context": b} if isinstance(b, str) else b for b in (base, override))
    if isinstance(base, dict) and isinstance(override, dict):
        out = dict(base)
        for name, value in override.items():
            out[name] = merge(base[name], value, (*path, name)) if name in base else copy.deepcopy(value)
        return out
    if isinstance(base, list) and isinstance(override, list):
        if (in_service and key in _REPLACED) or (len(path) == 4 and path[0] == "services" and path[2:] == ("healthcheck", "test")):
            return copy.deepcopy(override)
        if in_service and key == "ports":
            return _merge_unique(base, override, _port_key)
        if in_service and key == "volumes":
            return _merge_unique(base, override, _volume_key)
        if in_service and key in ("secrets", "configs"):
            return _merge_unique(base, override, lambda e: e.get("target", e["source"]) if isinstance(e, dict) else e)
        return [*base, *copy.deepcopy(override)]
    return copy.deepcopy(override)


def load_cluster() -> dict:
    """The cluster variant as ``docker compose -f docker-compose.yml -f docker-compose.cluster.yml``
    sees it (before interpolation)."""
    override = yaml.safe_load(CLUSTER.read_text())
    assert not any("extends" in svc for svc in override.get("services", {}).values()), "merge() does not follow extends"
    return merge(load(), override)


def node_services(compose: dict, first: str) -> list[str]:
    """The nodes of a multi-node service as the compose files name them: ``first``, then
    ``first-2``, ``first-3``, ... as long as they exist."""
    names = [first] if first in compose["services"] else []
    while f"{first}-{len(names) + 1}" in compose["services"]:
        names.append(f"{first}-{len(names) + 1}")
    return names


# --- Comparing the two runtimes (tests/test_compose_cluster.py) ------------------------------

#: The allow-list reason of a difference in addresses alone (see assert_same).
ADDRESS = "addresses and paths: 127.0.0.1 and configurable ports (local) vs container names (Docker)"


def _differs(key: str, local: dict, docker: dict) -> bool:
    return key not in local or key not in docker or str(local[key]) != str(docker[key])


def _matches(key: str, pattern: str) -> bool:
    return key.startswith(pattern[:-1]) if pattern.endswith("*") else key == pattern


def assert_same(local: dict, docker: dict, allowed: dict[str, str], local_src: str, docker_src: str) -> None:
    """Every key of either side has the same value on both (compared as strings), except the
    allow-listed ones (``key``, or ``prefix*``), each with its reason. An allow-listed
    difference that is gone fails too, except an address, which may coincide."""
    keys = sorted(set(local) | set(docker))
    problems = []
    for key in keys:
        if not any(_matches(key, pattern) for pattern in allowed) and _differs(key, local, docker):
            lv = repr(str(local[key])) if key in local else "nothing"
            dv = repr(str(docker[key])) if key in docker else "nothing"
            problems.append(f"{key}: the local runtime ({local_src}) has {lv}, the compose files ({docker_src}) have {dv}")
    for pattern, why in allowed.items():
        if why != ADDRESS and not any(_differs(k, local, docker) for k in keys if _matches(k, pattern)):
            problems.append(f"allow-list entry {pattern!r} ({docker_src}): the runtimes agree on it now; remove the entry")
    assert not problems, (
        "the two runtimes disagree; change the wrong side (usually the compose file), or allow-list a deliberate "
        "difference in the test with its reason:\n  " + "\n  ".join(problems)
    )


def env_properties(env: dict, prefix: str) -> dict[str, str]:
    """Confluent images' environment-to-properties rule: CONNECT_KEY_CONVERTER -> key.converter
    (``__`` stands for ``_``, ``___`` for ``-``). Heap and JVM options are not properties."""
    out = {}
    for name, value in env.items():
        if name.startswith(prefix) and not name.endswith("_OPTS"):
            key = name[len(prefix) :].lower().replace("___", "-").replace("__", "\0").replace("_", ".").replace("\0", "_")
            out[key] = value
    return out


def exec_line(command: list[str]) -> list[str]:
    """The argv a ``bash -ec`` script's ``exec`` line runs (the daemon's command line)."""
    line = next(line for line in command[-1].splitlines() if line.startswith("exec "))
    return shlex.split(line)[1:]


def cassandra_settings(env: dict) -> dict[str, str]:
    """The cassandra.yaml settings a Cassandra container's environment sets: the image's
    variables and JVM_EXTRA_OPTS' -Dcassandra.settings.<name>=<value>."""
    opts = env.get("JVM_EXTRA_OPTS", "").split()
    settings_opts = dict(arg[len("-Dcassandra.settings.") :].split("=", 1) for arg in opts if arg.startswith("-Dcassandra.settings."))
    # Cassandra 5.0 reads -Dcassandra.settings.* only with this set (YamlConfigurationLoader).
    assert not settings_opts or "-Dcassandra.config.allow_system_properties=true" in opts, "the settings would be ignored"
    return {"cluster_name": env.get("CASSANDRA_CLUSTER_NAME"), "endpoint_snitch": env.get("CASSANDRA_ENDPOINT_SNITCH"), **settings_opts}


def yaml_value(value) -> str:
    """A cassandra.yaml value as a -D option spells it."""
    return str(value).lower() if isinstance(value, bool) else str(value)


#: The stock image's commitlog_sync_period (10000ms) cleared: 'batch' refuses any period, and
#: the local runtime's cassandra.yaml never sets one.
SYNC_PERIOD_CLEARED = "0ms clears the stock image's commitlog_sync_period, which 'batch' refuses (the local yaml has none)"


#: A stand-in for cqlsh that records who ran what: one JSON line per call (the login's user,
#: the statements of -f FILE or -e, and argv; not the login checks). It accepts every login unless
#: its user is named in FAKE_CQLSH_REFUSE (comma-separated) and no recorded statement created it.
_RECORDING_CQLSH = r"""
import configparser, json, os, sys
argv = sys.argv[1:]
credentials = configparser.RawConfigParser()
credentials.read(argv[argv.index("--credentials") + 1])
user = credentials.get("plain_text_auth", "username")
log_path = os.environ["FAKE_CQLSH_LOG"]
made = open(log_path).read() if os.path.exists(log_path) else ""
if user in os.environ.get("FAKE_CQLSH_REFUSE", "").split(",") and f"CREATE ROLE IF NOT EXISTS {user} " not in made:
    sys.exit("AuthenticationFailed")
failing = os.environ.get("FAKE_CQLSH_FAIL_ONCE", "")  # a user whose first -f run is refused
if failing == user and "-f" in argv and f'"user": "{user}"' not in made:
    with open(log_path, "a") as log:
        log.write(json.dumps({"user": user, "statements": [], "argv": argv, "file": "refused"}) + "\n")
    sys.exit("Unauthorized: User cassandra has no ALTER permission on <keyspace system_distributed>")
if "-f" in argv:
    text = open(argv[argv.index("-f") + 1]).read()
else:
    text = argv[argv.index("-e") + 1]
    if text.startswith("SELECT release_version"):  # a login check: answered, not recorded
        sys.exit(0)
statements = [s.strip() for s in text.split(";") if s.strip() and not s.strip().startswith("--")]
with open(log_path, "a") as log:
    source = "-f" in argv and argv[argv.index("-f") + 1]
    log.write(json.dumps({"user": user, "statements": statements, "argv": argv, "file": source}) + "\n")
"""

CASSANDRA_INIT = REPO / "scripts" / "cassandra-init.sh"
#: The Docker Cassandra roles' passwords, as .env sets them (stand-ins).
CASSANDRA_PASSWORDS = {
    "CASSANDRA_ADMIN_PASSWORD": "admin-pw-0123456789",
    "CASSANDRA_JOB_PASSWORD": "job-pw-0123456789",
    "CASSANDRA_READER_PASSWORD": "reader-pw-0123456789",
}


def run_cassandra_init(
    tmp_path: Path, env: dict[str, str], refuse: tuple[str, ...] = (), fail_once: str = ""
) -> tuple[int, str, list[dict]]:
    """scripts/cassandra-init.sh run against the recording cqlsh: (exit code, output, calls).
    ``refuse``: users whose login is refused until a recorded statement creates them;
    ``fail_once``: a user whose first -f run fails as an unauthorized statement does."""
    import json
    import os
    import subprocess
    import sys

    tmp_path.mkdir(parents=True, exist_ok=True)
    fake = tmp_path / "cqlsh"
    fake.write_text(f"#!{sys.executable}\n{_RECORDING_CQLSH}")
    fake.chmod(0o755)
    log = tmp_path / "cqlsh.log"
    done = subprocess.run(
        ["bash", str(CASSANDRA_INIT), "cassandra", "9042"],
        env={
            "PATH": os.environ["PATH"],
            "CQLSH": str(fake),
            "CASSANDRA_SQL": str(REPO / "sql" / "cassandra"),
            "FAKE_CQLSH_LOG": str(log),
            "FAKE_CQLSH_REFUSE": ",".join(refuse),
            "FAKE_CQLSH_FAIL_ONCE": fail_once,
            "CASSANDRA_LOGIN_WAIT": "1",
            **env,
        },
        capture_output=True,
        text=True,
        timeout=60,
    )
    calls = [json.loads(line) for line in log.read_text().splitlines()] if log.exists() else []
    return done.returncode, done.stdout + done.stderr, calls
