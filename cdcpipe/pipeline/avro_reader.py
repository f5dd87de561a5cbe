"""Decode Confluent-framed Avro: magic byte 0, a 4-byte big-endian schema id, the Avro body.

Writer schemas are fetched by id from a registry's Confluent-compatible API
(``GET {url}/schemas/ids/{id}``) and cached per process, so several schema versions can be
decoded side by side. Each writer schema gets a reader compiled for it
(:mod:`cdcpipe.pipeline.avro_compiled`; fastavro for schemas with logical types). Used by
``cdcpipe topic tail`` and the Spark job's executors.

Whose fault is a failed schema lookup
-------------------------------------
The Spark job dead-letters a record whose failure is the record's own fault and fails the
micro-batch (retried, nothing skipped) for anything else, so a lookup must say which it is.
A 404 alone does not: a wrong base URL, a registry reset to empty and a truly unknown id all
answer 404. What Apicurio 3.3's ``/apis/ccompat/v7`` answers (seen on the local runtime):

* unknown id: ``404 {"message":"Schema 987654 not found.","error_code":40403}`` (Confluent's
  code for "Schema not found"); the same for *every* id when the registry is empty;
* a wrong path under ccompat (``/apis/ccompat/v6/...``, ``/apis/ccompat/v7/x/...``):
  ``404`` with an empty body;
* a wrong path elsewhere: ``404 {"detail":"NotFoundException: RESTEASY003210: Could not
  find resource ...","status":404,...}`` or, under ``/apis/registry/v2``,
  ``{"error_code":404,...}``; another server may answer HTML.

The rule: a schema id is the record's fault (:class:`DecodeError`) only when the registry
answered **404 with a JSON body whose error_code is 40403** *and* it knows at least one
subject (``GET {url}/subjects`` is a non-empty JSON list). Anything else is
:class:`RegistryMisconfigured` (a :class:`ServiceUnavailable`): a 404 without that body means
the URL does not point at a Confluent-compatible API; an empty registry answering 40403 for
everything is one that was reset or is not the one the producers used (Apicurio's default
in-memory storage empties on restart), and dead-lettering every record while progress looks
normal is the failure this rule exists to prevent. The subjects check runs only on the rare
unknown-id path (it is not cached: a registry can be reset while the job runs). What the rule
cannot catch: a healthy, non-empty registry that is simply a different one; those records
are dead-lettered with their raw bytes and can be replayed.

A request the registry never answers
-----------------------------------
Apicurio 3.3.3 leaves some requests unanswered: on the local runtime, 7 of 200 GETs to a
wrong path under ccompat (``/apis/ccompat/v6/schemas/ids/987654``) got no byte back within
65 s, on fresh connections, with nothing in its log; 0 of 1,000 to ``/apis/ccompat/v7`` and 0
of 200 to each other wrong path did. A request that times out is therefore asked again, on a
new connection, up to ``attempts`` times (``timeout`` each) before the lookup is
:class:`ServiceUnavailable`. Without that, the answer that makes a wrong URL actionable
(:class:`RegistryMisconfigured`, "is the URL the Confluent-compatible API?") was, one time in
thirty, a bare read timeout. A refused connection is not retried here: the registry is down,
the batch fails, and the job retries it.

A schema the id resolves to but that cannot be used to decode Avro (registered with
``schemaType`` JSON or PROTOBUF, or not a valid Avro schema) is the record's fault too: its
id names a schema it cannot be decoded with. That verdict is cached per id, so a stream of
such records costs one registry request, not one per record.
"""

from __future__ import annotations

import base64
import datetime as dt
import io
import json
import logging
import struct
import threading
import uuid
from decimal import Decimal
from typing import Any

import fastavro
import requests

from ..errors import AvroCorrupt, DecodeError, RegistryMisconfigured, ServiceUnavailable
from .avro_compiled import Reader, compile_reader

__all__ = ["DecodeError", "RegistryMisconfigured", "SchemaCache", "decode", "schema_id_of"]

log = logging.getLogger(__name__)

MAGIC = 0
HEADER = struct.Struct(">bI")


#: Confluent's error_code for "Schema not found" (Apicurio's ccompat API uses it too).
SCHEMA_NOT_FOUND = 40403


class SchemaCache:
    """Writer schemas by id from a Confluent-compatible registry, cached (thread-safe)."""

    def __init__(self, url: str, timeout: float = 10.0, attempts: int = 3, auth: tuple[str, str] | None = None):
        if attempts < 1:
            raise ValueError(f"attempts must be at least 1, not {attempts}")
        self.url = url.rstrip("/")
        self.timeout = timeout
        self.attempts = attempts
        self._cache: dict[int, Any] = {}
        self._raw: dict[int, dict[str, Any]] = {}
        self._readers: dict[int, Reader] = {}
        self._unusable: dict[int, str] = {}  # id -> why its schema cannot decode Avro
        self._lock = threading.Lock()
        self._session = requests.Session()
        self._session.auth = auth  # sent with every request: Apicurio's 401 names no scheme to answer

    def schema(self, schema_id: int) -> Any:
        cached = self._cache.get(schema_id)
        if cached is not None:
            return cached
        unusable = self._unusable.get(schema_id)
        if unusable is not None:
            raise DecodeError(unusable)
        response = self._get(f"/schemas/ids/{schema_id}", f"fetching id {schema_id}")
        if response.status_code == 404:
            self._raise_not_found(schema_id, response)
        if response.status_code in (401, 403):
            raise RegistryMisconfigured(
                f"schema registry {self.url} refused {'the login' if self._session.auth else 'a request without a login'} "
                f"({response.status_code}) fetching id {schema_id}: check its user and password"
            )
        if response.status_code != 200:
            raise ServiceUnavailable(f"schema registry answered {response.status_code} for id {schema_id}: {response.text[:200]}")
        body = _json(response)
        if not isinstance(body, dict) or not isinstance(body.get("schema"), str):
            raise RegistryMisconfigured(
                f"schema registry {self.url} answered 200 for id {schema_id} without a schema: {response.text[:200]!r}"
            )
        try:
            raw, parsed = _parse_avro(schema_id, body)
        except DecodeError as exc:
            with self._lock:
                self._unusable[schema_id] = exc.reason
            raise
        with self._lock:
            self._raw[schema_id] = raw
            self._cache[schema_id] = parsed
        return parsed

    def _get(self, path: str, doing: str) -> requests.Response:
        """One GET; a request left unanswered is asked again (see the module docstring).

        Refused connections and other errors are not retried here: the caller fails the
        batch (the system's fault) and the job retries it."""
        for attempt in range(1, self.attempts + 1):
            try:
                return self._session.get(f"{self.url}{path}", timeout=self.timeout)
            except requests.Timeout as exc:
                if attempt == self.attempts:
                    raise ServiceUnavailable(
                        f"schema registry {self.url} did not answer {doing} ({self.attempts} attempts of {self.timeout:g} s): {exc}"
                    ) from None
                log.warning("schema registry %s did not answer %s in %g s; asking again", self.url, doing, self.timeout)
            except requests.RequestException as exc:
                # Not the record's fault: the caller must retry, not dead-letter.
                raise ServiceUnavailable(f"schema registry {self.url} unreachable {doing}: {exc}") from None
        raise AssertionError("unreachable")  # pragma: no cover - the loop returns or raises

    def _raise_not_found(self, schema_id: int, response: requests.Response) -> None:
        """A 404 for a schema id: DecodeError only from a healthy, non-empty registry (see
        the module docstring); RegistryMisconfigured otherwise."""
        body = _json(response)
        code = body.get("error_code") if isinstance(body, dict) else None
        if code != SCHEMA_NOT_FOUND:
            raise RegistryMisconfigured(
                f"schema registry {self.url} answered 404 for id {schema_id} without Confluent's "
                f"'schema not found' (error_code {SCHEMA_NOT_FOUND}): {response.text[:200]!r}; "
                "is the URL the Confluent-compatible API (e.g. .../apis/ccompat/v7)?"
            )
        subjects = self._get("/subjects", f"listing subjects after id {schema_id} was not found")
        listed = _json(subjects) if subjects.status_code == 200 else None
        if not isinstance(listed, list):
            raise RegistryMisconfigured(
                f"schema registry {self.url} answered {subjects.status_code} to GET /subjects: {subjects.text[:200]!r}"
            )
        if not listed:
            raise RegistryMisconfigured(
                f"schema registry {self.url} knows no schema at all (id {schema_id} not found): "
                "reset, or not the registry the records were written with"
            )
        raise DecodeError(f"unknown schema id {schema_id}")

    def raw_schema(self, schema_id: int) -> dict[str, Any]:
        """The writer schema as the registry returned it (with Debezium's connect.* attributes)."""
        if schema_id not in self._raw:
            self.schema(schema_id)
        return self._raw[schema_id]

    def reader(self, schema_id: int) -> Reader:
        """``(buf, pos) -> (value, pos)`` for values written with this schema id."""
        read = self._readers.get(schema_id)
        if read is None:
            parsed = self.schema(schema_id)
            try:
                read = compile_reader(self._raw[schema_id])
            except Exception:  # the compiler's limitation, not the record's: fastavro can read it
                log.warning("schema id %s: compiled reader failed, using fastavro", schema_id, exc_info=True)
                read = None
            read = read or _fastavro_reader(parsed)
            self._readers[schema_id] = read
        return read


def _json(response: requests.Response) -> Any:
    try:
        return response.json()
    except ValueError:
        return None


def _parse_avro(schema_id: int, body: dict[str, Any]) -> tuple[Any, Any]:
    """(raw, parsed) for an Avro schema; DecodeError for anything else."""
    kind = body.get("schemaType", "AVRO")
    if kind != "AVRO":
        raise DecodeError(f"schema id {schema_id} is a {kind} schema, not Avro")
    try:
        raw = json.loads(body["schema"])
        return raw, fastavro.parse_schema(raw)
    except Exception as exc:  # only the schema's text is involved: whatever fails is its fault
        raise DecodeError(f"schema id {schema_id} is not a valid Avro schema: {exc.__class__.__name__}: {exc}") from None


def _fastavro_reader(parsed: Any) -> Reader:
    def read(buf: bytes, pos: int) -> tuple[Any, int]:
        body = io.BytesIO(buf)
        body.seek(pos)
        return fastavro.schemaless_reader(body, parsed, None), body.tell()

    return read


def schema_id_of(data: bytes) -> int:
    """The schema id in a framed record's header (raises DecodeError on a bad header)."""
    if len(data) < HEADER.size:
        raise DecodeError(f"truncated record: {len(data)} bytes, the header alone is {HEADER.size}")
    magic, schema_id = HEADER.unpack_from(data)
    if magic != MAGIC:
        raise DecodeError(f"bad magic byte {data[0]:#04x} (expected 0x00)")
    return schema_id


def decode(data: bytes | None, registry: SchemaCache) -> dict[str, Any] | None:
    """Decode one framed record; None for a null value (a tombstone)."""
    if data is None:
        return None
    schema_id = schema_id_of(data)
    read = registry.reader(schema_id)
    try:
        record, end = read(data, HEADER.size)
    except IndexError:
        end = len(data) + 1  # the schema wanted more bytes than there are
    except (AvroCorrupt, EOFError, StopIteration, struct.error, ValueError, UnicodeDecodeError) as exc:
        raise DecodeError(f"truncated or corrupt Avro body for schema id {schema_id}: {exc.__class__.__name__}: {exc}") from None
    left = len(data) - end
    if left < 0:
        raise DecodeError(f"truncated or corrupt Avro body for schema id {schema_id}: the record needs more than its {len(data)} bytes")
    if left:
        raise DecodeError(f"{left} trailing byte(s) after the Avro body for schema id {schema_id}")
    return record


def to_json(value: Any) -> Any:
    """JSON for what fastavro returns: bytes as base64, dates/times ISO 8601, decimals as strings."""
    if isinstance(value, dict):
        return {k: to_json(v) for k, v in value.items()}
    if isinstance(value, list):
        return [to_json(v) for v in value]
    if isinstance(value, bytes):
        return {"base64": base64.b64encode(value).decode()}
    if isinstance(value, (dt.datetime, dt.date, dt.time)):
        return value.isoformat()
    if isinstance(value, (Decimal, uuid.UUID)):
        return str(value)
    return value
