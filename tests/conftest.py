"""Shared fixtures: the local runtime, started once per test session.

If the stack was already running, the session leaves it running; if the session started
it, it stops it again at the end when running in CI (CI=true).

``CDCPIPE_TEST_SERVICES`` (comma-separated service names, e.g.
``postgres,kafka,schema_registry,cassandra``) limits the ``stack`` fixture to those services
and what they depend on, for a partial run on a small machine: only tests whose fixtures need
nothing else can pass then (``connector`` and ``spark_job`` need ``connect``; the job runs on
``local[2]`` unless CDCPIPE_SPARK_MASTER names a master). Unset: the whole stack.
"""

from __future__ import annotations

import atexit
import os
import shutil
import sys
import tempfile

import pytest

# Airflow imported by tests (DagBag) must not touch ~/airflow or load example DAGs; its
# scratch home is removed when the session ends (one was left per run).
if "AIRFLOW_HOME" not in os.environ:
    os.environ["AIRFLOW_HOME"] = tempfile.mkdtemp(prefix="cdcpipe-test-airflow-")
    atexit.register(shutil.rmtree, os.environ["AIRFLOW_HOME"], ignore_errors=True)
os.environ.setdefault("AIRFLOW__CORE__LOAD_EXAMPLES", "False")

from cdcpipe import runtime, settings
from cdcpipe.runtime.services import Service


def pytest_collection_modifyitems(items):
    """Tests that need the running stack (the `stack` fixture, directly or not) are marked
    `stack`; `make unit` runs the others (`-m "not stack"`): no service, no jars."""
    for item in items:
        if "stack" in getattr(item, "fixturenames", ()):
            item.add_marker(pytest.mark.stack)
    # The operations checker truncates public.users and changes its columns: it runs last.
    items.sort(key=lambda item: item.module.__name__ == "test_opcheck")


def _progress(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


@pytest.fixture(scope="session")
def conf() -> settings.Settings:
    return settings.load()


def _test_services() -> list[str] | None:
    names = [n.strip() for n in os.environ.get("CDCPIPE_TEST_SERVICES", "").split(",") if n.strip()]
    return names or None


@pytest.fixture(scope="session")
def stack(conf) -> dict[str, Service]:
    """Every service of the local runtime (or those of CDCPIPE_TEST_SERVICES), up and ready, by name."""
    names = _test_services()
    was_running = all(svc.running() for svc in runtime.services(conf, names))
    stop_after = not was_running and bool(os.environ.get("CI"))
    try:
        services = runtime.up(conf, names, progress=_progress)
    except Exception:
        if stop_after:  # leave nothing behind in CI, even when start-up failed
            runtime.down(conf, names, progress=_progress)
        raise
    yield {svc.name: svc for svc in services}
    if stop_after:
        runtime.down(conf, names, progress=_progress)


@pytest.fixture(scope="session")
def connector(stack):
    """The users-cdc connector, registered from connectors/users-cdc.json and RUNNING."""
    from cdcpipe import resync
    from cdcpipe.clients.connect import DEFAULT_FILE, ConnectorFile

    definition = ConnectorFile.load(DEFAULT_FILE)
    resync.register(settings.load(), definition, timeout=120, progress=_progress)
    return definition


@pytest.fixture
def pg(stack):
    """A psycopg connection to the users database as the application role (autocommit)."""
    import psycopg
    from psycopg.rows import dict_row

    with psycopg.connect(stack["postgres"].dsn(), autocommit=True, row_factory=dict_row) as conn:
        yield conn


@pytest.fixture
def topic_reader(stack, connector):
    """Reads cdc.public.users from its current end."""
    from cdc_helpers import TopicReader

    reader = TopicReader(stack["kafka"], stack["schema_registry"])
    yield reader
    reader.close()


@pytest.fixture(scope="session")
def spark_job(conf, stack, connector):
    """The streaming job, running on the local runtime for the whole session."""
    from cdcpipe.runtime import streaming_job as job

    was_running = job.status(conf)["state"] == "running"
    job.start(conf, progress=_progress)
    yield job
    if not was_running and os.environ.get("CI"):
        job.stop(conf)


@pytest.fixture
def cassandra(stack):
    with stack["cassandra"].connected() as session:
        yield session


@pytest.fixture
def scratch_users_table(cassandra):
    """A copy of cdc.users under a name of its own (from sql/cassandra), dropped afterwards."""
    import uuid

    from cdcpipe.runtime import migrations

    name = f"users_scratch_{uuid.uuid4().hex[:8]}"
    migrations.create_users_copy(cassandra, name)
    yield name
    cassandra.execute(f"DROP TABLE IF EXISTS cdc.{name}", timeout=60)


# --- the console in a real browser (Debian's Chromium; Playwright never downloads one here) ---
CHROMIUM = os.environ.get("CDCPIPE_CHROMIUM", "/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]


@pytest.fixture(scope="module")
def console(stack):
    return stack["console"]


@pytest.fixture(scope="module")
def browser():
    """A headless Chromium from the distribution's packages (``/usr/bin/chromium``)."""
    from pathlib import Path

    if not Path(CHROMIUM).exists():
        pytest.fail(f"{CHROMIUM} not found: 'make system-deps' installs Debian's chromium (as root)")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:
        chromium = pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True)
        yield chromium
        chromium.close()


@pytest.fixture
def page(browser, console):
    """A page logged in to the console (its Basic credentials), base URL the console's."""
    user, password = console.auth
    context = browser.new_context(
        base_url=console.url, http_credentials={"username": user, "password": password}, viewport={"width": 1280, "height": 800}
    )
    context.set_default_timeout(30_000)
    page = context.new_page()
    yield page
    context.close()
