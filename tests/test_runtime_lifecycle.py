"""up/down behaviour on a second, private state directory (PostgreSQL only: it is quick).

The state directory lives under the session's own (not in /tmp) because PostgreSQL runs as
an unprivileged account when the tests run as root, and must be able to reach it.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
from pathlib import Path

import pytest
from cdc_helpers import run_cli

from cdcpipe.runtime import processes

# Each test starts PostgreSQL of a private state directory through `cdcpipe up`, which needs
# the resolved JVM artifacts: not part of `make unit`.
pytestmark = pytest.mark.stack


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture
def private_home(conf):
    home = conf.home / "test-lifecycle"
    shutil.rmtree(home, ignore_errors=True)
    home.parent.mkdir(parents=True, exist_ok=True)
    env = {**os.environ, "CDCPIPE_HOME": str(home), "CDCPIPE_PORT_POSTGRES": str(_free_port())}
    yield home, env
    run_cli("down", "--purge", env=env, timeout=120)


def cdcpipe(env, *args, timeout=180):
    return run_cli(*args, env=env, timeout=timeout)


def _pid(home: Path, name: str) -> int:
    return json.loads((home / "run" / f"{name}.pid").read_text())["pid"]


def test_busy_port_is_named(private_home):
    home, env = private_home
    with socket.socket() as blocker:
        blocker.bind(("127.0.0.1", 0))
        blocker.listen()
        port = blocker.getsockname()[1]
        out = cdcpipe({**env, "CDCPIPE_PORT_POSTGRES": str(port)}, "up", "postgres")
    assert out.returncode == 4, out.stderr
    assert f"postgres: port {port} on 127.0.0.1 is already in use" in out.stderr
    assert "CDCPIPE_PORT_POSTGRES" in out.stderr
    assert not (home / "run" / "postgres.pid").exists()


def test_up_twice_is_harmless_and_down_leaves_nothing(private_home):
    home, env = private_home
    first = cdcpipe(env, "up", "postgres")
    assert first.returncode == 0, first.stderr
    pid = _pid(home, "postgres")
    backends = processes.tree(pid)
    assert pid in backends and len(backends) > 1  # postmaster + its background workers

    second = cdcpipe(env, "up", "postgres")
    assert second.returncode == 0, second.stderr
    assert "already running" in second.stderr
    assert _pid(home, "postgres") == pid

    down = cdcpipe(env, "down")
    assert down.returncode == 0, down.stderr
    assert "postgres" in down.stderr and "stopped" in down.stderr
    assert [p for p in backends if processes.is_alive(p)] == []
    status = cdcpipe(env, "status", "--json")
    assert json.loads(status.stdout)["services"]["postgres"]["state"] == "stopped"
    assert status.returncode == 1  # not everything is running


def test_down_purge_deletes_the_state_directory(private_home):
    home, env = private_home
    assert cdcpipe(env, "up", "postgres").returncode == 0
    assert (home / "postgres" / "data" / "PG_VERSION").exists()
    out = cdcpipe(env, "down", "--purge")
    assert out.returncode == 0, out.stderr
    assert not home.exists()


def test_a_service_that_dies_is_reported_with_its_log(private_home):
    home, env = private_home
    # A PostgreSQL setting it refuses makes the server exit at start-up.
    bad = {**env, "CDCPIPE_PG_SETTINGS": "shared_buffers=1TB"}
    out = cdcpipe(bad, "up", "postgres")
    assert out.returncode == 5, out.stderr
    assert "postgres:" in out.stderr
    assert "last lines of" in out.stderr and "postgres.log" in out.stderr


def test_postgres_in_a_private_directory_first_time(tmp_path_factory):
    """A checkout in root's home or a `mktemp -d` directory (mode 0700), with no state: `up`
    works the first time, whoever runs it. Under root the server runs as the postgres account,
    which can't enter such a directory, so its cluster must be placed where it can."""
    import stat
    import tempfile

    import psycopg

    private = Path(tempfile.mkdtemp(prefix="cdcpipe-private-"))
    assert stat.S_IMODE(private.stat().st_mode) == 0o700
    home = private / "checkout" / ".cdcpipe"
    port = _free_port()
    env = {**os.environ, "CDCPIPE_HOME": str(home), "CDCPIPE_PORT_POSTGRES": str(port)}
    placed = None
    try:
        first = cdcpipe(env, "up", "postgres")
        assert first.returncode == 0, first.stderr
        secrets = json.loads((home / "secrets.json").read_text())
        with psycopg.connect(host="127.0.0.1", port=port, dbname="users", user="postgres", password=secrets["postgres"]) as conn:
            data_dir = Path(conn.execute("SHOW data_directory").fetchone()[0])
            assert conn.execute("SELECT count(*) FROM public.users").fetchone()[0] == 0
        assert (data_dir / "PG_VERSION").exists()
        if os.geteuid() == 0:
            assert (home / "postgres").is_symlink()
            placed = (home / "postgres").resolve()
            assert data_dir == placed / "data"
            assert placed.owner() == "postgres" and stat.S_IMODE(placed.stat().st_mode) == 0o700
            assert "PostgreSQL runs as the 'postgres' account, which can't enter it" in first.stderr and str(placed) in first.stderr
        else:  # the same account runs the server: it stays in the state directory
            assert data_dir == home / "postgres" / "data"
        again = cdcpipe(env, "up", "postgres")
        assert again.returncode == 0 and "already running" in again.stderr, again.stderr
    finally:
        out = cdcpipe(env, "down", "--purge")
        shutil.rmtree(private, ignore_errors=True)
    assert out.returncode == 0, out.stderr
    assert not home.exists()
    assert placed is None or not placed.exists()


def test_up_right_after_a_kill_is_not_refused_by_a_zombie_postmaster(private_home):
    """After `kill -9` the postmaster is a zombie until init reaps it, and this machine's init
    reaps late: PostgreSQL counted the zombie as a running postmaster and refused to start
    ("lock file postmaster.pid already exists"), so `cdcpipe up` failed (found by
    `cdcpipe opcheck`). Here a zombie of the test's own, of the server's account (PostgreSQL
    takes EPERM from another account's pid as "no postmaster"), holds the pid the lock file names."""
    import signal
    import subprocess
    import time

    from cdcpipe import runtime, settings
    from cdcpipe.runtime.services.postgres import run_as

    home, env = private_home
    first = cdcpipe(env, "up", "postgres")
    assert first.returncode == 0, first.stderr
    conf = settings.load(env)
    processes.stop(conf, "postgres", sig=signal.SIGKILL, timeout=5)
    lock = runtime.service(conf, "postgres").data_dir / "postmaster.pid"
    assert lock.exists()  # a kill -9 leaves it
    zombie = subprocess.Popen(["true"], user=run_as())
    try:
        while Path(f"/proc/{zombie.pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z":
            time.sleep(0.05)
        lines = lock.read_text().split("\n")
        lock.write_text("\n".join([str(zombie.pid), *lines[1:]]))
        again = cdcpipe(env, "up", "postgres")
        assert again.returncode == 0, again.stderr
        assert processes.is_alive(_pid(home, "postgres"))
    finally:
        zombie.wait()
