"""Settings come from the environment, with clear errors for bad values."""

import pytest

from cdcpipe import settings
from cdcpipe.errors import ConfigError


def test_defaults_and_overrides(tmp_path):
    conf = settings.load({"CDCPIPE_HOME": str(tmp_path / "state"), "CDCPIPE_PORT_KAFKA": "19092"})
    assert conf.home == tmp_path / "state"
    assert conf.port("kafka") == 19092
    assert conf.port("postgres") == settings.DEFAULT_PORTS["postgres"]
    assert conf.log_file("kafka") == tmp_path / "state" / "logs" / "kafka.log"


@pytest.mark.parametrize("raw, words", [("abc", "not a port number"), ("70000", "outside 1-65535")])
def test_bad_port_is_named(raw, words):
    with pytest.raises(ConfigError, match=f"CDCPIPE_PORT_CONNECT={raw}.*{words}|CDCPIPE_PORT_CONNECT.*{words}"):
        settings.load({"CDCPIPE_PORT_CONNECT": raw})


def test_the_cluster_topology_has_its_own_home_and_a_port_per_node(tmp_path):
    single = settings.load({})
    cluster = settings.load({"CDCPIPE_TOPOLOGY": "cluster", "CDCPIPE_PORT_CASSANDRA_3": "19062"})
    assert single.topology == "single" and single.home.name == ".cdcpipe" and single.spark_master == "local[2]"
    assert cluster.home.name == ".cdcpipe-cluster"
    assert cluster.spark_master == "spark://127.0.0.1:7077"
    assert (cluster.nodes("cassandra"), cluster.nodes("kafka"), cluster.nodes("connect"), cluster.nodes("spark_worker")) == (3, 3, 2, 2)
    assert single.nodes("cassandra") == 1 and "cassandra_2" not in single.ports
    assert cluster.port("cassandra_2") == 9052 and cluster.port("cassandra_3") == 19062
    assert cluster.port("kafka_controller_3") == 9113
    # Every port of every node is distinct, and none is a single-node service's.
    assert len(set(cluster.ports.values())) == len(cluster.ports)


def test_an_unknown_topology_is_named():
    with pytest.raises(ConfigError, match="CDCPIPE_TOPOLOGY='ring'.*single, cluster"):
        settings.load({"CDCPIPE_TOPOLOGY": "ring"})


def test_cluster_nodes_own_processes_tokens_and_contact_points():
    from cdcpipe.pipeline.cassandra_session import contact_points
    from cdcpipe.runtime.services.cassandra import Cassandra, initial_token
    from cdcpipe.runtime.services.connect import Connect
    from cdcpipe.runtime.services.kafka import Kafka
    from cdcpipe.runtime.services.spark import Spark

    conf = settings.load({"CDCPIPE_TOPOLOGY": "cluster", "CDCPIPE_HOME": "/nonexistent/state"})
    secrets: dict[str, str] = {}  # nothing here reads one
    cassandra, kafka = Cassandra(conf, secrets), Kafka(conf, secrets)
    assert cassandra.processes == ("cassandra", "cassandra-2", "cassandra-3")
    assert Connect(conf, secrets).processes == ("connect", "connect-2")
    assert Spark(conf, secrets).processes == ("spark-master", "spark-worker", "spark-worker-2")
    assert kafka.bootstrap == "127.0.0.1:9092,127.0.0.1:9102,127.0.0.1:9112"
    assert cassandra.consistency == "LOCAL_QUORUM"
    assert contact_points(cassandra.contact_points, 9042) == [("127.0.0.1", 9042), ("127.0.0.1", 9052), ("127.0.0.1", 9062)]
    assert contact_points("cassandra", 9042) == [("cassandra", 9042)]
    tokens = [initial_token(n, 3) for n in (1, 2, 3)]
    assert tokens[0] == 0 and len(set(tokens)) == 3 and all(-(2**63) <= t < 2**63 for t in tokens)
    assert initial_token(1, 1) == 0  # the single node keeps the token it always had
    assert set(cassandra.bound_ports()) >= {"cassandra_2", "cassandra_storage_3", "cassandra_jmx_2"}
