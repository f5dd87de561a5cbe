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


def test_the_pipeline_total_leaves_out_what_is_not_a_stage():
    # The benchmark's own process writes the changes and reads the topic: not the pipeline's cost.
    assert cpu.pipeline_total({"spark job": 500.0, "cassandra": 200.0, "this command": 100.0, "airflow": 30.0, "kafka": 50.0}) == 750.0


def test_the_floor_is_the_work_spread_over_every_core():
    # 100,000 changes at 780 core-ms per 1,000: 78 core-seconds, 39 s on two cores.
    assert cpu.floor_s(780.0, 100_000, cores_available=2) == 39.0
    assert cpu.floor_s(300.0, 100_000, cores_available=2) == 15.0
