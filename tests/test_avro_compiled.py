"""The compiled Avro readers (cdcpipe/pipeline/avro_compiled.py) against fastavro, on the same bytes.

Schemas are registered in the real registry and read through ``avro_reader.decode``, as the
Spark job reads them; real Debezium events come from the real connector.
"""

from __future__ import annotations

import io
import random
import struct

import fastavro
import pytest
from cdc_helpers import register_schema

from cdcpipe.pipeline.avro_reader import HEADER, DecodeError, decode

EVERY_TYPE = {
    "type": "record",
    "name": "Every",
    "namespace": "test.avro",
    "fields": [
        {"name": "n", "type": "null"},
        {"name": "flag", "type": "boolean"},
        {"name": "i", "type": "int"},
        {"name": "l", "type": "long"},
        {"name": "f", "type": "float"},
        {"name": "d", "type": "double"},
        {"name": "b", "type": "bytes"},
        {"name": "s", "type": {"type": "string", "connect.name": "io.debezium.data.Uuid"}},
        {"name": "e", "type": {"type": "enum", "name": "Suit", "symbols": ["HEARTS", "SPADES", "CLUBS"]}},
        {"name": "fx", "type": {"type": "fixed", "name": "Four", "size": 4}},
        {"name": "inner", "type": {"type": "record", "name": "Inner", "fields": [{"name": "x", "type": ["null", "long"]}]}},
        {"name": "again", "type": "Inner"},  # a named type used a second time
        {"name": "suit2", "type": "test.avro.Suit"},
        {"name": "arr", "type": {"type": "array", "items": ["null", "string", "Inner"]}},
        {"name": "m", "type": {"type": "map", "values": "double"}},
        {"name": "u", "type": ["null", "int", "string", "Four", {"type": "array", "items": "long"}]},
        {
            "name": "chain",
            "type": [
                "null",
                {"type": "record", "name": "Node", "fields": [{"name": "v", "type": "int"}, {"name": "next", "type": ["null", "Node"]}]},
            ],
        },
    ],
}

TEXTS = ["", "a", "Zoë O'Brien", 'quote " backslash \\ newline \n tab \t', "😀 four-byte", "é" * 300, "x" * 5000]
LONGS = [0, 1, -1, 63, 64, -64, -65, 2**31 - 1, -(2**31), 2**63 - 1, -(2**63), 8191, 8192]


def _every_value(rng: random.Random) -> dict:
    def inner() -> dict:
        return {"x": rng.choice([None, rng.choice(LONGS)])}

    def chain(depth: int):
        return None if depth == 0 else {"v": rng.randint(-(2**31), 2**31 - 1), "next": chain(depth - 1)}

    return {
        "n": None,
        "flag": rng.random() < 0.5,
        "i": rng.choice([0, -1, 1, 2**31 - 1, -(2**31), rng.randint(-1000, 1000)]),
        "l": rng.choice(LONGS),
        "f": rng.choice([0.0, 1.5, -2.25, 3.0e38]),
        "d": rng.choice([0.0, -0.0, 90.0, -180.0, 1e-300, 1.7976931348623157e308, rng.uniform(-1e6, 1e6)]),
        "b": bytes(rng.randrange(256) for _ in range(rng.choice([0, 1, 17, 300]))),
        "s": rng.choice(TEXTS),
        "e": rng.choice(["HEARTS", "SPADES", "CLUBS"]),
        "fx": bytes(rng.randrange(256) for _ in range(4)),
        "inner": inner(),
        "again": inner(),
        "suit2": "CLUBS",
        "arr": [rng.choice([None, rng.choice(TEXTS), inner()]) for _ in range(rng.choice([0, 1, 5, 200]))],
        "m": {rng.choice(TEXTS) + str(k): rng.uniform(-1, 1) for k in range(rng.choice([0, 1, 40]))},
        "u": rng.choice([None, 7, "text", b"abcd", [1, -2, 2**40]]),
        "chain": chain(rng.randint(0, 4)),
    }


def _framed(schema_id: int, parsed, value) -> bytes:
    out = io.BytesIO()
    out.write(HEADER.pack(0, schema_id))
    fastavro.schemaless_writer(out, parsed, value)
    return out.getvalue()


def _fastavro(parsed, data: bytes):
    return fastavro.schemaless_reader(io.BytesIO(data[HEADER.size :]), parsed, None)


@pytest.fixture(scope="module")
def every(stack):
    schema_id = register_schema(stack["schema_registry"], EVERY_TYPE)
    registry = stack["schema_registry"].cache()
    return registry, schema_id, fastavro.parse_schema(registry.raw_schema(schema_id))


def test_every_type_reads_as_fastavro_reads_it(every):
    registry, schema_id, parsed = every
    assert hasattr(registry.reader(schema_id), "source"), "expected the compiled reader, not the fastavro fallback"
    rng = random.Random(7)
    for _ in range(300):
        data = _framed(schema_id, parsed, _every_value(rng))
        assert decode(data, registry) == _fastavro(parsed, data)


SMALL = {
    "type": "record",
    "name": "Small",
    "fields": [
        {"name": "arr", "type": {"type": "array", "items": ["null", "string"]}},
        {"name": "m", "type": {"type": "map", "values": "double"}},
        {"name": "u", "type": ["null", "int"]},
        {"name": "s", "type": "string"},
        {"name": "e", "type": {"type": "enum", "name": "E", "symbols": ["A", "B"]}},
    ],
}


def _zigzag(n: int) -> bytes:
    n = (n << 1) ^ (n >> 63)
    out = bytearray()
    while n >= 0x80:
        out.append((n & 0x7F) | 0x80)
        n >>= 7
    out.append(n)
    return bytes(out)


def _string(text: str) -> bytes:
    return _zigzag(len(text.encode())) + text.encode()


@pytest.fixture(scope="module")
def small(stack):
    schema_id = register_schema(stack["schema_registry"], SMALL)
    registry = stack["schema_registry"].cache()
    return registry, HEADER.pack(0, schema_id), fastavro.parse_schema(registry.raw_schema(schema_id))


def test_blocks_with_byte_sizes_and_long_varints(small):
    """Writers may split arrays and maps into blocks and give a block's byte size (negative
    count), and a varint may take more bytes than it needs: read as fastavro reads them."""
    registry, head, parsed = small
    items = b"\x02" + _string("one") + b"\x00"  # branch 1 (string), branch 0 (null)
    arr = _zigzag(-2) + _zigzag(len(items)) + items + _zigzag(1) + b"\x02" + _string("two") + _zigzag(0)
    m = _zigzag(1) + _string("k") + struct.pack("<d", 2.5) + _zigzag(0)
    u = b"\x82\x80\x00" + b"\x8a\x00"  # branch 1 and the int 5, each in more bytes than needed
    data = head + arr + m + u + _string("end") + _zigzag(1)
    got = decode(data, registry)
    assert got == {"arr": ["one", None, "two"], "m": {"k": 2.5}, "u": 5, "s": "end", "e": "B"}
    assert got == _fastavro(parsed, data)


def test_every_truncation_and_trailing_bytes_are_errors(every):
    registry, schema_id, parsed = every
    rng = random.Random(3)
    data = _framed(schema_id, parsed, _every_value(rng))
    for cut in range(HEADER.size, len(data)):
        with pytest.raises(DecodeError, match="truncated or corrupt Avro body"):
            decode(data[:cut], registry)
    with pytest.raises(DecodeError, match="1 trailing byte"):
        decode(data + b"\x00", registry)


def test_corrupt_values_are_named(small):
    registry, head, _ = small
    empty = _zigzag(0) + _zigzag(0)  # arr and m empty
    cases = {
        empty + b"\x04": "union branch 2",
        empty + b"\x00" + _zigzag(-1): "negative length -1",
        empty + b"\x00" + _zigzag(2) + b"\xff\xfe": "UnicodeDecodeError",
        empty + b"\x00" + _string("") + _zigzag(2): "enum index 2",
        empty + b"\x00" + _zigzag(100) + b"short": "runs past the end",
    }
    for body, reason in cases.items():
        with pytest.raises(DecodeError, match=reason):
            decode(head + body, registry)


def test_logical_types_are_left_to_fastavro(stack):
    schema = {
        "type": "record",
        "name": "Money",
        "fields": [
            {"name": "amount", "type": {"type": "bytes", "logicalType": "decimal", "precision": 10, "scale": 2}},
            {"name": "day", "type": {"type": "int", "logicalType": "date"}},
        ],
    }
    schema_id = register_schema(stack["schema_registry"], schema)
    registry = stack["schema_registry"].cache()
    parsed = fastavro.parse_schema(registry.raw_schema(schema_id))
    import datetime as dt
    from decimal import Decimal

    data = _framed(schema_id, parsed, {"amount": Decimal("12.34"), "day": dt.date(1901, 2, 3)})
    assert not hasattr(registry.reader(schema_id), "source")
    assert decode(data, registry) == {"amount": Decimal("12.34"), "day": dt.date(1901, 2, 3)}


def test_real_debezium_events_read_as_fastavro_reads_them(pg, topic_reader):
    from cdc_helpers import ROW, insert

    user_id = insert(pg, {**ROW, "first_name": "😀 Zoë\n'\\", "latitude": -90.0, "longitude": 180.0, "phone": ""})
    pg.execute("UPDATE public.users SET city = NULL, street_number = -2147483648 WHERE id = %s", [user_id])
    pg.execute("DELETE FROM public.users WHERE id = %s", [user_id])
    topic_reader.read_until(lambda events: sum(1 for e in events if e["key"] and e["key"]["id"] == user_id) >= 4)
    registry = topic_reader.registry
    checked = 0
    for raw_key, raw_value, _ in topic_reader.raw:
        for data in (raw_key, raw_value):
            if data is None:
                continue
            parsed = registry.schema(HEADER.unpack_from(data)[1])
            assert decode(data, registry) == _fastavro(parsed, data)
            checked += 1
    assert checked >= 7  # c, u, d values, four keys (the tombstone has a key only)
