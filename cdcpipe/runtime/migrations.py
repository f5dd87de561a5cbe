"""Applying the repository's SQL and CQL files, in name order, idempotently."""

from __future__ import annotations

from pathlib import Path

from ..settings import REPO

POSTGRES_DIR = REPO / "sql" / "postgres"
CASSANDRA_DIR = REPO / "sql" / "cassandra"


def files(directory: Path, suffix: str) -> list[Path]:
    return sorted(p for p in directory.glob(f"*{suffix}") if p.is_file())


def apply_postgres(conn) -> list[str]:
    """Run every ``sql/postgres/*.sql`` on ``conn`` (autocommit); each file is idempotent."""
    applied = []
    for path in files(POSTGRES_DIR, ".sql"):
        with conn.transaction():
            conn.execute(path.read_text())
        applied.append(path.name)
    return applied


def cql_statements(text: str) -> list[str]:
    """Split a CQL file into statements (';'-terminated; '--' and '//' comments dropped)."""
    lines = []
    for line in text.splitlines():
        stripped = line.strip()
        if stripped.startswith("--") or stripped.startswith("//"):
            continue
        lines.append(line)
    return [s.strip() for s in "\n".join(lines).split(";") if s.strip()]


def apply_cassandra(session) -> list[str]:
    """Run every ``sql/cassandra/*.cql`` statement; each is written to be idempotent."""
    applied = []
    for path in files(CASSANDRA_DIR, ".cql"):
        for statement in cql_statements(path.read_text()):
            session.execute(statement, timeout=60)
        applied.append(path.name)
    return applied


def users_table_ddl(name: str = "users", key_only: bool = False) -> str:
    """sql/cassandra/001_users.cql's CREATE TABLE for cdc.users, as ``cdc.<name>``; with
    ``key_only``, the primary key alone (same options): the job then adds every other
    column, typed from the writer schema of the records it applies."""
    text = (CASSANDRA_DIR / "001_users.cql").read_text()
    statement = next(s for s in cql_statements(text) if "TABLE IF NOT EXISTS cdc.users " in s).replace("cdc.users ", f"cdc.{name} ")
    if key_only:
        head, rest = statement.split("(", 1)
        body, tail = rest.rsplit(")", 1)
        key = next(column.strip() for column in body.split(",") if "PRIMARY KEY" in column)
        statement = f"{head}({key}){tail}"
    return statement


def create_users_copy(session, name: str) -> None:
    """``cdc.<name>``: a table made by sql/cassandra/001_users.cql's definition of cdc.users
    (same columns and options), for benchmarks and tests; idempotent. The keyspace must exist."""
    session.execute(users_table_ddl(name), timeout=60)
