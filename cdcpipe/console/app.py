"""The console's web application: Starlette routes, Jinja2 templates, htmx in the browser.

Pages are rendered on the server; htmx refreshes their panels every few seconds and the
live tail arrives as Server-Sent Events (htmx's sse extension). htmx and Chart.js are
served from ``settings.console_assets`` (npm packages pinned by ``package-lock.json`` and
installed by ``make console-assets``), never from a CDN.

Who may use it and what its pages may do in a browser (the login, the action token, the
Content-Security-Policy) is :mod:`.guard`. Every value a page shows that the console did
not write itself (query parameters, subjects and schemas, record keys and values, column
names, error messages) is escaped by the templates; nothing is marked ``|safe``.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import re
import time
from pathlib import Path
from typing import Any
from urllib.parse import quote

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import FileResponse, JSONResponse, PlainTextResponse, Response, StreamingResponse
from starlette.routing import Route
from starlette.templating import Jinja2Templates

from ..pipeline import changes
from ..runtime import processes, streaming_job
from ..settings import Settings
from . import guard, schema_diff
from .monitor import Monitor, _error

HERE = Path(__file__).resolve().parent
USERNAME = "admin"
#: URL name -> file under the installed npm packages (build/console/node_modules/...).
VENDOR = {
    "htmx.min.js": "htmx.org/dist/htmx.min.js",
    "sse.min.js": "htmx-ext-sse/dist/sse.min.js",
    "chart.umd.min.js": "chart.js/dist/chart.umd.min.js",
}
ACTIONS = ("pause", "resume", "restart")
#: Seconds the Cassandra page's count(*) may take (it runs apart from the page).
COUNT_TIMEOUT = 60.0
#: A schema version as the registry names one: a number, or "latest".
VERSION = re.compile(r"[0-9]{1,9}|latest")


def sse_message(event: str, event_id: int, html: str) -> str:
    """One Server-Sent Event carrying ``html``: a ``data:`` line per line of it.

    SSE ends a line at CR, LF or CRLF. A bare CR inside a record's value would otherwise
    end the ``data:`` field early, and the text after it would be read as SSE fields of
    its own."""
    lines = re.split(r"\r\n|\r|\n", html)
    return f"event: {event}\nid: {event_id}\n" + "".join(f"data: {line}\n" for line in lines) + "\n"


def _when(epoch: Any) -> str:
    if not epoch:
        return "–"
    if isinstance(epoch, str):
        return epoch
    return dt.datetime.fromtimestamp(float(epoch)).strftime("%H:%M:%S")


def _number(value: Any, digits: int = 0) -> str:
    if value is None or value == "":
        return "–"
    if isinstance(value, (int, float)):
        return f"{value:,.{digits}f}"
    return str(value)


class Pages:
    """The console's pages, panels and APIs, one method each, over one monitor and one set of
    templates (:func:`create_app` serves them behind the guard)."""

    def __init__(self, settings: Settings, monitor: Monitor, csrf_token: str):
        self.settings = settings
        self.monitor = monitor
        self.templates = Jinja2Templates(directory=str(HERE / "templates"))
        assert self.templates.env.autoescape, "the console's templates must escape what they show"
        self.templates.env.filters.update(
            human_bytes=processes.human_bytes, when=_when, number=_number, path_segment=lambda v: quote(str(v), safe="")
        )
        self.templates.env.globals.update(csrf_header=guard.CSRF_HEADER, csrf_token=csrf_token)
        self.assets = settings.console_assets / "node_modules"
        self.missing_assets = [name for name, rel in VENDOR.items() if not (self.assets / rel).is_file()]

    def page(self, request: Request, name: str, **context: Any) -> Response:
        context.update(request=request, page=name.removesuffix(".html"), missing_assets=self.missing_assets)
        return self.templates.TemplateResponse(request, name, context)

    def attempt(self, what: str, fn: Any, *args: Any) -> tuple[Any, str | None]:
        try:
            return fn(*args), None
        except Exception as exc:  # noqa: BLE001 - a service that is down is shown as such
            return None, f"{what}: {_error(exc)}"

    # --- overview --------------------------------------------------------------------
    def overview_context(self) -> dict[str, Any]:
        status = self.monitor.status
        job = streaming_job.progress(self.settings)
        connector, connector_error = self.attempt("Connect", self.monitor.connect.status, self.monitor.connector_name())
        services = (status or {}).get("services", {})
        nodes = (status or {}).get("nodes", {})  # a cluster's nodes; none on one node
        history = list(self.monitor.history)
        return {
            "status": status,
            "status_error": self.monitor.status_error,
            "services": services,
            "running": sum(1 for s in services.values() if s["state"] == "running"),
            "nodes": nodes,
            "nodes_running": sum(1 for n in nodes.values() if n["state"] == "running"),
            "job": job,
            "connector": connector,
            "connector_error": connector_error,
            "lag": history[-1]["lag"] if history else None,
            "kafka_error": getattr(self.monitor, "kafka_error", None),
        }

    def overview(self, request: Request) -> Response:
        return self.page(request, "overview.html", **self.overview_context())

    def overview_panel(self, request: Request) -> Response:
        return self.templates.TemplateResponse(request, "_overview.html", {"request": request, **self.overview_context()})

    def lag_history(self, request: Request) -> Response:
        return JSONResponse([{"t": h["t"], "lag": h["lag"]} for h in self.monitor.history])

    def health(self, request: Request) -> Response:
        return JSONResponse({"ok": True, "samples": len(self.monitor.history)})

    # --- topics ----------------------------------------------------------------------
    def topics_context(self) -> dict[str, Any]:
        rows, error = self.attempt("Kafka", self.monitor.topics_overview)
        return {"topics": rows or [], "topics_error": error, "tail_error": self.monitor.tail_error}

    def topics_page(self, request: Request) -> Response:
        key, op = request.query_params.get("key", ""), request.query_params.get("op", "")
        return self.page(request, "topics.html", key=key, op=op, **self.topics_context())

    def topics_panel(self, request: Request) -> Response:
        return self.templates.TemplateResponse(request, "_topics.html", {"request": request, **self.topics_context()})

    def tail_table(self, request: Request) -> Response:
        key, op = request.query_params.get("key", ""), request.query_params.get("op", "")
        return self.templates.TemplateResponse(request, "_tail.html", {"request": request, "key": key, "op": op})

    async def tail_stream(self, request: Request) -> Response:
        key, op = request.query_params.get("key", "").strip(), request.query_params.get("op", "").strip()
        row = self.templates.get_template("_event.html")

        def message(event: dict[str, Any]) -> str:
            return sse_message("change", event["seq"], row.render(e=event))

        async def events():
            recent = self.monitor.tail_since(0, key, op)[-50:]
            seq = self.monitor.tail_seq
            for event in recent:
                yield message(event)
            last_ping = time.monotonic()
            while not await request.is_disconnected():
                new = self.monitor.tail_since(seq, key, op)
                seq = max([seq, *(e["seq"] for e in new)]) if new else max(seq, self.monitor.tail_seq)
                for event in new:
                    yield message(event)
                if time.monotonic() - last_ping > 15:
                    yield ": ping\n\n"
                    last_ping = time.monotonic()
                await asyncio.sleep(0.5)

        return StreamingResponse(events(), media_type="text/event-stream", headers={"Cache-Control": "no-store"})

    # --- schemas ---------------------------------------------------------------------
    def schemas_page(self, request: Request) -> Response:
        subjects, error = self.attempt("schema registry", self.monitor.subjects)
        subjects = subjects or []
        names = [s["subject"] for s in subjects]
        preferred = [f"{topic}-value" for topic in self.monitor.cdc_topics]  # the pipeline's own first
        subject = request.query_params.get("subject") or next((n for n in preferred if n in names), names[0] if names else None)
        versions = next((s["versions"] for s in subjects if s["subject"] == subject), [])
        a = request.query_params.get("a") or (str(versions[-2]) if len(versions) > 1 else str(versions[0]) if versions else None)
        b = request.query_params.get("b") or (str(versions[-1]) if versions else None)
        hunks, headers = None, None
        bad = [v for v in (a, b) if v is not None and not VERSION.fullmatch(v)]
        if bad:
            error = f"a schema version is a number or 'latest', not {bad[0]!r}"
        elif subject and a and b:
            left, error_a = self.attempt("schema registry", self.monitor.schema_version, subject, a)
            right, error_b = self.attempt("schema registry", self.monitor.schema_version, subject, b)
            error = error or error_a or error_b
            if left and right:
                text = lambda v: json.dumps(json.loads(v["schema"]), indent=2).splitlines()  # noqa: E731
                # One version only (or the same twice): show it whole rather than "no differences".
                whole = request.query_params.get("full") == "1" or a == b
                hunks = schema_diff.side_by_side(text(left), text(right), context=None if whole else 4)
                headers = (f"version {a} (id {left.get('id')})", f"version {b} (id {right.get('id')})")
        return self.page(
            request,
            "schemas.html",
            subjects=subjects,
            subject=subject,
            versions=versions,
            a=a,
            b=b,
            hunks=hunks,
            headers=headers,
            error=error,
        )

    # --- connector -------------------------------------------------------------------
    def connector_context(self) -> dict[str, Any]:
        names, error = self.attempt("Connect", self.monitor.connect.list)
        connectors = []
        for name in names or []:
            status, status_error = self.attempt("Connect", self.monitor.connect.status, name)
            connectors.append({"name": name, "status": status, "error": status_error})
        return {"connectors": connectors, "error": error, "connect_url": self.monitor.connect.url, "actions": ACTIONS}

    def connector_page(self, request: Request) -> Response:
        return self.page(request, "connector.html", **self.connector_context())

    def connector_panel(self, request: Request) -> Response:
        return self.templates.TemplateResponse(request, "_connector.html", {"request": request, **self.connector_context()})

    def connector_action(self, request: Request) -> Response:
        name, action = request.path_params["name"], request.path_params["action"]
        if action not in ACTIONS:
            return PlainTextResponse(f"unknown action {action}", status_code=404)
        _, error = self.attempt(f"{action} {name}", getattr(self.monitor.connect, action), name)
        context = self.connector_context()
        context["action_note"] = error or f"{action} sent to {name}"
        return self.templates.TemplateResponse(request, "_connector.html", {"request": request, **context})

    # --- spark -----------------------------------------------------------------------
    def spark_context(self) -> dict[str, Any]:
        report = streaming_job.read_progress(self.settings) or {}
        count, count_error = self.attempt("Cassandra", lambda: self.monitor.cql("SELECT count(*) FROM cdc.dead_letters")[0][0])
        letters, letters_error = self.attempt("Cassandra", self.monitor.dead_letters)
        return {
            "job": streaming_job.progress(self.settings),
            "recent": list(reversed(report.get("recent") or [])),
            "dead_letter_count": count,
            "dead_letters": letters or [],
            "cassandra_error": count_error or letters_error,
        }

    def spark_page(self, request: Request) -> Response:
        return self.page(request, "spark.html", **self.spark_context())

    def spark_panel(self, request: Request) -> Response:
        return self.templates.TemplateResponse(request, "_spark.html", {"request": request, **self.spark_context()})

    # --- cassandra -------------------------------------------------------------------
    def cassandra_page(self, request: Request) -> Response:
        # The row count arrives on its own (cassandra_count): a count(*) reads every tombstone
        # of the table, and one full of deletes kept the page, and a lookup, waiting up to 60 s.
        user_id = (request.query_params.get("id") or "").strip()
        user, lookup_error = None, None
        if user_id:
            user, lookup_error = self.attempt("lookup", self.monitor.user, user_id)
            if user is None and not lookup_error:
                lookup_error = f"no row with id {user_id} in cdc.users"
        return self.page(
            request,
            "cassandra.html",
            user_id=user_id,
            user=user,
            lookup_error=lookup_error,
            streaming_base=changes.STREAMING_BASE,
        )

    def cassandra_count(self, request: Request) -> Response:
        """cdc.users' rows, counted by Cassandra (a full scan), or why not within the timeout."""
        count, error = self.attempt("Cassandra", lambda: self.monitor.cql("SELECT count(*) FROM cdc.users", timeout=COUNT_TIMEOUT)[0][0])
        if error and ("timed out" in error.lower() or "timeout" in error.lower()):
            error = (
                f"count(*) gave no answer within {COUNT_TIMEOUT:.0f}s. It reads every row and every tombstone of cdc.users "
                "(deleted rows stay as tombstones for gc_grace_seconds, 10 days); 'cdcpipe verify' compares the table in "
                f"token ranges instead. ({error})"
            )
        return self.templates.TemplateResponse(request, "_row_count.html", {"request": request, "count": count, "error": error})

    # --- static ----------------------------------------------------------------------
    def vendor(self, request: Request) -> Response:
        rel = VENDOR.get(request.path_params["name"])
        if rel is None or not (self.assets / rel).is_file():
            return PlainTextResponse("not found (run 'make console-assets')", status_code=404)
        return FileResponse(self.assets / rel, headers={"Cache-Control": "max-age=3600"})

    def static(self, request: Request) -> Response:
        name = request.path_params["name"]
        path = HERE / "static" / name
        if "/" in name or not path.is_file():
            return PlainTextResponse("not found", status_code=404)
        return FileResponse(path)

    def routes(self) -> list[Route]:
        """Every page, panel, API and asset of the console."""
        return [
            Route("/", self.overview),
            Route("/panel/overview", self.overview_panel),
            Route("/api/lag", self.lag_history),
            Route("/api/health", self.health),
            Route("/topics", self.topics_page),
            Route("/panel/topics", self.topics_panel),
            Route("/topics/tail", self.tail_table),
            Route("/topics/stream", self.tail_stream),
            Route("/schemas", self.schemas_page),
            Route("/connector", self.connector_page),
            Route("/panel/connector", self.connector_panel),
            Route("/connector/{name}/{action}", self.connector_action, methods=["POST"]),
            Route("/spark", self.spark_page),
            Route("/panel/spark", self.spark_panel),
            Route("/cassandra", self.cassandra_page),
            Route("/panel/cassandra/count", self.cassandra_count),
            Route("/vendor/{name}", self.vendor),
            Route("/static/{name}", self.static),
        ]


def create_app(settings: Settings, password: str, monitor: Monitor | None = None, port: int | None = None) -> Starlette:
    """The console; ``port`` is where it serves (the settings' console port by default),
    which the Host header of every request must name."""
    monitor = monitor or Monitor(settings)
    csrf_token = guard.new_csrf_token()
    app = Starlette(routes=Pages(settings, monitor, csrf_token).routes())
    hosts = guard.allowed_hosts(settings.host, port or settings.port("console"))
    app.add_middleware(guard.Guard, username=USERNAME, password=password, csrf_token=csrf_token, hosts=hosts)
    app.state.monitor = monitor
    app.state.csrf_token = csrf_token
    return app
