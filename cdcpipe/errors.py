"""Every exception cdcpipe raises on purpose, and the exit code the CLI gives each.

Commands raise; ``cli.main`` prints the message and exits with the class's ``exit_code``
(the CLI's help text is made from :data:`EXIT_CODES`). Messages say what was wrong and,
where they can, what to do about it.

Two families. What stops a command or the runtime::

    CdcpipeError                 1  anything else that went wrong
    ├── ConfigError              2  a setting, an argument or a file the user gave is wrong
    │   └── ConnectorInvalid     2    Connect's validation rejected fields (listed)
    ├── MissingDependency        3  a program or artifact the runtime needs is not installed
    ├── PortInUse                4  another process holds a port a service must bind
    ├── ServiceFailed            5  a service did not become ready (carries its log's tail)
    ├── ServiceUnavailable       6  a service the command talks to is not reachable
    │   └── RegistryMisconfigured 6   the registry does not answer like the records' registry
    ├── HttpError                1  a service answered an HTTP error (``status``, ``method``, ``url``)
    │   └── NotFound             1    ... 404
    ├── ConnectorFailed          7  the connector or a task is FAILED (carries the trace)
    ├── DagRunFailed             8  an Airflow DAG run failed
    ├── StepFailed            (cause) a step of ``cdcpipe demo`` failed
    ├── Mismatch                 9  cdc.users does not equal public.users
    ├── Inconclusive            10  verify could not judge: the pipeline did not catch up
    ├── TableUnusable            1  the Cassandra table cannot take writes: the job retries
    │   └── UnsupportedType      1    a source column's type has no lossless CQL type
    ├── SourceChanged            1  a record cannot come from the synced source: run ``cdcpipe resync``
    ├── SchemaChangeNeedsResync  1  DDL gave existing rows values no event carries: run ``cdcpipe resync``
    ├── PositionOverflow         1  a change's LSN is past 2**52: the write positions cannot order it
    ├── ImageIncomplete          1  an update's image holds Debezium's placeholder: REPLICA IDENTITY FULL, then resync
    ├── ResyncFailed             1  ``cdcpipe resync`` could not finish (nothing was deleted)
    ├── ConnectorResetFailed     1  ``cdcpipe connector reset-offsets`` did not get the connector RUNNING
    ├── PipelineStalled          1  a benchmark saw a stage make no progress for too long
    ├── WriteConflict            1  a benchmark's planned update or delete found no row
    ├── CeilingFailed            1  a writer process of the sink-ceiling measurement failed
    └── RecordError                 one change event's own fault: the job dead-letters it
        ├── DecodeError               not Confluent-framed Avro the registry's schema reads
        ├── MalformedChange           decoded, but not a Debezium change event we can apply
        └── BadValue                  a value its Cassandra column cannot hold

``AvroCorrupt`` (bytes that do not follow the writer schema) is internal to the decoder,
which turns it into a ``DecodeError``. ``MalformedChange``, ``BadValue`` and ``AvroCorrupt``
are also ``ValueError`` s, so code that classifies encoder failures by ``ValueError`` keeps
them on the record's side.

The executors import this module too (it imports nothing of cdcpipe's), so the split between
a record's fault and the system's is one tree, not a convention per module.
"""

from __future__ import annotations

#: What each exit code means, in the CLI's help and docs/operations.md.
EXIT_CODES: dict[int, str] = {
    0: "success",
    1: "failure (anything not listed)",
    2: "bad usage or configuration",
    3: "a missing dependency",
    4: "a port in use",
    5: "a service failed to start",
    6: "a service is not reachable",
    7: "a connector or task FAILED",
    8: "a DAG run failed",
    9: "the read model differs from the source",
    10: "verify could not judge: the pipeline did not catch up",
    130: "interrupted",
}


def exit_codes_text() -> str:
    """``EXIT_CODES`` as one line per code, for help texts."""
    return "\n".join(f"  {code:>3}  {meaning}" for code, meaning in EXIT_CODES.items())


class CdcpipeError(Exception):
    """Base class. ``exit_code`` is what the CLI exits with."""

    exit_code = 1


class ConfigError(CdcpipeError):
    """A setting, an argument or a file the user gave is wrong."""

    exit_code = 2


class ConnectorInvalid(ConfigError):
    """Connect's validate endpoint rejected the config; ``errors`` maps field -> messages."""

    def __init__(self, name: str, errors: dict[str, list[str]]):
        self.errors = errors
        lines = [f"connector '{name}' config is invalid ({len(errors)} field(s)):"]
        lines += [f"  {field}: {'; '.join(msgs)}" for field, msgs in sorted(errors.items())]
        super().__init__("\n".join(lines))


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


class RegistryMisconfigured(ServiceUnavailable):
    """The registry URL does not answer like the registry the records were written with
    (wrong path, not a Confluent-compatible API, or an empty registry): not the record's
    fault, so the caller must retry rather than dead-letter."""


class HttpError(CdcpipeError):
    """A service answered an HTTP error status; ``status`` is the code it answered."""

    def __init__(self, service: str, method: str, url: str, status: int, message: str):
        self.service, self.method, self.url, self.status = service, method, url, status
        super().__init__(f"{service} {method} {url} answered {status}: {message}")

    @classmethod
    def of(cls, service: str, method: str, url: str, status: int, message: str) -> HttpError:
        """The right subclass for ``status``."""
        return (NotFound if status == 404 else cls)(service, method, url, status, message)


class NotFound(HttpError):
    """The service answered 404: what was asked for does not exist (yet)."""


class ConnectorFailed(CdcpipeError):
    """The connector or one of its tasks is FAILED; carries the first lines of the trace."""

    exit_code = 7


class DagRunFailed(CdcpipeError):
    """An Airflow DAG run ended failed; names the failed tasks. ``run`` describes the run."""

    exit_code = 8

    def __init__(self, message: str, run: object = None):
        self.run = run
        super().__init__(message)


class StepFailed(CdcpipeError):
    """A step of ``cdcpipe demo`` failed; exits with its cause's code and names the step."""

    def __init__(self, step: str, cause: Exception):
        self.step, self.cause = step, cause
        self.exit_code = getattr(cause, "exit_code", 1)
        super().__init__(f"demo step '{step}' failed: {cause}")


class Mismatch(CdcpipeError):
    """cdc.users does not equal public.users (after waiting, where the command waits)."""

    exit_code = 9


class Inconclusive(CdcpipeError):
    """verify could not judge: the pipeline did not apply the source's changes up to the
    position it judges at (the message names the job's state and its reason)."""

    exit_code = 10


class TableUnusable(CdcpipeError):
    """The table cannot take the writes (gone, or not the shape the statements expect): not
    a row's fault, so it raises and the batch is retried."""


class UnsupportedType(TableUnusable):
    """A source column whose type has no lossless CQL mapping: the table's problem."""


class PositionOverflow(CdcpipeError):
    """A change's LSN is past what a write position can hold within an epoch (2**52): the
    source's, not the record's, so the batch fails and the job stops naming it."""

    def __init__(self, lsn: int, limit: int):
        super().__init__(
            f"source.lsn {lsn} is past {limit}, the largest LSN this pipeline's write positions can order "
            "(cdcpipe/pipeline/changes.py). Nothing was applied or dead-lettered. Step: move the source to a new "
            "PostgreSQL cluster (a logical dump and restore starts its LSNs low), then 'cdcpipe resync' against it"
        )


class SchemaChangeNeedsResync(CdcpipeError):
    """A schema change gave existing rows values that no change event carries (ADD COLUMN ...
    DEFAULT, RENAME COLUMN, ALTER COLUMN ... TYPE ... USING; cdcpipe/pipeline/schema_changes.py):
    the job stops there until ``cdcpipe resync`` re-reads every row."""


class SourceChanged(CdcpipeError):
    """A record cannot come from the source its sync epoch was recorded for (see
    cdcpipe/pipeline/changes.py): not a row's fault, so the batch fails and nothing is applied
    that would be shadowed."""

    def __init__(self, detail: str):
        super().__init__(
            f"{detail}. The source changed identity (a new PostgreSQL cluster, a restore, a failover, "
            "or a slot whose LSNs went backwards): writes from it would be shadowed by the old ones. "
            "Run 'cdcpipe resync' to re-synchronise the read model from the current source."
        )


class ImageIncomplete(CdcpipeError):
    """An update whose after image holds Debezium's placeholder (``__debezium_unavailable_value``)
    for an unchanged TOASTed value, with no before image to take it from: the source table's
    REPLICA IDENTITY is not FULL. Written, the row would hold the placeholder; the batch fails
    instead and the job stops naming the step."""

    def __init__(self, table: str, lsn: int, columns: list[str]):
        super().__init__(
            f"an update of {table} at LSN {lsn} carries Debezium's placeholder instead of the value of "
            f"{', '.join(columns)} (an unchanged large, TOASTed value) and no before image to take it from: the table's "
            f"REPLICA IDENTITY is not FULL. Nothing was applied. Step: ALTER TABLE {table} REPLICA IDENTITY FULL (as "
            "sql/postgres/001_users.sql does), then 'cdcpipe resync'"
        )


class ResyncFailed(CdcpipeError):
    """``cdcpipe resync`` stopped before its cleanup; its epoch stays recorded and a new resync is safe."""


class ConnectorResetFailed(CdcpipeError):
    """Connect's stop / delete offsets / resume did not end with the connector RUNNING."""

    def __init__(self, name: str, reason: str):
        super().__init__(
            f"resetting the offsets of connector '{name}' failed: {reason}. "
            f"Check 'cdcpipe connector status {name}' and 'cdcpipe logs connect', then run "
            "'cdcpipe connector reset-offsets' again"
        )


class PipelineStalled(CdcpipeError):
    """A stage of the pipeline made no progress for too long during the benchmark."""


class WriteConflict(CdcpipeError):
    """An update or delete of the benchmark's plan found no row: something else changed its rows."""


class CeilingFailed(CdcpipeError):
    """A writer process of the sink-ceiling measurement failed; the message carries its error."""


class RecordError(CdcpipeError):
    """One change event's own fault: the job dead-letters it and goes on."""


class DecodeError(RecordError):
    """A record that cannot be decoded; ``reason`` says why in a few words."""

    def __init__(self, reason: str):
        self.reason = reason
        super().__init__(reason)


class MalformedChange(RecordError, ValueError):
    """A decoded record that is not a Debezium change event we can apply."""


class BadValue(RecordError, ValueError):
    """A value that cannot be stored in its Cassandra column."""


class AvroCorrupt(ValueError):
    """Bytes that do not follow the writer schema (the decoder makes it a DecodeError)."""
