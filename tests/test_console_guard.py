"""The console's guard, escaping and event framing, with no service running.

The app is the real one (routes, templates, middleware); every service it would ask is
away, so each page shows its error. The browser-side proof (hostile payloads through every
input, in Chromium, against the running stack) is ``test_console_hostile.py``.
"""

from __future__ import annotations

import pytest
from cdc_helpers import settings_where_nothing_listens
from starlette.testclient import TestClient

from cdcpipe.console import schema_diff
from cdcpipe.console.app import create_app, sse_message

PAYLOAD = '"><img id=pwned src=x onerror="window.__pwned=1">'


@pytest.fixture(scope="module")
def conf(tmp_path_factory):
    return settings_where_nothing_listens(tmp_path_factory.mktemp("home"))


@pytest.fixture(scope="module")
def app(conf):
    return create_app(conf, "pw")


@pytest.fixture
def client(app, conf):
    with TestClient(app, base_url=f"http://{conf.host}:{conf.port('console')}") as client:
        client.auth = ("admin", "pw")
        yield client


def test_every_response_carries_the_security_headers(client):
    for response in (client.get("/api/health"), client.get("/static/console.css"), client.get("/", auth=("admin", "wrong"))):
        csp = response.headers["content-security-policy"]
        assert "script-src 'self'" in csp and "frame-ancestors 'none'" in csp and "unsafe" not in csp, csp
        assert response.headers["x-content-type-options"] == "nosniff"
        assert response.headers["x-frame-options"] == "DENY"


def test_a_host_that_does_not_name_the_console_is_refused(client, conf):
    # A DNS-rebinding page reaches 127.0.0.1 under its own host name.
    assert client.get("/api/health", headers={"Host": f"rebound.example:{conf.port('console')}"}).status_code == 421
    assert client.get("/api/health", headers={"Host": f"localhost:{conf.port('console')}"}).status_code == 200
    assert client.get("/api/health", headers={"Host": f"127.0.0.1:{conf.port('console') + 1}"}).status_code == 421


def test_an_action_needs_the_token_and_the_console_s_own_origin(client, app, conf):
    token = app.state.csrf_token
    origin = f"http://{conf.host}:{conf.port('console')}"
    action = "/connector/users-cdc/explode"  # an unknown action: 404 once past the guard, no Connect needed
    assert client.post(action, headers={"HX-Request": "true"}).status_code == 403  # the old defence alone
    assert client.post(action, headers={"X-CSRF-Token": token + "x"}).status_code == 403
    assert client.post(action, headers={"X-CSRF-Token": token, "Sec-Fetch-Site": "same-site"}).status_code == 403
    assert client.post(action, headers={"X-CSRF-Token": token, "Origin": "http://127.0.0.1:9999"}).status_code == 403
    assert client.post(action, headers={"X-CSRF-Token": token}, auth=("admin", "wrong")).status_code == 401
    passed = client.post(action, headers={"X-CSRF-Token": token, "Origin": origin, "Sec-Fetch-Site": "same-origin"})
    assert passed.status_code == 404 and passed.text == "unknown action explode"


def test_the_token_is_in_every_page_and_changes_with_each_console(client, app, conf):
    page = client.get("/connector")
    assert page.status_code == 200
    assert f"&#34;X-CSRF-Token&#34;: &#34;{app.state.csrf_token}&#34;" in page.text
    assert create_app(conf, "pw").state.csrf_token != app.state.csrf_token


def test_query_parameters_are_shown_escaped(client):
    for path, params in (
        ("/schemas", {"a": f"1#{PAYLOAD}", "b": "1"}),  # the reflected XSS of issue 24
        ("/schemas", {"subject": PAYLOAD, "a": "1", "b": "2"}),
        ("/topics", {"key": PAYLOAD, "op": PAYLOAD}),
        ("/topics/tail", {"key": PAYLOAD, "op": PAYLOAD}),
        ("/cassandra", {"id": PAYLOAD}),
    ):
        response = client.get(path, params=params)
        assert response.status_code == 200, path
        assert "<img id=pwned" not in response.text, (path, params)
    bad_version = client.get("/schemas", params={"a": f"1#{PAYLOAD}", "b": "1"}).text
    assert "a schema version is a number or &#39;latest&#39;, not &#39;1#&#34;&gt;&lt;img id=pwned" in bad_version


def test_an_event_is_framed_so_no_line_break_in_a_value_starts_a_field():
    message = sse_message("change", 7, "<tr><td>a\rdata: b\r\nevent: other\nc</td></tr>")
    lines = message.split("\n")
    assert lines[:2] == ["event: change", "id: 7"] and message.endswith("\n\n")
    assert all(line.startswith("data: ") for line in lines[2:-2]), lines
    assert "\r" not in message
    assert [line.removeprefix("data: ") for line in lines[2:-2]] == ["<tr><td>a", "data: b", "event: other", "c</td></tr>"]


def test_the_schema_diff_is_data_with_context_or_whole():
    left = [f"line {i}" for i in range(20)]
    right = [*left[:10], "changed", *left[11:], "added"]
    hunks = schema_diff.side_by_side(left, right, context=2)
    assert len(hunks) == 2
    changed = [r for r in hunks[0] if r.kind != "equal"]
    assert [(r.left_no, r.left, r.right_no, r.right, r.css) for r in changed] == [(11, "line 10", 11, "changed", "diff_chg")]
    assert [(r.left, r.right, r.css) for r in hunks[1] if r.kind != "equal"] == [(None, "added", "diff_add")]
    whole = schema_diff.side_by_side(left, left, context=None)
    assert len(whole) == 1 and len(whole[0]) == 20 and {r.kind for r in whole[0]} == {"equal"}
