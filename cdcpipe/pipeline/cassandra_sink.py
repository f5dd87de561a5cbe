"""Applying changes to the Cassandra read model: prepared statements, concurrent writes,
write timestamps from the change position (see :mod:`cdcpipe.pipeline.changes`), dead letters,
and new columns added when the source table grows one.

Whose fault is an InvalidRequest
--------------------------------
Cassandra answers InvalidRequest both for a value it will not store and for a statement the
table no longer matches (a dropped column or table, a missing keyspace). Dead-lettering the
second kind would dead-letter every row of the stream, so a row is blamed only after
(1) its batch failed and it failed again on its own, (2) the table's metadata was reloaded
and the statements prepared again (:class:`TableUnusable` if the table, keyspace or a column
the row carries is gone), (3) it failed a third time with the fresh statement, and (4) the
message is one of the value-level rejections in :data:`ROW_REJECTIONS`. Anything else
raises :class:`TableUnusable`: the batch fails and is retried, nothing is skipped, and
``cdcpipe spark status`` shows the message. An unknown row-level rejection therefore stops
the stream visibly rather than losing rows quietly. Messages seen from Cassandra 5.0:

* row's fault: ``Key length of 70000 is longer than maximum of 65535``, ``Key may not be
  empty``, ``CQL Message of size 17825879 bytes exceeds allowed maximum of 16777216 bytes``,
  ``Invalid null value in condition for column id``;
* the table's: ``Undefined column name b in table cdc.t`` (a stale prepared statement after
  ``DROP`` of a column), ``table t does not exist``, ``keyspace k does not exist``.

The recheck only runs when a write was rejected; the hot path is unchanged.

A row image is written as a replacement, with no null cells
-----------------------------------------------------------
Every insert, update and snapshot read carries the whole row (REPLICA IDENTITY FULL), and its
write must leave exactly that row: no cell older than the change may survive. Writing each
null as a null did that, but a null is a cell tombstone: the soak's rows are mostly null, so
each change wrote about twenty tombstones, which every later read and compaction of the table
walks over (issue 27; a verify scan read 56 tombstone cells per live row). A change at
timestamp T is now two statements for its one partition in one UNLOGGED batch, which
Cassandra applies as one mutation, atomically and in isolation for that partition:

* ``DELETE ... USING TIMESTAMP T-1``: one partition tombstone, which removes every cell
  older than T, as the nulls did (a cell is removed by a tombstone of its timestamp or
  higher, and two changes of one key never share a timestamp: they are 2^52 + LSN, or below
  that for snapshot reads, :mod:`cdcpipe.pipeline.changes`);
* ``INSERT ... USING TIMESTAMP T`` of the non-null values, the nulls left unset.

Cells newer than T survive both, as before, so a late or replayed change still loses to a
newer one. A column the row image lacks (added at the source after the change, or removed by
a DROP COLUMN floor) now loses its cells older than T too: the column did not exist at the
source at T, so any older cell is an earlier life of it that a DROP already cleared.
Cassandra itself overwrites a collection the same way (a tombstone at T-1).
"""

from __future__ import annotations

import datetime as dt
import logging
import re
import struct
import threading
import uuid
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from cassandra import InvalidRequest
from cassandra.concurrent import execute_concurrent
from cassandra.query import UNSET_VALUE, BatchStatement, BatchType, BoundStatement

from ..errors import BadValue, TableUnusable, UnsupportedType
from .changes import Change

log = logging.getLogger(__name__)

EPOCH = dt.datetime(1970, 1, 1, tzinfo=dt.UTC)
ONE_MS = dt.timedelta(milliseconds=1)
_int32 = struct.Struct(">i").pack
_int64 = struct.Struct(">q").pack
_double = struct.Struct(">d").pack
#: Requests in flight per executor process.
CONCURRENCY = 16
#: Rows per UNLOGGED batch, and a size cap under Cassandra's default batch_size_fail_threshold
#: (50 KiB). Each row is its own partition, so on one node a batch saves round trips and
#: per-request overhead (measured: 20k rows in 1.1 s batched by 40 vs 9.7 s one by one).
BATCH_ROWS = 40
BATCH_BYTES = 32 * 1024


def read_level_after(write_level: int | None) -> int:
    """A read consistency level that sees every write acknowledged at ``write_level``: the
    replicas read and those written overlap (R + W > RF) for any replication factor."""
    from cassandra import ConsistencyLevel as CL

    if write_level == CL.ALL:
        return CL.ONE
    if write_level in (CL.QUORUM, CL.LOCAL_QUORUM, CL.EACH_QUORUM):
        return CL.QUORUM if write_level == CL.QUORUM else CL.LOCAL_QUORUM  # a quorum meets a quorum
    return CL.ALL  # ONE, LOCAL_ONE, TWO, ...: only every replica is sure to hold it


#: InvalidRequest messages that blame the row's values, not the table (see the module doc).
ROW_REJECTIONS = re.compile(
    r"Key length of \d+ is longer than maximum of \d+"
    r"|Key may not be empty"
    r"|CQL Message of size \d+ bytes exceeds allowed maximum of \d+ bytes"
    r"|Invalid null value in condition for column "
)


def is_row_rejection(exc: Exception) -> bool:
    return isinstance(exc, InvalidRequest) and ROW_REJECTIONS.search(str(exc)) is not None


@dataclass(frozen=True)
class DeadLetter:
    topic: str
    partition: int
    offset: int
    key: bytes | None
    value: bytes | None
    error: str


def timestamp_ms(value: Any) -> int:
    """Milliseconds since the epoch, rounded down (Cassandra's timestamp precision)."""
    if isinstance(value, str):
        try:
            parsed = dt.datetime.fromisoformat(value)
        except ValueError:
            raise BadValue(f"not an ISO 8601 timestamp: {value!r}") from None
        if parsed.tzinfo is None:
            parsed = parsed.replace(tzinfo=dt.UTC)
        return (parsed - EPOCH) // ONE_MS
    if isinstance(value, dt.datetime):
        value = value if value.tzinfo else value.replace(tzinfo=dt.UTC)
        return (value - EPOCH) // ONE_MS
    if isinstance(value, int):
        return value
    raise BadValue(f"cannot store {type(value).__name__} as a timestamp")


def to_cql(cql_type: str, value: Any) -> Any:
    """Convert a decoded Debezium value to what cassandra-driver binds for ``cql_type``."""
    if value is None:
        return None
    try:
        if cql_type in ("uuid", "timeuuid"):
            return value if isinstance(value, uuid.UUID) else uuid.UUID(str(value))
        if cql_type == "timestamp":
            return timestamp_ms(value)
        if cql_type in ("int", "bigint", "smallint", "tinyint", "varint", "counter"):
            if isinstance(value, bool) or not isinstance(value, int):
                raise BadValue(f"{value!r} is not an integer")
            return value
        if cql_type in ("double", "float"):
            return float(value)
        if cql_type == "decimal":
            if isinstance(value, dict) and "scale" in value and "value" in value:  # VariableScaleDecimal
                return Decimal(int.from_bytes(value["value"], "big", signed=True)).scaleb(-value["scale"])
            return value if isinstance(value, Decimal) else Decimal(str(value))
        if cql_type.startswith("list<"):
            inner = cql_type[5:-1]
            if not isinstance(value, list):
                raise BadValue(f"{value!r} is not a list")
            return [to_cql(inner, v) for v in value]
        if cql_type == "boolean":
            if isinstance(value, bool):
                return value
            if isinstance(value, str) and value.lower() in ("true", "false", "t", "f"):
                return value.lower() in ("true", "t")
            raise BadValue(f"{value!r} is not a boolean")
        if cql_type == "blob":
            return bytes(value)
        if cql_type in ("text", "varchar", "ascii"):
            return value if isinstance(value, str) else str(value)
    except (TypeError, ValueError) as exc:
        if isinstance(exc, BadValue):
            raise
        raise BadValue(f"{value!r} does not fit a {cql_type} column: {exc}") from None
    return value


#: What an encoder raises for a value that cannot be stored (all reported as BadValue).
ENCODE_ERRORS = (BadValue, TypeError, ValueError, OverflowError, struct.error)


def column_error(name: str, value: Any, exc: Exception) -> BadValue:
    if isinstance(exc, BadValue):
        return BadValue(f"column {name}: {exc}")
    return BadValue(f"column {name}: {value!r} does not fit: {exc}")


def encoder(cql_type: str, serialize: Callable[[Any, int], bytes], protocol_version: int) -> Callable[[Any], bytes]:
    """value (as decoded from Avro, not None) -> the bytes Cassandra stores in a ``cql_type``
    column. The common types are packed directly; the rest go through :func:`to_cql` and the
    driver's serializer. Raises BadValue, or TypeError/ValueError/struct.error for values out
    of range (the caller reports those as BadValue)."""

    def generic(value: Any) -> bytes:
        return serialize(to_cql(cql_type, value), protocol_version)

    if cql_type in ("text", "varchar"):
        return lambda value: value.encode() if type(value) is str else generic(value)
    if cql_type == "int":
        return lambda value: _int32(value) if type(value) is int else generic(value)
    if cql_type == "double":
        return lambda value: _double(value) if type(value) is float else generic(value)
    if cql_type == "timestamp":
        return lambda value: _int64(timestamp_ms(value))
    if cql_type == "uuid":

        def uuid_bytes(value: Any) -> bytes:
            if type(value) is str and len(value) == 36 and value[8] == value[13] == value[18] == value[23] == "-":
                packed = bytes.fromhex(value.replace("-", ""))
                if len(packed) == 16:
                    return packed
            return generic(value)

        return uuid_bytes
    return generic


#: What to do when a column's type no longer fits. Cassandra cannot change a column's type,
#: and ALTER TABLE ... DROP of a column is unsafe here: Cassandra drops only cells written
#: before the drop's wall-clock time, the pipeline's write timestamps are far in the future
#: (cdcpipe/pipeline/changes.py), and reads of the table then fail ("... is not a subset of
#: ..."; adding the column back with its old type restores them). So the table is rebuilt.
REBUILD_STEP = (
    "Cassandra cannot change a column's type, and dropping the column is unsafe with this pipeline's "
    "write timestamps. Step: 'cdcpipe resync --rebuild' (re-creates cdc.users and re-reads every row "
    "while streaming goes on; the job adds the column with the source's type)"
)


def quote(name: str) -> str:
    """A CQL identifier, quoted: keeps its case and allows reserved words (token, ...)."""
    return '"' + name.replace('"', '""') + '"'


#: (Cassandra column type, writer type) pairs a column keeps after a source type change:
#: every value of the writer's type is written as long as it fits (an out-of-range value
#: stops the job, it is not a row's fault).
WIDENINGS = {("int", "bigint")}


def type_conflicts(columns: Mapping[str, str], writer: Mapping[str, str]) -> dict[str, tuple[str, str]]:
    """Columns whose writer type differs from the table's: name -> (table type, writer type);
    those in WIDENINGS are not conflicts."""
    return {
        name: (columns[name], wtype)
        for name, wtype in writer.items()
        if name in columns and columns[name] != wtype and (columns[name], wtype) not in WIDENINGS
    }


def cql_type_of(avro_type: Any) -> str:
    """The CQL type for a Debezium/Avro field type (used when a new column appears)."""
    if isinstance(avro_type, list):  # a nullable union
        non_null = [t for t in avro_type if t != "null"]
        return cql_type_of(non_null[0]) if non_null else "text"
    if isinstance(avro_type, dict):
        connect = avro_type.get("connect.name", "")
        logical = avro_type.get("logicalType", "")
        base = avro_type.get("type")
        if (
            connect == "io.debezium.time.ZonedTimestamp"
            or connect
            in (
                "io.debezium.time.Timestamp",
                "org.apache.kafka.connect.data.Timestamp",
            )
            or logical in ("timestamp-millis",)
        ):
            return "timestamp"
        if connect == "io.debezium.data.Uuid" or logical == "uuid":
            return "uuid"
        if connect in ("io.debezium.time.Date", "org.apache.kafka.connect.data.Date") or logical == "date":
            return "int"  # days since the epoch, kept as a number
        if logical == "decimal" or connect == "io.debezium.data.VariableScaleDecimal":
            return "decimal"
        if connect == "io.debezium.data.Json":
            return "text"
        if base == "array":
            return f"list<{cql_type_of(avro_type.get('items'))}>"
        if base in ("record", "map", "enum", "fixed"):
            raise UnsupportedType(f"no lossless CQL type for a {base} ({connect or avro_type.get('name', '?')})")
        return cql_type_of(base)
    return {
        "string": "text",
        "int": "int",
        "long": "bigint",
        "double": "double",
        "float": "float",
        "boolean": "boolean",
        "bytes": "blob",
    }.get(avro_type, "text")


#: PostgreSQL type (``information_schema.columns.data_type``) -> the CQL type that
#: :func:`cql_type_of` gives Debezium's Avro for it under connectors/users-cdc.json
#: (``decimal.handling.mode`` precise, ``time.precision.mode`` adaptive_time_microseconds,
#: ``binary.handling.mode`` bytes). A rebuild creates these columns before any record arrives
#: (cdcpipe/resync.py); other types (times, timestamps without a zone, whose type depends on
#: their precision, arrays, ...) wait for the job, which adds them from the first record.
#: tests/test_resync.py holds both sides equal on the running pipeline.
CQL_TYPE_OF_POSTGRES: dict[str, str] = {
    "uuid": "uuid",
    "text": "text",
    "character varying": "text",
    "character": "text",
    "smallint": "int",
    "integer": "int",
    "bigint": "bigint",
    "real": "float",
    "double precision": "double",
    "boolean": "boolean",
    "numeric": "decimal",
    "timestamp with time zone": "timestamp",
    "json": "text",
    "jsonb": "text",
    "bytea": "blob",
}


def _named_records(schema: Any, found: dict[str, dict[str, Any]]) -> None:
    """Every named record in a schema, by full name (Avro defines a named type once)."""
    if isinstance(schema, list):
        for branch in schema:
            _named_records(branch, found)
    elif isinstance(schema, dict):
        if schema.get("type") == "record":
            name = schema.get("name", "")
            full = name if "." in name or not schema.get("namespace") else f"{schema['namespace']}.{name}"
            found[full] = found[name] = schema
            for field in schema.get("fields", []):
                _named_records(field.get("type"), found)
        elif "type" in schema:
            _named_records(schema["type"], found)


def after_field_types(envelope_schema: Mapping[str, Any]) -> dict[str, str]:
    """Column name -> CQL type, from a Debezium envelope's writer schema ({} if it is none)."""
    if not isinstance(envelope_schema, Mapping):
        return {}
    named: dict[str, dict[str, Any]] = {}
    _named_records(envelope_schema, named)
    for field in envelope_schema.get("fields", []):
        if field["name"] != "after":
            continue
        branches = field["type"] if isinstance(field["type"], list) else [field["type"]]
        for branch in branches:
            record = named.get(branch) if isinstance(branch, str) else branch
            if isinstance(record, dict) and record.get("type") == "record":
                return {f["name"]: _cql_type_or_refusal(f["type"]) for f in record.get("fields", [])}
    return {}


def _cql_type_or_refusal(avro_type: Any) -> str:
    """cql_type_of, or "!reason" for a type with no lossless mapping: refused only when a
    column of that type has to be written (ensure_columns, type_conflicts)."""
    try:
        return cql_type_of(avro_type)
    except UnsupportedType as exc:
        return f"!{exc}"


class CassandraSink:
    """Writes changes to one table; one instance per executor process is enough."""

    def __init__(self, session, keyspace: str = "cdc", table: str = "users", key: str = "id", dead_letter_table: str = "dead_letters"):
        self.session = session
        self.keyspace, self.table, self.key = keyspace, table, key
        self.dead_letter_table = dead_letter_table
        self.widened: set[str] = set()  # columns whose source type is wider (WIDENINGS)
        self._lock = threading.Lock()
        self._load_table()
        self._dead = session.prepare(
            f"INSERT INTO {keyspace}.{dead_letter_table} "
            "(topic, kafka_partition, kafka_offset, record_key, record_value, error, failed_at) "
            "VALUES (?, ?, ?, ?, ?, ?, toTimestamp(now()))"
        )

    def reload(self) -> None:
        """Read the table's columns again (someone may have changed the table)."""
        with self._lock:
            self._load_table()

    def _load_table(self) -> None:
        self.session.cluster.refresh_table_metadata(self.keyspace, self.table)
        meta = self.session.cluster.metadata.keyspaces[self.keyspace].tables[self.table]
        self.columns: dict[str, str] = {name: col.cql_type for name, col in meta.columns.items()}
        names = list(self.columns)
        self._upsert = self.session.prepare(
            f"INSERT INTO {self.keyspace}.{self.table} ({', '.join(map(quote, names))}) "
            f"VALUES ({', '.join('?' * len(names))}) USING TIMESTAMP ?"
        )
        self._delete = self.session.prepare(f"DELETE FROM {self.keyspace}.{self.table} USING TIMESTAMP ? WHERE {quote(self.key)} = ?")
        # Values are serialized here, once, instead of by the driver's generic bind().
        serializers = {spec.name: spec.type.serialize for spec in self._upsert.column_metadata}
        version = self.session.cluster.protocol_version
        self._encoders = [(name, encoder(self.columns[name], serializers[name], version)) for name in names]
        self._key_index = names.index(self.key)
        self._key_encoder = encoder(self.columns[self.key], serializers[self.key], version)

    def ensure_columns(self, types: Mapping[str, str]) -> list[str]:
        """Add columns the source has and the table lacks (ALTER TABLE ... ADD IF NOT EXISTS)."""
        missing = [name for name in types if name not in self.columns]
        if not missing:
            return []
        refused = {name: types[name][1:] for name in missing if types[name].startswith("!")}
        if refused:
            raise UnsupportedType(
                "source columns with no lossless Cassandra type: "
                + "; ".join(f"{name}: {why}" for name, why in sorted(refused.items()))
                + ". Step: change the column's type in PostgreSQL (e.g. to text or jsonb) or drop it, then run 'cdcpipe resync'"
                " (the job then passes over the records it stopped at)"
            )
        with self._lock:
            missing = [name for name in missing if name not in self.columns]
            if missing:
                # One ALTER for all of them: each schema change waits for agreement, and a
                # table rebuilt from a source with 40 columns took one round per column.
                log.warning("adding columns to %s.%s: %s", self.keyspace, self.table, ", ".join(f"{n} {types[n]}" for n in missing))
                added = ", ".join(f"{quote(name)} {types[name]}" for name in missing)
                self.session.execute(f"ALTER TABLE {self.keyspace}.{self.table} ADD IF NOT EXISTS ({added})", timeout=60)
                self.session.cluster.control_connection.wait_for_schema_agreement()
            self._load_table()
        return missing

    def statements_for(self, change: Change) -> tuple[list[BoundStatement], int]:
        """The statements applying ``change`` (a delete; or the replacement of its row: the
        module docstring), its values serialized, and their size in bytes; BadValue if a value
        cannot be stored. Written together, in one batch."""
        if change.is_delete:
            values = [_int64(change.timestamp), self._encode_key(change.key)]
            return [self._bound(self._delete, values)], 24
        row = change.row or {}
        if len(row) > len(self.columns) or not row.keys() <= self.columns.keys():
            # The caller adds the columns a row's writer schema declares (ensure_columns) before
            # writing it; one still missing was dropped meanwhile: the table's problem.
            unknown = set(row) - set(self.columns)
            raise TableUnusable(f"columns not in {self.keyspace}.{self.table}: {', '.join(sorted(unknown))}")
        if row.get(self.key) is None:  # an image without its key: the change's (from the Kafka key)
            row = {**row, self.key: change.key}
        get = row.get
        values: list[Any] = []
        append = values.append
        size = 8
        name = ""
        try:
            for name, encode in self._encoders:
                value = get(name)
                if value is None:  # null, or absent from this schema version: the delete below covers it
                    append(UNSET_VALUE)
                else:
                    data = encode(value)
                    size += len(data)
                    append(data)
        except ENCODE_ERRORS as exc:
            if name in self.widened:
                raise TableUnusable(
                    f"column {name} is {self.columns[name]} in {self.keyspace}.{self.table} but wider at the source, "
                    f"and {get(name)!r} does not fit. {REBUILD_STEP}"
                ) from None
            raise column_error(name, get(name), exc) from None
        append(_int64(change.timestamp))
        older = self._bound(self._delete, [_int64(change.timestamp - 1), values[self._key_index]])
        return [older, self._bound(self._upsert, values)], size + 24

    def _encode_key(self, key: str) -> bytes:
        try:
            return self._key_encoder(key)
        except ENCODE_ERRORS as exc:
            raise column_error(self.key, key, exc) from None

    @staticmethod
    def _bound(prepared: Any, values: list[Any]) -> BoundStatement:
        bound = BoundStatement(prepared)
        bound.values = values  # already serialized: the driver sends them as they are
        return bound

    @staticmethod
    def _batches(sizes: list[int]) -> list[list[int]]:
        """Indexes of statements grouped into batches of bounded rows and bytes."""
        groups: list[list[int]] = []
        current: list[int] = []
        total = 0
        for i, row_size in enumerate(sizes):
            if current and (len(current) >= BATCH_ROWS or total + row_size > BATCH_BYTES):
                groups.append(current)
                current, total = [], 0
            current.append(i)
            total += row_size
        if current:
            groups.append(current)
        return groups

    @staticmethod
    def _request(statements: Iterable[BoundStatement]) -> tuple[Any, tuple[()]]:
        """One request for ``statements``: the statement itself when it is one, else an
        UNLOGGED batch (a change's statements always travel together: module docstring)."""
        statements = list(statements)
        if len(statements) == 1:
            return statements[0], ()
        batch = BatchStatement(batch_type=BatchType.UNLOGGED)
        for statement in statements:
            batch.add(statement)
        return batch, ()

    def _execute(self, units: list[list[BoundStatement]], sizes: list[int]) -> list[tuple[bool, Any]]:
        """(ok, outcome) per change (its statements, ``units``), written in UNLOGGED batches; a
        batch Cassandra rejects is retried change by change so the one bad row is identified
        and the rest are written."""
        groups = self._batches(sizes)
        requests = [self._request(statement for i in group for statement in units[i]) for group in groups]
        outcomes: list[tuple[bool, Any]] = [(True, None)] * len(units)
        results = execute_concurrent(self.session, requests, concurrency=CONCURRENCY, raise_on_first_error=False)
        retry: list[int] = []
        for group, (ok, outcome) in zip(groups, results):
            if ok:
                continue
            if not isinstance(outcome, InvalidRequest):
                raise outcome  # Cassandra down, timeouts: retry the batch, skip nothing
            if len(group) == 1:
                outcomes[group[0]] = (False, outcome)
            else:
                retry.extend(group)
        if retry:
            single = execute_concurrent(
                self.session, [self._request(units[i]) for i in retry], concurrency=CONCURRENCY, raise_on_first_error=False
            )
            for i, (ok, outcome) in zip(retry, single):
                if not ok and not isinstance(outcome, InvalidRequest):
                    raise outcome
                outcomes[i] = (ok, outcome)
        return outcomes

    def apply(self, changes: Sequence[Change]) -> list[tuple[Change, str]]:
        """Write changes; returns (change, reason) for those whose values cannot be stored
        (BadValue, or a value-level rejection by Cassandra).

        Anything else (Cassandra down, timeouts, a table that is gone or changed: TableUnusable)
        raises: the batch must be retried, not skipped.
        """
        rejected: list[tuple[Change, str]] = []
        units: list[list[BoundStatement]] = []
        sizes: list[int] = []
        pending = []
        for change in changes:
            try:
                statements, size = self.statements_for(change)
            except BadValue as exc:
                rejected.append((change, str(exc)))
                continue
            units.append(statements)
            sizes.append(size)
            pending.append(change)
        if not units:
            return rejected
        failed = [change for change, (ok, _) in zip(pending, self._execute(units, sizes)) if not ok]
        if failed:
            rejected.extend(self._recheck(failed))
        return rejected

    def _recheck(self, changes: Sequence[Change]) -> list[tuple[Change, str]]:
        """Rows Cassandra rejected one by one: theirs or the table's fault? Reload the table
        and prepare again, write them once more, and blame a row only for a value-level
        rejection (see the module docstring); raise TableUnusable for anything else."""
        with self._lock:
            try:
                self._load_table()
            except (KeyError, InvalidRequest) as exc:
                raise TableUnusable(f"{self.keyspace}.{self.table} cannot be written: {exc.__class__.__name__}: {exc}") from None
        rejected: list[tuple[Change, str]] = []
        pending, statements = [], []
        for change in changes:
            try:
                unit, _ = self.statements_for(change)
            except BadValue as exc:  # not expected (it encoded before), but a value's all the same
                rejected.append((change, str(exc)))
                continue
            pending.append(change)
            statements.append(self._request(unit))
        results = execute_concurrent(self.session, statements, concurrency=CONCURRENCY, raise_on_first_error=False)
        for change, (ok, outcome) in zip(pending, results):
            if ok:
                continue
            if not isinstance(outcome, InvalidRequest):
                raise outcome
            if not is_row_rejection(outcome):
                raise TableUnusable(
                    f"{self.keyspace}.{self.table} rejected a write after its statements were prepared again, "
                    f"not for a known value-level reason: {outcome}"
                ) from outcome
            rejected.append((change, f"Cassandra rejected the write: {outcome}"))
        return rejected

    def truncate(self, timestamp: int) -> int:
        """TRUNCATE at ``timestamp``: every row is deleted with that timestamp, so writes newer
        than the truncate survive it, also when it is replayed (CQL TRUNCATE has no timestamp)."""
        return self._in_rows(self._delete, timestamp, f"SELECT {quote(self.key)} FROM {self.keyspace}.{self.table}")

    def clear_column(self, column: str, timestamp: int) -> int:
        """DROP COLUMN at ``timestamp``: the column's cells are deleted with that timestamp in
        every row that holds one, so a value written after it (the column added again)
        survives, also when the drop is replayed. The column itself stays (see
        pipeline/schema_changes.py). Returns the number of rows whose cell was deleted.

        Rows where the column is empty are left alone: a column dropped soon after it was
        added is empty in most rows, and a delete per row cost minutes on a large table (84k
        rows: 256 s on the cluster topology). Skipping them loses nothing: the clear runs after
        the batch's writes, the read below sees every acknowledged write, and a value older
        than the drop that arrives later is left out by the floors recorded before the clear."""
        self.reload()
        if column not in self.columns or column == self.key:
            return 0
        delete = self.session.prepare(
            f"DELETE {quote(column)} FROM {self.keyspace}.{self.table} USING TIMESTAMP ? WHERE {quote(self.key)} = ?"
        )
        holding = f"SELECT {quote(self.key)}, {quote(column)} FROM {self.keyspace}.{self.table}"
        return self._in_rows(delete, timestamp, holding, where=lambda row: row[1] is not None)

    def _in_rows(self, delete: Any, timestamp: int, select: str, where: Callable[[Any], bool] | None = None) -> int:
        """Run ``delete`` (bound to timestamp, key) for every row ``select`` (the key first)
        returns and ``where`` keeps; the number of rows.

        The read must see every write the sink's consistency level acknowledged, or a row
        missed here would outlive its TRUNCATE: :func:`read_level_after` gives the level."""
        from cassandra.query import SimpleStatement

        level = read_level_after(self.session.default_consistency_level)
        query = SimpleStatement(select, fetch_size=5000, consistency_level=level)
        keys = [row[0] for row in self.session.execute(query, timeout=120) if where is None or where(row)]
        for ok, outcome in execute_concurrent(
            self.session, [(delete, (timestamp, key)) for key in keys], concurrency=CONCURRENCY, raise_on_first_error=False
        ):
            if not ok:
                raise outcome
        return len(keys)

    def dead_letter(self, letters: Iterable[DeadLetter]) -> int:
        params = [(d.topic, d.partition, d.offset, d.key, d.value, d.error[:4000]) for d in letters]
        if not params:
            return 0
        for ok, outcome in execute_concurrent(self.session, [(self._dead, p) for p in params], raise_on_first_error=False):
            if not ok:
                raise outcome
        return len(params)
