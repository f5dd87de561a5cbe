"""`cdcpipe bench --latency` on the real pipeline: every probe is timed in Kafka and in
Cassandra, the split adds up, the background load is written, the probes and the load's rows
are cleaned up. No timed assertion: the figures are printed, not judged."""

from __future__ import annotations

import sys

from cdc_helpers import rows_named_like

from cdcpipe.bench import latency


def test_latency_small_run(conf, spark_job, pg, cassandra, tmp_path):
    plot = tmp_path / "latency.png"
    report = latency.measure(conf, probes=6, load=300, plot=plot, progress=lambda m: print(m, file=sys.stderr))
    print(latency.summary(report), file=sys.stderr)

    for label in ("idle", "load"):
        legs = report[label]
        # every probe was seen in Kafka (its record timestamp) and then read back from Cassandra
        assert legs["end_to_end"]["n"] == legs["commit_to_kafka"]["n"] == legs["kafka_to_cassandra"]["n"] == 6
        assert 0 < legs["end_to_end"]["p50_ms"] <= legs["end_to_end"]["p90_ms"] <= legs["end_to_end"]["max_ms"]
        # the two legs split each probe at its Kafka timestamp: neither exceeds the whole
        assert legs["kafka_to_cassandra"]["max_ms"] <= legs["end_to_end"]["max_ms"] + 1
        assert legs["commit_to_kafka"]["p50_ms"] <= legs["end_to_end"]["max_ms"]
    assert report["load"]["changes_per_s"] > 100  # the background writer really wrote
    assert plot.stat().st_size > 10_000
    assert rows_named_like(pg, latency.PROBE_PREFIX, latency.LOAD_PREFIX) == 0
