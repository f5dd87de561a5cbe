"""Avro binary decoding compiled per writer schema: a Python function generated for each
record type, with every field's read written out in line.

Why: a Debezium envelope of ``public.users`` has about 75 fields (before, after, source).
fastavro's generic reader walks the schema for each record and costs ~90 µs per event here;
the generated code reads the same bytes in a fraction of that (``cdcpipe bench`` and
docs/benchmarks.md give the figures). The output is exactly fastavro's (``tests/test_avro_compiled.py``
checks both on the same bytes); schemas that use logical types, which fastavro converts to
Python objects, are left to fastavro: :func:`compile_reader` returns None for them.

A generated reader takes ``(buf, pos)`` and returns ``(value, pos)``. Bad input raises
:class:`AvroCorrupt` (or IndexError / struct.error / UnicodeDecodeError, which the caller
treats alike): never a silently short or padded value.
"""

from __future__ import annotations

import struct
from collections.abc import Callable
from typing import Any

from ..errors import AvroCorrupt

Reader = Callable[[bytes, int], tuple[Any, int]]

PRIMITIVES = ("null", "boolean", "int", "long", "float", "double", "bytes", "string")


def _long(buf: bytes, pos: int) -> tuple[int, int]:
    """A zig-zag varint (the multi-byte case; one-byte values are read in line)."""
    b = buf[pos]
    n = b & 0x7F
    shift = 7
    pos += 1
    while b & 0x80:
        if shift > 63:
            raise AvroCorrupt(f"varint longer than 10 bytes at byte {pos}")
        b = buf[pos]
        pos += 1
        n |= (b & 0x7F) << shift
        shift += 7
    return (n >> 1) ^ -(n & 1), pos


def _union_index(buf: bytes, pos: int) -> tuple[int, int]:
    """A union index written in more than one byte, as 2 * index (the one-byte form)."""
    index, pos = _long(buf, pos)
    return (2 * index if index >= 0 else -1), pos


def _bad_union(raw: int, branches: int, pos: int) -> None:
    index = raw // 2 if raw >= 0 and not raw & 1 else "negative"
    raise AvroCorrupt(f"union branch {index} at byte {pos}, the schema has {branches}")


def _past_end(length: int, pos: int, end: int) -> None:
    if length < 0:
        raise AvroCorrupt(f"negative length {length} at byte {pos}")
    raise AvroCorrupt(f"a {length}-byte value at byte {pos} runs past the end ({end} bytes)")


_GLOBALS = {
    "_long": _long,
    "_bad_union": _bad_union,
    "_union_index": _union_index,
    "_past_end": _past_end,
    "_double": struct.Struct("<d").unpack_from,
    "_float": struct.Struct("<f").unpack_from,
    "AvroCorrupt": AvroCorrupt,
}


class _Unsupported(Exception):
    pass


class _Compiler:
    def __init__(self) -> None:
        self.named: dict[str, tuple[Any, str | None]] = {}  # full name -> (schema, its namespace)
        self.functions: dict[str, str] = {}  # full name -> generated function name
        self.sources: list[str] = []
        self.constants: dict[str, Any] = {}
        self.counter = 0

    def var(self) -> str:
        self.counter += 1
        return f"v{self.counter}"

    def const(self, value: Any) -> str:
        name = f"k{len(self.constants)}"
        self.constants[name] = value
        return name

    @staticmethod
    def full_name(schema: dict[str, Any], namespace: str | None) -> tuple[str, str | None]:
        name = schema["name"]
        if "." in name:
            return name, name.rsplit(".", 1)[0]
        ns = schema.get("namespace", namespace)
        return (f"{ns}.{name}" if ns else name), ns

    def resolve(self, schema: Any, namespace: str | None) -> tuple[Any, str | None]:
        """Named-type references replaced by their definition."""
        if isinstance(schema, str) and schema not in PRIMITIVES:
            full = schema if "." in schema or not namespace else f"{namespace}.{schema}"
            found = self.named.get(full) or self.named.get(schema)
            if found is None:
                raise _Unsupported(f"unknown type {schema}")
            return found
        if isinstance(schema, dict) and schema.get("type") in PRIMITIVES:
            if "logicalType" in schema:
                raise _Unsupported("logical types are left to fastavro")
            return schema["type"], namespace
        return schema, namespace

    def emit(self, schema: Any, namespace: str | None, target: str, indent: str) -> list[str]:
        """Lines that read one value of ``schema`` into ``target``."""
        schema, namespace = self.resolve(schema, namespace)
        i = indent
        if isinstance(schema, list):
            return self.union(schema, namespace, target, indent)
        if schema == "null":
            return [f"{i}{target} = None"]
        if schema == "boolean":
            return [f"{i}{target} = buf[pos] == 1", f"{i}pos += 1"]
        if schema in ("int", "long"):
            return self.varint(target, indent)
        if schema == "double":
            return [f"{i}{target} = _double(buf, pos)[0]", f"{i}pos += 8"]
        if schema == "float":
            return [f"{i}{target} = _float(buf, pos)[0]", f"{i}pos += 4"]
        if schema in ("string", "bytes"):
            n = self.var()
            lines = self.varint(n, indent)
            lines += [
                f"{i}if {n} < 0 or pos + {n} > end:",
                f"{i}    _past_end({n}, pos, end)",
            ]
            read = f"buf[pos:pos + {n}]"
            lines.append(f"{i}{target} = {read}.decode()" if schema == "string" else f"{i}{target} = bytes({read})")
            lines.append(f"{i}pos += {n}")
            return lines
        if not isinstance(schema, dict):
            raise _Unsupported(f"type {schema!r}")
        kind = schema.get("type")
        if "logicalType" in schema:
            raise _Unsupported("logical types are left to fastavro")
        if kind == "record":
            return [f"{i}{target}, pos = {self.record(schema, namespace)}(buf, pos)"]
        if kind == "enum":
            self.define(schema, namespace)
            symbols = self.const(tuple(schema["symbols"]))
            n = self.var()
            return self.varint(n, indent) + [
                f"{i}if not 0 <= {n} < {len(schema['symbols'])}:",
                f"{i}    raise AvroCorrupt(f'enum index {{{n}}} out of range at byte {{pos}}')",
                f"{i}{target} = {symbols}[{n}]",
            ]
        if kind == "fixed":
            self.define(schema, namespace)
            size = int(schema["size"])
            return [
                f"{i}if pos + {size} > end:",
                f"{i}    _past_end({size}, pos, end)",
                f"{i}{target} = bytes(buf[pos:pos + {size}])",
                f"{i}pos += {size}",
            ]
        if kind in ("array", "map"):
            return self.blocks(schema, namespace, target, indent)
        if kind in PRIMITIVES:
            return self.emit(kind, namespace, target, indent)
        raise _Unsupported(f"type {kind!r}")

    def varint(self, target: str, indent: str) -> list[str]:
        i = indent
        b = self.var()
        return [
            f"{i}{b} = buf[pos]",
            f"{i}if {b} < 128:",
            f"{i}    {target} = ({b} >> 1) ^ -({b} & 1)",
            f"{i}    pos += 1",
            f"{i}else:",
            f"{i}    {target}, pos = _long(buf, pos)",
        ]

    def union(self, branches: list[Any], namespace: str | None, target: str, indent: str) -> list[str]:
        """Branch n is written as the varint of n: one byte 2n for the branches of any real
        schema, compared as it is; longer encodings go through _union_index."""
        i = indent
        index = self.var()
        lines = [
            f"{i}{index} = buf[pos]",
            f"{i}if {index} < 128:",
            f"{i}    pos += 1",
            f"{i}else:",
            f"{i}    {index}, pos = _union_index(buf, pos)",
        ]
        keyword = "if"
        for n, branch in enumerate(branches):
            lines.append(f"{i}{keyword} {index} == {2 * n}:")
            lines += self.emit(branch, namespace, target, indent + "    ")
            keyword = "elif"
        lines += [f"{i}else:", f"{i}    _bad_union({index}, {len(branches)}, pos)"]
        return lines

    def blocks(self, schema: dict[str, Any], namespace: str | None, target: str, indent: str) -> list[str]:
        i = indent
        is_map = schema["type"] == "map"
        count, item, key, size = self.var(), self.var(), self.var(), self.var()
        lines = [f"{i}{target} = {{}}" if is_map else f"{i}{target} = []", f"{i}while True:"]
        lines += self.varint(count, indent + "    ")
        lines += [
            f"{i}    if {count} == 0:",
            f"{i}        break",
            f"{i}    if {count} < 0:",
            f"{i}        {count} = -{count}",
        ]
        lines += self.varint(size, indent + "        ")
        lines.append(f"{i}    for _ in range({count}):")
        if is_map:
            lines += self.emit("string", namespace, key, indent + "        ")
        lines += self.emit(schema["values"] if is_map else schema["items"], namespace, item, indent + "        ")
        lines.append(f"{i}        {target}[{key}] = {item}" if is_map else f"{i}        {target}.append({item})")
        return lines

    def define(self, schema: dict[str, Any], namespace: str | None) -> tuple[str, str | None]:
        full, ns = self.full_name(schema, namespace)
        self.named[full] = (schema, ns)
        return full, ns

    def record(self, schema: dict[str, Any], namespace: str | None) -> str:
        full, ns = self.full_name(schema, namespace)
        if full in self.functions:
            return self.functions[full]
        self.define(schema, namespace)
        function = f"r{len(self.functions)}"
        self.functions[full] = function  # before the body: a record may refer to itself
        lines = [f"def {function}(buf, pos):", "    end = len(buf)"]
        names = []
        for field in schema.get("fields", []):
            target = self.var()
            lines += self.emit(field["type"], ns, target, "    ")
            names.append((field["name"], target))
        body = ", ".join(f"{name!r}: {target}" for name, target in names)  # repr: always a plain literal
        lines.append(f"    return {{{body}}}, pos")
        self.sources.append("\n".join(lines))
        return function


def compile_reader(schema: Any) -> Reader | None:
    """A reader for values written with ``schema`` (parsed JSON), or None when the schema
    uses something left to fastavro (logical types)."""
    compiler = _Compiler()
    try:
        lines = ["def read(buf, pos):", "    end = len(buf)"]
        lines += compiler.emit(schema, None, "value", "    ")
        lines.append("    return value, pos")
    except _Unsupported:
        return None
    source = "\n\n".join([*compiler.sources, "\n".join(lines)])
    namespace: dict[str, Any] = {**_GLOBALS, **compiler.constants}
    # Schema names only appear as repr() literals: the source is ours, whatever the schema says.
    exec(compile(source, "<avro reader>", "exec"), namespace)  # noqa: S102
    reader = namespace["read"]
    reader.source = source  # for debugging: print(reader.source)
    return reader
