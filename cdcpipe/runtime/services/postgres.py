"""PostgreSQL: a private cluster with logical decoding, from the machine's server binaries."""

from __future__ import annotations

import glob
import hashlib
import os
import pwd
import re
import shutil
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

from ...errors import ConfigError, MissingDependency, ServiceFailed
from ...settings import private_dir, write_private
from .. import migrations, processes
from .base import NotReady, Service

MIN_VERSION = 15
#: Debian's package that ships initdb and postgres.
PACKAGE_HINT = "Debian/Ubuntu: apt-get install postgresql (or set CDCPIPE_PG_BIN to a PostgreSQL 15+ bin directory)"

#: Server settings: logical decoding for Debezium, room for Airflow's connection pool.
SERVER_SETTINGS = {
    "wal_level": "logical",
    "max_replication_slots": "10",
    "max_wal_senders": "10",
    "max_connections": "200",
    "shared_buffers": "128MB",
    "logging_collector": "off",
    "timezone": "UTC",
}

#: Databases and their owners; each owner gets a password from credentials.
DATABASES = {"users": "cdcpipe", "airflow": "airflow", "registry": "registry"}
#: Client authentication: passwords (SCRAM) only, loopback only, no physical replication.
PG_HBA = """# Written by cdcpipe on every 'up'; edit cdcpipe/runtime/services/postgres.py, not this file.
local   all   all                  scram-sha-256
host    all   all   127.0.0.1/32   scram-sha-256
host    all   all   ::1/128        scram-sha-256
"""

#: Databases only their owner (and the superuser) may connect to: all but users.
PRIVATE_DATABASES = ("airflow", "registry", "postgres", "template1")
#: Grants in the users database that sql/postgres leaves to each runtime (the Docker stack's
#: postgres-setup runs the same statements; tests/test_runtime_parity.py compares them).
USERS_DB_GRANTS = (
    # The application login writes public.users through the role the migrations create.
    "GRANT users_writer TO cdcpipe",
    # The capture watchdog (cdcpipe.runtime.liveness) reads the heartbeat as cdcpipe.
    "GRANT SELECT ON public.cdc_heartbeat TO cdcpipe",
    # ... and how far the slot's WAL sender has read (sql/postgres/002_cdc.sql).
    "GRANT EXECUTE ON FUNCTION public.cdc_slot_sent_lsn(name) TO cdcpipe",
    # cdcpipe resync signals Debezium's incremental snapshots (sql/postgres/003_resync.sql).
    "GRANT cdc_signaller TO cdcpipe",
    # cdcpipe schema-changes lists the journal of DDL (sql/postgres/004_schema_changes.sql).
    "GRANT SELECT ON public.cdc_schema_changes TO cdcpipe",
)


def find_bin_dir() -> Path:
    """The directory holding ``initdb`` and ``postgres`` of PostgreSQL 15 or newer."""
    candidates: list[Path] = []
    if os.environ.get("CDCPIPE_PG_BIN"):
        candidates.append(Path(os.environ["CDCPIPE_PG_BIN"]))
    debian = sorted(glob.glob("/usr/lib/postgresql/*/bin"), key=lambda p: int(re.sub(r"\D", "", p.split("/")[-2]) or 0))
    candidates += [Path(p) for p in reversed(debian)]
    on_path = shutil.which("postgres")
    if on_path:
        candidates.append(Path(on_path).resolve().parent)
    for directory in candidates:
        if (directory / "initdb").exists() and (directory / "postgres").exists():
            out = subprocess.run([str(directory / "postgres"), "--version"], capture_output=True, text=True).stdout
            match = re.search(r"(\d+)", out)
            if match and int(match.group(1)) >= MIN_VERSION:
                return directory
    raise MissingDependency(f"PostgreSQL {MIN_VERSION}+ server binaries (initdb, postgres) not found. {PACKAGE_HINT}")


def extra_settings() -> dict[str, str]:
    """Server settings from CDCPIPE_PG_SETTINGS ("key=value;key=value"), applied last."""
    raw = os.environ.get("CDCPIPE_PG_SETTINGS", "")
    result = {}
    for item in filter(None, (part.strip() for part in raw.split(";"))):
        key, sep, value = item.partition("=")
        if not sep:
            raise ConfigError(f"CDCPIPE_PG_SETTINGS: {item!r} is not key=value")
        result[key.strip()] = value.strip()
    return result


def run_as() -> str | None:
    """initdb and postgres refuse to run as root: use an unprivileged account then."""
    if os.geteuid() != 0:
        return None
    for name in ("postgres", "nobody"):
        try:
            pwd.getpwnam(name)
            return name
        except KeyError:
            continue
    raise MissingDependency("Running as root, but neither a 'postgres' nor a 'nobody' account exists to run PostgreSQL.")


#: Where the cluster lives when the server runs as another account (under root).
EXTERNAL_ROOT = Path("/var/lib/cdcpipe")


class Postgres(Service):
    """PostgreSQL as the state directory's owner, or, under root, as the ``postgres`` account.

    Under root the server must run as another account (PostgreSQL refuses root), and that
    account must reach its data directory, its socket directory and initdb's password file.
    The state directory is mode 0700 and owned by root (see ``settings.secure_home``), so
    nothing inside it is reachable by that account, wherever the checkout is. Hence the rule,
    one and unconditional: **under root the cluster always lives in
    ``/var/lib/cdcpipe/postgres-<hash of the state directory>``** (mode 0700, owned by that
    account), and ``<state>/postgres`` is a symbolic link to it; ``down --purge`` removes both.
    Nothing above the checkout is chmod-ed, and the state directory is never loosened.

    Alternatives rejected: deciding the placement by probing reachability *before*
    tightening the state directory gives a cluster that the tightening then locks out;
    a 0711 state directory would let every account traverse into it (only file modes would
    then protect it). Without root the server runs as the state directory's owner, which
    can always reach it, so the cluster stays in ``<state>/postgres``.

    A cluster that an older cdcpipe put inside the state directory (when the directory was
    still 0755) is moved out once, while the server is stopped, by ``prepare``. The server's
    log file is opened by cdcpipe and handed over as stdout, so it stays in ``<state>/logs``.
    """

    name = "postgres"
    processes = ("postgres",)
    port_names = ("postgres",)
    start_timeout = 60.0
    # SIGINT is PostgreSQL's "fast" shutdown: roll back sessions, checkpoint, exit.
    stop_signal = signal.SIGINT

    def __init__(self, settings, secrets):
        super().__init__(settings, secrets)
        if self.dir.is_symlink():  # placed outside the state directory by an earlier prepare()
            self.dir = self.dir.resolve()

    @property
    def link(self) -> Path:
        return self.settings.service_dir(self.name)

    def _place(self) -> None:
        """Under root, put the cluster outside the 0700 state directory (see the class doc)."""
        user = run_as()
        if user is None or self.link.is_symlink():
            return
        digest = hashlib.sha256(str(self.settings.home).encode()).hexdigest()[:12]
        external = EXTERNAL_ROOT / f"postgres-{digest}"
        EXTERNAL_ROOT.mkdir(mode=0o755, parents=True, exist_ok=True)
        if external.exists():
            # Left by an earlier state directory at this same path, since deleted: its
            # passwords went with it, so the cluster can't be used. A new one replaces it.
            shutil.rmtree(external)
        legacy = self.link.exists() and (self.link / "data" / "PG_VERSION").exists()
        if legacy:
            self._move_out(external)
        else:
            if self.link.exists():
                shutil.rmtree(self.link)  # what an earlier, failed start left: no cluster in it
            external.mkdir(mode=0o700)
            self._chown(external)
        self.link.symlink_to(external, target_is_directory=True)
        self.dir = external
        what = f"its cluster moved from {self.link} to {external}" if legacy else f"its cluster lives in {external}"
        print(
            f"  postgres         {self.settings.home} is private (0700) and PostgreSQL runs as the '{user}' "
            f"account, which can't enter it: {what} ({self.link} links to it; "
            f"'cdcpipe down --purge' removes it)",
            file=sys.stderr,
        )

    def _move_out(self, external: Path) -> None:
        """Move a stopped cluster from ``<state>/postgres`` to ``external``, owners and modes kept."""
        if self.running():
            raise ServiceFailed("postgres", f"cannot move the cluster in {self.link} while its server runs: cdcpipe down postgres first")
        try:
            os.rename(self.link, external)  # same file system
        except OSError:
            scratch = external.with_name(external.name + ".moving")
            shutil.rmtree(scratch, ignore_errors=True)
            done = subprocess.run(["cp", "-a", str(self.link), str(scratch)], capture_output=True, text=True)
            if done.returncode != 0:
                shutil.rmtree(scratch, ignore_errors=True)
                raise ServiceFailed("postgres", f"copying the cluster {self.link} to {scratch} failed:\n{done.stderr}") from None
            scratch.rename(external)
            shutil.rmtree(self.link)
        external.chmod(0o700)

    def purge(self) -> None:
        """Remove a cluster placed outside the state directory (``down --purge``)."""
        if self.link.is_symlink():
            target = self.link.resolve()
            if target.parent == EXTERNAL_ROOT:
                shutil.rmtree(target, ignore_errors=True)

    @property
    def data_dir(self) -> Path:
        return self.dir / "data"

    @property
    def socket_dir(self) -> Path:
        return self.dir / "sock"

    def _chown(self, *paths: Path) -> None:
        """Hand what we create as root to the server's account (the server creates the rest)."""
        user = run_as()
        if user is None:
            return
        entry = pwd.getpwnam(user)
        for path in paths:
            os.chown(path, entry.pw_uid, entry.pw_gid)

    def prepare(self) -> None:
        bin_dir = find_bin_dir()
        self._place()
        private_dir(self.dir)
        self.socket_dir.mkdir(exist_ok=True)
        if not (self.data_dir / "PG_VERSION").exists():
            self._initdb(bin_dir)
        self._write_hba()
        self._chown(self.dir, self.socket_dir)

    def _write_hba(self) -> None:
        """pg_hba.conf without initdb's ``replication`` lines.

        Those admit *physical* replication connections (pg_basebackup, a WAL stream of the
        whole cluster), for which database CONNECT privileges are not checked: the
        replication role could copy the airflow and registry databases. Debezium's logical
        replication connection names its database and matches the ``all`` lines.
        """
        path = self.data_dir / "pg_hba.conf"
        write_private(path, PG_HBA)
        self._chown(path)

    def _initdb(self, bin_dir: Path) -> None:
        """A new cluster, made in a scratch directory and renamed into place when complete,
        so an initdb killed half-way leaves nothing that a later ``up`` would mistake for a
        cluster (the scratch directory is simply made again)."""
        if self.data_dir.exists():
            if any(self.data_dir.iterdir()):
                raise ServiceFailed(
                    "postgres",
                    f"{self.data_dir} holds files but no PG_VERSION: not a complete cluster (an interrupted "
                    f"initdb of an older cdcpipe?). If it holds nothing you need: rm -rf '{self.data_dir}' "
                    "and run 'cdcpipe up' again",
                )
            self.data_dir.rmdir()
        scratch = self.dir / "data.initdb"
        shutil.rmtree(scratch, ignore_errors=True)
        scratch.mkdir(mode=0o700)
        pwfile = self.dir / "initdb.pw"
        write_private(pwfile, self.secrets["postgres"] + "\n")
        self._chown(self.dir, scratch, pwfile)
        try:
            done = subprocess.run(
                [
                    str(bin_dir / "initdb"),
                    "-D",
                    str(scratch),
                    "-U",
                    "postgres",
                    f"--pwfile={pwfile}",
                    "--auth=scram-sha-256",
                    "--encoding=UTF8",
                    "--no-locale",
                ],
                capture_output=True,
                text=True,
                user=run_as(),
                cwd=self.dir,  # not the caller's directory, which the server's account may not enter
            )
        finally:
            pwfile.unlink(missing_ok=True)
        if done.returncode != 0:
            raise ServiceFailed("postgres", f"initdb failed:\n{done.stdout}\n{done.stderr}")
        scratch.rename(self.data_dir)

    def _clear_stale_postmaster_pid(self) -> None:
        """Remove the data directory's postmaster.pid when the pid it names is no postmaster.

        After a ``kill -9`` the postmaster stays a zombie until init reaps it, and this
        machine's init reaps late. PostgreSQL's check (``kill(pid, 0)``) counts a zombie as a
        running postmaster, so ``cdcpipe up`` right after the kill was refused ("lock file
        postmaster.pid already exists"; found by ``cdcpipe opcheck``). Removing the file is
        safe when the pid is gone, a zombie, or another program. Old backends still attached
        to the shared memory make PostgreSQL refuse to start all the same."""
        lock = self.data_dir / "postmaster.pid"
        try:
            pid = int(lock.read_text().split("\n", 1)[0])
        except (OSError, ValueError):
            return
        try:
            command = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0", 1)[0]
        except OSError:
            command = b""
        if not processes.is_alive(pid) or not command.endswith(b"postgres"):
            lock.unlink(missing_ok=True)

    def launch(self) -> None:
        # The socket directory is ours alone and no server of ours runs (launch is only called
        # then): a lock file in it is stale. PostgreSQL trusts it while the pid it names is
        # alive, and pids are reused, so an `up` right after a crash could be refused.
        for lock in self.socket_dir.glob(".s.PGSQL.*.lock"):
            lock.unlink(missing_ok=True)
        self._clear_stale_postmaster_pid()
        argv = [str(find_bin_dir() / "postgres"), "-D", str(self.data_dir)]
        settings = {
            **SERVER_SETTINGS,
            "listen_addresses": self.host,
            "port": str(self.port()),
            "unix_socket_directories": str(self.socket_dir),
            **extra_settings(),
        }
        for key, value in settings.items():
            argv += ["-c", f"{key}={value}"]
        self.spawn("postgres", argv, user=run_as(), cwd=self.dir)

    def connect(self, dbname: str = "postgres", user: str = "postgres", **kwargs: Any):
        import psycopg

        return psycopg.connect(
            host=self.host,
            port=self.port(),
            dbname=dbname,
            user=user,
            password=self.secrets[user],
            connect_timeout=5,
            **kwargs,
        )

    def probe(self) -> None:
        import psycopg

        try:
            with self.connect() as conn:
                conn.execute("SELECT 1").fetchone()
        except psycopg.OperationalError as exc:
            raise NotReady(str(exc).strip()) from None

    def after_ready(self) -> None:
        """Roles, databases and the pipeline's migrations; all idempotent. A connection lost
        on the way (the server restarting, say) is NotReady: ``up`` tries it all again."""
        import psycopg

        try:
            self._set_up()
        except psycopg.OperationalError as exc:
            raise NotReady(f"set-up interrupted: {str(exc).strip()[:300]}") from None

    def _set_up(self) -> None:
        from psycopg import sql

        with self.connect(autocommit=True) as conn:
            for owner in sorted(set(DATABASES.values())):
                exists = conn.execute("SELECT 1 FROM pg_roles WHERE rolname = %s", (owner,)).fetchone()
                verb = "ALTER" if exists else "CREATE"
                conn.execute(
                    sql.SQL(verb + " ROLE {} WITH LOGIN PASSWORD {}").format(sql.Identifier(owner), sql.Literal(self.secrets[owner]))
                )
            for db, owner in DATABASES.items():
                if not conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", (db,)).fetchone():
                    conn.execute(sql.SQL("CREATE DATABASE {} OWNER {}").format(sql.Identifier(db), sql.Identifier(owner)))
            # Every role may connect to every database by default (PUBLIC has CONNECT). The
            # replication role's password sits in Connect's environment: it gets the users
            # database and nothing else. Owners (and the superuser) keep theirs explicitly.
            for db in PRIVATE_DATABASES:
                conn.execute(sql.SQL("REVOKE CONNECT ON DATABASE {} FROM PUBLIC").format(sql.Identifier(db)))
                owner = DATABASES.get(db)
                if owner:
                    conn.execute(sql.SQL("GRANT CONNECT ON DATABASE {} TO {}").format(sql.Identifier(db), sql.Identifier(owner)))
        with self.connect(dbname="users", autocommit=True) as conn:
            migrations.apply_postgres(conn)
            # The migrations create the replication role without a password (they are shared
            # with the Docker stack); the local runtime sets its generated one.
            conn.execute(sql.SQL("ALTER ROLE debezium WITH PASSWORD {}").format(sql.Literal(self.secrets["debezium"])))
            for grant in USERS_DB_GRANTS:
                conn.execute(grant)
            self._check_debezium(conn)

    @staticmethod
    def _check_debezium(conn) -> None:
        """The replication role reads public.users and writes nothing but its heartbeats."""
        row = conn.execute(
            "SELECT has_table_privilege('debezium', 'public.users', 'SELECT'),"
            " has_table_privilege('debezium', 'public.users', 'INSERT, UPDATE, DELETE, TRUNCATE'),"
            " (SELECT rolsuper OR rolcreaterole OR rolcreatedb OR rolbypassrls FROM pg_roles WHERE rolname = 'debezium')"
        ).fetchone()
        if row != (True, False, False):
            raise ServiceFailed(
                "postgres",
                "the replication role 'debezium' must be able to SELECT public.users and nothing more "
                f"(select, write, superuser/createrole/createdb/bypassrls = {row}); see sql/postgres/002_cdc.sql",
            )

    def dsn(self, user: str = "cdcpipe", dbname: str = "users") -> str:
        from urllib.parse import quote

        return f"postgresql://{user}:{quote(self.secrets[user], safe='')}@{self.host}:{self.port()}/{dbname}"

    def info(self) -> dict[str, Any]:
        return {
            # No password: status --json must not print one ('cdcpipe secret cdcpipe' does).
            "dsn": f"postgresql://cdcpipe@{self.host}:{self.port()}/users",
            "host": self.host,
            "port": self.port(),
            "database": "users",
            "user": "cdcpipe",
            "data_dir": str(self.data_dir),
        }
