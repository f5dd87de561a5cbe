"""The local runtime's own commands: up, down, status, logs, cqlsh, secret and jars."""

from __future__ import annotations

import argparse
import json
import os
import sys
import time

from .. import runtime, settings
from ..errors import ConfigError
from ..runtime import credentials, jars, processes


def cmd_up(args: argparse.Namespace) -> int:
    conf = settings.load()
    started = time.monotonic()
    runtime.up(conf, args.services or None)
    print(f"stack ready in {time.monotonic() - started:.0f}s — '.venv/bin/cdcpipe status' shows addresses", file=sys.stderr)
    return 0


def cmd_down(args: argparse.Namespace) -> int:
    runtime.down(settings.load(), args.services or None, purge=args.purge)
    return 0


def cmd_status(args: argparse.Namespace) -> int:
    report = runtime.status(settings.load())
    if args.json:
        print(json.dumps(report, indent=2, default=str))
    else:
        print(f"state directory: {report['home']} (topology: {report['topology']})")
        print(f"{'SERVICE':<16} {'STATE':<8} {'RSS':>10}  ADDRESS")
        for name, entry in report["services"].items():
            address = (
                entry.get("url") or entry.get("bootstrap") or (f"{entry.get('host')}:{entry.get('port')}" if entry.get("port") else "")
            )
            print(f"{name:<16} {entry['state']:<8} {processes.human_bytes(entry['rss_bytes']):>10}  {address}")
            for key in ("login", "confluent_url", "master_url", "ui_url", "capture"):
                if entry.get(key):
                    print(f"{'':<16} {'':<8} {'':>10}  {key}: {entry[key]}")
            if entry.get("capture") not in (None, "moving"):
                print(f"{'':<16} {'':<8} {'':>10}  why: {entry.get('capture_reason')}")
            for node, about in report["nodes"].items():
                if about["service"] == name:
                    rss = processes.human_bytes(about["rss_bytes"])
                    print(f"  {node:<14} {about['state']:<8} {rss:>10}  {entry.get('host', '127.0.0.1')}:{about['port']}")
        print(f"{'total':<16} {'':<8} {processes.human_bytes(report['total_rss_bytes']):>10}")
    states = {entry["state"] for entry in report["services"].values()}
    return 0 if states == {"running"} else 1


def cmd_logs(args: argparse.Namespace) -> int:
    conf = settings.load()
    svc = runtime.service(conf, args.service)
    for proc in svc.processes:
        path = conf.log_file(proc)
        if len(svc.processes) > 1:
            print(f"==> {path} <==")
        print(processes.log_tail(path, args.lines))
    if args.follow:
        path = conf.log_file(svc.processes[0])
        with open(path, "rb") as fh:
            fh.seek(0, 2)
            try:
                while True:
                    chunk = fh.read()
                    if chunk:
                        sys.stdout.write(chunk.decode("utf-8", "replace"))
                        sys.stdout.flush()
                    else:
                        time.sleep(0.5)
            except KeyboardInterrupt:
                return 0
    return 0


def cmd_cqlsh(args: argparse.Namespace) -> int:
    """cqlsh against the local Cassandra, logged in as role cdcpipe through its 0600 credentials
    file (the password never reaches a command line); its exit code is cqlsh's."""
    cass = runtime.service(settings.load(), "cassandra")
    cqlsh = os.path.join(os.path.dirname(sys.executable), "cqlsh")
    argv = [cqlsh, "--credentials", str(cass.credentials_file()), *args.cqlsh_args, cass.host, str(cass.port())]
    sys.stdout.flush()
    os.execv(cqlsh, argv)
    return 0  # pragma: no cover (execv does not return)


def cmd_secret(args: argparse.Namespace) -> int:
    """One generated password on stdout, asked for by name: status, demo and logs never print
    one (they end up in terminals' scrollback and CI logs)."""
    conf = settings.load()
    if args.name is None:
        for name, what in credentials.ACCOUNTS.items():
            print(f"{name:<18} {what}")
        return 0
    if args.name not in credentials.ACCOUNTS:
        raise ConfigError(f"no secret named {args.name!r}; 'cdcpipe secret' lists them")
    print(credentials.load(conf)[args.name])
    return 0


def cmd_jars(args: argparse.Namespace) -> int:
    conf = settings.load()
    jars.resolve(conf, force=args.force)
    print(f"JVM artifacts ready in {conf.jars}", file=sys.stderr)
    return 0


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("up", help="start the local runtime (idempotent) and wait until it is ready")
    p.add_argument("services", nargs="*", help="only these services (and what they need)")
    p.set_defaults(func=cmd_up)

    p = sub.add_parser("down", help="stop the local runtime")
    p.add_argument("services", nargs="*", help="only these services")
    p.add_argument("--purge", action="store_true", help="also delete the state directory (all data)")
    p.set_defaults(func=cmd_down)

    p = sub.add_parser("status", help="state, addresses and memory of each service (exit 1 unless all run)")
    p.add_argument("--json", action="store_true", help="machine-readable output")
    p.set_defaults(func=cmd_status)

    p = sub.add_parser("logs", help="show a service's log")
    p.add_argument("service")
    p.add_argument("-n", "--lines", type=int, default=50, help="lines to show (default 50)")
    p.add_argument("-f", "--follow", action="store_true", help="keep printing new lines")
    p.set_defaults(func=cmd_logs)

    p = sub.add_parser(
        "cqlsh",
        help="cqlsh on the local Cassandra, logged in (e.g. cdcpipe cqlsh -e 'SELECT * FROM cdc.users LIMIT 5')",
        description="Runs .venv/bin/cqlsh --credentials <state>/cassandra/conf/cdcpipe.credentials 127.0.0.1 <port> "
        "with the arguments given; its exit code is cqlsh's.",
    )
    p.add_argument("cqlsh_args", nargs=argparse.REMAINDER, help="arguments for cqlsh (-e QUERY, -f FILE, ...)")
    p.set_defaults(func=cmd_cqlsh)

    p = sub.add_parser(
        "secret",
        help="print one generated password (e.g. cdcpipe secret console); without a name, list them",
        description="Prints the password of NAME from <state>/secrets.json (0600). Without NAME, lists the names and what each is for.",
    )
    p.add_argument("name", nargs="?", help="the secret's name (see the list)")
    p.set_defaults(func=cmd_secret)

    p = sub.add_parser("jars", help="resolve the pinned JVM artifacts with Maven (once; needs network)")
    p.add_argument("--force", action="store_true", help="resolve again even if up to date")
    p.set_defaults(func=cmd_jars)
