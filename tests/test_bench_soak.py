"""`cdcpipe bench --soak` on the real pipeline, short: each window has its probes timed, the
memory and CPU of real processes, Cassandra's own figures over JMX, the job's batches, and the
soak's rows are gone afterwards. No timed assertion: the figures are printed, not judged."""

from __future__ import annotations

import json
import sys

from cdc_helpers import rows_named_like, run_cli

from cdcpipe.bench import latency, soak


def test_a_short_soak_reports_every_window_from_the_real_processes(spark_job, pg, tmp_path):
    plot = tmp_path / "soak.png"
    done = run_cli("bench", "--soak", "45", "--window", "15", "--load", "200", "--plot", str(plot), "--json", timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    print(done.stderr, file=sys.stderr)
    report = json.loads(done.stdout)
    windows = report["windows"]
    assert len(windows) >= 3, windows
    for window in windows:
        lat = window["latency"]
        # Probes run one after another, so a window holds fewer when each takes longer (two of
        # 7-10 s in a 15 s window on the cluster topology): at least one, whatever the latency.
        assert lat["n"] >= 1 and 0 < lat["p50_ms"] <= lat["p99_ms"] <= lat["max_ms"], window
        assert window["probes_not_readable_within_timeout"] == 0
        assert window["changes_per_s"] > 100  # the load really wrote
        rss = window["rss_bytes"]
        assert rss["cassandra"] > 200 * 2**20 and rss["connect"] > 100 * 2**20 and rss["spark job"] > 100 * 2**20, rss
        assert window["cores"].get("spark job", 0) > 0 and window["cores"].get("connect", 0) > 0, window["cores"]
        assert window["core_ms_per_1k_changes_pipeline"] > 0
        gc = window["cassandra"]
        assert "error" not in gc and isinstance(gc["pending_compactions"], int) and gc["gc_collections"] >= 0, gc
        assert window["job"]["batches"] >= 1 and window["job"]["records_max"] >= 1, window["job"]
        assert window["slot_lag_bytes"] is not None
    # Kafka's end offsets against the job's: known unless Kafka was slow to answer at that moment
    assert any(w["topic_lag_records"] is not None for w in windows)
    assert report["worst_window_p99_ms"] == max(w["latency"]["p99_ms"] for w in windows)
    assert set(report["rss_growth_pct_from_window_2"]) >= {"cassandra", "connect", "spark job"}
    assert plot.stat().st_size > 10_000
    assert rows_named_like(pg, soak.PROBE_PREFIX, latency.LOAD_PREFIX) == 0
