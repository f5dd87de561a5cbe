"""A realistic mix of inserts, updates and deletes on ``public.users``, planned in advance and
written as fast as PostgreSQL takes it (``cdcpipe bench --from-postgres``).

The plan is pure (:func:`plan`: a seed in, transactions out) so the benchmark spends no time
generating while it writes, and so its rules are unit-tested:

* a change is an insert, an update or a delete, drawn with :class:`Mix`'s weights (default
  40 / 50 / 10 %); updates and deletes touch rows an earlier transaction of the plan inserted
  and that are still alive, never the table's other rows;
* a key appears at most once per transaction, so the order of the statements inside one
  transaction does not matter, and each key's changes are in transaction order — the order
  Debezium publishes them in (one partition, commit order);
* inserts are whole rows in the shape of the ingest DAG's (randomuser-like names, places,
  timestamps, coordinates, unicode); updates change what ``user_churn`` changes (contact
  details and location; ``updated_at`` is the table's trigger's).

:func:`write` sends each transaction as at most three statements over ``unnest`` of arrays
(one INSERT, one UPDATE … FROM, one DELETE … = ANY), about 28 parameters whatever the size,
so the client's per-row cost is building the arrays. Measured on the 2-core machine, stack up:
see cdcpipe/bench/end_to_end.py.
"""

from __future__ import annotations

import datetime as dt
import random
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from ..errors import WriteConflict
from ..runtime.randomuser import NATS, STREETS, TIMEZONES, TITLES

#: Column -> PostgreSQL array type, for the unnest() statements (public.users minus created_at
#: and updated_at, which the table fills).
INSERT_COLUMNS: dict[str, str] = {
    "id": "uuid",
    "username": "text",
    "email": "text",
    "title": "text",
    "first_name": "text",
    "last_name": "text",
    "gender": "text",
    "dob": "timestamptz",
    "registered_at": "timestamptz",
    "phone": "text",
    "cell": "text",
    "street_number": "integer",
    "street_name": "text",
    "city": "text",
    "state": "text",
    "country": "text",
    "postcode": "text",
    "latitude": "double precision",
    "longitude": "double precision",
    "timezone_offset": "text",
    "timezone_description": "text",
    "nationality": "text",
    "picture_large": "text",
    "picture_medium": "text",
    "picture_thumbnail": "text",
}
#: What an update changes (the churn DAG's columns: contact details and location).
UPDATE_COLUMNS: dict[str, str] = {
    "email": "text",
    "phone": "text",
    "street_number": "integer",
    "street_name": "text",
    "city": "text",
    "state": "text",
    "postcode": "text",
    "latitude": "double precision",
    "longitude": "double precision",
}


@dataclass(frozen=True)
class Mix:
    """Weights of inserts, updates and deletes (normalised; need not sum to 1)."""

    inserts: float = 0.4
    updates: float = 0.5
    deletes: float = 0.1

    def __post_init__(self) -> None:
        if min(self.inserts, self.updates, self.deletes) < 0 or self.inserts <= 0:
            raise ValueError(f"a mix needs inserts > 0 and no negative weight: {self}")


@dataclass
class Transaction:
    inserts: list[dict[str, Any]] = field(default_factory=list)  # whole rows
    updates: list[dict[str, Any]] = field(default_factory=list)  # id + UPDATE_COLUMNS
    deletes: list[uuid.UUID] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.inserts) + len(self.updates) + len(self.deletes)

    def keys(self) -> list[str]:
        return [str(r["id"]) for r in self.inserts] + [str(r["id"]) for r in self.updates] + [str(k) for k in self.deletes]


@dataclass
class Plan:
    transactions: list[Transaction]
    prefix: str  # every inserted username starts with it

    @property
    def changes(self) -> int:
        return sum(len(t) for t in self.transactions)

    def counts(self) -> dict[str, int]:
        return {
            "inserts": sum(len(t.inserts) for t in self.transactions),
            "updates": sum(len(t.updates) for t in self.transactions),
            "deletes": sum(len(t.deletes) for t in self.transactions),
        }

    def touched(self) -> list[str]:
        """Every key the plan inserts (and so every key it touches), as text."""
        return [str(r["id"]) for t in self.transactions for r in t.inserts]

    def alive_at_end(self) -> set[str]:
        deleted = {str(k) for t in self.transactions for k in t.deletes}
        return set(self.touched()) - deleted

    def sequence(self) -> dict[str, list[int]]:
        """Per key, the transaction index of each of its changes, in order."""
        out: dict[str, list[int]] = {}
        for i, txn in enumerate(self.transactions):
            for key in txn.keys():
                out.setdefault(key, []).append(i)
        return out


def _row(rng: random.Random, user_id: uuid.UUID, prefix: str, i: int, now: dt.datetime) -> dict[str, Any]:
    nat = rng.choice(sorted(NATS))
    spec = NATS[nat]
    gender = rng.choice(("male", "female"))
    first, last = rng.choice(spec[gender]), rng.choice(spec["last"])
    offset, description = rng.choice(TIMEZONES)
    kind, portrait = ("women" if gender == "female" else "men"), rng.randint(0, 99)
    return {
        "id": user_id,
        "username": f"{prefix}{i}",
        "email": f"{first}.{last}{i}@example.com".lower().replace("'", ""),
        "title": rng.choice(TITLES[gender]),
        "first_name": first,
        "last_name": last,
        "gender": gender,
        "dob": now - dt.timedelta(days=rng.randint(18 * 365, 78 * 365), seconds=rng.randint(0, 86399), microseconds=rng.randint(0, 999999)),
        "registered_at": now - dt.timedelta(days=rng.randint(30, 8000), microseconds=rng.randint(0, 999999)),
        "phone": f"0{rng.randint(10**8, 10**9 - 1)}",
        "cell": f"0{rng.randint(10**8, 10**9 - 1)}",
        **_location(rng, nat),
        "timezone_offset": offset,
        "timezone_description": description,
        "nationality": nat,
        "picture_large": f"https://randomuser.me/api/portraits/{kind}/{portrait}.jpg",
        "picture_medium": f"https://randomuser.me/api/portraits/med/{kind}/{portrait}.jpg",
        "picture_thumbnail": f"https://randomuser.me/api/portraits/thumb/{kind}/{portrait}.jpg",
    }


def _location(rng: random.Random, nat: str) -> dict[str, Any]:
    city, state = rng.choice(NATS[nat]["places"])
    return {
        "street_number": rng.randint(1, 9999),
        "street_name": rng.choice(STREETS),
        "city": city,
        "state": state,
        "country": NATS[nat]["country"],
        "postcode": str(rng.randint(1000, 99999)),
        "latitude": round(rng.uniform(-90, 90), 4),
        "longitude": round(rng.uniform(-180, 180), 4),
    }


def _update(rng: random.Random, user_id: uuid.UUID, i: int) -> dict[str, Any]:
    moved = _location(rng, rng.choice(sorted(NATS)))
    moved.pop("country")
    return {"id": user_id, "email": f"moved{i}@example.com", "phone": f"0{rng.randint(10**8, 10**9 - 1)}", **moved}


def plan(n: int, seed: int = 1, transaction_size: int = 1000, mix: Mix = Mix(), prefix: str | None = None) -> Plan:
    """``n`` changes in transactions of ``transaction_size`` (the last may be smaller).

    A change drawn as an update or delete becomes an insert when no alive key of an earlier
    transaction is free in this one (the first transaction is all inserts)."""
    if n < 1 or transaction_size < 1:
        raise ValueError("n and transaction_size must be positive")
    rng = random.Random(seed)
    prefix = prefix if prefix is not None else f"bench-pg-{seed}-"
    now = dt.datetime(2026, 11, 1, tzinfo=dt.UTC)
    total = mix.inserts + mix.updates + mix.deletes
    insert_below, update_below = mix.inserts / total, (mix.inserts + mix.updates) / total
    alive: list[uuid.UUID] = []  # keys committed by earlier transactions and not deleted
    transactions: list[Transaction] = []
    made = 0
    while made < n:
        txn = Transaction()
        used: set[uuid.UUID] = set()
        born: list[uuid.UUID] = []
        for _ in range(min(transaction_size, n - made)):
            roll = rng.random()
            target = _free_key(rng, alive, used) if roll >= insert_below else None
            if target is None:
                user_id = uuid.UUID(int=rng.getrandbits(128), version=4)
                txn.inserts.append(_row(rng, user_id, prefix, made, now))
                born.append(user_id)
            elif roll < update_below:
                txn.updates.append(_update(rng, target, made))
            else:
                txn.deletes.append(target)
            if target is not None:
                used.add(target)
            made += 1
        if txn.deletes:
            gone = set(txn.deletes)
            alive = [k for k in alive if k not in gone]
        alive.extend(born)
        transactions.append(txn)
    return Plan(transactions, prefix)


def _free_key(rng: random.Random, alive: list[uuid.UUID], used: set[uuid.UUID], tries: int = 8) -> uuid.UUID | None:
    """A random alive key not yet used in this transaction, or None."""
    if len(used) >= len(alive):
        return None
    for _ in range(tries):
        key = alive[rng.randrange(len(alive))]
        if key not in used:
            return key
    return None


def _unnest(columns: dict[str, str]) -> str:
    return ", ".join(f"%s::{sql_type}[]" for sql_type in columns.values())


INSERT_SQL = f"INSERT INTO public.users ({', '.join(INSERT_COLUMNS)}) SELECT * FROM unnest({_unnest(INSERT_COLUMNS)})"
UPDATE_SQL = (
    f"UPDATE public.users AS u SET {', '.join(f'{c} = v.{c}' for c in UPDATE_COLUMNS)} "
    f"FROM unnest(%s::uuid[], {_unnest(UPDATE_COLUMNS)}) AS v(id, {', '.join(UPDATE_COLUMNS)}) WHERE u.id = v.id"
)
DELETE_SQL = "DELETE FROM public.users WHERE id = ANY(%s::uuid[])"


def _arrays(rows: list[dict[str, Any]], columns: list[str]) -> list[list[Any]]:
    return [[row[c] for row in rows] for c in columns]


def write_transaction(pg: Any, txn: Transaction) -> None:
    """One transaction of the plan, in at most three statements; WriteConflict if an update or
    delete misses its row (the connection is left usable: the transaction is rolled back)."""
    with pg.transaction(), pg.cursor() as cur:
        if txn.inserts:
            cur.execute(INSERT_SQL, _arrays(txn.inserts, list(INSERT_COLUMNS)))
        if txn.updates:
            cur.execute(UPDATE_SQL, _arrays(txn.updates, ["id", *UPDATE_COLUMNS]))
            if cur.rowcount != len(txn.updates):
                raise WriteConflict(f"{len(txn.updates) - cur.rowcount} bench rows to update were gone: is something else writing them?")
        if txn.deletes:
            cur.execute(DELETE_SQL, [txn.deletes])
            if cur.rowcount != len(txn.deletes):
                raise WriteConflict(f"{len(txn.deletes) - cur.rowcount} bench rows to delete were gone: is something else writing them?")


def write(pg: Any, the_plan: Plan, on_commit: Callable[[int, float], None] | None = None) -> list[float]:
    """Every transaction of the plan on ``pg`` (autocommit connection), back to back; returns
    each one's commit time (wall clock when COMMIT returned). ``on_commit(i, when)`` is called
    after each."""
    committed: list[float] = []
    for i, txn in enumerate(the_plan.transactions):
        write_transaction(pg, txn)
        when = time.time()
        committed.append(when)
        if on_commit:
            on_commit(i, when)
    return committed


def delete_rows(pg: Any, keys: list[str], chunk: int = 10_000) -> int:
    """Delete these keys from public.users (the bench's cleanup); returns rows deleted."""
    deleted = 0
    for start in range(0, len(keys), chunk):
        with pg.transaction(), pg.cursor() as cur:
            cur.execute(DELETE_SQL, [[uuid.UUID(k) for k in keys[start : start + chunk]]])
            deleted += cur.rowcount
    return deleted
