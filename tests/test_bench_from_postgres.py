"""`cdcpipe bench --from-postgres` on the real pipeline: counts, an exact read model, the
ceiling's scratch table gone, the run's rows cleaned up. No timed assertion: the figures are
printed, not judged."""

from __future__ import annotations

import json
import os
import sys

from cdcpipe.bench import end_to_end
from cdcpipe.commands import bench as bench_command


def test_from_postgres_small_run(conf, spark_job, pg, cassandra, tmp_path):
    plot = tmp_path / "from-postgres.png"
    report = end_to_end.run(conf, n=2_000, transaction_size=250, seed=14, plot=plot, progress=lambda m: print(m, file=sys.stderr))
    print(end_to_end.summary(report), file=sys.stderr)

    # what was written is what was captured, each change once, a tombstone per delete
    assert report["changes"] == report["inserts"] + report["updates"] + report["deletes"] == 2_000
    assert report["capture"]["changes"] == 2_000
    assert report["capture"]["tombstones"] == report["deletes"] > 0
    assert report["capture"]["keys_not_matching_plan"] == 0
    assert report["keys_touched"] == report["inserts"]
    # every touched key was written at least once by the job, never more often than it changed
    assert report["keys_touched"] <= report["apply"]["row_writes"] <= 2_000
    assert report["exact"]["exact"] is True
    assert report["latency"]["commit_to_cassandra"]["n"] == 2_000

    ceiling = report["ceiling"]
    assert ceiling["rows"] == report["keys_touched"]
    assert ceiling["exact"] is True and ceiling["rejected"] == 0
    assert ceiling["table_dropped"] is True
    keyspace, table = ceiling["table"].split(".")
    assert (
        cassandra.execute(
            "SELECT table_name FROM system_schema.tables WHERE keyspace_name = %s AND table_name = %s", (keyspace, table)
        ).one()
        is None
    )
    assert report["ratio"] > 0

    # the cost per change of every stage a change passes through, read from the real processes
    per_1k = report["core_ms_per_1k_changes"]
    for stage in ("postgres", "connect", "kafka", "spark job", "cassandra"):
        assert per_1k[stage] > 0, stage
    # the six stages, and the Spark workers as the job's (an idle daemon here, its executors on a cluster)
    stages = ("postgres", "connect", "kafka", "schema_registry", "spark job", "cassandra")
    expected = sum(ms for name, ms in per_1k.items() if name in stages or name.startswith("spark-worker"))
    assert report["core_ms_per_1k_changes_pipeline"] == round(expected, 1)
    assert per_1k["this command"] > 0  # reported, but not the pipeline's
    assert report["cores_available"] == len(os.sched_getaffinity(0))
    pipeline_core_s = report["core_ms_per_1k_changes_pipeline"] * 2_000 / 1_000 / 1_000
    assert report["cpu_floor_s"] == round(pipeline_core_s / report["cores_available"], 1)
    text = end_to_end.summary(report)
    assert f"CPU floor        {report['cpu_floor_s']} s" in text and f"{report['core_ms_per_1k_changes_pipeline']} core-ms" in text

    # the run cleaned up after itself: none of its rows left in PostgreSQL
    assert pg.execute("SELECT count(*) AS n FROM public.users WHERE username LIKE 'bench-pg-14-%'").fetchone()["n"] == 0
    assert plot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    json.dumps(report)  # --json prints it as is


def test_bench_command_from_postgres_json(conf, spark_job, capsys):
    parser = __import__("argparse").ArgumentParser()
    bench_command.register(parser.add_subparsers())
    args = parser.parse_args(["bench", "--from-postgres", "300", "--transaction-size", "100", "--seed", "15", "--no-ceiling", "--json"])
    assert args.func(args) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["capture"]["changes"] == 300 and report["exact"]["exact"] is True
    assert "ceiling" not in report
