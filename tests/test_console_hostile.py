"""Hostile input through every input of the console, in Chromium, against the running stack.

What comes from outside the console: query parameters, record keys and values (from
PostgreSQL and raw on the topic), Cassandra column names, schema subjects and schema text,
and the error messages of the services that echo them. Each test sends payloads that try
each HTML context (element, both attribute quotes, script, end of a ``<pre>``/table, a
``javascript:`` URL) and then asks the page:

* ``window.__pwned`` stays undefined: no payload ran;
* no element with an id the payloads plant (``pwned-…``) exists: no payload became
  markup, even markup the Content-Security-Policy would have stopped from running;
* the browser logged no Content-Security-Policy violation: the console's own pages need
  nothing the policy forbids, and no payload got as far as the policy;
* the payload's text is on the page where it belongs: it was shown, escaped, not dropped.

And a page of another origin on 127.0.0.1 (another local account's web server, say)
cannot make the operator's browser pause the connector.
"""

from __future__ import annotations

import http.server
import io
import json
import threading
import uuid
from typing import Any
from urllib.parse import quote

import fastavro
import pytest
import requests
from cdc_helpers import wait_for
from confluent_kafka import Producer

TOPIC = "cdc.public.users"
CONNECTOR = "users-cdc"


def payloads(tag: str) -> list[str]:
    """One payload per HTML context; each plants an element ``pwned-TAG-N`` and sets ``window.__pwned``."""
    return [
        f'<img id="pwned-{tag}-1" src=x onerror="window.__pwned=\'{tag}-1\'">',
        f'"><svg id="pwned-{tag}-2" onload="window.__pwned=\'{tag}-2\'">',
        f"'><script id=\"pwned-{tag}-3\">window.__pwned='{tag}-3'</script>",
        f'</pre></td></tr></table><iframe id="pwned-{tag}-4" srcdoc="<b>x</b>"></iframe>',
        f"javascript:window.__pwned='{tag}-5'//\r\ndata: <b id=\"pwned-{tag}-6\">",
    ]


@pytest.fixture
def watched(page):
    """The console page, with every console message and page error the browser reports."""
    messages: list[str] = []
    page.on("console", lambda m: messages.append(f"{m.type}: {m.text}"))
    page.on("pageerror", lambda e: messages.append(f"pageerror: {e}"))
    page.messages = messages
    return page


def assert_unharmed(page: Any, where: str) -> None:
    state = page.evaluate(
        "() => ({pwned: window.__pwned ?? null, planted: [...document.querySelectorAll('[id^=\"pwned-\"]')].map(e => e.id)})"
    )
    assert state == {"pwned": None, "planted": []}, f"{where}: {state}"
    violations = [m for m in page.messages if "Content Security Policy" in m or m.startswith("pageerror")]
    assert violations == [], f"{where}: {violations}"
    print(f"{where}: no script ran, no element planted, no CSP violation")


def test_query_parameters_of_every_page(watched):
    tag = uuid.uuid4().hex[:6]
    for n, payload in enumerate(payloads(tag)):
        q = quote(payload, safe="")
        for path in (
            f"/?x={q}",
            f"/schemas?a=1%23{q}&b=1",  # issue 24's reflected XSS: '#' keeps the rest from the registry
            f"/schemas?subject={q}&a={q}&b={q}&full={q}",
            f"/schemas?subject={q}",
            f"/topics?key={q}&op={q}",
            f"/topics/tail?key={q}&op={q}",
            f"/connector?x={q}",
            f"/spark?x={q}",
            f"/cassandra?id={q}",
        ):
            watched.goto(path)
            watched.wait_for_timeout(150)
            assert_unharmed(watched, f"payload {n} in {path[:40]}")
    # The version check names the bad value, escaped, as text.
    watched.goto(f"/schemas?a=1%23{quote(payloads(tag)[0], safe='')}&b=1")
    assert f'<img id="pwned-{tag}-1" src=x onerror=' in watched.locator("p.error").inner_text()


def test_record_values_and_keys_in_the_live_tail_and_the_read_model(watched, pg, stack, spark_job):
    from playwright.sync_api import expect

    tag = uuid.uuid4().hex[:6]
    hostile = payloads(tag)
    user_id = str(uuid.uuid4())
    watched.goto("/topics")
    watched.wait_for_timeout(1000)  # the event stream is connected
    pg.execute(
        "INSERT INTO public.users (id, username, email, first_name, last_name, city, country, street_name)"
        " VALUES (%s, %s, %s, %s, %s, %s, %s, %s)",
        (user_id, f"hostile-{tag}", f"{tag}@example.com", hostile[0], hostile[1], hostile[2], hostile[3], hostile[4]),
    )
    # A key no PostgreSQL row has, raw on the topic, in the key schema Debezium registered:
    # a tombstone (the job passes tombstones over; the tail shows their key).
    registry, auth = stack["schema_registry"].url, stack["schema_registry"].auth
    latest = wait_for(
        lambda: (lambda r: r.ok and r.json())(requests.get(f"{registry}/subjects/{TOPIC}-key/versions/latest", timeout=10, auth=auth)),
        timeout=30,
        what="the key schema from the registry",
    )

    body = io.BytesIO()
    fastavro.schemaless_writer(body, fastavro.parse_schema(json.loads(latest["schema"])), {"id": hostile[1]})
    producer = Producer(stack["kafka"].client_config())
    producer.produce(TOPIC, key=b"\x00" + latest["id"].to_bytes(4, "big") + body.getvalue(), value=None)
    assert producer.flush(30) == 0

    row = watched.locator(f'#tail tr.event[data-key*="{user_id}"]')
    expect(row).to_be_visible(timeout=30_000)
    expect(row).to_contain_text(f"{hostile[0]} {hostile[1]}")  # the after image's name, as text
    key_row = watched.locator("#tail tr.event", has_text=f"pwned-{tag}-2")
    expect(key_row.first).to_be_visible(timeout=30_000)
    for details in watched.locator("#tail details").all()[:6]:
        details.evaluate("d => d.open = true")  # the before/after JSON, shown
    watched.wait_for_timeout(500)
    assert_unharmed(watched, "the live tail")

    # Filtered by a hostile string the key holds (the filter matches the key's JSON text, where
    # a double quote is escaped): the event stream's URL carries it, and one event matches.
    watched.fill('input[name="key"]', f'<svg id=\\"pwned-{tag}-2\\" onload=\\"window.__pwned=\'{tag}-2\'')
    watched.click('form.filters button[type="submit"]')
    expect(watched.locator("#tail tr.event")).to_have_count(1, timeout=15_000)
    assert_unharmed(watched, "the live tail filtered by a hostile key")

    def in_cassandra():
        watched.goto(f"/cassandra?id={user_id}")
        return watched.locator("#user").count() > 0

    wait_for(in_cassandra, timeout=90, what="the hostile user in cdc.users")
    expect(watched.locator("#user tr", has_text="first_name")).to_contain_text(hostile[0])
    expect(watched.locator("#user tr", has_text="street_name")).to_contain_text(hostile[4].split("\r")[0])
    assert_unharmed(watched, "the Cassandra page")


def test_a_column_named_with_quotes_and_angle_brackets(watched, pg, cassandra, spark_job):
    """A read-model column whose name is a payload (Cassandra quotes any name): the page lists
    every column of cdc.users. The column stays empty and is dropped again."""
    from playwright.sync_api import expect

    tag = uuid.uuid4().hex[:6]
    name = f'x\'"<img id="pwned-{tag}-col" src=x onerror="window.__pwned=1">'
    quoted = '"' + name.replace('"', '""') + '"'
    user_id = str(uuid.uuid4())
    pg.execute("INSERT INTO public.users (id, username, email) VALUES (%s, %s, %s)", (user_id, f"col-{tag}", f"{tag}@example.com"))
    cassandra.execute(f"ALTER TABLE cdc.users ADD {quoted} text", timeout=60)
    try:

        def shown():
            watched.goto(f"/cassandra?id={user_id}")
            return watched.locator("#user").count() > 0

        wait_for(shown, timeout=90, what="the user in cdc.users")
        expect(watched.locator("#user")).to_contain_text(name)
        assert_unharmed(watched, "a hostile column name")
    finally:
        cassandra.execute(f"ALTER TABLE cdc.users DROP {quoted}", timeout=60)


def test_a_subject_name_and_schema_text(watched, stack):
    from playwright.sync_api import expect

    tag = uuid.uuid4().hex[:6]
    hostile = payloads(tag)
    registry, auth = stack["schema_registry"].url, stack["schema_registry"].auth
    subject = f"hostile-{hostile[0]}-value"
    path = f"{registry}/subjects/{quote(subject, safe='')}"
    headers = {"Content-Type": "application/vnd.schemaregistry.v1+json"}
    for version in range(2):
        schema = {
            "type": "record",
            "name": "Hostile",
            "doc": hostile[3],
            "fields": [{"name": f"f{i}", "type": "string", "doc": p} for i, p in enumerate(hostile[: 2 + version])],
        }
        response = requests.post(f"{path}/versions", json={"schema": json.dumps(schema)}, headers=headers, timeout=10, auth=auth)
        assert response.status_code == 200, response.text
    try:
        watched.goto(f"/schemas?subject={quote(subject, safe='')}&full=1")  # the whole schema: every doc
        expect(watched.locator("#subjects")).to_contain_text(subject)
        expect(watched.locator("#schema-diff")).to_contain_text("f2")  # the second version's new field
        expect(watched.locator("#schema-diff")).to_contain_text(f"pwned-{tag}-4")  # the record's doc, as text
        assert_unharmed(watched, "a hostile subject and schema")
        watched.goto("/schemas")
        assert_unharmed(watched, "the subject list")
    finally:
        requests.delete(path, timeout=10, auth=auth)
        requests.delete(f"{path}?permanent=true", timeout=10, auth=auth)


def test_an_error_message_that_echoes_the_input(watched):
    """Connect's 404 names the connector it did not find; the console shows that message."""
    tag = uuid.uuid4().hex[:6]
    watched.goto("/connector")
    for payload in payloads(tag):
        note = watched.evaluate(
            """async (name) => {
                const headers = JSON.parse(document.body.getAttribute("hx-headers"));
                await htmx.ajax("POST", "/connector/" + encodeURIComponent(name) + "/pause",
                                {target: "#connector-panel", swap: "outerHTML", headers});
                return document.querySelector("#action-note")?.textContent;
            }""",
            payload,
        )
        assert note and "Unknown connector" in note and f"pwned-{tag}" in note, note
    assert_unharmed(watched, "Connect's error messages")


def test_another_origin_on_this_machine_cannot_take_an_action(browser, console, stack, connector):
    """A page served from another port of 127.0.0.1 posts to the console, with the operator's
    login in the browser: a form (a navigation) and a fetch. Both are refused and the
    connector keeps running."""
    target = f"{console.url}/connector/{CONNECTOR}/pause"
    attack = f"""<!doctype html><body>
      <form id="f" method="post" action="{target}"></form>
      <script>
        fetch("{target}", {{method: "POST", mode: "no-cors", credentials: "include"}}).finally(() => document.getElementById("f").submit());
      </script>"""

    class Attacker(http.server.BaseHTTPRequestHandler):
        def do_GET(self):  # noqa: N802 - http.server's name
            self.send_response(200)
            self.send_header("Content-Type", "text/html")
            self.end_headers()
            self.wfile.write(attack.encode())

        def log_message(self, *args):
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Attacker)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    user, password = console.auth
    context = browser.new_context(http_credentials={"username": user, "password": password})
    client = stack["connect"].client()
    try:
        page = context.new_page()
        answers = []
        page.on("response", lambda r: answers.append((r.request.method, r.url, r.status)) if r.url == target else None)
        page.goto(f"http://127.0.0.1:{server.server_address[1]}/")
        page.wait_for_url(target, timeout=15_000)
        assert "actions are taken from the console's own pages" in page.inner_text("body")
        page.wait_for_timeout(2000)
        print("the console answered the other origin's requests:", answers)
        assert answers and all(status in (401, 403) for _, _, status in answers), answers
        assert any(status == 403 for _, _, status in answers), answers
        assert client.status(CONNECTOR)["connector"]["state"] == "RUNNING"
    finally:
        context.close()
        server.shutdown()
        client.resume(CONNECTOR)
