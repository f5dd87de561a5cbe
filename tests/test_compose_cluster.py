"""The cluster variant (docker-compose.yml merged with docker-compose.cluster.yml, as
``docker compose -f docker-compose.yml -f docker-compose.cluster.yml`` merges them) held to
the local runtime's cluster topology (CDCPIPE_TOPOLOGY=cluster): node counts, Kafka's broker
settings and quorum, the CDC topics, Connect's workers, Cassandra's settings, seeds, data
centre and keyspace replication, the Spark job's contact points and write consistency, the
Spark workers' size.

No service and no jar: the local side is what the code that starts the services makes of the
cluster topology (settings.load, the services' property dicts, TopicSpec.on_cluster,
Cassandra._replicate run against a recorder, the job's own argument parser); the Docker side
is the merged compose model. Deliberate differences are allow-listed with their reason; an
entry that no longer differs fails too. The rules every compose file follows (pinned images,
127.0.0.1 ports, memory limits, no default secrets) are tests/test_compose.py's, run over the
merged model as well."""

from __future__ import annotations

import ast
import importlib.util
import os
import re

import pytest
import yaml
from compose_file import (
    ADDRESS,
    CASSANDRA_PASSWORDS,
    CLUSTER,
    SYNC_PERIOD_CLEARED,
    assert_same,
    cassandra_settings,
    env_properties,
    exec_line,
    load,
    load_cluster,
    merge,
    node_services,
    option,
    run_cassandra_init,
    topic_commands,
    yaml_value,
)

from cdcpipe import settings
from cdcpipe.clients import topics
from cdcpipe.pipeline.cassandra_session import contact_points
from cdcpipe.runtime.services import spark
from cdcpipe.runtime.services.cassandra import DATA_CENTER, Cassandra
from cdcpipe.runtime.services.connect import Connect
from cdcpipe.runtime.services.kafka import Kafka
from cdcpipe.runtime.streaming_job import JOB, job_argv
from cdcpipe.settings import NODE_PORTS, TOPOLOGIES, node_port_name

#: Stand-ins for the secrets the local services' settings name.
SECRETS = {"debezium": "x", "registry_api": "x", "kafka": "x", "cassandra_keystore": "x", "spark_auth": "x", "spark_ui": "x"}
#: Each node kind of settings.TOPOLOGIES and the compose service of its first node.
FIRST_NODE = {"cassandra": "cassandra", "kafka": "kafka", "connect": "connect", "spark_worker": "spark-worker"}
#: The login itself differs in its secret alone: the same module and user on both (the
#: Docker line is checked in tests/test_compose.py, test_kafka_wants_a_login_on_every_listener).
KAFKA_SECRET = "the login's JAAS line: the same module and user cdcpipe, each runtime's own secret"
#: The local broker's one listener is named SASL_PLAINTEXT; Docker's are INTERNAL and HOST.
LISTENER_NAMES = "listener names: SASL_PLAINTEXT (local) vs INTERNAL and HOST (Docker), both SASL_PLAINTEXT"


@pytest.fixture(scope="module")
def cluster() -> dict:
    return load_cluster()


@pytest.fixture
def local(tmp_path) -> settings.Settings:
    """The local runtime's cluster topology, default ports, a state directory nothing uses."""
    return settings.load({"CDCPIPE_TOPOLOGY": "cluster", "CDCPIPE_HOME": str(tmp_path / "state"), "CDCPIPE_JARS": str(tmp_path / "jars")})


@pytest.fixture
def single(tmp_path) -> settings.Settings:
    """The single-node topology with the same state directory (so paths coincide)."""
    return settings.load({"CDCPIPE_HOME": str(tmp_path / "state"), "CDCPIPE_JARS": str(tmp_path / "jars")})


def _nodes(compose: dict, kind: str) -> list[str]:
    return node_services(compose, FIRST_NODE[kind])


def _env(compose: dict, name: str) -> dict:
    return compose["services"][name].get("environment") or {}


def _published(compose: dict, name: str) -> list[str]:
    """The host ports a service publishes (short syntax: [ip:]host:container)."""
    out = []
    for entry in compose["services"][name].get("ports", []):
        parts = re.sub(r"\$\{[^}]*\}", "ip", str(entry)).split(":")
        out.append(parts[-2] if len(parts) >= 2 else parts[-1])
    return out


# --- The merge and the file itself ---------------------------------------------------------------


def test_merge_follows_compose_rules():
    """tests/compose_file.py's merge() against the examples of Compose's merge reference."""
    base = {
        "services": {
            "a": {
                "image": "x:1",
                "command": ["echo", "foo"],
                "environment": ["A=1", "B=2"],
                "ports": ["127.0.0.1:80:80"],
                "volumes": ["data:/data", "./conf:/conf:ro"],
                "depends_on": ["b"],
                "healthcheck": {"test": ["CMD", "one"], "interval": "5s"},
                "dns": ["1.1.1.1"],
            }
        }
    }
    override = {
        "services": {
            "a": {
                "command": ["echo", "bar"],
                "environment": {"B": "3", "C": "4"},
                "ports": ["127.0.0.1:80:80", "127.0.0.1:81:81"],
                "volumes": ["other:/data"],
                "depends_on": {"c": {"condition": "service_healthy"}},
                "healthcheck": {"test": ["CMD", "two"]},
                "dns": ["8.8.8.8"],
            },
            "d": {"image": "y:2"},
        },
        "volumes": {"other": None},
    }
    merged = merge(base, override)
    a = merged["services"]["a"]
    assert a["image"] == "x:1" and merged["services"]["d"] == {"image": "y:2"} and merged["volumes"] == {"other": None}
    assert a["command"] == ["echo", "bar"], "command is replaced"
    assert a["environment"] == {"A": "1", "B": "3", "C": "4"}, "environment merges by variable"
    assert a["ports"] == ["127.0.0.1:80:80", "127.0.0.1:81:81"], "ports: a new one is added, the same one kept once"
    assert a["volumes"] == ["other:/data", "./conf:/conf:ro"], "volumes merge by target"
    assert a["depends_on"] == {"b": {"condition": "service_started"}, "c": {"condition": "service_healthy"}}
    assert a["healthcheck"] == {"test": ["CMD", "two"], "interval": "5s"}, "healthcheck.test is replaced, the rest merged"
    assert a["dns"] == ["1.1.1.1", "8.8.8.8"], "other sequences are appended"
    assert base["services"]["a"]["command"] == ["echo", "foo"], "the inputs are left alone"


def test_override_restates_only_what_the_cluster_changes():
    """An override that repeated a base service's ports would publish them twice (ports are
    added to); one that set ``image`` or ``build`` of a base service would swap its image."""
    base, override = load(), yaml.safe_load(CLUSTER.read_text())
    assert override["services"]
    for name, svc in override["services"].items():
        if name in base["services"]:
            assert not {"ports", "image", "build"} & set(svc), f"{CLUSTER.name}: services.{name} restates {set(svc)}"


def test_cluster_is_a_stack_of_its_own(cluster):
    """The local cluster keeps its own state directory (.cdcpipe-cluster); the Docker one its
    own project, so its volumes are never the single-node stack's."""
    assert settings.load({"CDCPIPE_TOPOLOGY": "cluster"}).home != settings.load({}).home
    assert cluster["name"] != load()["name"], f"{CLUSTER.name}: set a project name of its own"


def test_node_counts_match_the_cluster_topology(cluster, local):
    assert set(TOPOLOGIES["cluster"]) <= set(FIRST_NODE), "a new node kind: name its first compose service in FIRST_NODE"
    base = load()
    for kind in TOPOLOGIES["cluster"]:
        assert len(_nodes(cluster, kind)) == local.nodes(kind) == TOPOLOGIES["cluster"][kind], (
            f"{kind}: {_nodes(cluster, kind)} in the cluster variant, {local.nodes(kind)} nodes on the local cluster"
        )
        assert len(_nodes(base, kind)) == TOPOLOGIES["single"].get(kind, 1), f"docker-compose.yml: {_nodes(base, kind)}"


def _without(svc: dict, attributes: set[str], variables: set[str]) -> dict:
    out = {k: v for k, v in svc.items() if k not in attributes}
    if "environment" in out:
        out["environment"] = {k: v for k, v in out["environment"].items() if k not in variables}
    return out


def _without_token(env: dict) -> dict:
    return {**env, "JVM_EXTRA_OPTS": re.sub(r"-Dcassandra\.settings\.initial_token=\S+", "", env["JVM_EXTRA_OPTS"]).split()}


#: What may differ between the nodes of a kind (the rest is the same on every node; what is
#: listed here is compared with the local runtime by the tests below).
NODE_SPECIFIC = {
    "kafka": ({"volumes", "ports", "healthcheck"}, {"KAFKA_NODE_ID", "KAFKA_LISTENERS", "KAFKA_ADVERTISED_LISTENERS"}),
    "cassandra": ({"volumes", "ports", "depends_on", "environment"}, set()),
    "connect": ({"ports"}, {"CONNECT_REST_ADVERTISED_HOST_NAME"}),
    "spark_worker": (set(), set()),
}


def test_nodes_are_copies_of_the_first(cluster):
    """A node written out in the override (kafka-2, connect-2, ...) has every setting of the
    first node's, which docker-compose.yml defines; so a change to docker-compose.yml that
    is not carried over to the override fails here."""
    services = cluster["services"]
    for kind, (attributes, variables) in NODE_SPECIFIC.items():
        first, *others = _nodes(cluster, kind)
        assert others, kind
        for name in others:
            assert _without(services[name], attributes, variables) == _without(services[first], attributes, variables), (
                f"{CLUSTER.name}: services.{name} differs from {first} in more than {sorted(attributes | variables)}"
            )
            if kind == "cassandra":  # every variable but the node's token
                assert _without_token(services[name]["environment"]) == _without_token(services[first]["environment"]), name
            healthcheck = {k: v for k, v in services[name].get("healthcheck", {}).items() if k != "test"}
            assert healthcheck == {k: v for k, v in services[first].get("healthcheck", {}).items() if k != "test"}, name
        # ... and a volume of its own, where the first node has one.
        sources = [v.split(":")[0] for name in (first, *others) for v in services[name].get("volumes", [])]
        assert len(sources) == len(set(sources)), f"{kind}: nodes share a volume: {sources}"


def test_host_ports_are_the_local_cluster_s(cluster, local):
    """The client port of every node (CQL, Kafka's HOST listener, Connect's REST, the Spark
    worker's UI) is published on the port the local cluster's node listens on, or not at all
    (allow-listed). Storage, JMX and controller ports stay on the compose network."""
    local_ports, docker_ports = {}, {}
    for kind, port_names in NODE_PORTS.items():
        for node, name in enumerate(_nodes(cluster, kind), start=1):
            local_ports[name] = local.port(node_port_name(port_names[0], node))
            published = _published(cluster, name)
            if published:
                (docker_ports[name],) = published
    worker_ui = "the Spark workers' UIs are not published by docker-compose.yml either; the master's UI (8090) shows them"
    assert_same(
        local_ports,
        docker_ports,
        {
            "cassandra-2": "a driver learns the other nodes at their compose-network addresses: see services.cassandra in "
            "docker-compose.cluster.yml",
            "cassandra-3": "as cassandra-2",
            "connect-2": "either worker's REST API serves the group; connect publishes 8083",
            "spark-worker": worker_ui,
            "spark-worker-2": worker_ui,
        },
        "settings.node_ports",
        "services.*.ports",
    )
    for node, name in enumerate(_nodes(cluster, "kafka"), start=1):
        port = local.port(node_port_name("kafka", node))
        assert f"HOST://localhost:{port}" in _env(cluster, name)["KAFKA_ADVERTISED_LISTENERS"].split(","), name
        assert f"HOST://0.0.0.0:{port}" in _env(cluster, name)["KAFKA_LISTENERS"].split(","), name


# --- Kafka ------------------------------------------------------------------------------------


def test_kafka_broker_settings_on_every_node(cluster, local):
    kafka = Kafka(local, SECRETS)
    for node, name in enumerate(_nodes(cluster, "kafka"), start=1):
        assert_same(
            kafka._server_properties(node),
            env_properties(_env(cluster, name), "KAFKA_"),
            {
                "listeners": ADDRESS,
                "advertised.listeners": ADDRESS,
                "controller.quorum.voters": ADDRESS,  # test_kafka_quorum_names_every_node
                "listener.security.protocol.map": ADDRESS,  # Docker adds the HOST listener
                "log.dirs": ADDRESS,
                # Share groups (KIP-932) came with Kafka 4; the image (Confluent 7.9) is Kafka 3.9.
                "share.coordinator.state.topic.replication.factor": "Kafka 4 only",
                "share.coordinator.state.topic.min.isr": "Kafka 4 only",
                "inter.broker.listener.name": LISTENER_NAMES,
                "listener.name.*": KAFKA_SECRET,
            },
            f"Kafka._server_properties({node}) in cdcpipe/runtime/services/kafka.py",
            f"services.{name}.environment",
        )


def _plaintext(compose: dict, name: str) -> str:
    """The address a broker advertises to the other containers (its INTERNAL listener)."""
    listeners = dict(item.split("://", 1) for item in _env(compose, name)["KAFKA_ADVERTISED_LISTENERS"].split(","))
    return listeners["INTERNAL"]


def test_kafka_quorum_names_every_node(cluster, local):
    nodes = _nodes(cluster, "kafka")
    local_voters = Kafka(local, SECRETS)._server_properties()["controller.quorum.voters"].split(",")
    docker_voters = {_env(cluster, name)["KAFKA_CONTROLLER_QUORUM_VOTERS"] for name in nodes}
    assert len(docker_voters) == 1, f"the nodes disagree on the quorum: {docker_voters}"
    voters = dict(v.split("@", 1) for v in docker_voters.pop().split(","))
    assert sorted(voters) == sorted(v.split("@", 1)[0] for v in local_voters) == [str(n) for n in range(1, local.nodes("kafka") + 1)]
    for name in nodes:
        env = _env(cluster, name)
        controller = dict(item.split("://", 1) for item in env["KAFKA_LISTENERS"].split(","))["CONTROLLER"]
        assert voters[str(env["KAFKA_NODE_ID"])] == f"{name}:{controller.rsplit(':', 1)[1]}", (
            f"voter {env['KAFKA_NODE_ID']} is {voters[str(env['KAFKA_NODE_ID'])]}, services.{name} is that node"
        )
        assert "controller" in env["KAFKA_PROCESS_ROLES"].split(","), name
    assert len({_env(cluster, name)["CLUSTER_ID"] for name in nodes}) == 1, "every node needs the same CLUSTER_ID"


def test_every_kafka_client_bootstraps_from_every_broker(cluster, local):
    brokers = {_plaintext(cluster, name) for name in _nodes(cluster, "kafka")}
    assert len(Kafka(local, SECRETS).bootstrap.split(",")) == len(brokers)
    lists = {
        f"services.{name}.environment.CONNECT_BOOTSTRAP_SERVERS": _env(cluster, name)["CONNECT_BOOTSTRAP_SERVERS"]
        for name in _nodes(cluster, "connect")
    }
    lists["services.schema-registry"] = _env(cluster, "schema-registry")["SCHEMA_REGISTRY_KAFKASTORE_BOOTSTRAP_SERVERS"]
    lists["services.control-center"] = _env(cluster, "control-center")["CONTROL_CENTER_BOOTSTRAP_SERVERS"]
    lists["services.spark-job (CDC_KAFKA_BOOTSTRAP)"] = _env(cluster, "spark-job")["CDC_KAFKA_BOOTSTRAP"]
    for i, argv in enumerate(c for c in topic_commands(cluster) if c[0] in ("kafka-topics", "kafka-configs")):
        (lists[f"services.topics-init, command {i + 1}"],) = option(argv, "--bootstrap-server")
    for where, value in lists.items():
        assert {item.removeprefix("SASL_PLAINTEXT://") for item in value.split(",")} == brokers, (
            f"{where}: {value}, brokers {sorted(brokers)}"
        )
    # What needs the brokers waits for all of them (topics of 3 replicas need 3 brokers).
    kafka_nodes = set(_nodes(cluster, "kafka"))
    for name, svc in cluster["services"].items():
        deps = svc.get("depends_on", {})
        if name not in kafka_nodes and kafka_nodes & set(deps):
            for node in kafka_nodes:
                assert deps.get(node, {}).get("condition") == "service_healthy", f"services.{name} does not wait for {node}"


def test_every_replication_setting_is_the_cluster_s(cluster, local):
    """Every replication factor of a topic (brokers' defaults, Connect's, the registry's and
    Control Center's internal topics) is Kafka.replication_factor, every minimum ISR
    Kafka.min_insync_replicas."""
    kafka = Kafka(local, SECRETS)
    seen = set()
    for name, svc in cluster["services"].items():
        for var, value in (svc.get("environment") or {}).items():
            if re.search(r"(MIN_ISR|MIN_INSYNC_REPLICAS)$", var):
                assert str(value) == str(kafka.min_insync_replicas), f"services.{name}.environment.{var} = {value}"
                seen.add(name)
            elif re.search(r"REPLICATION(_FACTOR)?$", var):
                assert str(value) == str(kafka.replication_factor), f"services.{name}.environment.{var} = {value}"
                seen.add(name)
    users_of_kafka = {*_nodes(cluster, "kafka"), *_nodes(cluster, "connect"), "schema-registry", "control-center"}
    assert users_of_kafka <= seen, f"no replication setting in {sorted(users_of_kafka - seen)}"


def test_topics_init_applies_the_cluster_block(cluster):
    """topics-init on the cluster creates what ``cdcpipe up`` creates on the local cluster:
    each topic of connectors/topics.json with its "cluster" block applied (TopicSpec.on_cluster)."""
    commands = topic_commands(cluster)
    docker = {}
    for cmd in commands:
        if cmd[0] == "kafka-topics" and "--create" in cmd:
            (name,) = option(cmd, "--topic")
            (partitions,) = option(cmd, "--partitions")
            (replicas,) = option(cmd, "--replication-factor")
            config = dict(kv.split("=", 1) for kv in option(cmd, "--config"))
            docker[name] = topics.TopicSpec(name, int(partitions), int(replicas), config)
    altered = {option(c, "--entity-name")[0]: option(c, "--add-config")[0] for c in commands if c[0] == "kafka-configs"}
    local = {spec.name: spec.on_cluster() for spec in topics.load()}
    assert any(spec != single for spec, single in zip(local.values(), topics.load(), strict=True)), "no cluster block left?"
    assert docker == local, f"{CLUSTER.name} (services.topics-init) creates {docker}, the local cluster {local}"
    for name, spec in local.items():
        added = dict(kv.split("=", 1) for kv in altered.get(name, "").split(",") if kv)
        assert added == spec.config, f"{CLUSTER.name} (services.topics-init): kafka-configs --add-config for {name}"


# --- Kafka Connect ----------------------------------------------------------------------------


def test_connect_workers_settings(cluster, local):
    connect = Connect(local, SECRETS)
    for node, name in enumerate(_nodes(cluster, "connect"), start=1):
        env = _env(cluster, name)
        assert_same(
            connect.worker_properties(node),
            env_properties(env, "CONNECT_"),
            {
                "bootstrap.servers": ADDRESS,  # test_every_kafka_client_bootstraps_from_every_broker
                "listeners": ADDRESS,
                "rest.advertised.host.name": ADDRESS,
                "rest.advertised.port": ADDRESS,
                "plugin.path": ADDRESS,
                "key.converter*": "Apicurio's converter and registry (local) vs Confluent's (Docker): tests/test_runtime_parity.py",
                "value.converter*": "Apicurio's converter and registry (local) vs Confluent's (Docker): tests/test_runtime_parity.py",
                "plugin.discovery": "service_load needs the manifests `cdcpipe jars` writes; the image scans (hybrid_warn)",
                # The worker's Kafka login and its clients' (the prefixes): the JAAS line alone,
                # so a producer setting such as acks would not hide behind this entry.
                "sasl.jaas.config": KAFKA_SECRET,
                **{f"{prefix}.sasl.jaas.config": KAFKA_SECRET for prefix in ("producer", "consumer", "admin")},
            },
            f"Connect.worker_properties({node}) in cdcpipe/runtime/services/connect.py",
            f"services.{name}.environment",
        )
        # Each worker advertises its own address, so the other can forward requests to it.
        assert env["CONNECT_REST_ADVERTISED_HOST_NAME"] == name
    # Source tasks' producers: Connect's default acks=all (what min.insync.replicas 2 relies on), on both sides.
    assert "producer.acks" not in connect.worker_properties()


# --- Cassandra --------------------------------------------------------------------------------


def test_cassandra_settings_on_every_node(cluster, local, single):
    """Every cassandra.yaml setting the local cluster's nodes have other than one node's (hints,
    timeouts, no bootstrap, ...), plus the ring's (tokens, name, snitch) and whatever the
    compose files set, is the same on each Docker node."""
    local_cluster = Cassandra(local, SECRETS)
    # Node 1 of each topology: the same paths and ports, so what differs is the cluster's doing.
    first, one = local_cluster._yaml(1), Cassandra(single, SECRETS)._yaml(1)
    cluster_keys = {k for k in first if first[k] != one.get(k)} | {"initial_token", "num_tokens", "cluster_name", "endpoint_snitch"}
    assert {"hinted_handoff_enabled", "write_request_timeout", "range_request_timeout", "auto_bootstrap"} <= cluster_keys
    for node, name in enumerate(_nodes(cluster, "cassandra"), start=1):
        mine = local_cluster._yaml(node)
        docker = cassandra_settings(_env(cluster, name))
        keys = cluster_keys | set(docker)
        assert_same(
            {k: yaml_value(mine[k]) for k in keys if k in mine},
            {k: v for k, v in docker.items() if k in keys},
            {
                "seed_provider": ADDRESS,  # test_cassandra_seeds_name_and_data_centre
                # Trie memtables off heap, sized for three nodes on one machine: the local
                # runtime's tuning; the Docker nodes keep the stock image's, as docker-compose.yml's does.
                "memtable_heap_space": "the local runtime's off-heap memtables (stock image's memtables in Docker)",
                "memtable_offheap_space": "the local runtime's off-heap memtables (stock image's memtables in Docker)",
                "commitlog_sync_period": SYNC_PERIOD_CLEARED,
            },
            f"Cassandra._yaml({node}) in cdcpipe/runtime/services/cassandra.py",
            f"services.{name}.environment",
        )


def test_cassandra_seeds_name_and_data_centre(cluster, local):
    nodes = _nodes(cluster, "cassandra")
    local_seeds = Cassandra(local, SECRETS)._yaml()["seed_provider"][0]["parameters"][0]["seeds"].split(",")
    assert len(local_seeds) == local.nodes("cassandra")
    for name in nodes:
        env = _env(cluster, name)
        seeds = env["CASSANDRA_SEEDS"].split(",")
        # Every node is a seed on both runtimes (see Cassandra._yaml).
        assert sorted(seeds) == sorted(nodes) and len(seeds) == len(local_seeds), f"services.{name}: CASSANDRA_SEEDS {seeds}"
        assert env["CASSANDRA_DC"] == DATA_CENTER, f"services.{name}: CASSANDRA_DC"
    snitch = Cassandra(local, SECRETS)._yaml()["endpoint_snitch"]
    if snitch == "SimpleSnitch":  # its one data centre's fixed name, which keyspaces and LOCAL_QUORUM name
        assert DATA_CENTER == "datacenter1"


def _heap_mb(value: str) -> int:
    number, unit = re.fullmatch(r"(\d+)([MG])", value).groups()
    return int(number) * (1024 if unit == "G" else 1)


def test_cassandra_heap(cluster, local):
    heap = Cassandra(local, SECRETS).heap_mb
    for name in _nodes(cluster, "cassandra"):
        assert _heap_mb(_env(cluster, name)["MAX_HEAP_SIZE"]) == heap, f"services.{name}: MAX_HEAP_SIZE, local CLUSTER_HEAP_MB {heap}"


class _Recorder:
    """A session that records what it is asked to execute."""

    def __init__(self):
        self.statements: list[str] = []

    def execute(self, statement, *args, **kwargs):
        self.statements.append(statement)


def test_cassandra_init_replicates_like_the_local_runtime(cluster, local, tmp_path):
    """cassandra-init runs Cassandra._replicate's statements, in its order, before the CQL
    files (after_ready: _replicate, then migrations.apply_cassandra), once every node is up."""
    recorder = _Recorder()
    Cassandra(local, SECRETS)._replicate(recorder)
    assert recorder.statements, "the local cluster replicates nothing?"
    replication = f"'{DATA_CENTER}': {len(_nodes(cluster, 'cassandra'))}"
    assert all(replication in s for s in recorder.statements)
    init = cluster["services"]["cassandra-init"]
    assert init["entrypoint"][:2] == ["bash", "/scripts/cassandra-init.sh"]
    assert init["environment"]["CASSANDRA_REPLICAS"] == str(len(_nodes(cluster, "cassandra")))
    code, output, calls = run_cassandra_init(
        tmp_path, {**CASSANDRA_PASSWORDS, "CASSANDRA_REPLICAS": init["environment"]["CASSANDRA_REPLICAS"]}
    )
    assert code == 0, output
    ran = [s for call in calls if not call["file"] or "/sql/cassandra/" not in call["file"] for s in call["statements"]]
    first_file = next(i for i, call in enumerate(calls) if call["file"] and "/sql/cassandra/" in call["file"])
    before = [s for call in calls[:first_file] for s in call["statements"] if s.startswith(("ALTER KEYSPACE", "CREATE KEYSPACE"))]
    assert before == recorder.statements, f"{CLUSTER.name} (services.cassandra-init) runs {before}, the local cluster {recorder.statements}"
    assert not any(s.startswith(("ALTER KEYSPACE", "CREATE KEYSPACE")) for call in calls[first_file:] for s in call["statements"]), (
        "replication after the CQL files"
    )
    assert ran, "the script ran no statement of its own"
    # A new cluster: system_auth is replicated before the default superuser writes the admin role.
    code, output, calls = run_cassandra_init(
        tmp_path / "new", {**CASSANDRA_PASSWORDS, "CASSANDRA_REPLICAS": init["environment"]["CASSANDRA_REPLICAS"]}, refuse=("cdcpipe",)
    )
    assert code == 0, output
    default = [s for call in calls if call["user"] == "cassandra" for s in call["statements"]]
    assert default[: len(recorder.statements)] == recorder.statements and default[-1].startswith("CREATE ROLE IF NOT EXISTS cdcpipe"), (
        default
    )
    for name in _nodes(cluster, "cassandra")[1:]:
        assert init["depends_on"][name]["condition"] == "service_healthy", f"cassandra-init does not wait for {name}"
    # The default superuser refused once (its row not yet on the replicas a node asked, right
    # after system_auth gained them): read that row at ALL (read repair), then all again.
    code, output, calls = run_cassandra_init(
        tmp_path / "refused-once", {**CASSANDRA_PASSWORDS, "CASSANDRA_REPLICAS": "3"}, refuse=("cdcpipe",), fail_once="cassandra"
    )
    assert code == 0 and "trying again" in output, output
    retried = [call["statements"] for call in calls if call["user"] == "cassandra" and call["statements"]]
    assert len(retried) == 1 and retried[0][:2] == ["CONSISTENCY ALL", "SELECT role FROM system_auth.roles WHERE role = 'cassandra'"]
    assert retried[0][3:] == [*recorder.statements, retried[0][-1]] and retried[0][-1].startswith("CREATE ROLE IF NOT EXISTS cdcpipe")


class _DeniedOnce(_Recorder):
    """A session whose node denies the default superuser's status once, on the statement after
    system_auth's replication change (what CI saw on a fresh cluster)."""

    def __init__(self, denials: int = 1):
        super().__init__()
        self.denials = denials

    def execute(self, statement, *args, **kwargs):
        from cassandra import Unauthorized

        text = getattr(statement, "query_string", statement)
        self.statements.append(text)
        if self.denials and "system_distributed" in text:
            self.denials -= 1
            raise Unauthorized("User cassandra has no ALTER permission on <keyspace system_distributed> or any of its parents")


def test_the_take_over_tries_a_denied_superuser_again_after_a_repairing_read(local, monkeypatch):
    from cdcpipe.pipeline.logins import Login

    monkeypatch.setattr("time.sleep", lambda _s: None)
    node = Cassandra(local, SECRETS)
    recorder = _Recorder()
    node._replicate(recorder)
    denied = _DeniedOnce()
    node._as_default_superuser(denied, Login("cdcpipe", "pw"))
    repair = "SELECT role FROM system_auth.roles WHERE role = %s"
    assert denied.statements.count(repair) == 1
    after = denied.statements[denied.statements.index(repair) + 1 :]
    assert after[: len(recorder.statements)] == recorder.statements and after[-1].startswith("CREATE ROLE IF NOT EXISTS cdcpipe")
    # Denied for good: raised once the time is up, not looped forever.
    from cassandra import Unauthorized

    with pytest.raises(Unauthorized):
        node._as_default_superuser(_DeniedOnce(denials=10**6), Login("cdcpipe", "pw"), timeout=0)


# --- The Spark job and workers ----------------------------------------------------------------


def _job_module():
    spec = importlib.util.spec_from_file_location("users_to_cassandra_job", JOB)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _variables_read(path) -> set[str]:
    """Every CDC_* name the job's source spells out (its options' env(...) and AUTH_SECRET_ENV)."""
    tree = ast.parse(path.read_text())
    return {
        n.value
        for n in ast.walk(tree)
        if isinstance(n, ast.Constant) and isinstance(n.value, str) and re.fullmatch(r"CDC_[A-Z0-9_]+", n.value)
    }


def test_job_reads_every_variable_it_is_given(cluster):
    given = {k for k in _env(cluster, "spark-job") if k.startswith("CDC_")}
    assert {"CDC_CASSANDRA_HOST", "CDC_WRITE_CONSISTENCY", "CDC_KAFKA_BOOTSTRAP"} <= given
    unread = given - _variables_read(JOB)
    assert not unread, f"services.spark-job sets {sorted(unread)}, which {JOB.name} never reads"


def test_job_contact_points_and_consistency(cluster, local, monkeypatch):
    """The job as the local cluster starts it (streaming_job.job_argv) and as the Docker one
    does (no arguments, its environment), both parsed by the job's own options()."""
    job = _job_module()
    for name in [k for k in os.environ if k.startswith("CDC_")]:
        monkeypatch.delenv(name)
    local_args = job.options(job_argv(local)[2:])
    docker_env = {k: str(v) for k, v in _env(cluster, "spark-job").items() if k.startswith("CDC_")}
    assert not any("${" in v for v in docker_env.values())
    for name, value in docker_env.items():
        monkeypatch.setenv(name, value)
    docker_args = job.options([])

    cassandra = Cassandra(local, SECRETS)
    assert docker_args.write_consistency == local_args.write_consistency == cassandra.consistency
    local_points = contact_points(local_args.cassandra_host, local_args.cassandra_port)
    docker_points = contact_points(docker_args.cassandra_host, docker_args.cassandra_port)
    nodes = _nodes(cluster, "cassandra")
    assert len(docker_points) == len(local_points) == local.nodes("cassandra")
    assert sorted(host for host, _ in docker_points) == sorted(nodes), f"services.spark-job: CDC_CASSANDRA_HOST names {docker_points}"
    cql = {p.rsplit(":", 1)[1] for p in cluster["services"]["cassandra"]["ports"]}  # the container's CQL port
    assert {str(port) for _, port in docker_points} == cql
    assert len(docker_args.bootstrap.split(",")) == len(local_args.bootstrap.split(",")) == local.nodes("kafka")
    deps = cluster["services"]["spark-job"]["depends_on"]
    for name in _nodes(cluster, "spark_worker"):
        assert deps[name]["condition"] == "service_healthy", f"spark-job does not wait for {name}"


def test_spark_workers_size(cluster, local):
    cores = spark.Spark(local, SECRETS).worker_cores
    for name in _nodes(cluster, "spark_worker"):
        argv = exec_line(cluster["services"][name]["command"])
        assert_same(
            {"cores": cores, "memory": spark.WORKER_MEMORY},
            {"cores": option(argv, "--cores")[0], "memory": option(argv, "--memory")[0]},
            {},
            "Spark.worker_cores / WORKER_MEMORY in cdcpipe/runtime/services/spark.py",
            f"services.{name}.command",
        )
