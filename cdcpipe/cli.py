"""The ``cdcpipe`` command line.

Commands raise the exceptions of :mod:`cdcpipe.errors`; :func:`main` prints the message and
exits with the exception's code (listed in ``cdcpipe --help``, made from ``errors.EXIT_CODES``).
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Callable

from .errors import CdcpipeError, exit_codes_text

Handler = Callable[[argparse.Namespace], int]
#: Each command group module exposes ``register(subparsers)``; listed here in help order.
COMMAND_GROUPS: list[str] = [
    "stack",
    "connector",
    "topic",
    "spark",
    "resync",
    "ingest",
    "randomuser",
    "bench",
    "demo",
    "verify",
    "opcheck",
    "console",
]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="cdcpipe",
        description="Change-data capture from PostgreSQL to Cassandra, and the local runtime that runs it.",
        epilog="exit codes:\n" + exit_codes_text(),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    import importlib

    for module in COMMAND_GROUPS:
        importlib.import_module(f"cdcpipe.commands.{module}").register(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["cqlsh"] and argv[1:2] not in (["-h"], ["--help"]):
        # Everything after 'cqlsh' is cqlsh's own (argparse would claim its options).
        from .commands.stack import cmd_cqlsh

        args = argparse.Namespace(func=cmd_cqlsh, cqlsh_args=argv[1:])
    else:
        args = parser.parse_args(argv)
    try:
        return args.func(args)
    except CdcpipeError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:  # output piped into e.g. `head`, which stopped reading
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 141


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
