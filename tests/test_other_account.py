"""Another local account tries every client against the running stack and gets nothing.

The test creates a Linux account, ``cdcpipe-other``, that can run this checkout's clients (the
virtualenv, the jars) but cannot read ``.cdcpipe/``, where every password lives. As that
account, tests/other_account_probes.py tries each port of the stack with the service's own
client: read and write topics, run CQL, join Cassandra's internode port, call JMX, validate and create a connector (one with
``${env:…}``), write a schema, run a Spark application, open the web UIs and the console,
connect to PostgreSQL, fetch from the randomuser stand-in. Every attempt must be refused; the
test prints what was tried and what each service said.

Creating an account needs root (CI runs as root). The checkout may sit in a 0700 directory
(``/root``, CI's clone): the account gets a traverse-only ACL entry (``setfacl u:…:x``) on each
such directory above the checkout and the virtualenv's Python for the test's duration, which reads nothing and stops at
``.cdcpipe/`` (0700, no entry). Everything is undone afterwards.
"""

from __future__ import annotations

import json
import os
import pwd
import shutil
import stat
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest

from cdcpipe import demo
from cdcpipe.clients.connect import DEFAULT_FILE, ConnectorFile
from cdcpipe.runtime.services.cassandra import JVM17_OPTIONS
from cdcpipe.settings import DEFAULT_PORTS, REPO

OTHER = "cdcpipe-other"
PROBES = Path(__file__).resolve().parent / "other_account_probes.py"
#: Ports that answer without a login, by design, and why (docs/security.md says the same).
OPEN_BY_DESIGN: dict[str, str] = {}
#: Ports no probe tries yet, and why.
NOT_PROBED: dict[str, str] = {}


def _run(*argv: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(argv, capture_output=True, text=True, timeout=60)


def _drop_account() -> None:
    try:
        pwd.getpwnam(OTHER)
    except KeyError:
        return
    _run("pkill", "-KILL", "-u", OTHER)
    for _ in range(100):  # pkill does not wait; userdel refuses an account still in use
        if _run("pgrep", "-u", OTHER).returncode != 0:
            break
        time.sleep(0.1)
    done = _run("userdel", OTHER)
    assert done.returncode == 0, done.stderr


def _closed_ancestors(*paths: Path) -> list[Path]:
    """Directories above ``paths`` that other accounts cannot traverse."""
    found = {d for path in paths for d in path.parents if d != Path("/") and not d.stat().st_mode & stat.S_IXOTH}
    return sorted(found)


#: What the account must reach to run our clients: the checkout (virtualenv, jars), and the
#: Python the virtualenv was made from (pyenv keeps it under /root).
CLIENTS = (REPO, Path(sys.executable).resolve(), Path(sys.base_prefix) / "lib")


@pytest.fixture(scope="module")
def other_account():
    if os.geteuid() != 0:
        pytest.skip("creating a second Linux account needs root (CI runs as root)")
    for tool in ("useradd", "userdel", "runuser", "setfacl"):
        assert shutil.which(tool), f"{tool} is missing: as root, 'make test' installs it (acl, passwd, util-linux)"
    _drop_account()  # a run that was killed half-way
    done = _run("useradd", "--system", "--no-create-home", "--home-dir", "/nonexistent", "--shell", "/usr/sbin/nologin", OTHER)
    assert done.returncode == 0, done.stderr
    account = pwd.getpwnam(OTHER)
    home = Path(tempfile.mkdtemp(prefix="cdcpipe-other-"))
    os.chown(home, account.pw_uid, account.pw_gid)
    opened = []
    try:
        for directory in _closed_ancestors(*CLIENTS):
            had_acl = bool(_run("getfacl", "--skip-base", "--absolute-names", str(directory)).stdout.strip())
            done = _run("setfacl", "-m", f"u:{OTHER}:x", str(directory))
            assert done.returncode == 0, done.stderr
            opened.append((directory, had_acl))
        yield account, home
    finally:
        for directory, had_acl in opened:  # as it was: no extended ACL (not even a mask) if it had none
            if had_acl:
                _run("setfacl", "-x", f"u:{OTHER}", str(directory))
            else:
                _run("setfacl", "-b", str(directory))
        try:
            _drop_account()
        finally:
            shutil.rmtree(home, ignore_errors=True)


def _as_other(home: Path, *argv: str, timeout: float) -> subprocess.CompletedProcess[str]:
    """``argv`` as the other account, with an environment that holds nothing of ours."""
    env = ["env", "-i", f"HOME={home}", f"TMPDIR={home}", "PATH=/usr/local/bin:/usr/bin:/bin", "LANG=C.UTF-8"]
    java_home = os.environ.get("JAVA_HOME")
    if java_home:
        env.append(f"JAVA_HOME={java_home}")
    return subprocess.run(["runuser", "-u", OTHER, "--", *env, *argv], capture_output=True, text=True, timeout=timeout, cwd=home)


def test_another_account_is_refused_everywhere(conf, stack, spark_job, other_account):
    account, home = other_account
    state = conf.home
    demo.ensure_standin(conf)  # the randomuser stand-in, as the demo runs it
    cassandra = stack["cassandra"]
    config = {
        "host": conf.host,
        "ports": {name: conf.port(name) for name in conf.ports},
        "jars": str(conf.jars),
        "nodetool_jvm_options": list(JVM17_OPTIONS),
        "cqlsh": str(Path(sys.executable).parent / "cqlsh"),
        "connector": ConnectorFile.load(DEFAULT_FILE).config,
        "files": {
            "state_dir": str(state),
            "secrets": str(conf.secrets_file),
            "kafka": str(stack["kafka"].credentials_file),
            "cassandra": str(cassandra.credentials_file()),
        },
    }
    # The account can run our clients, but not read the state: what the test relies on.
    assert _as_other(home, sys.executable, "-c", "import confluent_kafka, cassandra, pyspark, psycopg", timeout=60).returncode == 0
    (home / "config.json").write_text(json.dumps(config))
    os.chown(home / "config.json", account.pw_uid, account.pw_gid)

    # The probes' own JVMs (nodetool, pyspark) keep their scratch in the account's directory.
    done = _as_other(
        home, "env", f"JAVA_TOOL_OPTIONS=-Djava.io.tmpdir={home}", sys.executable, str(PROBES), str(home / "config.json"), timeout=900
    )
    results = [json.loads(line) for line in done.stdout.splitlines() if line.startswith("{")]
    assert done.returncode == 0 and results, done.stdout[-2000:] + done.stderr[-3000:]

    print(f"\nas account {OTHER} (uid {account.pw_uid}), no login, no access to {state}:")
    for r in results:
        verdict = "refused" if r["refused"] else ("open by design" if r["port"] in OPEN_BY_DESIGN else "NOT REFUSED")
        print(f"  {verdict:14} {r['attempt']}  [{r['said']}] ({r['seconds']}s)")

    let_in = [r for r in results if not r["refused"] and r["port"] not in OPEN_BY_DESIGN]
    assert not let_in, "\n".join(f"{r['attempt']}: {r['said']}" for r in let_in)
    # The open-by-design ports did answer (so the list stays true), and every port was tried.
    assert all(not r["refused"] for r in results if r["port"] in OPEN_BY_DESIGN)
    tried = {r["port"] for r in results if r["port"]}
    assert set(conf.ports) - set(NOT_PROBED) <= tried, f"ports no attempt tried: {sorted(set(conf.ports) - set(NOT_PROBED) - tried)}"


def _our_pids(conf) -> dict[str, int]:
    """Every process of our stack, by name (no probe: two stacks share two cores here)."""
    from cdcpipe import runtime

    return runtime.pids(conf)


def _in_tmp_of(uid: int, *, besides: set[Path]) -> set[str]:
    """What an account owns directly in the machine's /tmp, apart from ``besides`` and the
    JVM's own per-account hsperfdata directory."""
    found = set()
    for entry in Path("/tmp").iterdir():
        try:
            owner = entry.lstat().st_uid
        except FileNotFoundError:
            continue
        if owner == uid and entry not in besides and not entry.name.startswith("hsperfdata_"):
            found.add(str(entry))
    return found


def test_another_account_runs_its_own_stack_beside_ours(conf, stack, spark_job, other_account):
    """Issue 24, "two accounts, two stacks": while our stack runs, the other account runs the
    demo (the whole stack, the connector, the ingest DAG, an exact read model) on its own ports
    and in its own state directory, with its own logins. Ours keeps every process, and the
    other's ``down --purge`` leaves nothing of it in the machine's /tmp (a root run's
    /tmp/vertx-cache once stopped another account's registry)."""
    account, home = other_account
    before = _our_pids(conf)
    # What the account already left in /tmp (its pyspark probe in the test above is a client of
    # ours, not a stack; a reused uid may own older files) is not this test's business.
    theirs_before = _in_tmp_of(account.pw_uid, besides={home})
    offset = 20000  # 5432 -> 25432 ... 9093 -> 29093: clear of ours and of the ephemeral range
    env = [
        f"CDCPIPE_HOME={home / 'state'}",
        *(f"CDCPIPE_PORT_{name.upper()}={port + offset}" for name, port in DEFAULT_PORTS.items()),
    ]
    cdcpipe = str(Path(sys.executable).parent / "cdcpipe")
    try:
        # timeout(1) inside runuser: on time-out the demo itself is stopped, not only runuser.
        demo_run = _as_other(home, "timeout", "-k", "30", "1200", "env", *env, cdcpipe, "demo", "--results", "200", timeout=1300)
        print(f"\nas account {OTHER}, beside our stack:\n" + demo_run.stdout[-1500:])
        assert demo_run.returncode == 0, demo_run.stdout[-3000:] + demo_run.stderr[-3000:]
        verified = _as_other(home, "env", *env, cdcpipe, "verify", "--json", timeout=300)
        assert verified.returncode == 0, verified.stdout[-2000:] + verified.stderr[-2000:]
        judged = json.loads(verified.stdout)
        print(f"its verify: equal {judged['equal']}, {judged['rows']} rows")
        assert judged["equal"] is True and judged["rows"] > 0, verified.stdout[-2000:]
    finally:
        down = _as_other(home, "env", *env, cdcpipe, "down", "--purge", timeout=300)
    assert down.returncode == 0, down.stdout[-2000:] + down.stderr[-2000:]
    assert not (home / "state").exists()
    assert _in_tmp_of(account.pw_uid, besides={home}) - theirs_before == set()
    assert _our_pids(conf) == before
