"""The schema-change journal's pure pieces (cdcpipe/pipeline/schema_changes.py), no services:
placing a journal event in the stream, the floors late records meet, and the stop."""

from __future__ import annotations

import pytest

from cdcpipe.errors import MalformedChange, SchemaChangeNeedsResync
from cdcpipe.pipeline.changes import EPOCH_BASE, STREAMING_BASE, Change
from cdcpipe.pipeline.schema_changes import Floors, SchemaChange, apply, from_journal_event


def event(kind: str, op: str = "c", lsn: int = 5000, **row) -> dict:
    after = {"id": 7, "table_name": "public.users", "kind": kind, "column_name": None, "new_name": None, "column_type": None}
    return {"op": op, "after": {**after, "backfill": False, **row}, "source": {"lsn": lsn}}


def test_a_journal_insert_is_placed_like_a_streamed_change_at_its_lsn():
    change = from_journal_event(event("drop_column", column_name="nick"), epoch=2)
    assert change.kind == "drop_column" and change.column == "nick" and change.journal_id == 7
    assert change.timestamp == 2 * EPOCH_BASE + STREAMING_BASE + 5000
    assert SchemaChange.from_json(change.to_json()) == change


def test_snapshot_reads_and_other_ops_of_the_journal_record_nothing():
    assert from_journal_event(event("truncate", op="r")) is None
    assert from_journal_event(event("truncate", op="u")) is None
    assert from_journal_event(None) is None


def test_a_resync_s_fence_records_no_schema_change():
    assert from_journal_event(event("fence", column_name="resync-4-0123456789ab")) is None


def test_an_unknown_kind_is_the_records_fault():
    with pytest.raises(MalformedChange, match="unknown kind 'vacuum'"):
        from_journal_event(event("vacuum"))


def test_floors_skip_what_a_truncate_removed_and_leave_out_dropped_columns():
    floors = Floors(truncated_at=100, dropped={"nick": 200})
    old = Change("k", "u", {"id": "k", "nick": "a"}, timestamp=100, offset=1)
    assert floors.admit(old) is None  # at or below the truncate: its row is gone
    middle = Change("k", "u", {"id": "k", "nick": "a", "city": "x"}, timestamp=150, offset=2)
    assert floors.admit(middle).row == {"id": "k", "city": "x"}  # written before the drop
    newer = Change("k", "u", {"id": "k", "nick": "b"}, timestamp=250, offset=3)
    assert floors.admit(newer) is newer  # after the column was added again


class RecordingSink:
    keyspace, table = "cdc", "users"

    def __init__(self):
        self.done: list[tuple] = []
        self.session = self

    def execute(self, query, params):  # cdc.schema_changes record
        self.done.append(("record", params[3]))

    def truncate(self, timestamp):
        self.done.append(("truncate", timestamp))
        return 3

    def clear_column(self, column, timestamp):
        self.done.append(("clear", column, timestamp))
        return 3


def change(kind: str, lsn: int, **fields) -> SchemaChange:
    return from_journal_event(event(kind, lsn=lsn, **fields))


def test_clears_run_oldest_first_recorded_before_they_run():
    sink = RecordingSink()
    done = apply(sink, [change("truncate", 9), change("drop_column", 5, column_name="nick"), change("add_column", 7, column_name="x")])
    assert [d[0] for d in sink.done] == ["record", "clear", "record", "truncate"]
    assert sink.done[1] == ("clear", "nick", STREAMING_BASE + 5) and len(done) == 2


def test_a_change_no_row_event_carries_stops_after_clearing_what_it_can():
    sink = RecordingSink()
    rename = change("rename_column", 5, column_name="nick", new_name="nickname", backfill=True)
    with pytest.raises(SchemaChangeNeedsResync, match="RENAME COLUMN nick TO nickname .*cdcpipe resync"):
        apply(sink, [rename])
    assert ("clear", "nick", STREAMING_BASE + 5) in sink.done  # the old name is cleared first
    with pytest.raises(SchemaChangeNeedsResync, match="resync --rebuild"):
        apply(sink, [change("alter_type", 6, column_name="n", column_type="text", backfill=True)])
