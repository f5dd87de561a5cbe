"""The operations checker: seeded random sequences of operations against the running
pipeline, each judged at the quiet point after it (the Jepsen idea, applied here).

Scenario tests walk the paths someone thought of. This walks the ones next to them: a seeded
generator picks operations with their arguments, and one checker judges the pipeline after
each one, whatever it was:

* the read model is **equal** to the source, judged by the live verify
  (:func:`cdcpipe.verify.judge_live`), or
* the pipeline has **stopped and names a step** (the Spark job's reason names
  ``cdcpipe resync``, ``cdcpipe resync --rebuild`` or ``cdcpipe connector reset-offsets``).
  The checker then takes exactly that step, and the read model must then be equal.

Anything else is a failure: real differences with no step named, a step that does not bring
equality, or a pipeline that neither catches up nor names a step within the settle time.
A failure prints the seed and the operation log. ``--seed`` replays the same sequence of
operations with the same arguments. What the pipeline does in response still depends on
timing.

The operations (:data:`OPERATIONS`, each with its weight):

* DML: bursts of single-row transactions, and large transactions, on rows of the checker's
  own (``opcheck-`` usernames);
* every DDL in the table of docs/operations.md: ADD COLUMN with and without a DEFAULT, DROP, RENAME,
  integer -> bigint with a value past int's range, a precision cut, TRUNCATE, and the table
  dropped and created anew;
* faults: ``kill -9`` of a service's whole process tree (PostgreSQL, Kafka, Connect, the
  registry, Cassandra) or of the Spark job, then ``cdcpipe up``, the one human step;
* ``cdcpipe resync``, a resync killed (SIGKILL) at a random moment, two resyncs at once,
  and the loss of the replication slot.

It changes ``public.users``' columns and truncates it: run it on a stack whose data may go.
After a run that ended equal, :meth:`Checker.tidy` drops its columns and deletes its rows.
"""

from __future__ import annotations

import datetime as dt
import random
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from decimal import Decimal
from typing import Any

from . import resync, runtime, verify
from .clients.connect import DEFAULT_FILE, ConnectClient, ConnectorFile
from .errors import CdcpipeError, Inconclusive
from .runtime import processes, streaming_job
from .settings import Settings

#: The username prefix of the checker's own rows.
PREFIX = "opcheck-"
#: The names of the checker's columns (``Checker._fresh``), as a PostgreSQL regular expression.
COLUMN_PATTERN = "^op[0-9a-f]{10}_[a-z]{1,4}$"
#: A value maker for each column type the checker's columns can have.
VALUES: dict[str, Callable[[random.Random], Any]] = {
    "integer": lambda r: r.randint(-(2**31), 2**31 - 1),
    "bigint": lambda r: r.randint(-(2**62), 2**62),
    "text": lambda r: f"t{r.randrange(10**6)}",
    "numeric(10,2)": lambda r: Decimal(r.randint(-(10**9), 10**9)) / 100,
    "numeric(10,0)": lambda r: Decimal(r.randint(-(10**9), 10**9)),
    "timestamptz": lambda r: dt.datetime(2026, 1, 1, tzinfo=dt.UTC) + dt.timedelta(microseconds=r.randrange(10**13)),
}
#: The types ADD COLUMN picks from (the others come from type changes).
ADDED_TYPES = ("integer", "text", "numeric(10,2)", "timestamptz")
#: The services a fault may hit; "job" is the Spark job.
VICTIMS = ("postgres", "kafka", "connect", "schema_registry", "cassandra", "job")


class CheckFailed(CdcpipeError):
    """The pipeline diverged without naming a step, or the named step did not bring equality."""

    exit_code = 9


@dataclass
class Entry:
    """One operation of the log: what ran, and how the pipeline came to equal after it."""

    index: int
    op: str
    detail: str = ""
    seconds: float = 0.0
    verdict: str = ""  # "equal", or "equal after <step>"
    steps: list[str] = field(default_factory=list)
    to_equal: float = 0.0  # seconds from the operation's end to the judged equality


@dataclass
class Checker:
    settings: Settings
    seed: int
    say: Callable[[str], None] = print
    settle_seconds: float = 240.0
    rng: random.Random = field(init=False)
    rows: list[str] = field(default_factory=list)
    columns: dict[str, str] = field(default_factory=dict)  # the checker's columns now: name -> type
    log: list[Entry] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.rng = random.Random(self.seed)
        self.connector = ConnectorFile.load(DEFAULT_FILE)
        # Row ids and column names mix in a nonce of this run (not drawn from the seed): a
        # replay draws the same operations and shapes, but must not meet the rows and columns
        # an earlier run of the same seed left behind.
        self.nonce = uuid.uuid4()

    # --- connections (made again for each use: a kill may have cut them) ----------------
    def pg(self, admin: bool = False):
        svc = runtime.service(self.settings, "postgres")
        if admin:
            return svc.connect(dbname="users", autocommit=True)
        import psycopg

        return psycopg.connect(svc.dsn(), autocommit=True)

    def connect(self) -> ConnectClient:
        return runtime.service(self.settings, "connect").client()

    # --- operations ----------------------------------------------------------------------
    def _row_values(self) -> dict[str, Any]:
        values: dict[str, Any] = {"city": f"c{self.rng.randrange(10**6)}"}
        for name, kind in self.columns.items():
            if self.rng.random() < 0.5:
                values[name] = VALUES[kind](self.rng)
        return values

    def _change(self, cur) -> None:
        from psycopg import sql

        roll = self.rng.random()
        if roll < 0.35 or len(self.rows) < 20:
            key = str(uuid.uuid5(self.nonce, str(self.rng.getrandbits(64))))
            values = {"id": key, "username": f"{PREFIX}{key[:8]}", **self._row_values()}
            cur.execute(
                sql.SQL("INSERT INTO public.users ({}) VALUES ({})").format(
                    sql.SQL(", ").join(map(sql.Identifier, values)), sql.SQL(", ").join(sql.Placeholder() * len(values))
                ),
                list(values.values()),
            )
            self.rows.append(key)
        elif roll < 0.85:
            values = self._row_values()
            cur.execute(
                sql.SQL("UPDATE public.users SET {} WHERE id = %s").format(
                    sql.SQL(", ").join(sql.SQL("{} = %s").format(sql.Identifier(c)) for c in values)
                ),
                [*values.values(), self.rng.choice(self.rows)],
            )
        else:
            cur.execute("DELETE FROM public.users WHERE id = %s", (self.rows.pop(self.rng.randrange(len(self.rows))),))

    def op_burst(self) -> str:
        n = self.rng.randint(20, 300)
        with self.pg() as pg, pg.cursor() as cur:
            for _ in range(n):
                self._change(cur)
        return f"{n} single-row transactions"

    def op_big_transaction(self) -> str:
        n = self.rng.randint(300, 2000)
        with self.pg() as pg, pg.transaction(), pg.cursor() as cur:
            for _ in range(n):
                self._change(cur)
        return f"one transaction of {n} changes"

    def _fresh(self, kind: str) -> str:
        return f"op{self.nonce.hex[:4]}{self.rng.randrange(16**6):06x}_{kind.split('(')[0][:4]}"  # COLUMN_PATTERN

    def _ddl(self, *statements: str, params: tuple[Any, ...] | None = None) -> None:
        """Statements as the table's owner (the application role only writes rows)."""
        with self.pg(admin=True) as su:
            for statement in statements:
                su.execute(statement, params if "%s" in statement else None)

    def _add(self, kind: str, default: str = "") -> str:
        name = self._fresh(kind)
        ddl = f"ADD COLUMN {name} {kind}{default}"
        self._ddl(f"ALTER TABLE public.users {ddl}")
        self.columns[name] = kind
        return ddl

    def op_add_column(self) -> str:
        return self._add(self.rng.choice(ADDED_TYPES))

    def op_add_column_default(self) -> str:
        return self._add("text", " DEFAULT 'filled'")

    def _pick(self, kind: str | None = None) -> str | None:
        names = sorted(n for n, k in self.columns.items() if kind is None or k == kind)
        return self.rng.choice(names) if names else None

    def op_drop_column(self) -> str:
        name = self._pick()
        if name is None:
            return self.op_add_column()
        self._ddl(f"ALTER TABLE public.users DROP COLUMN {name}")
        del self.columns[name]
        return f"DROP COLUMN {name}"

    def op_rename_column(self) -> str:
        name = self._pick()
        if name is None:
            return self.op_add_column()
        kind = self.columns.pop(name)
        new = self._fresh(kind)
        self._ddl(f"ALTER TABLE public.users RENAME COLUMN {name} TO {new}")
        self.columns[new] = kind
        return f"RENAME COLUMN {name} TO {new}"

    def op_widen_past_int(self) -> str:
        name = self._pick("integer")
        if name is None or not self.rows:
            return self.op_add_column()
        past_int = (2**40 + self.rng.randrange(1000), self.rng.choice(self.rows))
        self._ddl(
            f"ALTER TABLE public.users ALTER COLUMN {name} TYPE bigint",
            f"UPDATE public.users SET {name} = %s WHERE id = %s",
            params=past_int,
        )
        self.columns[name] = "bigint"
        return f"ALTER COLUMN {name} TYPE bigint, then a value past int's range"

    def op_precision_cut(self) -> str:
        name = self._pick("numeric(10,2)")
        if name is None:
            return self.op_add_column()
        self._ddl(f"ALTER TABLE public.users ALTER COLUMN {name} TYPE numeric(10,0)")
        self.columns[name] = "numeric(10,0)"
        return f"ALTER COLUMN {name} TYPE numeric(10,0) (rounds every value)"

    def op_truncate(self) -> str:
        self._ddl("TRUNCATE public.users")
        self.rows.clear()
        return "TRUNCATE public.users"

    def op_replace_table(self) -> str:
        """public.users swapped for a new, empty table like it (its rows gone with the old one)."""
        self._ddl(
            "CREATE TABLE public.users_next (LIKE public.users INCLUDING ALL)",
            "DROP TABLE public.users",
            "ALTER TABLE public.users_next RENAME TO users",
        )
        self.rows.clear()
        return "DROP TABLE public.users, a new one like it in its place"

    def op_kill(self) -> str:
        victim = self.rng.choice(VICTIMS)
        if victim == "job":
            streaming_job.kill(self.settings)
        else:
            for svc in runtime.services(self.settings, [victim], with_dependencies=False):
                for proc in svc.processes:
                    processes.stop(self.settings, proc, sig=signal.SIGKILL, timeout=5)
        time.sleep(self.rng.uniform(0, 3))
        runtime.up(self.settings, progress=lambda m: None)  # the one human step
        return f"kill -9 {victim}, then cdcpipe up"

    def _resync_process(self) -> subprocess.Popen:
        return subprocess.Popen(
            [sys.executable, "-m", "cdcpipe", "resync", "--json"], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
        )

    def op_resync(self) -> str:
        self.take_step("resync")
        return "cdcpipe resync"

    def op_resync_killed(self) -> str:
        proc = self._resync_process()
        delay = self.rng.uniform(0.5, 6.0)
        try:
            proc.wait(delay)
            ended = f"ended by itself (exit {proc.returncode}) before"
        except subprocess.TimeoutExpired:
            proc.send_signal(signal.SIGKILL)
            proc.wait()
            ended = "SIGKILLed"
        return f"cdcpipe resync {ended} {delay:.1f}s"

    def op_two_resyncs(self) -> str:
        procs = [self._resync_process() for _ in range(2)]
        codes = [p.wait(900) for p in procs]
        return f"two resyncs at once: exits {codes}"

    def op_slot_loss(self) -> str:
        client = self.connect()
        client.delete(self.connector.name)
        slot = self.connector.config.get("slot.name", "cdc_users")
        with self.pg(admin=True) as su:
            deadline = time.monotonic() + 60
            while su.execute("SELECT active FROM pg_replication_slots WHERE slot_name = %s", (slot,)).fetchone() == (True,):
                if time.monotonic() > deadline:
                    raise CdcpipeError(f"slot {slot} still active 60 s after its connector was deleted")
                time.sleep(0.5)
            su.execute("SELECT pg_drop_replication_slot(%s) FROM pg_replication_slots WHERE slot_name = %s", (slot, slot))
        with self.pg() as pg, pg.cursor() as cur:
            for _ in range(self.rng.randint(5, 50)):  # the gap: nothing streams these
                self._change(cur)
        client.put_config(self.connector)
        return "slot dropped, rows changed in the gap, connector registered again"

    # --- the checker ----------------------------------------------------------------------
    def named_step(self) -> str | None:
        """The step the pipeline names now, if any: from the job's reason or the connector's trace."""
        reason = str(streaming_job.progress(self.settings).get("reason") or "")
        # The step a message names first: "Run 'cdcpipe resync' ... (with '--rebuild' if the
        # new type does not fit)" is a resync; if the type then does not fit, the job stops
        # again naming the rebuild, and that is the next step.
        if "'cdcpipe up'" in reason:
            return "up, resync"
        if "Run 'cdcpipe resync'" in reason or "run 'cdcpipe resync'" in reason:
            return "resync"
        if "cdcpipe resync --rebuild" in reason:
            return "resync --rebuild"
        if "cdcpipe resync" in reason:
            return "resync"
        try:
            status = self.connect().status(self.connector.name)
        except CdcpipeError:
            return None
        traces = " ".join(t.get("trace") or "" for t in status.get("tasks", []))
        if "no longer available" in traces or "reset-offsets" in traces:
            return "connector reset-offsets"
        return None

    def take_step(self, step: str) -> None:
        """Do exactly what the pipeline named (docs/operations.md's step for a lost slot is
        ``connector reset-offsets`` and then ``resync``)."""
        if step == "connector reset-offsets":
            self.connect().reset_offsets(self.connector.name, timeout=180)
            step = "resync"
        if step == "up, resync":
            runtime.up(self.settings, progress=lambda m: None)
            step = "resync"
        kafka, registry = runtime.service(self.settings, "kafka"), runtime.service(self.settings, "schema_registry")
        with runtime.service(self.settings, "cassandra").connected() as session, self.pg() as pg:
            resync.run(
                pg=pg,
                session=session,
                connect=self.connect(),
                connector=self.connector,
                kafka=kafka.client_config(),
                registry=registry.cache(),
                settings=self.settings,
                timeout=600,
                rebuild=step == "resync --rebuild",
                say=lambda m: None,
            )

    def settle(self, entry: Entry) -> None:
        """Equal, or a named step taken and then equal; CheckFailed otherwise."""
        started = time.monotonic()
        deadline = started + self.settle_seconds
        last = ""
        while True:
            report = None
            try:
                with runtime.service(self.settings, "cassandra").connected() as session, self.pg() as pg:
                    report = verify.judge_live(
                        pg, session, self.settings, runtime.service(self.settings, "kafka").client_config(), timeout=90
                    )
                if report.equal:
                    entry.to_equal = round(time.monotonic() - started, 1)
                    entry.verdict = "equal" + (f" after {' + '.join(entry.steps)}" if entry.steps else "")
                    return
                last = report.summary() + ": " + "; ".join(report.lines(3))
            except Inconclusive as exc:
                last = str(exc)
            except Exception as exc:  # noqa: BLE001 - a service still coming back: judged again until the deadline
                last = f"{exc.__class__.__name__}: {exc}"
            step = self.named_step()
            if step is not None and len(entry.steps) < 3:
                self.say(f"      the pipeline names a step: {step}")
                entry.steps.append(step)
                self.take_step(step)
                continue
            if report is not None and not report.equal and not report.problems and report.keys():
                raise CheckFailed(
                    f"operation {entry.index} ({entry.op}: {entry.detail}): the read model diverged and no step is named: {last}"
                )
            if time.monotonic() > deadline:
                raise CheckFailed(
                    f"operation {entry.index} ({entry.op}: {entry.detail}): not equal and no step named "
                    f"within {self.settle_seconds:.0f}s: {last}"
                )
            time.sleep(2)

    def run(self, ops: int, budget: float, only: list[str] | None = None) -> list[Entry]:
        names = [n for n in OPERATIONS if only is None or n in only]
        weights = [OPERATIONS[n] for n in names]
        started = time.monotonic()
        self.say(f"opcheck seed {self.seed}: up to {ops} operations, budget {budget:.0f}s")
        self.settle(Entry(0, "start"))  # a pipeline that is not equal to begin with is not ours to judge
        for index in range(1, ops + 1):
            if time.monotonic() - started > budget:
                self.say(f"budget of {budget:.0f}s spent after {index - 1} operations")
                break
            name = self.rng.choices(names, weights)[0]
            entry = Entry(index, name)
            self.log.append(entry)
            began = time.monotonic()
            entry.detail = getattr(self, f"op_{name}")()
            entry.seconds = round(time.monotonic() - began, 1)
            self.say(f"  {index:>3} {name:<18} {entry.detail} ({entry.seconds}s)")
            self.settle(entry)
            self.say(f"      {entry.verdict} ({entry.to_equal}s)")
        return self.log

    def tidy(self) -> Entry:
        """Drop the checker's columns and delete its rows (this run's, and any an interrupted
        run left), then judge once more: the next run, the demo or a test meets the usual
        table. The columns' emptied cells stay in cdc.users (Cassandra's own DROP is unsafe
        here: cassandra_sink.REBUILD_STEP); ``cdcpipe resync --rebuild`` removes them."""
        from psycopg.rows import tuple_row

        entry = Entry(len(self.log) + 1, "tidy")
        began = time.monotonic()
        with self.pg(admin=True) as su, su.cursor(row_factory=tuple_row) as cur:
            left = [
                name
                for (name,) in cur.execute(
                    "SELECT column_name FROM information_schema.columns WHERE table_schema = 'public' AND table_name = 'users' "
                    "AND column_name ~ %s ORDER BY ordinal_position",
                    (COLUMN_PATTERN,),
                )
            ]
            if left:
                cur.execute("ALTER TABLE public.users " + ", ".join(f"DROP COLUMN {name}" for name in left))
            deleted = cur.execute("DELETE FROM public.users WHERE username LIKE %s", (PREFIX + "%",)).rowcount
        self.columns.clear()
        self.rows.clear()
        entry.detail = f"{len(left)} column(s) dropped, {deleted} row(s) deleted"
        entry.seconds = round(time.monotonic() - began, 1)
        self.log.append(entry)
        self.say(f"  tidy: {entry.detail}")
        self.settle(entry)
        self.say(f"      {entry.verdict} ({entry.to_equal}s)")
        return entry

    def to_json(self) -> dict[str, Any]:
        return {"seed": self.seed, "summary": summary(self.log), "operations": [asdict(e) for e in self.log]}


#: Operation -> weight. Cheap ones often, expensive ones (slot loss) rarely.
OPERATIONS: dict[str, int] = {
    "burst": 24,
    "big_transaction": 8,
    "add_column": 9,
    "add_column_default": 4,
    "drop_column": 5,
    "rename_column": 4,
    "widen_past_int": 3,
    "precision_cut": 3,
    "truncate": 2,
    "replace_table": 1,
    "kill": 7,
    "resync": 3,
    "resync_killed": 4,
    "two_resyncs": 2,
    "slot_loss": 1,
}


def summary(log: list[Entry]) -> str:
    """Counts of operations, steps taken and the slowest time to equal."""
    from collections import Counter

    ops = Counter(e.op for e in log)
    steps = Counter(s for e in log for s in e.steps)
    slowest = max(log, key=lambda e: e.to_equal, default=None)
    return (
        f"{len(log)} operations ({', '.join(f'{k} {v}' for k, v in ops.most_common())}); "
        f"steps taken: {', '.join(f'{k} {v}' for k, v in steps.most_common()) or 'none'}; "
        + (f"slowest to equal: {slowest.to_equal}s after #{slowest.index} {slowest.op}" if slowest else "")
    )
