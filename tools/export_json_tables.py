"""Writes the C export writer's field tables (gen/c/export_json_tables.h) from the protos.

`make gen` runs it on the descriptor set protoc writes of proto/: for every message an
export page carries (ExportedComment and what it holds), one entry per field number with
the field's JSON key, how its value is written and whether it repeats. client/export_json.c
writes any field of these tables and leaves a page with any other field to the Python
writer, so a field added to the protos is written in C once `make gen` has run, or, when
its type is one C does not write, by Python (which writes every type json_format does).
"""

from __future__ import annotations

import sys
from pathlib import Path

from google.protobuf import descriptor, descriptor_pb2, descriptor_pool

from corrigo.client import fields

_FD = descriptor.FieldDescriptor
# The message whose fields the C writer starts from, and the page field holding them.
ROOT = "corrigo.v1.ExportedComment"
PAGES = ("corrigo.v1.StreamExportDatasetResponse", "corrigo.v1.ExportDatasetResponse")
# Field numbers beyond this are left to the Python writer (the tables index by number).
MAX_NUMBER = 255
_WELL_KNOWN = {
    fields.TIMESTAMP: "KIND_TIMESTAMP",
    fields.STRUCT: "KIND_STRUCT",
}
# Scalar types C writes, when singular (proto3 packs repeated scalars: left to Python).
_SCALARS = {
    _FD.TYPE_STRING: "KIND_STRING",
    _FD.TYPE_BOOL: "KIND_BOOL",
    _FD.TYPE_DOUBLE: "KIND_DOUBLE",
    _FD.TYPE_INT32: "KIND_INT32",
    _FD.TYPE_UINT32: "KIND_UINT32",
    _FD.TYPE_INT64: "KIND_INT64",
    _FD.TYPE_UINT64: "KIND_UINT64",
}


def _symbol(message: descriptor.Descriptor) -> str:
    return message.full_name.replace(".", "_")


def _kind(field: descriptor.FieldDescriptor) -> str:
    """How C writes the field, or KIND_PYTHON for a type it leaves to the Python writer."""
    kind = fields.kind(field)
    if kind == fields.MESSAGE:
        return "KIND_MESSAGE"
    if kind != fields.SCALAR:
        return _WELL_KNOWN.get(kind, "KIND_PYTHON")
    if field.type == _FD.TYPE_STRING:
        return "KIND_STRING"
    if field.is_repeated:
        return "KIND_PYTHON"
    return _SCALARS.get(field.type, "KIND_PYTHON")


def _messages(root: descriptor.Descriptor) -> list[descriptor.Descriptor]:
    """`root` and every message it holds (not the well-known types), each once."""
    found: dict[str, descriptor.Descriptor] = {}

    def visit(message: descriptor.Descriptor) -> None:
        found[message.full_name] = message
        for field in message.fields:
            if _kind(field) == "KIND_MESSAGE" and fields.held(field).full_name not in found:
                visit(fields.held(field))

    visit(root)
    return list(found.values())


def _c_string(text: str) -> str:
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


def _table(message: descriptor.Descriptor) -> list[str]:
    by_number = {f.number: f for f in message.fields if f.number <= MAX_NUMBER}
    rows = []
    for number in range(max(by_number, default=0) + 1):
        field = by_number.get(number)
        if field is None:
            rows.append("    {KIND_PYTHON, 0, 0, NULL, 0, NULL},")
            continue
        kind = _kind(field)
        key = f'"{field.name}":'
        held = f"&{_symbol(fields.held(field))}" if kind == "KIND_MESSAGE" else "NULL"
        rows.append(
            f"    {{{kind}, {int(field.is_repeated)}, {int(field.has_presence)}, "
            f"{_c_string(key)}, {len(key.encode())}, {held}}}, /* {field.name} = {number} */"
        )
    symbol = _symbol(message)
    return [
        f"static const FieldSpec {symbol}_fields[] = {{",
        *rows,
        "};",
        f"static const MessageSpec {symbol} = {{{symbol}_fields, {len(rows)}}};",
        "",
    ]


def header(pool: descriptor_pool.DescriptorPool) -> str:
    root = pool.FindMessageTypeByName(ROOT)
    numbers = {pool.FindMessageTypeByName(p).fields_by_name["comments"].number for p in PAGES}
    if len(numbers) != 1:
        raise SystemExit(f"{' and '.join(PAGES)} must keep their comments in one field number")
    messages = _messages(root)
    lines = [
        "/* Generated from proto/ by tools/export_json_tables.py (`make gen`): do not edit.",
        "   The fields of the messages an export page carries, by field number. */",
        "",
        f"#define PAGE_COMMENTS_FIELD {numbers.pop()}",
        "",
        *[f"static const MessageSpec {_symbol(m)};" for m in messages],
        "",
    ]
    for message in messages:
        lines += _table(message)
    lines.append(f"static const MessageSpec *const EXPORTED_COMMENT = &{_symbol(root)};")
    return "\n".join(lines) + "\n"


def main() -> None:
    descriptors, output = Path(sys.argv[1]), Path(sys.argv[2])
    files = descriptor_pb2.FileDescriptorSet.FromString(descriptors.read_bytes())
    pool = descriptor_pool.DescriptorPool()
    for file in files.file:
        pool.Add(file)
    output.parent.mkdir(parents=True, exist_ok=True)
    output.write_text(header(pool))


if __name__ == "__main__":
    main()
