"""The CPU figures of the benchmarks (cdcpipe/bench/cpu.py): cores, cost per change, the floor."""

from cdcpipe.bench import cpu

BEFORE = {"cassandra": 10.0, "spark job": 20.0, "this command": 5.0, "machine": 100.0}
AFTER = {"cassandra": 14.0, "spark job": 30.0, "kafka": 1.0, "this command": 7.0, "machine": 125.0}


def test_cores_busiest_first_and_the_rest_of_the_machine():
    assert cpu.cores(BEFORE, AFTER, 10.0) == {"spark job": 1.0, "cassandra": 0.4, "this command": 0.2, "kafka": 0.1, "other": 0.8}


def test_core_ms_per_1000_changes_costliest_first():
    # 20,000 changes: the job's 10 s are 500 core-ms per 1,000; a process that used nothing is left out.
    per_1k = cpu.per_1k_changes(BEFORE, {**AFTER, "postgres": 0.0}, 20_000)
    assert per_1k == {"spark job": 500.0, "cassandra": 200.0, "this command": 100.0, "kafka": 50.0}
    assert list(per_1k) == ["spark job", "cassandra", "this command", "kafka"]
    assert cpu.per_1k_changes(BEFORE, AFTER, 0) == {}


def test_the_stages_are_every_service_a_change_passes_through():
    assert set(cpu.STAGES) == {"postgres", "connect", "kafka", "schema_registry", "spark job", "cassandra"}


def test_the_pipeline_total_counts_every_stage_and_nothing_else():
    per_1k = {
        "postgres": 1.0,
        "connect": 2.0,
        "kafka": 4.0,
        "schema_registry": 8.0,
        "spark job": 16.0,
        "cassandra": 32.0,
        # not the pipeline's: the benchmark writes the changes and reads the topic
        "this command": 1000.0,
        "airflow-scheduler": 1000.0,
        "console": 1000.0,
        "watchdog": 1000.0,
        "spark-master": 1000.0,
    }
    assert cpu.pipeline_total(per_1k) == 63.0


def test_a_clusters_nodes_count_as_their_service_and_the_workers_as_the_job():
    # On the cluster topology the job's executors run under the Spark workers.
    assert cpu.stage_of("cassandra-3") == "cassandra" and cpu.stage_of("connect-2") == "connect"
    assert cpu.stage_of("kafka-2") == "kafka" and cpu.stage_of("spark-worker-2") == "spark job"
    assert cpu.stage_of("spark-worker") == "spark job" and cpu.stage_of("spark-master") is None
    assert cpu.pipeline_total({"cassandra": 10.0, "cassandra-2": 10.0, "spark-worker-2": 5.0, "this command": 7.0}) == 25.0


def test_the_floor_is_the_work_spread_over_every_core():
    # 100,000 changes at 780 core-ms per 1,000: 78 core-seconds, 39 s on two cores.
    assert cpu.floor_s(780.0, 100_000, cores_available=2) == 39.0
    assert cpu.floor_s(300.0, 100_000, cores_available=2) == 15.0
    assert cpu.floor_s(300.0, 100_000, cores_available=4) == 7.5
    assert cpu.available_cores() >= 1
