"""Pure pieces of `cdcpipe bench --from-postgres` (no service): the change mix, rates, latencies."""

from __future__ import annotations

import pytest

from cdcpipe.bench import change_mix, end_to_end
from cdcpipe.bench.end_to_end import Batch
from cdcpipe.bench.latency import TopicRecord


def _replay(plan: change_mix.Plan) -> set[str]:
    """Apply the plan's transactions to a set of keys, checking every rule on the way."""
    alive: set[str] = set()
    for txn in plan.transactions:
        keys = txn.keys()
        assert len(keys) == len(set(keys)), "a key appears twice in one transaction"
        for row in txn.inserts:
            assert str(row["id"]) not in alive
            assert set(row) == set(change_mix.INSERT_COLUMNS)
        for row in txn.updates:
            assert str(row["id"]) in alive, "an update of a row not committed before"
            assert set(row) == {"id", *change_mix.UPDATE_COLUMNS}
        for key in txn.deletes:
            assert str(key) in alive, "a delete of a row not committed before"
        alive |= {str(r["id"]) for r in txn.inserts}
        alive -= {str(k) for k in txn.deletes}
    return alive


def test_plan_counts_rules_and_final_state():
    plan = change_mix.plan(20_000, seed=3, transaction_size=500)
    counts = plan.counts()
    assert plan.changes == sum(counts.values()) == 20_000
    assert [len(t) for t in plan.transactions] == [500] * 40
    assert plan.transactions[0].updates == plan.transactions[0].deletes == []  # nothing to touch yet
    # the mix is near its weights (updates and deletes drawn early fall back to inserts)
    assert 0.38 < counts["inserts"] / 20_000 < 0.47
    assert 0.45 < counts["updates"] / 20_000 < 0.52
    assert 0.08 < counts["deletes"] / 20_000 < 0.11
    assert _replay(plan) == plan.alive_at_end()
    assert len(plan.touched()) == counts["inserts"] == len(set(plan.touched()))
    assert all(r["username"].startswith("bench-pg-3-") for t in plan.transactions for r in t.inserts)


def test_plan_is_deterministic_and_sequences_follow_transactions():
    a, b = change_mix.plan(3_000, seed=9), change_mix.plan(3_000, seed=9)
    assert [t.keys() for t in a.transactions] == [t.keys() for t in b.transactions]
    assert a.transactions[0].inserts[0] == b.transactions[0].inserts[0]
    assert [t.keys() for t in change_mix.plan(3_000, seed=10).transactions] != [t.keys() for t in a.transactions]
    sequence = a.sequence()
    assert sum(len(v) for v in sequence.values()) == 3_000
    assert all(v == sorted(v) and len(v) == len(set(v)) for v in sequence.values())


def test_plan_last_transaction_and_mix_without_deletes():
    plan = change_mix.plan(2_500, seed=1, transaction_size=1_000, mix=change_mix.Mix(1, 1, 0))
    assert [len(t) for t in plan.transactions] == [1_000, 1_000, 500]
    assert plan.counts()["deletes"] == 0
    assert plan.alive_at_end() == set(plan.touched())
    with pytest.raises(ValueError):
        change_mix.Mix(0, 1, 1)
    with pytest.raises(ValueError):
        change_mix.plan(0)


def test_per_second_bins_from_start():
    assert end_to_end.per_second([], 0) == []
    assert end_to_end.per_second([10.1, 10.2, 10.9, 11.5, 13.0, 9.0], start=10.0) == [3, 1, 0, 1]
    assert end_to_end.per_second([10.1, 10.6], start=10.0, width=0.5) == [2, 2]


def test_spread_keeps_the_total_and_spreads_evenly():
    rates = end_to_end.spread([(10.0, 12.0, 400.0), (12.5, 12.5, 50.0)], start=10.0)
    assert rates == [200.0, 200.0, 50.0]
    assert sum(end_to_end.spread([(10.25, 13.75, 700.0)], start=10.0)) == pytest.approx(700.0)
    assert end_to_end.spread([(10.25, 13.75, 700.0)], start=10.0)[1] == pytest.approx(200.0)
    assert end_to_end.spread([(8.0, 9.0, 5.0), (9.5, 10.5, 100.0)], start=10.0) == [50.0]  # before start: dropped


def _batch(batch_id: int, start: float, end: float, offset: int, writes_total: int) -> Batch:
    return Batch(batch_id, start, end, 1, {0: offset}, writes_total)


def test_applied_intervals_merge_missed_batches_and_applied_at():
    batches = [_batch(5, 1.0, 2.0, 100, 1_100), _batch(6, 2.0, 4.0, 300, 1_250), _batch(9, 6.0, 7.0, 500, 1_400)]
    assert end_to_end.applied_intervals(batches, baseline_writes=1_000) == [(1.0, 2.0, 100.0), (2.0, 4.0, 150.0), (4.0, 7.0, 150.0)]
    assert end_to_end.applied_at(batches, 0, 99) == 2.0
    assert end_to_end.applied_at(batches, 0, 100) == 4.0
    assert end_to_end.applied_at(batches, 0, 499) == 7.0
    assert end_to_end.applied_at(batches, 0, 500) is None
    assert end_to_end.applied_at(batches, 1, 0) is None


def test_change_times_pairs_records_with_planned_changes():
    sequence = {"a": [0, 1], "b": [1], "c": [0]}
    commits = [100.0, 101.0]
    records = [
        TopicRecord("a", 0, 10, 100.2, False),
        TopicRecord("c", 0, 11, 100.3, False),
        TopicRecord("a", 0, 12, 101.4, False),
        TopicRecord("b", 0, 13, 101.5, False),
        TopicRecord("b", 0, 14, 101.5, True),  # a tombstone pairs with nothing
    ]
    batches = [_batch(1, 100.0, 100.5, 11, 0), _batch(2, 101.0, 102.0, 15, 0)]
    times, mismatched = end_to_end.change_times(sequence, commits, records, batches)
    assert mismatched == 0
    assert times == [(100.0, 100.2, 100.5), (100.0, 100.3, 102.0), (101.0, 101.4, 102.0), (101.0, 101.5, 102.0)]
    _, mismatched = end_to_end.change_times({**sequence, "d": [1]}, commits, records, batches)
    assert mismatched == 1  # a planned change that never arrived


def test_rate():
    assert end_to_end.rate(1_000, 4.0) == 250
    assert end_to_end.rate(1_000, 0) is None
