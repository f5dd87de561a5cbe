"""Is the read model equal to the source? cdc.users vs public.users, column by column.

Both sides are compared in one representation: uuids as text, timestamps as epoch
milliseconds rounded down (Cassandra's precision), everything else as the drivers return it.
Every column both sides have is compared. A column only PostgreSQL has is a difference where
it holds a value (the job adds a new column with the first event that carries it); a column only Cassandra has
(dropped or renamed at the source) is reported, and is a difference wherever it still holds a
value: `cdcpipe resync` clears those. A source whose system identifier is not the one the
newest sync epoch recorded is a difference too (it needs `cdcpipe resync`).

**Memory.** `cdcpipe verify` compares the whole table a page at a time on each side
(:func:`judge_streamed`), so its memory does not grow with the table; :func:`judge` holds
both sides, for a set of keys and for tests that want the rows.

**Judging a live pipeline** (:func:`judge_live`). A comparison at one instant counts every
change still in flight as a difference. So a key that differs is judged again, in rounds:

1. read its source row with ``xmin`` (the transaction that wrote that version), and then
   PostgreSQL's WAL position ``L``;
2. wait until the pipeline has applied everything committed up to ``L``: the slot's
   ``confirmed_flush_lsn`` passes ``L`` (Connect flushes offsets only for records Kafka
   acknowledged, so every change up to ``L`` is in the topics), then the job's committed
   offsets reach the topics' end offsets read after that;
3. read its read-model row, then its source row again.

A key whose source row is the same version in both reads (same ``xmin``, or absent both
times) had no commit after ``L`` that the read model could show, so the read model must
equal that version. If it does not, that round counts the key as really different. A key
is reported only when two rounds in a row found it different. The second round covers a
key inserted and deleted between two reads, because ``xmin`` cannot show that. A key that
changed in every round is *unsettled*: it is named, but it is not a difference. verify
exits 9 only for real differences. If the pipeline does not catch up at all, the stopped
job's reason is named instead (``Inconclusive``).
"""

from __future__ import annotations

import datetime as dt
import itertools
import time
import uuid
from collections import Counter
from collections.abc import Callable, Collection
from dataclasses import dataclass, field
from typing import Any

from .errors import CdcpipeError, Inconclusive, Mismatch

EPOCH = dt.datetime(1970, 1, 1, tzinfo=dt.UTC)


def comparable(value: Any) -> Any:
    if isinstance(value, uuid.UUID):
        return str(value)
    if isinstance(value, dt.datetime):
        value = value if value.tzinfo else value.replace(tzinfo=dt.UTC)
        return ((value - EPOCH) // dt.timedelta(microseconds=1)) // 1000
    return value


def source_rows(pg, keys: Collection[str] | None = None, versions: dict[str, str] | None = None) -> dict[str, dict[str, Any]]:
    """public.users (only ``keys`` if given) through a psycopg connection; ``versions``, if
    given, gets each row's ``xmin`` (the transaction that wrote the version read)."""
    from psycopg.rows import dict_row
    from psycopg.types.string import TextLoader

    with pg.cursor(row_factory=dict_row) as cur:
        # json/jsonb as PostgreSQL's own text, which is what Debezium streams (and the job stores)
        cur.adapters.register_loader("json", TextLoader)
        cur.adapters.register_loader("jsonb", TextLoader)
        # prepare=False: a prepared SELECT * fails once the table's columns change ("cached
        # plan must not change result type"), and verify runs across schema changes.
        select = 'SELECT xmin::text AS "xmin", * FROM public.users' if versions is not None else "SELECT * FROM public.users"
        if keys is None:
            rows = cur.execute(select, prepare=False).fetchall()
        else:
            ids = [[uuid.UUID(k) for k in keys]]
            rows = cur.execute(f"{select} WHERE id = ANY(%s::uuid[])", ids, prepare=False).fetchall()
    if versions is not None:
        for r in rows:
            versions[str(r["id"])] = r.pop("xmin")
    return {str(r["id"]): {k: comparable(v) for k, v in r.items()} for r in rows}


#: How often a chunk of keys whose read Cassandra did not finish is read, before the error is
#: raised: a coordinator that timed out or lacked replicas (a busy or degraded cluster, as in
#: a 100,000-key comparison on the cluster topology) answers the same read later.
CHUNK_ATTEMPTS = 5


def _unfinished_reads() -> tuple[type[Exception], ...]:
    """Reads Cassandra did not finish, which the same read later may: a timeout, too few
    replicas, or a replica that failed it. On the cluster topology a replica that had not yet
    applied a column the job had just added failed a scan ("Unknown column ... during
    deserialization", a ReadFailure at LOCAL_QUORUM) until the schema reached it. A failure
    that lasts (a scan over too many tombstones) is raised once the caller's time is up."""
    from cassandra import OperationTimedOut, ReadFailure, ReadTimeout, Unavailable

    return (ReadTimeout, OperationTimedOut, Unavailable, ReadFailure)


def read_model_rows(session, columns: list[str], keys: Collection[str] | None = None, table: str = "users") -> dict[str, dict[str, Any]]:
    """cdc.<table> (only ``keys`` if given: IN queries of 100 keys, 16 in flight). Column names
    are quoted (mixed case, reserved words); rows come as tuples, whatever the session's factory."""
    from cassandra.concurrent import execute_concurrent_with_args
    from cassandra.query import SimpleStatement, tuple_factory

    from .pipeline.cassandra_sink import quote

    names = ["id", *[c for c in columns if c != "id"]]
    selected = ", ".join(map(quote, names))
    previous, session.row_factory = session.row_factory, tuple_factory
    try:
        if keys is None:
            rows = list(session.execute(SimpleStatement(f"SELECT {selected} FROM cdc.{table}", fetch_size=5000), timeout=60))
        else:
            select = session.prepare(f"SELECT {selected} FROM cdc.{table} WHERE id IN ?")
            ordered = [uuid.UUID(k) for k in keys]
            chunks = [(ordered[i : i + 100],) for i in range(0, len(ordered), 100)]
            rows = []
            for attempt in range(CHUNK_ATTEMPTS):
                failed = []
                for chunk, (ok, result) in zip(
                    chunks, execute_concurrent_with_args(session, select, chunks, concurrency=16, raise_on_first_error=False)
                ):
                    if ok:
                        rows.extend(result)
                    elif isinstance(result, _unfinished_reads()) and attempt + 1 < CHUNK_ATTEMPTS:
                        failed.append(chunk)
                    else:
                        raise result
                if not failed:
                    break
                chunks = failed  # the cluster's fault, not the data's: read them again, slower
                time.sleep(2**attempt)
    finally:
        session.row_factory = previous
    return {str(r[0]): {c: comparable(v) for c, v in zip(names, r) if c in columns} for r in rows}


def read_model_columns(session, table: str = "users") -> list[str]:
    session.cluster.refresh_table_metadata("cdc", table)
    return list(session.cluster.metadata.keyspaces["cdc"].tables[table].columns)


@dataclass
class Report:
    """What a comparison found: table-level problems, and each key that differs, by kind."""

    source_rows: int = 0
    read_model_rows: int = 0
    problems: list[str] = field(default_factory=list)
    missing: list[str] = field(default_factory=list)  # in PostgreSQL, not in Cassandra
    extra: list[str] = field(default_factory=list)  # in Cassandra, not in PostgreSQL
    differing: dict[str, dict[str, tuple[Any, Any]]] = field(default_factory=dict)  # key -> column -> (source, read model)
    unsettled: list[str] = field(default_factory=list)  # changed at the source in every re-check
    rechecked: int = 0  # keys judged again at a position both sides had passed
    rounds: int = 0
    position: str | None = None  # PostgreSQL's WAL position of the last round

    @property
    def equal(self) -> bool:
        return not (self.problems or self.missing or self.extra or self.differing)

    def keys(self) -> list[str]:
        return sorted({*self.missing, *self.extra, *self.differing})

    def per_column(self) -> dict[str, int]:
        return dict(Counter(c for columns in self.differing.values() for c in columns).most_common())

    def summary(self) -> str:
        """One line of counts: what a person reads first."""
        if self.equal:
            text = f"equal: {self.source_rows:,} rows"
        else:
            parts = [
                f"{len(self.missing):,} missing in Cassandra",
                f"{len(self.extra):,} only in Cassandra",
                f"{len(self.differing):,} differing",
            ]
            columns = ", ".join(f"{c} {n:,}" for c, n in self.per_column().items())
            text = f"DIFFERENT: {'; '.join(parts)}{f' ({columns})' if columns else ''}; {len(self.problems)} table-level problem(s)"
        if self.rounds:
            text += f"; {self.rechecked:,} key(s) judged again at WAL position {self.position}"
        if self.unsettled:
            text += f"; {len(self.unsettled):,} key(s) changed at the source in every re-check (not judged)"
        return text

    def lines(self, limit: int | None = 5) -> list[str]:
        """The problems, then a sample of the keys that differ (all with ``limit=None``)."""
        out = list(self.problems)
        missing, extra = set(self.missing), set(self.extra)  # (lists: a lookup each would make --all quadratic)
        for key in self.keys()[:limit]:
            if key in missing:
                out.append(f"{key}: missing in Cassandra")
            elif key in extra:
                out.append(f"{key}: in Cassandra but not in PostgreSQL")
            else:
                out.append(f"{key}: {self.differing[key]}")
        return out

    def to_json(self) -> dict[str, Any]:
        return {
            "equal": self.equal,
            "rows": self.source_rows,
            "read_model_rows": self.read_model_rows,
            "counts": {
                "missing": len(self.missing),
                "extra": len(self.extra),
                "differing": len(self.differing),
                "unsettled": len(self.unsettled),
            },
            "differing_per_column": self.per_column(),
            "problems": self.problems,
            "missing": sorted(self.missing),
            "extra": sorted(self.extra),
            "differing": {k: {c: [repr(a), repr(b)] for c, (a, b) in v.items()} for k, v in sorted(self.differing.items())},
            "unsettled": sorted(self.unsettled),
            "rechecked": self.rechecked,
            "rounds": self.rounds,
            "position": self.position,
            "differences": self.lines(),
        }


def key_differences(expected: dict, actual: dict, report: Report) -> Report:
    """Every key of ``expected`` (source) and ``actual`` (read model) that differs, into ``report``."""
    for key in set(expected) | set(actual):
        if key not in actual:
            report.missing.append(key)
        elif key not in expected:
            report.extra.append(key)
        elif expected[key] != actual[key]:
            report.differing[key] = {
                c: (expected[key][c], actual[key].get(c)) for c in expected[key] if expected[key][c] != actual[key].get(c)
            }
    return report


def compare(pg, session, keys: Collection[str] | None = None, table: str = "users") -> tuple[dict[str, dict[str, Any]], list[str]]:
    """(read model rows, differences: the problems and the first five keys) right now."""
    actual, report = judge(pg, session, keys, table)
    return actual, report.lines()


@dataclass
class _Columns:
    """The columns of both tables, as a comparison uses them."""

    common: list[str]  # in both: compared
    only_pg: list[str]  # equal wherever NULL (the job adds a column with its first value)
    only_cassandra: list[str]  # dropped or renamed at the source: a difference wherever it holds a value


def _columns(pg, session, table: str, report: Report) -> _Columns | None:
    """Both tables' columns; None, with the problem in ``report``, if the read model is unreadable.
    A source the read model was not synced from is a problem too (it needs a resync)."""
    from cassandra import InvalidRequest
    from psycopg.rows import tuple_row

    with pg.cursor(row_factory=tuple_row) as cur:
        columns = [
            r[0]
            for r in cur.execute(
                "SELECT column_name FROM information_schema.columns "
                "WHERE table_schema = 'public' AND table_name = 'users' ORDER BY ordinal_position"
            )
        ]
    identity = source_identity_problem(pg, session)
    if identity:
        report.problems.append(identity)
    try:
        cassandra_columns = read_model_columns(session, table)
    except (KeyError, InvalidRequest) as exc:
        report.problems.append(f"cdc.{table} unreadable: {exc}")
        return None
    return _Columns(
        common=[c for c in columns if c in cassandra_columns],
        only_pg=[c for c in columns if c not in cassandra_columns],
        only_cassandra=[c for c in cassandra_columns if c not in columns],
    )


def _only_pg_holding(report: Report, holding: Collection[str]) -> None:
    if holding:
        report.problems.append(f"columns only in PostgreSQL hold values: {', '.join(sorted(holding))}")


def _compare_rows(expected: dict, actual: dict, columns: _Columns, report: Report, holding: set[str]) -> None:
    """Compare rows on the common columns into ``report``; ``holding`` gets the columns only
    Cassandra has that hold a value in ``actual``."""
    for row in actual.values():
        for c in columns.only_cassandra:
            if row.pop(c, None) is not None:
                holding.add(c)
    common = columns.common
    key_differences({k: {c: v for c, v in row.items() if c in common} for k, row in expected.items()}, actual, report)


def _only_cassandra_holding(report: Report, holding: Collection[str]) -> None:
    if holding:
        report.problems.append(
            "columns only in Cassandra still hold values (dropped or renamed at the source; "
            f"'cdcpipe resync' clears them): {', '.join(sorted(holding))}"
        )


def judge(
    pg, session, keys: Collection[str] | None = None, table: str = "users", versions: dict[str, str] | None = None
) -> tuple[dict[str, dict[str, Any]], Report]:
    """(read model rows, Report) right now: every row, or only ``keys``, of cdc.<table>, both
    sides in memory; ``versions`` gets the source rows' ``xmin``. For a whole table of any
    size, :func:`judge_streamed` holds a page at a time."""
    from cassandra import InvalidRequest

    expected = source_rows(pg, keys, versions)
    report = Report(source_rows=len(expected))
    columns = _columns(pg, session, table, report)
    if columns is None:
        return {}, report
    _only_pg_holding(report, {c for row in expected.values() for c in columns.only_pg if row.get(c) is not None})
    try:
        actual = read_model_rows(session, columns.common + columns.only_cassandra, keys, table)
    except InvalidRequest as exc:  # e.g. a column dropped meanwhile
        report.problems.append(str(exc))
        return {}, report
    holding: set[str] = set()
    _compare_rows(expected, actual, columns, report, holding)
    _only_cassandra_holding(report, holding)
    report.read_model_rows = len(actual)
    return actual, report


#: Rows per page of a streamed comparison: what it holds in memory at once, per side.
PAGE_ROWS = 5000


def judge_streamed(pg, session, table: str = "users", page: int = PAGE_ROWS) -> Report:
    """The Report of :func:`judge` for the whole table, holding one page of rows at a time.

    Cassandra returns rows in token order and PostgreSQL by key, so the two sides are walked
    in two passes instead of merged:

    1. every read-model row, a page at a time (the driver's paging), against the same keys'
       source rows (one ``id = ANY(...)`` query per page): rows that differ, and rows only in
       Cassandra;
    2. every source key, a page at a time in key order (``id > last``, the primary key's
       index), looked up in the read model (ids only): rows only in PostgreSQL.

    Under live writes the passes see different instants, like any comparison of a moving
    table; :func:`judge_live` judges what they find again at a settled position. A key that
    pass 1 already found differing or only in Cassandra is not counted again by pass 2 (a row
    the pipeline deleted between the passes would otherwise be both differing and missing)."""
    import psycopg
    from cassandra import InvalidRequest
    from cassandra.query import SimpleStatement, tuple_factory
    from psycopg import sql
    from psycopg.rows import tuple_row

    from .pipeline.cassandra_sink import quote

    report = Report()
    columns = _columns(pg, session, table, report)
    if columns is None:
        return report
    holds_a_value = sql.SQL("SELECT EXISTS (SELECT 1 FROM public.users WHERE {} IS NOT NULL)")
    try:
        with pg.cursor(row_factory=tuple_row) as cur:
            only_pg_holding = [c for c in columns.only_pg if cur.execute(holds_a_value.format(sql.Identifier(c))).fetchone()[0]]
    except psycopg.errors.UndefinedColumn as exc:  # dropped or renamed since _columns read them
        report.problems.append(f"public.users changed while verify read it: {str(exc).splitlines()[0]}")
        return report
    _only_pg_holding(report, only_pg_holding)

    names = ["id", *[c for c in columns.common + columns.only_cassandra if c != "id"]]
    select = SimpleStatement(f"SELECT {', '.join(map(quote, names))} FROM cdc.{table}", fetch_size=page)
    holding: set[str] = set()
    previous, session.row_factory = session.row_factory, tuple_factory
    try:
        # A generator, not iter(ResultSet): that returns the ResultSet itself, whose __iter__
        # restarts the current page, so each islice below would read the first page again.
        rows = (row for row in session.execute(select, timeout=60))
        while chunk := list(itertools.islice(rows, page)):
            actual = {str(r[0]): {c: comparable(v) for c, v in zip(names, r)} for r in chunk}
            report.read_model_rows += len(actual)
            _compare_rows(source_rows(pg, actual.keys()), actual, columns, report, holding)
    except InvalidRequest as exc:  # e.g. a column dropped meanwhile
        report.problems.append(str(exc))
        return report
    finally:
        session.row_factory = previous
    _only_cassandra_holding(report, holding)

    judged = {*report.differing, *report.extra}  # a sample of the table at most, not its keys
    last: uuid.UUID | None = None
    while True:
        with pg.cursor(row_factory=tuple_row) as cur:
            if last is None:
                keys = [r[0] for r in cur.execute("SELECT id FROM public.users ORDER BY id LIMIT %s", (page,))]
            else:
                keys = [r[0] for r in cur.execute("SELECT id FROM public.users WHERE id > %s ORDER BY id LIMIT %s", (last, page))]
        if not keys:
            break
        try:
            present = read_model_rows(session, ["id"], [str(k) for k in keys], table)
        except InvalidRequest as exc:  # e.g. the table re-created meanwhile (resync --rebuild)
            report.problems.append(str(exc))
            return report
        report.missing.extend(str(k) for k in keys if str(k) not in present and str(k) not in judged)
        report.source_rows += len(keys)
        last = keys[-1]
    return report


def extra_columns(pg, session) -> list[str]:
    """Columns only Cassandra has (reported by ``cdcpipe verify``)."""
    from psycopg.rows import tuple_row

    with pg.cursor(row_factory=tuple_row) as cur:
        columns = {
            r[0]
            for r in cur.execute(
                "SELECT column_name FROM information_schema.columns WHERE table_schema = 'public' AND table_name = 'users'"
            )
        }
    return [c for c in read_model_columns(session) if c not in columns]


def source_identity_problem(pg, session) -> str | None:
    """A message when PostgreSQL's system identifier is not the one the newest epoch recorded."""
    from cassandra import InvalidRequest

    from .pipeline import sync_state
    from .pipeline.schema_changes import USERS_TOPIC
    from .resync import source_identity

    try:
        epochs = sync_state.load(session, USERS_TOPIC)
    except InvalidRequest:  # no cdc.sync_state yet (a read model older than resync): nothing recorded
        return None
    recorded = next((e.system_identifier for e in reversed(epochs) if e.system_identifier), None)
    if recorded is None:
        return None
    current, _ = source_identity(pg, "cdc_users")
    if current != recorded:
        return (
            f"PostgreSQL's system identifier is {current}, but the read model was synced from {recorded}: "
            "the source was replaced; run 'cdcpipe resync'"
        )
    return None


def _poll_until_equal(judge_once: Callable[[], tuple[Any, list[str]]], timeout: float, on_wait=None) -> Any:
    """``judge_once()`` -> (result, differences) until there are none; Mismatch after ``timeout``.

    A read that Cassandra does not complete in time (a timeout, too few replicas: a cluster
    with a node restarting and replaying hints) is a judgement not made yet, tried again until
    ``timeout``; then it is raised as it came."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            result, diff = judge_once()
        except _unfinished_reads() as exc:
            if time.monotonic() > deadline:
                raise
            result, diff = None, [f"the read of cdc.users did not complete: {exc.__class__.__name__}"]
        if not diff:
            return result
        if time.monotonic() > deadline:
            raise Mismatch(f"cdc.users does not match public.users after {timeout:.0f}s: " + "; ".join(diff))
        if on_wait:
            on_wait(diff)
        time.sleep(1)


def wait_until_equal(pg, session, timeout: float = 120.0, on_wait=None) -> dict[str, dict[str, Any]]:
    """Poll until cdc.users equals public.users at one instant; the read model's rows (held in
    memory: for tests and the demo's table). Mismatch with the first differences if not."""
    return _poll_until_equal(lambda: compare(pg, session), timeout, on_wait)


def wait_until_equal_streamed(pg, session, timeout: float = 120.0, on_wait=None) -> Report:
    """:func:`wait_until_equal` for a table of any size (:func:`judge_streamed`); its Report."""

    def once() -> tuple[Report, list[str]]:
        report = judge_streamed(pg, session)
        return report, report.lines()

    return _poll_until_equal(once, timeout, on_wait)


def wal_position(pg) -> tuple[int, str]:
    """PostgreSQL's current WAL position, as a number and as PostgreSQL writes it."""
    from psycopg.rows import tuple_row

    with pg.cursor(row_factory=tuple_row) as cur:
        number, text = cur.execute("SELECT pg_current_wal_lsn() - '0/0'::pg_lsn, pg_current_wal_lsn()::text").fetchone()
    return int(number), text


def _job_state(settings) -> str:
    from .runtime import streaming_job

    job = streaming_job.progress(settings)
    return f"the Spark job is {job.get('state')}" + (f": {job['reason']}" if job.get("reason") else "")


def wait_until_applied(pg, settings, kafka: dict[str, Any], position: int, timeout: float, slot: str = "cdc_users") -> None:
    """Return once every change committed at or before WAL ``position`` is in the read model
    (see the module's docstring); Inconclusive naming the stage that did not get there.
    ``kafka``: a confluent-kafka client configuration (``Kafka.client_config()``)."""
    from psycopg.rows import tuple_row

    from .clients.kafka_io import end_offsets
    from .pipeline.schema_changes import JOURNAL_TOPIC, USERS_TOPIC
    from .runtime import streaming_job

    deadline = time.monotonic() + timeout
    while True:
        with pg.cursor(row_factory=tuple_row) as cur:
            row = cur.execute(
                "SELECT confirmed_flush_lsn - '0/0'::pg_lsn FROM pg_replication_slots WHERE slot_name = %s", (slot,)
            ).fetchone()
        if row is None:
            raise Inconclusive(f"no replication slot {slot!r}: nothing captures the source ('cdcpipe connector register')")
        if row[0] is not None and int(row[0]) >= position:
            break
        if time.monotonic() > deadline:
            raise Inconclusive(
                f"capture did not pass WAL position {position} in {timeout:.0f}s (slot {slot!r} confirmed {row[0]}): "
                "is the connector RUNNING? ('cdcpipe status')"
            )
        time.sleep(0.2)
    ends = {}
    for topic in (USERS_TOPIC, JOURNAL_TOPIC):
        parts = {str(p): o for p, o in end_offsets(kafka, topic).items() if o > 0}
        if parts:
            ends[topic] = parts
    try:
        streaming_job.wait_for_offsets(settings, ends, timeout=max(deadline - time.monotonic(), 1.0), stop_on_named_step=True)
    except CdcpipeError as exc:
        raise Inconclusive(f"the read model did not catch up with WAL position {position}: {exc}; {_job_state(settings)}") from None


def judge_live(
    pg,
    session,
    settings,
    kafka: dict[str, Any],
    timeout: float = 120.0,
    max_rounds: int = 8,
    slot: str = "cdc_users",
    on_round: Callable[[Report], None] | None = None,
) -> Report:
    """The Report for a pipeline that may be writing: the whole table is compared streamed
    (:func:`judge_streamed`), and every key that differs is judged again at positions both
    sides have passed (the module's docstring). Table-level problems are reported as found;
    ``pg`` should be in autocommit mode."""
    first = judge_streamed(pg, session)
    if first.problems or first.equal:
        return first
    candidates = set(first.keys())
    final = Report(source_rows=first.source_rows, read_model_rows=first.read_model_rows)
    strikes: dict[str, int] = {}
    seen: set[str] = set()
    deadline = time.monotonic() + timeout
    while candidates and final.rounds < max_rounds and time.monotonic() < deadline:
        final.rounds += 1
        seen |= candidates
        before: dict[str, str] = {}
        source_rows(pg, candidates, before)
        position, final.position = wal_position(pg)
        wait_until_applied(pg, settings, kafka, position, max(deadline - time.monotonic(), 5.0), slot)
        _, again = judge(pg, session, candidates)
        after: dict[str, str] = {}
        source_rows(pg, candidates, after)
        if again.problems:  # the table changed meanwhile (a column, the source): say so, as found
            final.problems = again.problems
            break
        differing_now = set(again.keys())
        for key in list(candidates):
            if before.get(key) != after.get(key):
                strikes[key] = 0  # written during the round: judge it again
            elif key in differing_now:
                strikes[key] = strikes.get(key, 0) + 1
                if strikes[key] >= 2:
                    candidates.discard(key)
                    if key in again.missing:
                        final.missing.append(key)
                    elif key in again.extra:
                        final.extra.append(key)
                    else:
                        final.differing[key] = again.differing[key]
            else:
                candidates.discard(key)  # equal at a settled position
        if on_round:
            on_round(final)
    final.unsettled = sorted(candidates)
    final.rechecked = len(seen)
    return final
