"""Decode Confluent-framed Avro: magic byte 0, a 4-byte big-endian schema id, the Avro body.

Writer schemas are fetched by id from a registry's Confluent-compatible API
(``GET {url}/schemas/ids/{id}``) and cached per process, so several schema versions can be
decoded side by side. Each writer schema gets a reader compiled for it
(:mod:`cdcpipe.avro_compiled`; fastavro for schemas with logical types). Used by
``cdcpipe topic tail`` and the Spark job's executors.
"""

from __future__ import annotations

import io
import json
import struct
import threading
from typing import Any

import fastavro
import requests

from .avro_compiled import AvroCorrupt, Reader, compile_reader
from .errors import CdcpipeError, ServiceUnavailable

MAGIC = 0
HEADER = struct.Struct(">bI")


class DecodeError(CdcpipeError):
    """A record that cannot be decoded; ``reason`` says why in a few words."""

    def __init__(self, reason: str):
        self.reason = reason
        super().__init__(reason)


class SchemaRegistry:
    """Writer schemas by id from a Confluent-compatible registry, cached (thread-safe)."""

    def __init__(self, url: str, timeout: float = 10.0):
        self.url = url.rstrip("/")
        self.timeout = timeout
        self._cache: dict[int, Any] = {}
        self._raw: dict[int, dict[str, Any]] = {}
        self._readers: dict[int, Reader] = {}
        self._lock = threading.Lock()
        self._session = requests.Session()

    def schema(self, schema_id: int) -> Any:
        cached = self._cache.get(schema_id)
        if cached is not None:
            return cached
        try:
            response = self._session.get(f"{self.url}/schemas/ids/{schema_id}", timeout=self.timeout)
        except requests.RequestException as exc:
            # Not the record's fault: the caller must retry, not dead-letter.
            raise ServiceUnavailable(f"schema registry {self.url} unreachable fetching id {schema_id}: {exc}") from None
        if response.status_code == 404:
            raise DecodeError(f"unknown schema id {schema_id}")
        if response.status_code != 200:
            raise ServiceUnavailable(f"schema registry answered {response.status_code} for id {schema_id}: {response.text[:200]}")
        raw = json.loads(response.json()["schema"])
        parsed = fastavro.parse_schema(raw)
        with self._lock:
            self._raw[schema_id] = raw
            self._cache[schema_id] = parsed
        return parsed

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
            read = compile_reader(self._raw[schema_id]) or _fastavro_reader(parsed)
            self._readers[schema_id] = read
        return read


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


def decode(data: bytes | None, registry: SchemaRegistry) -> dict[str, Any] | None:
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
