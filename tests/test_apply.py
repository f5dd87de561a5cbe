"""The executors' partition logic (cdcpipe.pipeline.apply) without Spark or services: real
Confluent-framed Avro bytes, a schema cache fed locally, a sink that records what it is given.

What must hold: the newest change per key is written, tombstones are skipped, records that
cannot be decoded are dead-lettered with their raw bytes, a rejected newest change falls back
to the key's newest valid one, and a failure of the sink itself (the system's fault)
propagates instead of being dead-lettered.
"""

from __future__ import annotations

import io
import struct
from typing import Any

import fastavro
import pytest

from cdcpipe.pipeline import apply
from cdcpipe.pipeline.changes import STREAMING_BASE

UUID = {"type": "string", "connect.name": "io.debezium.data.Uuid"}  # as Debezium writes a uuid column
ROW = {"type": "record", "name": "Value", "fields": [{"name": "id", "type": UUID}, {"name": "city", "type": ["null", "string"]}]}
ENVELOPE = {
    "type": "record",
    "name": "Envelope",
    "namespace": "unit",
    "fields": [
        {"name": "before", "type": ["null", ROW]},
        {"name": "after", "type": ["null", "Value"]},
        {"name": "source", "type": {"type": "record", "name": "Source", "fields": [{"name": "lsn", "type": ["null", "long"]}]}},
        {"name": "op", "type": "string"},
    ],
}
SCHEMA_ID = 7


class LocalSchemas:
    """The two methods of SchemaCache that apply_partition uses, from a schema held here."""

    def __init__(self):
        self.parsed = fastavro.parse_schema(ENVELOPE)

    def reader(self, schema_id: int):
        if schema_id != SCHEMA_ID:
            from cdcpipe.pipeline.avro_reader import DecodeError

            raise DecodeError(f"unknown schema id {schema_id}")

        def read(buf: bytes, pos: int):
            body = io.BytesIO(buf)
            body.seek(pos)
            return fastavro.schemaless_reader(body, self.parsed, None), body.tell()

        return read

    def raw_schema(self, schema_id: int) -> dict[str, Any]:
        return ENVELOPE


class RecordingSink:
    keyspace, table = "cdc", "users"

    def __init__(self, reject: set[str] = frozenset(), fail: Exception | None = None):
        self.columns = {"id": "uuid", "city": "text"}
        self.reject, self.fail = reject, fail
        self.applied: list = []
        self.dead: list = []
        self.truncated: list[int] = []
        self.widened: set[str] = set()

    def reload(self) -> None:
        self.reloads = getattr(self, "reloads", 0) + 1
        self.columns = dict(getattr(self, "table_now", self.columns))

    def truncate(self, timestamp: int) -> int:
        self.truncated.append(timestamp)
        return 0

    def ensure_columns(self, types):
        return []

    def apply(self, changes):
        if self.fail:
            raise self.fail
        rejected = [(c, "bad value") for c in changes if c.row and c.row.get("city") in self.reject]
        self.applied += [c for c in changes if (c, "bad value") not in rejected]
        return rejected

    def dead_letter(self, letters):
        self.dead += list(letters)
        return len(self.dead)


def framed(op: str, user: str, city: str | None, lsn: int, before: bool = True) -> bytes:
    """A Debezium event of the users table with REPLICA IDENTITY FULL (an update carries its
    before image; ``before=False``: as without FULL)."""
    image = {"id": user, "city": city}
    out = io.BytesIO()
    out.write(struct.pack(">bI", 0, SCHEMA_ID))
    record = {
        "before": image if op == "d" or (op == "u" and before) else None,
        "after": None if op in ("d", "t") else image,
        "source": {"lsn": lsn},
        "op": op,
    }
    fastavro.schemaless_writer(out, fastavro.parse_schema(ENVELOPE), record)
    return out.getvalue()


def rows(*records: bytes | None):
    return [(b"k", value, "cdc.public.users", 0, offset) for offset, value in enumerate(records)]


def test_newest_change_per_key_is_written_and_tombstones_skipped():
    sink = RecordingSink()
    batch = rows(framed("c", "a", "one", 10), framed("u", "a", "two", 20), framed("c", "b", "x", 15), framed("d", "b", None, 30), None)
    assert apply.apply_partition(batch, {}, sink, LocalSchemas()) == (5, 2, 0)
    by_key = {c.key: c for c in sink.applied}
    assert by_key["a"].row == {"id": "a", "city": "two"} and by_key["a"].timestamp == STREAMING_BASE + 20
    assert by_key["b"].is_delete and by_key["b"].timestamp == STREAMING_BASE + 30


def test_undecodable_records_are_dead_lettered_with_their_bytes():
    sink = RecordingSink()
    bad_magic, unknown_id = b"\x01\x00\x00\x00\x07xx", b"\x00\x00\x00\x00\x63\x02"
    good = framed("c", "a", "one", 10)
    assert apply.apply_partition(rows(bad_magic, unknown_id, good, good[:-3]), {}, sink, LocalSchemas()) == (4, 1, 3)
    assert [d.value for d in sink.dead] == [bad_magic, unknown_id, good[:-3]]
    assert "bad magic byte" in sink.dead[0].error and "unknown schema id 99" in sink.dead[1].error


def test_a_rejected_newest_change_falls_back_to_the_keys_newest_valid_one():
    sink = RecordingSink(reject={"poison"})
    batch = rows(framed("c", "a", "first", 10), framed("u", "a", "second", 20), framed("u", "a", "poison", 30))
    assert apply.apply_partition(batch, {}, sink, LocalSchemas()) == (3, 1, 1)
    assert [c.row["city"] for c in sink.applied] == ["second"]
    assert sink.dead[0].offset == 2 and "BadValue" in sink.dead[0].error


def test_a_failing_sink_fails_the_batch_instead_of_dead_lettering():
    sink = RecordingSink(fail=ConnectionError("Cassandra went away"))
    with pytest.raises(ConnectionError):
        apply.apply_partition(rows(framed("c", "a", "one", 10)), {}, sink, LocalSchemas())
    assert sink.dead == []


def test_write_consistency_by_name():
    from cassandra import ConsistencyLevel

    assert apply.consistency("local_quorum") == ConsistencyLevel.LOCAL_QUORUM
    with pytest.raises(ValueError, match="write consistency 'MOST': not one of"):
        apply.consistency("MOST")
    with pytest.raises(ValueError, match="write consistency 'ANY': a write kept only as a hint"):
        apply.consistency("any")


def test_a_record_takes_its_epoch_from_its_offset():
    from cdcpipe.pipeline.changes import EPOCH_BASE, Epoch

    sink = RecordingSink()
    batch = rows(framed("c", "a", "old", 10), framed("u", "b", "new", 5))  # offsets 0 and 1
    assert apply.apply_partition(batch, {}, sink, LocalSchemas(), epochs=lambda topic: [Epoch(1, {0: 1})]) == (2, 2, 0)
    by_key = {c.key: c for c in sink.applied}
    assert by_key["a"].timestamp == STREAMING_BASE + 10  # before the epoch: the old rule
    assert by_key["b"].timestamp == EPOCH_BASE + STREAMING_BASE + 5  # LSN lower, yet newer


def test_a_record_below_its_epoch_floor_fails_the_batch_naming_resync():
    from cdcpipe.errors import SourceChanged
    from cdcpipe.pipeline.changes import Epoch

    sink = RecordingSink()
    floor = [Epoch(1, {0: 0}, floor_lsn=1000, system_identifier="7")]
    with pytest.raises(SourceChanged, match="cdcpipe resync"):
        apply.apply_partition(rows(framed("u", "a", "x", 10)), {}, sink, LocalSchemas(), epochs=lambda topic: floor)
    assert sink.applied == [] and sink.dead == []
    newer = [*floor, Epoch(2, {0: 1})]  # a resync since: the old epoch's record is skipped
    assert apply.apply_partition(rows(framed("u", "a", "x", 10)), {}, sink, LocalSchemas(), epochs=lambda topic: newer) == (1, 0, 0)


def test_records_of_an_epoch_a_completed_resync_superseded_are_skipped():
    from cdcpipe.pipeline.changes import EPOCH_BASE, Epoch

    batch = rows(framed("c", "gone", "old", 10), framed("t", "", None, 11), framed("r", "kept", "reread", 12))  # offsets 0-2
    batch[1] = (None, *batch[1][1:])  # Debezium's truncate event has no key
    running = [Epoch(1, {0: 2})]  # resync started at offset 2, not completed: everything applies
    sink = RecordingSink()
    assert apply.apply_partition(batch, {}, sink, LocalSchemas(), epochs=lambda topic: running) == (3, 3, 0)
    completed = [Epoch(1, {0: 2}, completed=True)]  # e.g. a replay after `resync --rebuild`
    sink = RecordingSink()
    assert apply.apply_partition(batch, {}, sink, LocalSchemas(), epochs=lambda topic: completed) == (3, 1, 0)
    assert [(c.key, c.timestamp) for c in sink.applied] == [("kept", EPOCH_BASE + 12)]
    assert sink.truncated == []


def test_truncate_is_applied_after_the_batch_s_upserts_at_its_own_timestamp():
    sink = RecordingSink()
    batch = rows(framed("c", "a", "one", 10), framed("t", "", None, 20), framed("c", "b", "two", 30))
    batch[1] = (None, *batch[1][1:])  # Debezium's truncate event has no key
    assert apply.apply_partition(batch, {}, sink, LocalSchemas()) == (3, 3, 0)
    assert sink.truncated == [STREAMING_BASE + 20]
    assert {c.key for c in sink.applied} == {"a", "b"}  # in Cassandra the truncate's timestamp then shadows a, not b


def test_a_type_change_stops_the_batch_once_instead_of_dead_lettering_rows():
    from cdcpipe.errors import TableUnusable

    sink = RecordingSink()
    sink.columns = {"id": "uuid", "city": "int"}  # the column was made while city was an integer
    with pytest.raises(TableUnusable, match=r"city \(int in cdc.users, now text\).*'cdcpipe resync --rebuild'"):
        apply.apply_partition(rows(framed("c", "a", "one", 10), framed("c", "b", "two", 11)), {}, sink, LocalSchemas())
    assert sink.dead == [] and sink.applied == [] and sink.reloads == 1  # read again before refusing


def test_a_widened_column_is_remembered_not_refused():
    sink = RecordingSink()
    sink.columns = {"id": "uuid", "city": "text"}
    apply.check_types(sink, {"id": "uuid", "city": "text", "n": "bigint"})
    assert sink.widened == set()
    sink.columns["n"] = "int"
    apply.check_types(sink, {"id": "uuid", "city": "text", "n": "bigint"})
    assert sink.widened == {"n"}


def test_a_column_another_worker_added_is_read_before_judging_a_new_writer_schema():
    sink = RecordingSink()
    sink.table_now = {"id": "uuid", "city": "text", "n": "int"}  # added meanwhile, as int
    apply.check_types(sink, {"id": "uuid", "city": "text", "n": "bigint"})
    assert sink.reloads == 1 and sink.widened == {"n"}  # so an out-of-range n stops the job


def test_keep_warm_makes_the_workers_session_and_reports_ready(monkeypatch):
    import pyarrow as pa

    made = []
    monkeypatch.setattr(apply, "executor_sink", lambda conf: made.append(conf) or (None, None))
    out = list(apply.keep_warm_arrow(iter([pa.RecordBatch.from_pydict({"id": [0]})]), {"table": "users"}))
    assert made == [{"table": "users"}]
    assert [b.to_pydict() for b in out] == [{"ready": [1]}]


def test_a_batch_s_epochs_travel_from_the_driver_to_its_tasks_unchanged():
    """The driver's one read of cdc.sync_state per micro-batch (sync_state.snapshot) reaches
    every task as text; what the tasks read back is what the table held from the newest
    completed epoch on (changes.still_needed), partitions as ints."""
    from types import SimpleNamespace

    from cdcpipe.pipeline.changes import Epoch
    from cdcpipe.pipeline.sync_state import from_snapshot, snapshot

    rows = {
        "cdc.public.users": [
            SimpleNamespace(epoch=1, start_offsets={0: 10}, floor_lsn=100, system_identifier="7420", state="completed"),
            SimpleNamespace(epoch=2, start_offsets={0: 900, 1: 40}, floor_lsn=123456, system_identifier="7420", state="completed"),
            SimpleNamespace(epoch=3, start_offsets={0: 1200}, floor_lsn=None, system_identifier=None, state="started"),
        ],
        "cdc.schema_changes": [],
    }

    class Session:
        def execute(self, query, params):
            assert "ORDER BY epoch DESC" in query.query_string
            return sorted(rows[params[0]], key=lambda row: -row.epoch)

    view = from_snapshot(snapshot(Session(), ["cdc.public.users", "cdc.schema_changes"]))
    assert view == {
        "cdc.public.users": [Epoch(2, {0: 900, 1: 40}, 123456, "7420", True), Epoch(3, {0: 1200}, None, None, False)],
        "cdc.schema_changes": [],
    }
    # Outside a Spark task there is no batch view, and apply_partition reads the table itself.
    assert apply.batch_epochs() is None


def test_a_batch_s_floors_travel_from_the_driver_to_its_tasks_unchanged():
    """The driver's one read of cdc.schema_changes per micro-batch (load_floors) reaches every
    task as text, and what the tasks read back rules out the same late records."""
    from types import SimpleNamespace

    from cdcpipe.pipeline.changes import Change
    from cdcpipe.pipeline.schema_changes import floors_from_snapshot, floors_snapshot, load_floors

    class Session:
        def execute(self, query, params):
            assert params == ("users",)
            return [
                SimpleNamespace(write_timestamp=500, kind="truncate", column_name=None),
                SimpleNamespace(write_timestamp=700, kind="drop_column", column_name="nick"),
                SimpleNamespace(write_timestamp=300, kind="truncate", column_name=None),
            ]

    floors = floors_from_snapshot(floors_snapshot(load_floors(Session(), "cdc", "users")))
    assert (floors.truncated_at, floors.dropped) == (500, {"nick": 700})
    assert floors.admit(Change("k", "u", {"nick": "x"}, 400, 1, 1)) is None  # older than the truncate
    assert floors.admit(Change("k", "u", {"nick": "x", "city": "y"}, 600, 1, 1)).row == {"city": "y"}
    assert apply.batch_floors() is None  # outside a Spark task: no batch view


def test_a_placeholder_for_an_unchanged_toasted_value_stops_the_batch_until_a_resync_started_after_it():
    """Without REPLICA IDENTITY FULL an update has no before image, and Debezium puts its
    placeholder in the after image for an unchanged TOASTed value it does not have: nothing of
    the batch is written, and the reason names the column and the step. An update without a
    before image but with every value is written. Once a resync started after the record, its
    snapshot re-reads the row: passed over."""
    from cdcpipe.errors import ImageIncomplete
    from cdcpipe.pipeline.changes import UNAVAILABLE, Epoch

    sink = RecordingSink()
    full = framed("u", "c", "Bergen", 15, before=False)  # no before image, every value: written
    batch = rows(framed("c", "b", "kept", 10), full, framed("u", "a", UNAVAILABLE, 20, before=False))
    with pytest.raises(ImageIncomplete, match=r"public\.users at LSN 20 .* value of city .*REPLICA IDENTITY FULL .*'cdcpipe resync'"):
        apply.apply_partition(batch, {}, sink, LocalSchemas())
    assert sink.applied == []
    assert apply.apply_partition(rows(full), {}, sink, LocalSchemas()) == (1, 1, 0)
    # An insert is written as it came: under FULL none holds a placeholder, and one whose
    # text is the placeholder's is a value like any other.
    assert apply.apply_partition(rows(framed("c", "d", UNAVAILABLE, 25)), {}, sink, LocalSchemas()) == (1, 1, 0)
    newer = [Epoch(0, {0: 0}), Epoch(1, {0: 99})]  # a resync started after the records
    assert apply.apply_partition(batch, {}, sink, LocalSchemas(), epochs=lambda topic: newer) == (3, 2, 0)
    assert sorted(c.key for c in sink.applied) == ["b", "c", "c", "d"]


def test_the_placeholder_is_found_in_each_of_its_forms():
    """Debezium's UnchangedToastedPlaceholder: text and bytea as they are, arrays as a list of
    one, integer arrays as the placeholder's bytes, uuid arrays as Java's nameUUIDFromBytes."""
    from cdcpipe.pipeline.changes import UNAVAILABLE, unavailable_columns

    as_numbers = list(UNAVAILABLE.encode())
    row = {
        "a": UNAVAILABLE,
        "b": UNAVAILABLE.encode(),
        "c": [UNAVAILABLE],
        "h": as_numbers,
        "i": ["b68a35a7-17ad-35b3-af2a-ae46edb4545a"],  # Java: UUID.nameUUIDFromBytes(placeholder bytes)
        "d": "x",
        "e": None,
        "f": [UNAVAILABLE, "y"],
        "g": 3,
        "j": as_numbers[:-1],
    }
    assert unavailable_columns(row) == ["a", "b", "c", "h", "i"]
    assert unavailable_columns(None) == []
