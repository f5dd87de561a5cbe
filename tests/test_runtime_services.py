"""Each service of the local runtime does real work through its own client."""

from __future__ import annotations

import json
import subprocess
import sys
import uuid
from pathlib import Path

import psycopg
import requests
from cdc_helpers import register_schema, run_cli, standalone_cores_free
from confluent_kafka import Producer

from cdcpipe.clients import kafka_io
from cdcpipe.runtime.services.connect import POSTGRES_CONNECTOR


def test_postgres_logical_wal_and_users_table(stack):
    pg = stack["postgres"]
    with psycopg.connect(pg.dsn()) as conn:
        assert conn.execute("SHOW wal_level").fetchone()[0] == "logical"
        assert int(conn.execute("SHOW max_replication_slots").fetchone()[0]) >= 4
        assert conn.execute("SELECT current_user, current_database()").fetchone() == ("cdcpipe", "users")
        # The application role may write the pipeline's table (in a transaction we roll back).
        with conn.transaction(force_rollback=True):
            conn.execute("INSERT INTO public.users (id, username) VALUES (%s, 'probe')", (uuid.uuid4(),))
    with pg.connect(dbname="airflow", user="airflow") as conn:
        assert conn.execute("SELECT current_database()").fetchone()[0] == "airflow"


def test_kafka_produce_then_consume(stack):
    topic = f"test.roundtrip.{uuid.uuid4().hex[:8]}"
    errors = []
    producer = Producer(stack["kafka"].client_config(**{"acks": "all", "error_cb": errors.append}))
    payloads = [f"message {i} ✓".encode() for i in range(5)]
    for i, payload in enumerate(payloads):
        producer.produce(topic, key=str(i).encode(), value=payload)
    assert producer.flush(30) == 0
    consumer = kafka_io.consumer(stack["kafka"].client_config(), "test", **{"auto.offset.reset": "earliest"})
    consumer.subscribe([topic])
    received = []
    try:
        for _ in range(60):
            msg = consumer.poll(1.0)
            if msg is None or msg.error():
                continue
            received.append(msg.value())
            if len(received) == len(payloads):
                break
    finally:
        consumer.close()
    assert received == payloads
    assert not errors


def test_schema_registry_register_and_fetch_by_id(stack):
    url, auth = stack["schema_registry"].url, stack["schema_registry"].auth
    subject = f"test-{uuid.uuid4().hex[:8]}-value"
    schema = {
        "type": "record",
        "name": "Probe",
        "namespace": "test",
        "fields": [{"name": "id", "type": "string"}, {"name": "n", "type": ["null", "int"], "default": None}],
    }
    schema_id = register_schema(stack["schema_registry"], schema, subject)
    fetched = requests.get(f"{url}/schemas/ids/{schema_id}", timeout=10, auth=auth)
    assert fetched.status_code == 200, fetched.text
    assert json.loads(fetched.json()["schema"]) == schema
    assert subject in requests.get(f"{url}/subjects", timeout=10, auth=auth).json()


def test_connect_lists_debezium_postgres_plugin(stack):
    plugins = stack["connect"].client().plugins()
    assert POSTGRES_CONNECTOR in {p["class"] for p in plugins}
    postgres = next(p for p in plugins if p["class"] == POSTGRES_CONNECTOR)
    assert postgres["version"].startswith("3.")


def test_cassandra_create_and_query(stack):
    with stack["cassandra"].connected() as session:
        session.execute(
            "CREATE KEYSPACE IF NOT EXISTS cdcpipe_test WITH replication = {'class': 'SimpleStrategy', 'replication_factor': 1}"
        )
        session.execute("CREATE TABLE IF NOT EXISTS cdcpipe_test.probe (id uuid PRIMARY KEY, name text)")
        key = uuid.uuid4()
        session.execute("INSERT INTO cdcpipe_test.probe (id, name) VALUES (%s, %s)", (key, "Zoë 🐘"))
        row = session.execute("SELECT name FROM cdcpipe_test.probe WHERE id = %s", (key,)).one()
        assert row.name == "Zoë 🐘"
        # The pipeline's read model exists, created by `up` from sql/cassandra.
        columns = {
            r.column_name
            for r in session.execute("SELECT column_name FROM system_schema.columns WHERE keyspace_name = 'cdc' AND table_name = 'users'")
        }
        assert {"id", "email", "latitude", "dob", "updated_at"} <= columns


def test_cqlsh_works_against_cassandra(stack):
    cass = stack["cassandra"]
    cqlsh = [str(Path(sys.executable).parent / "cqlsh")]
    out = subprocess.run(
        [
            *cqlsh,
            "--credentials",
            str(cass.credentials_file()),
            cass.host,
            str(cass.port()),
            "-e",
            "SELECT release_version FROM system.local",
        ],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert out.returncode == 0, out.stderr
    assert "5.0." in out.stdout


def test_spark_reads_a_kafka_topic_on_the_standalone_cluster(stack, tmp_path, monkeypatch):
    from cdcpipe.runtime.services.spark import job_jars

    bootstrap = stack["kafka"].bootstrap
    topic = f"test.spark.{uuid.uuid4().hex[:8]}"
    producer = Producer(stack["kafka"].client_config())
    for i in range(20):
        producer.produce(topic, key=str(i).encode(), value=f"v{i}".encode())
    assert producer.flush(30) == 0

    import logging

    from pyspark.sql import SparkSession

    logging.getLogger("py4j").setLevel(logging.WARNING)  # its shutdown chatter outlives pytest's log capture

    from cdc_helpers import job_module

    # The driver JVM this starts keeps its scratch (block manager, spark-*) here, not in /tmp.
    monkeypatch.setenv("JAVA_TOOL_OPTIONS", f"-Djava.io.tmpdir={tmp_path}")
    builder = (
        SparkSession.builder.master(stack["spark"].master_url)
        .appName("cdcpipe-test-kafka-read")
        .config("spark.jars", ",".join(job_jars(stack["spark"].settings.jars)))
        .config("spark.executor.memory", "512m")
        .config("spark.cores.max", "1")
        .config("spark.driver.host", "127.0.0.1")
        .config("spark.ui.enabled", "false")
    )
    # The cluster requires its shared secret (spark.authenticate), as the job does.
    with standalone_cores_free(stack["spark"].settings):
        values = _read_topic(job_module().authenticated(builder, stack["spark"].secrets["spark_auth"]), bootstrap, topic, stack)
    assert values == sorted(f"v{i}" for i in range(20))


def _read_topic(builder, bootstrap: str, topic: str, stack) -> list[str]:
    spark = builder.getOrCreate()
    try:
        frame = (
            spark.read.format("kafka")
            .option("kafka.bootstrap.servers", bootstrap)
            # the login, as the job passes it; the executors on the worker read with it
            .options(**{f"kafka.{k}": v for k, v in stack["kafka"].login.kafka_java_settings().items()})
            .option("subscribe", topic)
            .option("startingOffsets", "earliest")
            .load()
        )
        return sorted(r.value.decode() for r in frame.select("value").collect())
    finally:
        spark.stop()


def test_airflow_health_and_login(stack):
    airflow = stack["airflow"]
    health = airflow.health()
    assert health["metadatabase"]["status"] == "healthy"
    assert health["scheduler"]["status"] == "healthy"
    assert health["dag_processor"]["status"] == "healthy"
    token = airflow.token()
    dags = requests.get(airflow.url + "/api/v2/dags", headers={"Authorization": f"Bearer {token}"}, timeout=10)
    assert dags.status_code == 200, dags.text


def test_status_json_reports_every_service(stack):
    out = run_cli("status", "--json", timeout=120)
    assert out.returncode == 0, out.stderr
    report = json.loads(out.stdout)["services"]
    assert set(report) == {"postgres", "kafka", "schema_registry", "connect", "cassandra", "spark", "airflow", "watchdog", "console"}
    assert all(entry["state"] == "running" for entry in report.values()), report
    assert all(entry["rss_bytes"] > 0 for entry in report.values())
    # No password in status: the dsn and `cdcpipe secret cdcpipe` connect together.
    assert report["postgres"]["dsn"].startswith("postgresql://cdcpipe@")
    password = run_cli("secret", "cdcpipe").stdout.strip()
    with psycopg.connect(report["postgres"]["dsn"], password=password) as conn:
        assert conn.execute("SELECT 1").fetchone() == (1,)
    assert report["kafka"]["bootstrap"] == stack["kafka"].bootstrap
    assert report["schema_registry"]["url"].endswith("/apis/ccompat/v7")
    assert requests.get(report["schema_registry"]["url"] + "/subjects", timeout=10, auth=stack["schema_registry"].auth).status_code == 200
    assert report["connect"]["url"] == stack["connect"].url
    assert report["cassandra"]["host"] == "127.0.0.1" and report["cassandra"]["port"] == stack["cassandra"].port()
    assert report["airflow"]["url"].startswith("http://127.0.0.1:")
    assert report["airflow"]["username"] and "password" not in report["airflow"]
    assert report["console"]["url"] == stack["console"].url
    assert report["console"]["username"] == "admin" and "password" not in report["console"]
    assert report["watchdog"]["capture"] in ("moving", "unknown"), report["watchdog"]
