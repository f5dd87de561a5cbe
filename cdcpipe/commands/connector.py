"""`cdcpipe connector ...`: register and steer the Debezium connector through Connect's REST API."""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

from .. import runtime, settings
from ..connect_client import ConnectClient, ConnectorFile, summarize

DEFAULT_FILE = settings.REPO / "connectors" / "users-cdc.json"


def _client(args: argparse.Namespace) -> ConnectClient:
    if args.connect_url:
        return ConnectClient(args.connect_url)
    conf = settings.load()
    return ConnectClient(runtime.services(conf, ["connect"], with_dependencies=False)[0].url)


def _print_state(status: dict, as_json: bool) -> None:
    if as_json:
        print(json.dumps(status, indent=2))
    else:
        print(summarize(status))


def cmd_register(args: argparse.Namespace) -> int:
    client = _client(args)
    connector = ConnectorFile.load(Path(args.file))
    print(f"validating {args.file} ({connector.name}) ...", file=sys.stderr)
    client.validate(connector)
    before = client.config(connector.name)
    created = client.put_config(connector)
    verb = "created" if created else ("updated" if before != {**connector.config, "name": connector.name} else "unchanged")
    print(f"connector '{connector.name}' {verb}; waiting for RUNNING ...", file=sys.stderr)
    started = time.monotonic()
    last = [""]

    def on_wait(status: dict) -> None:
        text = summarize(status)
        if text != last[0]:
            print(f"  {text} ({time.monotonic() - started:.0f}s)", file=sys.stderr)
            last[0] = text

    status = client.wait_for_state(connector.name, "RUNNING", timeout=args.timeout, on_wait=on_wait)
    _print_state(status, args.json)
    return 0


def cmd_status(args: argparse.Namespace) -> int:
    status = _client(args).status(args.name)
    _print_state(status, args.json)
    return 0 if status["connector"]["state"] == "RUNNING" else 1


def _action(verb: str, want: str | None):
    def run(args: argparse.Namespace) -> int:
        client = _client(args)
        getattr(client, verb)(args.name)
        if want:
            _print_state(client.wait_for_state(args.name, want, timeout=args.timeout), args.json)
        else:
            print(f"connector '{args.name}' deleted (its offsets and the replication slot are kept)")
        return 0

    return run


def register(sub: argparse._SubParsersAction) -> None:
    parser = sub.add_parser("connector", help="register and manage the Debezium connector (Connect REST)")
    parser.add_argument("--connect-url", help="Kafka Connect REST URL (default: the local runtime's)")
    actions = parser.add_subparsers(dest="action", required=True, metavar="ACTION")

    p = actions.add_parser("register", help="validate, create or update, and wait until RUNNING")
    p.add_argument("file", nargs="?", default=str(DEFAULT_FILE), help=f"connector JSON (default {DEFAULT_FILE.relative_to(settings.REPO)})")
    p.add_argument("--timeout", type=float, default=120.0, help="seconds to wait for RUNNING (default 120)")
    p.add_argument("--json", action="store_true", help="print the final status as JSON")
    p.set_defaults(func=cmd_register)

    default_name = ConnectorFile.load(DEFAULT_FILE).name
    for action, help_text, handler in (
        ("status", "connector and task states (exit 1 unless RUNNING)", cmd_status),
        ("pause", "pause the connector and wait until PAUSED", _action("pause", "PAUSED")),
        ("resume", "resume the connector and wait until RUNNING", _action("resume", "RUNNING")),
        ("restart", "restart the connector and its tasks, wait until RUNNING", _action("restart", "RUNNING")),
        ("delete", "remove the connector from Connect", _action("delete", None)),
        (
            "reset-offsets",
            "forget its offsets (after a lost slot): it snapshots again; then run 'cdcpipe resync'",
            _action("reset_offsets", "RUNNING"),
        ),
    ):
        p = actions.add_parser(action, help=help_text)
        p.add_argument("name", nargs="?", default=default_name, help=f"connector name (default {default_name})")
        p.add_argument("--timeout", type=float, default=120.0, help="seconds to wait (default 120)")
        p.add_argument("--json", action="store_true", help="print the status as JSON")
        p.set_defaults(func=handler)
