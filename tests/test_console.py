"""The browser console, in a real browser against the real stack.

A headless Chromium from the distribution's packages (``/usr/bin/chromium``; Playwright
never downloads one here) opens the console of the session's stack. Each page's screenshot
goes to ``build/screenshots/`` (a test artifact; ``CDCPIPE_SCREENSHOTS`` moves it).
"""

from __future__ import annotations

import re
import time
import uuid

import requests
from cdc_helpers import settings_where_nothing_listens, shot, wait_for
from confluent_kafka import Producer

TOPIC = "cdc.public.users"
CONNECTOR = "users-cdc"


def insert_user(pg, first_name: str) -> str:
    user_id = str(uuid.uuid4())
    pg.execute(
        "INSERT INTO public.users (id, username, email, first_name, last_name, city, country) VALUES (%s, %s, %s, %s, %s, %s, %s)",
        (user_id, f"console-{user_id[:8]}", f"{user_id[:8]}@example.com", first_name, "Console", "Leuven", "Belgium"),
    )
    return user_id


def test_a_request_without_the_credentials_is_refused(console, browser, stack, connector):
    for path in (
        "/",
        "/topics",
        "/topics/stream",
        "/api/lag",
        "/api/health",
        "/panel/spark",
        "/vendor/htmx.min.js",
        "/static/console.css",
        "/cassandra?id=00000000-0000-0000-0000-000000000000",
    ):
        assert requests.get(console.url + path, timeout=10, stream=True).status_code == 401, path
        assert requests.get(console.url + path, auth=("admin", "not-the-password"), timeout=10, stream=True).status_code == 401, path
    # The right login, but an action not sent by the console's own pages (no action token; the
    # HX-Request header that was once the only defence does not stand in for it): refused, so
    # another site cannot use the browser's cached credentials to steer Connect.
    for headers in ({}, {"HX-Request": "true"}):
        refused = requests.post(f"{console.url}/connector/{CONNECTOR}/pause", auth=console.auth, headers=headers, timeout=10)
        assert refused.status_code == 403, headers
    assert stack["connect"].client().status(CONNECTOR)["connector"]["state"] == "RUNNING"
    # ... and a browser without the login gets nothing but the refusal.
    # (Headless Chromium, with nobody to type a login, abandons the navigation.)
    from playwright.sync_api import Error

    context = browser.new_context(base_url=console.url)
    try:
        page = context.new_page()
        try:
            response = page.goto("/")
        except Error as exc:
            assert "ERR_INVALID_AUTH_CREDENTIALS" in str(exc)
        else:
            assert response.status == 401
    finally:
        context.close()


def test_overview_shows_every_service_running(page, stack):
    page.goto("/")
    from playwright.sync_api import expect

    for name in stack:
        expect(page.locator(f'tr[data-service="{name}"] td.state')).to_have_text("running", timeout=60_000)
    expect(page.locator("#lag-chart")).to_be_visible()
    page.wait_for_timeout(1500)  # the chart's first data
    shot(page, "overview")


def test_an_insert_appears_in_the_live_tail_and_the_filter_finds_it(page, pg, connector):
    from playwright.sync_api import expect

    page.goto("/topics")
    expect(page.locator(f'tr[data-topic="{TOPIC}"]')).to_be_visible()
    page.wait_for_timeout(1000)  # the event stream is connected
    user_id = insert_user(pg, "Tailed")
    started = time.monotonic()
    row = page.locator(f'#tail tr.event[data-key*="{user_id}"]')
    expect(row).to_be_visible(timeout=20_000)
    print(f"insert seen in the live tail after {time.monotonic() - started:.1f}s")
    expect(row.locator("td.op")).to_have_text("c")
    expect(row).to_contain_text("Tailed Console")  # the after image's name
    shot(page, "topics")

    # Filter by key and op: only that event stays; an op it does not have shows nothing.
    page.fill('input[name="key"]', user_id)
    page.select_option('select[name="op"]', "c")
    page.click('form.filters button[type="submit"]')
    expect(page.locator("#tail tr.event")).to_have_count(1, timeout=10_000)
    expect(page.locator(f'#tail tr.event[data-key*="{user_id}"]')).to_be_visible()
    page.select_option('select[name="op"]', "d")
    page.click('form.filters button[type="submit"]')
    page.wait_for_timeout(1500)
    expect(page.locator("#tail tr.event")).to_have_count(0)


def test_the_schema_page_lists_the_value_subject(page, connector):
    from playwright.sync_api import expect

    page.goto("/schemas")
    expect(page.locator('tr[data-subject="cdc.public.users-value"]')).to_be_visible()
    expect(page.locator('tr[data-subject="cdc.public.users-key"]')).to_be_visible()
    expect(page.locator(".diff table.diff")).to_be_visible()  # the side-by-side diff of two versions
    shot(page, "schemas")


def test_pause_pauses_the_connector_and_resume_resumes_it(page, stack, connector):
    from playwright.sync_api import expect

    client = stack["connect"].client()

    def wait_for_state(state: str) -> None:
        last: list[dict] = [{}]

        def reached() -> bool:
            last[0] = client.status(CONNECTOR)
            return last[0]["connector"]["state"] == state

        wait_for(reached, 60, lambda: f"connector {state}; its last status: {last[0]}")

    page.goto("/connector")
    expect(page.locator("#connector-state")).to_have_text("RUNNING")
    try:
        page.click(f"#pause-{CONNECTOR}")
        wait_for_state("PAUSED")  # as Connect's REST API says
        expect(page.locator("#connector-state")).to_have_text("PAUSED", timeout=15_000)
        shot(page, "connector-paused")
        page.click(f"#resume-{CONNECTOR}")
        wait_for_state("RUNNING")
        expect(page.locator("#connector-state")).to_have_text("RUNNING", timeout=15_000)
        client.wait_for_state(CONNECTOR, "RUNNING", timeout=60)
        shot(page, "connector")
    finally:
        client.resume(CONNECTOR)


def test_a_poison_record_shows_up_on_the_dead_letter_page(page, stack, spark_job):
    from playwright.sync_api import expect

    delivered = []
    producer = Producer(stack["kafka"].client_config())
    # Keyed: the topic is compacted and Kafka refuses key-less records on it.
    producer.produce(
        TOPIC,
        key=f"console-poison-{uuid.uuid4()}".encode(),
        value=b"\x01\x00\x00\x00\x07console poison",
        on_delivery=lambda err, msg: delivered.append((err, msg)),
    )
    assert producer.flush(30) == 0 and delivered and delivered[0][0] is None
    partition, offset = delivered[0][1].partition(), delivered[0][1].offset()  # one of 3 partitions on a cluster
    page.goto("/spark")
    letter = page.locator("#dead-letters tr", has_text=f"{TOPIC}/{partition}@{offset}")
    expect(letter).to_be_visible(timeout=120_000)  # the page refreshes itself
    expect(letter).to_contain_text("bad magic byte")
    expect(letter).to_contain_text("01 00 00 00 07 63 6f 6e 73 6f 6c 65")  # the raw bytes in hex
    expect(page.locator("#job-state")).to_have_text("running")
    expect(page.locator("#batches tbody tr").first).not_to_contain_text("no batch yet")
    shot(page, "spark")


def test_the_cassandra_page_shows_a_user_with_write_times(page, pg, spark_job):
    from playwright.sync_api import expect

    user_id = insert_user(pg, "Looked-up")

    def shown() -> int:
        page.goto(f"/cassandra?id={user_id}")
        return page.locator("#user").count()

    wait_for(shown, 90, f"the user {user_id} on the Cassandra page (it never reached cdc.users)", interval=1)
    expect(page.locator("#row-count")).to_have_text(re.compile(r"^[0-9][0-9,]*$"))  # counted apart from the page
    first_name = page.locator("#user tr", has_text="first_name")
    expect(first_name).to_contain_text("Looked-up")
    expect(first_name).to_contain_text("streamed, LSN")
    path = shot(page, "cassandra")
    assert path.stat().st_size > 0


def test_a_row_count_that_takes_too_long_says_why_and_holds_up_no_page(conf, monkeypatch, spark_job):
    """A count(*) over a table full of tombstones took the Cassandra page's whole 60 s; the
    page now renders without it, and the count, loaded apart, names why it gave up. Here the
    real Cassandra is given less time than any count takes."""
    from starlette.testclient import TestClient

    from cdcpipe.console import app as console_app

    monkeypatch.setattr(console_app, "COUNT_TIMEOUT", 1e-6)
    app = console_app.create_app(conf, "pw")
    with TestClient(app, base_url=f"http://{conf.host}:{conf.port('console')}") as client:
        client.auth = ("admin", "pw")
        page = client.get("/cassandra")
        assert page.status_code == 200 and 'hx-get="/panel/cassandra/count"' in page.text
        count = client.get("/panel/cassandra/count")
    assert count.status_code == 200, count.text
    assert "gave no answer within" in count.text and "cdcpipe verify" in count.text, count.text


def test_every_page_renders_while_the_services_are_away(tmp_path):
    """No service answers at all: each page still renders (200) and names what is down."""
    from starlette.testclient import TestClient

    from cdcpipe.console.app import create_app
    from cdcpipe.runtime.services import SERVICES

    conf = settings_where_nothing_listens(tmp_path / "home")
    app = create_app(conf, "pw")
    app.state.monitor.sample()  # one sampler round: every service stopped, Kafka unreachable
    with TestClient(app, base_url=f"http://{conf.host}:{conf.port('console')}") as client:
        client.auth = ("admin", "pw")
        overview = client.get("/")
        assert overview.status_code == 200
        assert overview.text.count('class="state stopped">stopped<') == len(SERVICES) and f"0/{len(SERVICES)} running" in overview.text
        for path in ("/topics", "/schemas", "/connector", "/spark", "/cassandra?id=6f1c1a2e-0000-4000-8000-000000000000"):
            response = client.get(path)
            assert response.status_code == 200, path
            assert 'class="error"' in response.text, path
        count = client.get("/panel/cassandra/count")  # the Cassandra page's row count, loaded apart
        assert count.status_code == 200 and 'id="row-count-error"' in count.text and "Cassandra" in count.text


def test_the_overview_lists_a_cluster_s_nodes_and_which_are_down(tmp_path):
    """On the cluster topology the overview has a row per node (every one stopped here, as
    nothing listens), and a card counting them; one node has none of either."""
    from starlette.testclient import TestClient

    from cdcpipe import settings
    from cdcpipe.console.app import create_app

    cluster = settings_where_nothing_listens(tmp_path / "cluster", topology="cluster")
    single = settings_where_nothing_listens(tmp_path / "single")
    expected = {"cassandra", "cassandra-2", "cassandra-3", "kafka", "kafka-2", "kafka-3", "connect", "connect-2"}
    expected |= {f"spark-worker{'' if n == 1 else f'-{n}'}" for n in range(1, settings.TOPOLOGIES["cluster"]["spark_worker"] + 1)}
    for conf, nodes in ((cluster, expected), (single, set())):
        app = create_app(conf, "pw")
        app.state.monitor.sample()
        with TestClient(app, base_url=f"http://{conf.host}:{conf.port('console')}") as client:
            client.auth = ("admin", "pw")
            panel = client.get("/panel/overview").text
        shown = set(re.findall(r'<tr data-node="([^"]+)">', panel))
        assert shown == nodes, (conf.topology, shown)
        for node in nodes:
            assert re.search(rf'data-node="{re.escape(node)}">.*?class="state stopped">stopped<', panel, re.S), node
        assert (f"0/{len(nodes)} running" in panel) == bool(nodes)
