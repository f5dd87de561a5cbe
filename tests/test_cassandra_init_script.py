"""scripts/cassandra-init.sh, the Docker stack's Cassandra set-up, run against the local
runtime's real Cassandra 5.0.6 with the venv's cqlsh: no Docker engine runs here, so this is
where the script meets a server. tests/test_compose.py checks what it asks for (statements,
order, no password on a command line) against a recording cqlsh; this checks that Cassandra
accepts it, on both paths: a node it set up before, and a new node where only the default
superuser cassandra/cassandra exists."""

from __future__ import annotations

import os
import subprocess
import sys
import uuid
from pathlib import Path

import pytest

from cdcpipe.runtime import credentials
from cdcpipe.runtime.services.cassandra import GRANTS, ROLES
from cdcpipe.settings import REPO

SCRIPT = REPO / "scripts" / "cassandra-init.sh"
pytestmark = pytest.mark.usefixtures("stack")


def _run(conf, admin_role: str, admin_password: str) -> subprocess.CompletedProcess:
    """The script on the local Cassandra; the job's and readers' passwords are the local
    runtime's own, so their roles end as they were."""
    secrets = credentials.load(conf)
    return subprocess.run(
        ["bash", str(SCRIPT), conf.host, str(conf.port("cassandra"))],
        env={
            "PATH": os.environ["PATH"],
            "HOME": os.environ.get("HOME", "/tmp"),
            "CQLSH": str(Path(sys.executable).parent / "cqlsh"),
            "CASSANDRA_SQL": str(REPO / "sql" / "cassandra"),
            "CASSANDRA_ADMIN_ROLE": admin_role,
            "CASSANDRA_ADMIN_PASSWORD": admin_password,
            "CASSANDRA_JOB_PASSWORD": secrets[ROLES["job"][1]],
            "CASSANDRA_READER_PASSWORD": secrets[ROLES["reader"][1]],
            "CASSANDRA_LOGIN_WAIT": "4",
        },
        capture_output=True,
        text=True,
        timeout=300,
    )


def _grants(session) -> set[tuple[str, str]]:
    rows = session.execute("SELECT role, permissions FROM system_auth.role_permissions WHERE resource = 'data/cdc' ALLOW FILTERING")
    return {(row.role, p) for row in rows for p in row.permissions}


def _roles(session) -> dict[str, bool]:
    return {row.role: row.is_superuser for row in session.execute("SELECT role, is_superuser FROM system_auth.roles")}


def test_on_a_node_it_set_up_it_changes_nothing(conf, cassandra):
    """The admin role logs in: no role is added or dropped, the grants stay, exit 0."""
    secrets = credentials.load(conf)
    roles, grants = _roles(cassandra), _grants(cassandra)
    done = _run(conf, ROLES["admin"][0], secrets[ROLES["admin"][1]])
    assert done.returncode == 0, done.stdout + done.stderr
    assert f"logged in as role {ROLES['admin'][0]}" in done.stdout
    assert _roles(cassandra) == roles and _grants(cassandra) == grants
    assert {(ROLES[use][0], p) for use, permissions in GRANTS.items() for p in permissions} <= grants
    assert not any(secret in done.stdout + done.stderr for secret in secrets.values())


def test_on_a_new_node_it_takes_over_from_the_default_superuser(conf, cassandra):
    """Only the default superuser logs in (here: a new admin role's name, and cassandra/cassandra
    made for the test): the script creates the admin role with its password, drops the default
    one, and the new admin logs in."""
    from cdcpipe.pipeline.cassandra_session import session
    from cdcpipe.pipeline.logins import Login

    admin = f"docker_admin_{uuid.uuid4().hex[:8]}"
    password = uuid.uuid4().hex
    cassandra.execute("CREATE ROLE IF NOT EXISTS cassandra WITH SUPERUSER = true AND LOGIN = true AND PASSWORD = 'cassandra'")
    try:
        done = _run(conf, admin, password)
        assert done.returncode == 0, done.stdout + done.stderr
        assert f"the default superuser creates role {admin}" in done.stdout
        roles = _roles(cassandra)
        assert roles.get(admin) is True and "cassandra" not in roles
        with session(conf.host, conf.port("cassandra"), login=Login(admin, password)) as opened:
            assert opened.execute("SELECT count(*) FROM cdc.sync_state").one() is not None
        assert password not in done.stdout + done.stderr
    finally:
        cassandra.execute("DROP ROLE IF EXISTS cassandra")
        cassandra.execute(f"DROP ROLE IF EXISTS {admin}")


def test_a_node_that_refuses_both_logins_is_a_named_step(conf, cassandra):
    password = uuid.uuid4().hex
    done = _run(conf, ROLES["admin"][0], password)
    assert done.returncode == 1
    assert "CASSANDRA_ADMIN_PASSWORD" in done.stderr and "docker compose down -v" in done.stderr
    assert password not in done.stdout + done.stderr
    assert "cassandra" not in _roles(cassandra)
