"""The sink's own serialization (cdcpipe/pipeline/cassandra_sink.py) against the real Cassandra: what
it writes reads back exactly, a value that cannot be stored is rejected with its column named
while the rest of the batch is written, and positions decide between old and new writes."""

from __future__ import annotations

import datetime as dt
import re
import uuid

import pytest

from cdcpipe.pipeline.cassandra_sink import CassandraSink
from cdcpipe.pipeline.changes import STREAMING_BASE, Change
from cdcpipe.runtime import migrations

TABLE = "users_sink_test"


@pytest.fixture
def sink(cassandra):
    migrations.create_users_copy(cassandra, TABLE)
    cassandra.execute(f"TRUNCATE cdc.{TABLE}", timeout=60)
    return CassandraSink(cassandra, "cdc", TABLE)


def _row(user_id: str, **values) -> dict:
    return {
        "id": user_id,
        "username": "zoë",
        "email": "a'b@example.com",
        "first_name": '😀\n\\"',
        "last_name": "",
        "dob": "1901-02-03T04:05:06.789123Z",
        "registered_at": "2100-01-01T00:00:00Z",
        "street_number": -(2**31),
        "latitude": -90.0,
        "longitude": 180.0,
        "city": None,
        "created_at": "1970-01-01T00:00:00.000000Z",
        "updated_at": "2038-01-19T03:14:08.001Z",
        **values,
    }


def _change(row: dict, position: int, op: str = "c") -> Change:
    return Change(key=row["id"], op=op, row=None if op == "d" else row, timestamp=STREAMING_BASE + position, offset=position)


def test_values_read_back_exactly(sink, cassandra):
    user_id = str(uuid.uuid4())
    assert sink.apply([_change(_row(user_id), 10)]) == []
    got = cassandra.execute(f"SELECT * FROM cdc.{TABLE} WHERE id = %s", [uuid.UUID(user_id)]).one()._asdict()
    assert got["username"] == "zoë" and got["first_name"] == '😀\n\\"' and got["last_name"] == ""
    assert got["email"] == "a'b@example.com" and got["city"] is None and got["title"] is None
    assert got["street_number"] == -(2**31) and got["latitude"] == -90.0 and got["longitude"] == 180.0
    assert got["dob"] == dt.datetime(1901, 2, 3, 4, 5, 6, 789000)  # milliseconds, rounded down
    assert got["registered_at"] == dt.datetime(2100, 1, 1)
    assert got["updated_at"] == dt.datetime(2038, 1, 19, 3, 14, 8, 1000)
    writetime = cassandra.execute(f"SELECT writetime(username) FROM cdc.{TABLE} WHERE id = %s", [uuid.UUID(user_id)]).one()[0]
    assert writetime == STREAMING_BASE + 10


def test_bad_values_are_rejected_by_column_and_the_rest_written(sink, cassandra):
    good, too_big, bad_time, bad_text = (str(uuid.uuid4()) for _ in range(4))
    rejected = sink.apply(
        [
            _change(_row(good), 1),
            _change(_row(too_big, street_number=2**31), 2),
            _change(_row(bad_time, dob="yesterday"), 3),
            _change(_row(bad_text, latitude="north"), 4),
            _change({"id": "not-a-uuid"}, 5),
        ]
    )
    reasons = {change.key: reason for change, reason in rejected}
    assert set(reasons) == {too_big, bad_time, bad_text, "not-a-uuid"}
    assert reasons[too_big].startswith("column street_number: 2147483648 does not fit")
    assert reasons[bad_time] == "column dob: not an ISO 8601 timestamp: 'yesterday'"
    assert reasons[bad_text].startswith("column latitude:")
    assert reasons["not-a-uuid"].startswith("column id:")
    ids = {row.id for row in cassandra.execute(f"SELECT id FROM cdc.{TABLE}")}
    assert ids == {uuid.UUID(good)}


def test_positions_decide_and_a_row_image_replaces_the_row(sink, cassandra):
    user_id = str(uuid.uuid4())
    key = [uuid.UUID(user_id)]

    def row():
        return cassandra.execute(f"SELECT username, email, city FROM cdc.{TABLE} WHERE id = %s", key).one()

    sink.apply([_change(_row(user_id, username="newest", city="Lyon"), 200)])
    sink.apply([_change(_row(user_id, username="older"), 190)])  # late: must not win
    assert tuple(row()) == ("newest", "a'b@example.com", "Lyon")
    # A newer image replaces the row: its nulls, and a column its schema version lacks (the
    # column did not exist at the source then), keep no older value, though no null is written.
    sink.apply([_change({"id": user_id, "username": "partial", "city": None}, 210)])
    assert tuple(row()) == ("partial", None, None)
    sink.apply([_change(_row(user_id, username="late", city="Oslo"), 205)])  # late again: brings nothing back
    assert tuple(row()) == ("partial", None, None)
    sink.apply([_change({"id": user_id}, 220, op="d")])
    sink.apply([_change(_row(user_id), 215)])  # an older change replayed after the delete
    assert cassandra.execute(f"SELECT id FROM cdc.{TABLE} WHERE id = %s", key).one() is None


def test_a_row_image_s_nulls_write_no_tombstone_cells(sink, cassandra):
    """Issue 27: each null was written as a null, a cell tombstone that every later read of
    the row walked over (the soak wrote about twenty per change). Cassandra's own trace of a
    read counts them; a row rewritten many times with mostly nulls must show none."""
    user_id = str(uuid.uuid4())
    for position in range(300, 330):
        sink.apply([_change({"id": user_id, "username": f"u{position}", "city": None, "email": None}, position)])
    result = cassandra.execute(f"SELECT * FROM cdc.{TABLE} WHERE id = %s", [uuid.UUID(user_id)], trace=True)
    assert result.one().username == "u329"
    events = [e.description for e in result.get_query_trace(max_wait_sec=10).events]
    counts = [re.search(r"Read (\d+) live rows and (\d+) tombstone cells", d) for d in events]
    counts = [(int(m[1]), int(m[2])) for m in counts if m]
    assert counts and all(tombstones == 0 for _, tombstones in counts), events


# --- whose fault is an InvalidRequest: the row's or the table's (cdcpipe/pipeline/cassandra_sink.py) ---


@pytest.fixture
def own_table(scratch_users_table):
    return scratch_users_table


def test_a_dropped_column_is_the_tables_fault_and_comes_back(own_table, cassandra):
    from cdcpipe.pipeline.cassandra_sink import TableUnusable

    sink = CassandraSink(cassandra, "cdc", own_table)
    rows = [_row(str(uuid.uuid4()), city=f"city {i}") for i in range(3)]
    cassandra.execute(f"ALTER TABLE cdc.{own_table} DROP city", timeout=60)  # the sink's statements go stale
    with pytest.raises(TableUnusable, match=f"columns not in cdc.{own_table}: city"):
        sink.apply([_change(row, 30 + i) for i, row in enumerate(rows)])
    # The retry (the job's next attempt) adds the column back first, then every row is written.
    sink.ensure_columns({"city": "text"})
    assert sink.apply([_change(row, 30 + i) for i, row in enumerate(rows)]) == []
    got = {str(r.id): r.city for r in cassandra.execute(f"SELECT id, city FROM cdc.{own_table}")}
    assert got == {row["id"]: row["city"] for row in rows}


def test_missing_columns_are_added_by_one_alter(own_table, cassandra, monkeypatch):
    """A table rebuilt empty meets every source column at once: one ALTER adds them all (one
    schema agreement, not one per column), and a second call adds nothing."""
    sink = CassandraSink(cassandra, "cdc", own_table)
    statements: list[str] = []
    execute = sink.session.execute
    monkeypatch.setattr(sink.session, "execute", lambda query, *a, **k: statements.append(str(query)) or execute(query, *a, **k))
    types = {"extra_a": "text", "extra_b": "bigint", "extra_c": "timestamp", "city": "text"}
    assert sorted(sink.ensure_columns(types)) == ["extra_a", "extra_b", "extra_c"]
    assert [q for q in statements if q.startswith("ALTER")] == [
        f'ALTER TABLE cdc.{own_table} ADD IF NOT EXISTS ("extra_a" text, "extra_b" bigint, "extra_c" timestamp)'
    ]
    assert {n: sink.columns[n] for n in ("extra_a", "extra_b", "extra_c")} == {
        "extra_a": "text",
        "extra_b": "bigint",
        "extra_c": "timestamp",
    }
    assert sink.ensure_columns(types) == []


def test_a_dropped_table_is_the_systems_fault(own_table, cassandra):
    from cdcpipe.pipeline.cassandra_sink import TableUnusable

    sink = CassandraSink(cassandra, "cdc", own_table)
    cassandra.execute(f"DROP TABLE cdc.{own_table}", timeout=60)
    with pytest.raises(TableUnusable, match=f"cdc.{own_table} cannot be written"):
        sink.apply([_change(_row(str(uuid.uuid4())), i) for i in range(5)])


def test_clears_touch_only_rows_holding_what_they_delete_and_spare_later_writes(own_table, cassandra):
    """DROP COLUMN deletes the column's cell only in rows that hold one (a column dropped soon
    after it was added is empty almost everywhere: a delete per row of the table cost minutes
    on the cluster), at the drop's timestamp, so a value written after it survives; TRUNCATE
    deletes every row at its timestamp, and a row written after it survives too."""
    sink = CassandraSink(cassandra, "cdc", own_table)
    before = [_row(str(uuid.uuid4()), city=f"city {i}") for i in range(3)]
    empty = [_row(str(uuid.uuid4()), city=None) for _ in range(4)]
    later = _row(str(uuid.uuid4()), city="written after the drop")
    changes = [_change(row, 10 + i) for i, row in enumerate(before + empty)] + [_change(later, 100)]
    assert sink.apply(changes) == []

    assert sink.clear_column("city", STREAMING_BASE + 50) == 4  # the three before it and the later one
    got = {str(r.id): r.city for r in cassandra.execute(f"SELECT id, city FROM cdc.{own_table}")}
    assert got == {**{row["id"]: None for row in before + empty}, later["id"]: "written after the drop"}
    assert sink.clear_column("city", STREAMING_BASE + 50) == 1  # replayed: only the later value is left, and kept
    assert sink.clear_column("no_such_column", STREAMING_BASE + 50) == 0

    assert sink.truncate(STREAMING_BASE + 60) == 8
    assert [str(r.id) for r in cassandra.execute(f"SELECT id FROM cdc.{own_table}")] == [later["id"]]


def test_the_clears_read_at_a_level_that_sees_every_acknowledged_write():
    """R + W > RF for every write level the job may be given and every replication factor:
    a clear that read fewer replicas could miss a row, which would then outlive its TRUNCATE."""
    from cassandra import ConsistencyLevel as CL

    from cdcpipe.pipeline.cassandra_sink import read_level_after

    def replicas(level: int, rf: int) -> int:
        quorum = rf // 2 + 1
        levels = {CL.ONE: 1, CL.LOCAL_ONE: 1, CL.TWO: 2, CL.THREE: 3, CL.QUORUM: quorum, CL.LOCAL_QUORUM: quorum, CL.EACH_QUORUM: quorum}
        return {**levels, CL.ALL: rf}[level]

    for write in (CL.ONE, CL.LOCAL_ONE, CL.TWO, CL.THREE, CL.QUORUM, CL.LOCAL_QUORUM, CL.EACH_QUORUM, CL.ALL):
        for rf in range(1, 6):
            if replicas(write, rf) > rf:
                continue  # TWO or THREE on too few replicas: no write succeeds
            read = read_level_after(write)
            assert replicas(read, rf) + replicas(write, rf) > rf, (CL.value_to_name[write], rf, CL.value_to_name[read])
    assert read_level_after(CL.LOCAL_QUORUM) == CL.LOCAL_QUORUM  # the cluster's default: no node more than the writes need


@pytest.fixture
def text_key_sink(cassandra):
    name = f"text_key_{uuid.uuid4().hex[:8]}"
    cassandra.execute(f"CREATE TABLE cdc.{name} (id text PRIMARY KEY, v text)", timeout=60)
    yield CassandraSink(cassandra, "cdc", name)
    cassandra.execute(f"DROP TABLE IF EXISTS cdc.{name}", timeout=60)


def test_value_level_rejections_are_still_the_rows(text_key_sink, cassandra):
    """The value-level messages the sink blames on a row (ROW_REJECTIONS), from the real
    Cassandra; the other rows of the batch are written."""
    long_key, empty_key = "k" * 70_000, ""
    huge = {"id": "huge", "v": "x" * (17 * 1024 * 1024)}
    rejected = text_key_sink.apply(
        [
            _change({"id": "good", "v": "ok"}, 1),
            _change({"id": long_key, "v": "too long a key"}, 2),
            _change({"id": empty_key, "v": "no key"}, 3),
            _change(huge, 4),
            _change({"id": "good2", "v": "ok"}, 5),
        ]
    )
    reasons = {change.key: reason for change, reason in rejected}
    assert set(reasons) == {long_key, empty_key, "huge"}
    assert "Key length of 70000 is longer than maximum of 65535" in reasons[long_key]
    assert "Key may not be empty" in reasons[empty_key]
    assert "exceeds allowed maximum of 16777216 bytes" in reasons["huge"]
    table = text_key_sink.table
    assert {r.id for r in cassandra.execute(f"SELECT id FROM cdc.{table}")} == {"good", "good2"}


def test_a_row_image_without_its_key_is_written_under_the_changes_key(text_key_sink, cassandra):
    """The key may come from the Kafka key alone; an unset key column would fail in the driver."""
    change = Change(key="from-kafka-key", op="c", row={"v": "no id in the image"}, timestamp=STREAMING_BASE + 1, offset=1)
    assert text_key_sink.apply([change]) == []
    assert cassandra.execute(f"SELECT v FROM cdc.{text_key_sink.table} WHERE id = 'from-kafka-key'").one().v == "no id in the image"


def test_table_level_messages_are_never_taken_for_a_rows(own_table, cassandra):
    from cassandra import InvalidRequest

    from cdcpipe.pipeline.cassandra_sink import is_row_rejection

    statements = [
        f"INSERT INTO cdc.{own_table} (id, no_such_column) VALUES (uuid(), 1)",  # Undefined column name
        f"INSERT INTO cdc.no_such_table_{own_table} (id) VALUES (uuid())",  # table ... does not exist
        "INSERT INTO no_such_keyspace.t (id) VALUES (uuid())",  # keyspace ... does not exist
    ]
    for cql in statements:
        with pytest.raises(InvalidRequest) as caught:
            cassandra.execute(cql)
        assert not is_row_rejection(caught.value), str(caught.value)


# --- the type mapping alone (no Cassandra) ------------------------------------------------


def test_types_beyond_the_contract_map_without_loss():
    from decimal import Decimal

    from cdcpipe.pipeline.cassandra_sink import cql_type_of, to_cql

    variable = {"type": "record", "name": "VariableScaleDecimal", "connect.name": "io.debezium.data.VariableScaleDecimal"}
    assert cql_type_of(["null", variable]) == "decimal"
    assert to_cql("decimal", {"scale": 4, "value": (123456789).to_bytes(4, "big", signed=True)}) == Decimal("12345.6789")
    assert cql_type_of({"type": "array", "items": "int"}) == "list<int>"
    assert to_cql("list<int>", [1, 2]) == [1, 2]
    assert cql_type_of({"type": "string", "connect.name": "io.debezium.data.Json"}) == "text"
    assert cql_type_of("boolean") == "boolean"


def test_booleans_are_strict():
    from cdcpipe.pipeline.cassandra_sink import BadValue, to_cql

    assert to_cql("boolean", "false") is False and to_cql("boolean", "t") is True and to_cql("boolean", False) is False
    with pytest.raises(BadValue):
        to_cql("boolean", "maybe")


def test_shapes_without_a_lossless_type_are_refused_by_column_only_when_written():
    from cdcpipe.errors import UnsupportedType
    from cdcpipe.pipeline.cassandra_sink import after_field_types, cql_type_of

    point = {"type": "record", "name": "Point", "connect.name": "io.debezium.data.geometry.Point", "fields": []}
    with pytest.raises(UnsupportedType, match="record"):
        cql_type_of(point)
    value = {"type": "record", "name": "Value", "fields": [{"name": "id", "type": "string"}, {"name": "where", "type": ["null", point]}]}
    envelope = {"type": "record", "name": "Envelope", "fields": [{"name": "after", "type": ["null", value]}]}
    types = after_field_types(envelope)
    assert types["id"] == "text" and types["where"].startswith("!")


def test_type_conflicts_except_widenings_and_the_quoting_of_names():
    from cdcpipe.pipeline.cassandra_sink import quote, type_conflicts

    table = {"id": "uuid", "n": "int", "label": "text"}
    assert type_conflicts(table, {"id": "uuid", "n": "bigint", "label": "text"}) == {}
    assert type_conflicts(table, {"n": "text"}) == {"n": ("int", "text")}
    assert quote("NickName") == '"NickName"' and quote('a"b') == '"a""b"'
