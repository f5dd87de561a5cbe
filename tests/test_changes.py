"""The ordering rules of cdcpipe.pipeline.changes, without services."""

from __future__ import annotations

import pytest

from cdcpipe.pipeline.changes import STREAMING_BASE, MalformedChange, from_event, last_per_key


def envelope(op, lsn, user_id="u1", **after):
    image = {"id": user_id, **after}
    return {
        "op": op,
        "before": image if op in ("u", "d") else None,
        "after": None if op == "d" else image,
        "source": {"lsn": lsn},
    }


def test_streamed_changes_outrank_every_snapshot_read():
    snapshot = from_event({"id": "u1"}, envelope("r", 5_000), 0)
    older_stream = from_event({"id": "u1"}, envelope("u", 100), 1)  # began before the snapshot
    assert older_stream.timestamp > snapshot.timestamp
    assert snapshot.timestamp == 5_000 and older_stream.timestamp == STREAMING_BASE + 100


def test_last_change_per_key_wins_by_position_not_arrival():
    events = [
        from_event({"id": "a"}, envelope("c", 10, "a", v=1), 0),
        from_event({"id": "a"}, envelope("u", 30, "a", v=3), 2),
        from_event({"id": "a"}, envelope("u", 20, "a", v=2), 1),
        from_event({"id": "b"}, envelope("c", 15, "b"), 3),
        from_event({"id": "b"}, envelope("d", 16, "b"), 4),
    ]
    latest = {c.key: c for c in last_per_key(events)}
    assert latest["a"].row == {"id": "a", "v": 3}
    assert latest["b"].is_delete and latest["b"].row is None


def test_tombstones_are_skipped_and_garbage_is_named():
    assert from_event({"id": "a"}, None, 0) is None
    with pytest.raises(MalformedChange, match="not a Debezium envelope"):
        from_event(None, {"hello": "world"}, 0)
    with pytest.raises(MalformedChange, match="unsupported op 'x'"):
        from_event(None, {"op": "x", "source": {"lsn": 1}}, 0)
    with pytest.raises(MalformedChange, match="without its after image"):
        from_event(None, {"op": "c", "after": None, "source": {"lsn": 1}}, 0)


@pytest.mark.parametrize(
    "source, reason",
    [
        ("postgres", "source is a str, not a record"),
        (None, "source is a NoneType, not a record"),
        ([{"lsn": 1}], "source is a list, not a record"),
        ({}, "source.lsn missing"),
        ({"lsn": None}, "source.lsn missing"),
        ({"lsn": "123"}, "source.lsn is a str, not an integer"),
        ({"lsn": 1.5}, "source.lsn is a float, not an integer"),
        ({"lsn": True}, "source.lsn is a bool, not an integer"),
        ({"lsn": -1}, "source.lsn -1 out of range"),
        ({"lsn": -(2**63)}, "out of range"),  # Avro's smallest long
    ],
)
def test_a_weird_source_is_malformed_not_a_crash(source, reason):
    event = {**envelope("u", 1), "source": source}
    with pytest.raises(MalformedChange, match=reason):
        from_event({"id": "u1"}, event, 0)


@pytest.mark.parametrize("lsn", [2**52, 2**63 - 2**52, 2**63 - 1])  # the first past an epoch's positions .. Avro's largest long
@pytest.mark.parametrize("op", ["u", "r"])
def test_an_lsn_past_the_positions_is_the_system_s_limit_not_the_record_s_fault(lsn, op):
    """A real source can reach such an LSN: dead-lettering every change from then on would
    diverge with no stop. The batch fails (not a RecordError) and the error names the step."""
    from cdcpipe.errors import PositionOverflow, RecordError

    with pytest.raises(PositionOverflow, match="Step: move the source to a new PostgreSQL cluster") as raised:
        from_event({"id": "u1"}, {**envelope(op, 1), "source": {"lsn": lsn}}, 0)
    assert not isinstance(raised.value, RecordError)


def test_the_largest_lsn_and_epoch_still_fit_a_signed_64_bit_timestamp():
    from cdcpipe.pipeline.changes import EPOCH_BASE, MAX_EPOCH, MAX_LSN

    assert from_event({"id": "u1"}, envelope("u", MAX_LSN), 0).timestamp == EPOCH_BASE - 1
    assert from_event({"id": "u1"}, envelope("r", MAX_LSN), 0).timestamp == MAX_LSN
    assert from_event({"id": "u1"}, envelope("u", MAX_LSN), 0, epoch=MAX_EPOCH).timestamp == 2**63 - 1
    with pytest.raises(ValueError, match="epoch"):
        from_event({"id": "u1"}, envelope("u", 1), 0, epoch=MAX_EPOCH + 1)


def test_epoch_zero_is_the_old_rule_and_a_new_epoch_outranks_every_older_write():
    old_stream = from_event({"id": "u1"}, envelope("u", 10**12), 0)
    assert old_stream.timestamp == STREAMING_BASE + 10**12  # unchanged for existing data
    resync_read = from_event({"id": "u1"}, envelope("r", 5), 1, epoch=1)
    later_stream = from_event({"id": "u1"}, envelope("u", 3), 2, epoch=1)  # LSNs restarted low
    assert old_stream.timestamp < resync_read.timestamp < later_stream.timestamp


def test_a_record_s_epoch_depends_on_its_offset_only():
    from cdcpipe.pipeline.changes import Epoch, epoch_for

    epochs = [Epoch(1, {0: 100, 1: 50}), Epoch(2, {0: 200})]
    assert epoch_for(epochs, 0, 99) is None
    assert epoch_for(epochs, 0, 100).number == 1
    assert epoch_for(epochs, 0, 250).number == 2
    assert epoch_for(epochs, 1, 10).number == 2  # a partition the epoch did not list starts at 0


def test_the_epochs_a_batch_still_needs_judge_every_record_as_all_of_them_do():
    """A micro-batch's view keeps only the newest completed epoch and those after it
    (changes.still_needed): generated epoch histories (completed or not, starts in any order,
    partitions left out) and records at every offset around their starts, judged as the
    executors do (apply.py: skipped below superseded_below, else its epoch and the newest)."""
    import random
    from dataclasses import replace

    from cdcpipe.pipeline.changes import Epoch, epoch_for, still_needed, superseded_below

    def judge(epochs, partition, offset, users=None):
        if users is not None and not epochs:  # apply.py: a journal with no epochs of its own
            epochs = [replace(e, start_offsets={}) for e in users[-1:]]
        epoch = epoch_for(epochs, partition, offset)
        if (epoch.number if epoch else 0) < superseded_below(epochs):
            return "skipped"
        return epoch, (epochs[-1].number if epochs else 0)

    def history(rng):
        first = rng.choice((0, 1))  # a resync of an empty table records a completed epoch 0
        epochs = []
        for number in range(first, first + rng.randint(0, 12)):
            starts = {p: rng.randint(0, 1000) for p in (0, 1) if rng.random() < 0.8}
            epochs.append(Epoch(number, starts, completed=rng.random() < 0.5))
        return epochs

    rng = random.Random(27)
    pruned = 0
    for _ in range(2000):
        users, journal = history(rng), history(rng) if rng.random() < 0.5 else []
        kept_users, kept_journal = still_needed(users), still_needed(journal)
        pruned += len(users) - len(kept_users)
        offsets = {o + d for e in users + journal for o in e.start_offsets.values() for d in (-1, 0, 1)} | {0, 1001}
        for partition in (0, 1, 2):
            for offset in offsets:
                assert judge(kept_users, partition, offset) == judge(users, partition, offset), (users, partition, offset)
                assert judge(kept_journal, partition, offset, kept_users) == judge(journal, partition, offset, users), (
                    journal,
                    users,
                    partition,
                    offset,
                )
    assert pruned > 1000  # the generator made histories with something to leave out


def test_a_change_below_its_epoch_floor_stops_or_is_skipped_once_superseded():
    from cdcpipe.errors import SourceChanged
    from cdcpipe.pipeline.changes import Epoch, check_source

    epoch = Epoch(1, {0: 0}, floor_lsn=1000, system_identifier="7")
    low = from_event({"id": "u1"}, envelope("r", 10), 5, epoch=1)
    with pytest.raises(SourceChanged, match="cdcpipe resync"):
        check_source(low, epoch, newest=1)
    assert check_source(low, epoch, newest=2) is False
    assert check_source(from_event({"id": "u1"}, envelope("u", 1000), 6, epoch=1), epoch, newest=1) is True


def test_truncate_is_a_table_wide_streamed_change():
    change = from_event(None, {"op": "t", "source": {"lsn": 77}}, 3, epoch=2)
    assert change.is_truncate and change.row is None
    assert change.timestamp == 2 * 2**53 + STREAMING_BASE + 77


@pytest.mark.parametrize(
    "value",
    [
        {"op": 1, "source": {"lsn": 1}},
        {"op": None, "source": {"lsn": 1}},
        {"op": b"c", "source": {"lsn": 1}},
        {"op": ["c"], "source": {"lsn": 1}},
        {"op": {"c": 1}, "source": {"lsn": 1}},
        {"op": "c", "after": "a string", "source": {"lsn": 1}},
        {"op": "d", "before": [1, 2], "source": {"lsn": 1}},
        {"op": "c", "after": {"id": None}, "source": {"lsn": 1}},
        ["op", "source"],
        "a string",
        42,
    ],
)
def test_every_other_weird_but_decodable_value_is_malformed(value):
    """Whatever a decoded Avro value can be, from_event raises MalformedChange or nothing."""
    for key in (None, {"id": None}, "not a record", {"id": "k"}):
        try:
            from_event(key, value, 0)
        except MalformedChange:
            pass


def test_an_incremental_read_takes_its_position_from_the_sequence():
    event = {**envelope("r", None), "source": {"lsn": None, "snapshot": "incremental", "sequence": '["36165552","36165560"]'}}
    assert from_event(None, event, 0, epoch=1).timestamp == 2**53 + 36165560
    with pytest.raises(MalformedChange, match="source.lsn missing"):
        from_event(None, {**event, "source": {"lsn": None, "snapshot": "incremental", "sequence": None}}, 0)
