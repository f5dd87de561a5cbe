"""`cdcpipe connector ...`: register and steer the Debezium connector through Connect's REST API."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from .. import resync, runtime, settings
from ..clients.connect import DEFAULT_FILE, ConnectClient, ConnectorFile, register_and_wait, summarize


def _client(args: argparse.Namespace) -> ConnectClient:
    if args.connect_url:  # another Connect: its login, if any, from CDCPIPE_CONNECT_USER/_PASSWORD
        return ConnectClient.from_env(args.connect_url)
    return runtime.service(settings.load(), "connect").client()


def _name(args: argparse.Namespace) -> str:
    """The connector named on the command line, else the one in connectors/users-cdc.json
    (read here, not while the parser is built, so a broken file breaks only what needs it)."""
    return args.name or ConnectorFile.load(DEFAULT_FILE).name


def _print_state(status: dict, as_json: bool) -> None:
    if as_json:
        print(json.dumps(status, indent=2))
    else:
        print(summarize(status))


def cmd_register(args: argparse.Namespace) -> int:
    connector = ConnectorFile.load(Path(args.file) if args.file else DEFAULT_FILE)
    say = lambda m: print(m, file=sys.stderr)  # noqa: E731
    if args.connect_url:  # another Connect than the local runtime's: register only
        _verb, status = register_and_wait(_client(args), connector, timeout=args.timeout, progress=say)
    else:  # the local runtime's: the first registration also records epoch 0 (resync.register)
        status = resync.register(settings.load(), connector, timeout=args.timeout, progress=say)
    _print_state(status, args.json)
    return 0


def cmd_status(args: argparse.Namespace) -> int:
    status = _client(args).status(_name(args))
    _print_state(status, args.json)
    return 0 if status["connector"]["state"] == "RUNNING" else 1


def _action(verb: str, want: str | None):
    def run(args: argparse.Namespace) -> int:
        client, name = _client(args), _name(args)
        getattr(client, verb)(name)
        if want:
            _print_state(client.wait_for_state(name, want, timeout=args.timeout), args.json)
        else:
            print(f"connector '{name}' deleted (its offsets and the replication slot are kept)")
        return 0

    return run


def register(sub: argparse._SubParsersAction) -> None:
    parser = sub.add_parser("connector", help="register and manage the Debezium connector (Connect REST)")
    parser.add_argument("--connect-url", help="Kafka Connect REST URL (default: the local runtime's)")
    actions = parser.add_subparsers(dest="action", required=True, metavar="ACTION")

    p = actions.add_parser("register", help="validate, create or update, and wait until RUNNING")
    p.add_argument("file", nargs="?", help="connector JSON (default connectors/users-cdc.json)")
    p.add_argument("--timeout", type=float, default=120.0, help="seconds to wait for RUNNING (default 120)")
    p.add_argument("--json", action="store_true", help="print the final status as JSON")
    p.set_defaults(func=cmd_register)

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
        p.add_argument("name", nargs="?", help="connector name (default: the name in connectors/users-cdc.json)")
        p.add_argument("--timeout", type=float, default=120.0, help="seconds to wait (default 120)")
        p.add_argument("--json", action="store_true", help="print the status as JSON")
        p.set_defaults(func=handler)
