"""Exceptions the CLI turns into messages and exit codes.

Every error says what was wrong and, where it can, what to do about it.
"""

from __future__ import annotations


class CdcpipeError(Exception):
    """Base class. ``exit_code`` is what the CLI exits with."""

    exit_code = 1


class ConfigError(CdcpipeError):
    """A setting or a file the user gave is wrong."""

    exit_code = 2


class MissingDependency(CdcpipeError):
    """A program or artifact the runtime needs is not installed."""

    exit_code = 3


class PortInUse(CdcpipeError):
    """Another process holds a port a service must bind."""

    exit_code = 4

    def __init__(self, service: str, port: int, host: str):
        self.service, self.port, self.host = service, port, host
        super().__init__(
            f"{service}: port {port} on {host} is already in use by another process. "
            f"Stop that process or choose another port with CDCPIPE_PORT_{service.upper()}=<port>."
        )


class ServiceFailed(CdcpipeError):
    """A service did not become ready; carries the tail of its log."""

    exit_code = 5

    def __init__(self, service: str, reason: str, log_tail: str = "", log_path: str = ""):
        self.service, self.reason, self.log_tail, self.log_path = service, reason, log_tail, log_path
        message = f"{service}: {reason}"
        if log_path:
            message += f"\n--- last lines of {log_path} ---\n{log_tail.rstrip()}"
        super().__init__(message)


class ServiceUnavailable(CdcpipeError):
    """A service the command talks to is not reachable."""

    exit_code = 6
