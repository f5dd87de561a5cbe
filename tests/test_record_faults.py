"""Whose fault is it: a record's (dead-letter it, go on) or the system's (raise, the batch is
retried, nothing skipped)? Against the real registry and Cassandra; needs only postgres,
kafka, schema_registry and cassandra (CDCPIPE_TEST_SERVICES)."""

from __future__ import annotations

import json
import struct
import uuid

import pytest
import requests

from cdc_helpers import register_schema
from cdcpipe.avro_reader import DecodeError, RegistryMisconfigured, SchemaRegistry, decode
from cdcpipe.errors import ServiceUnavailable

PROBE = {"type": "record", "name": "Probe", "fields": [{"name": "a", "type": "int"}]}


def framed(schema_id: int, body: bytes = b"\x02") -> bytes:
    return b"\x00" + struct.pack(">I", schema_id) + body


def register(registry_url: str, schema: str, schema_type: str) -> int:
    response = requests.post(
        f"{registry_url}/subjects/test-{uuid.uuid4().hex[:8]}-value/versions",
        json={"schema": schema, "schemaType": schema_type},
        headers={"Content-Type": "application/vnd.schemaregistry.v1+json"},
        timeout=30,
    )
    assert response.status_code == 200, response.text
    return response.json()["id"]


def counting(registry: SchemaRegistry) -> list[str]:
    """The URLs the registry client requests from now on."""
    seen: list[str] = []
    registry._session.hooks["response"].append(lambda r, *a, **k: seen.append(r.url))
    return seen


# --- 1. a 404 is the record's fault only from a healthy registry ----------------------------


def test_unknown_id_on_a_healthy_registry_is_the_records_fault(stack):
    url = stack["schema_registry"].url
    register_schema(url, PROBE)  # the registry knows at least one schema
    registry = SchemaRegistry(url, timeout=30)
    with pytest.raises(DecodeError, match="unknown schema id 987654"):
        decode(framed(987654), registry)


@pytest.mark.parametrize(
    "path",
    [
        "/apis/ccompat/v6",  # Apicurio: 404, empty body
        "/apis/ccompat/v7/extra",  # Apicurio: 404, empty body
        "",  # Quarkus: 404 {"detail": "NotFoundException: RESTEASY003210: ...", "status": 404}
        "/apis/registry/v2",  # Apicurio's native API: 404 {"error_code": 404, ...}
    ],
)
def test_a_wrong_registry_url_is_the_systems_fault(stack, path):
    registry = SchemaRegistry(stack["schema_registry"].base_url + path, timeout=30)
    with pytest.raises(RegistryMisconfigured) as caught:
        decode(framed(987654), registry)
    assert isinstance(caught.value, ServiceUnavailable) and not isinstance(caught.value, DecodeError)
    assert "987654" in str(caught.value)


def test_the_registry_answers_as_the_rule_expects(stack):
    """The answers the rule in cdcpipe/avro_reader.py is built on (Apicurio 3.3)."""
    base = stack["schema_registry"].base_url
    unknown = requests.get(f"{base}/apis/ccompat/v7/schemas/ids/987654", timeout=30)
    assert unknown.status_code == 404 and unknown.json()["error_code"] == 40403
    wrong = requests.get(f"{base}/apis/ccompat/v6/schemas/ids/987654", timeout=30)
    assert wrong.status_code == 404 and wrong.text == ""


# --- 2. a non-Avro schema is the record's fault, and asked for once -------------------------


@pytest.mark.parametrize(
    "schema, schema_type, reason",
    [
        (json.dumps({"type": "object", "properties": {"a": {"type": "integer"}}}), "JSON", "is a JSON schema, not Avro"),
        ('syntax = "proto3";\nmessage P { int32 a = 1; }\n', "PROTOBUF", "is a PROTOBUF schema, not Avro"),
    ],
)
def test_a_non_avro_schema_is_the_records_fault_and_cached(stack, schema, schema_type, reason):
    url = stack["schema_registry"].url
    schema_id = register(url, schema, schema_type)
    registry = SchemaRegistry(url, timeout=30)
    requested = counting(registry)
    for _ in range(3):
        with pytest.raises(DecodeError, match=reason):
            decode(framed(schema_id), registry)
    assert len(requested) == 1, requested

