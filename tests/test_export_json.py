"""The export's JSON lines in C (client/export_json.c) against json_format: byte for byte
on the varied corpus of test_records, as the CLI meets pages (parsed from the wire);
what the C writer leaves to the Python writer; and damaged bytes, which it must refuse
or read as protobuf reads them, never crash on."""

from __future__ import annotations

import json
import random
from typing import Any

import pytest
from google.protobuf.message import DecodeError

from corrigo.client import records
from corrigo.v1.datasets_pb2 import ExportedComment, StreamExportDatasetResponse
from tests import full_records
from tests.test_records import _corpus, _reference

compiled_lines = records.compiled_lines


def _line(result: ExportedComment) -> str:
    return json.dumps(_reference(result), ensure_ascii=False, separators=(",", ":")) + "\n"


def _received(results: list[ExportedComment], **fields: Any) -> StreamExportDatasetResponse:
    """A page as the CLI holds it: parsed from the bytes the server sent."""
    sent = StreamExportDatasetResponse(comments=results, **fields)
    return StreamExportDatasetResponse.FromString(sent.SerializeToString())


def test_the_c_writer_is_built() -> None:
    """`make venv` builds it; without it every other test here would test Python alone."""
    assert compiled_lines is not None


def test_pages_equal_json_format_byte_for_byte() -> None:
    assert compiled_lines is not None
    corpus = _corpus(1500)
    for start in range(0, len(corpus), 256):
        page = _received(corpus[start : start + 256], continuation="next", total=9)
        expected = "".join(_line(r) for r in page.comments).encode()
        assert compiled_lines(page.SerializeToString()) == expected
        assert records.page_lines(page) == expected


def test_struct_keys_are_sorted() -> None:
    """Many keys, nested Structs and lists: keys sorted at every level."""
    result = ExportedComment()
    result.comment.user_properties.update(
        {f"key {i}": {"inner": [i, f"v{i}", {"x": i, "y": [True, None]}]} for i in range(40)}
    )
    page = _received([result])
    expected = _line(page.comments[0]).encode()
    assert compiled_lines is not None
    assert compiled_lines(page.SerializeToString()) == expected


def _unwritten(result: ExportedComment) -> list[str]:
    """The fields of `result` that make the C writer leave its page to Python."""
    unwritten = []
    found = set(full_records.paths(result))
    for path in sorted(p for p in found if not any(q.startswith(p + ".") for q in found)):
        alone = full_records.only(result, path)
        if (
            compiled_lines is not None
            and compiled_lines(_received([alone]).SerializeToString()) is None
        ):
            unwritten.append(path)
    return unwritten


def test_every_field_is_written_in_c() -> None:
    """Records with every field set (from the descriptors) are written in C, byte for byte
    as the Python writer writes them; a field C leaves to Python is named."""
    assert compiled_lines is not None
    for result in full_records.full_results():
        page = _received([result])
        lines = compiled_lines(page.SerializeToString())
        assert lines is not None, f"the C writer leaves {_unwritten(result)} to Python"
        assert lines == _line(page.comments[0]).encode() == records.exported_lines([result])


def test_an_empty_page_has_no_lines() -> None:
    assert compiled_lines is not None
    assert compiled_lines(StreamExportDatasetResponse(continuation="x").SerializeToString()) == b""
    assert records.page_lines(_received([ExportedComment()])) == b"{}\n"


def _unknown_field(result: ExportedComment) -> ExportedComment:
    """The result with a field its schema does not have (a newer server's)."""
    return ExportedComment.FromString(result.SerializeToString() + b"\xa0\x06\x01")


def test_what_the_c_writer_leaves_is_written_by_python() -> None:
    """An unknown field: C answers None, and the page is written as json_format writes it
    (which leaves the field out)."""
    assert compiled_lines is not None
    result = _corpus(3)[0]
    page = _received([result, _unknown_field(result)])
    assert compiled_lines(page.SerializeToString()) is None
    expected = "".join(_line(r) for r in page.comments).encode()
    assert records.page_lines(page) == expected


@pytest.mark.parametrize(
    "damage",
    [
        "timestamp beyond 9999",
        "infinite struct number",
    ],
)
def test_values_json_format_refuses_fail_as_before(damage: str) -> None:
    result = ExportedComment()
    if damage == "timestamp beyond 9999":
        result.comment.timestamp.seconds = 253_402_300_800
    else:
        result.comment.user_properties.update({"number:x": float("inf")})
    page = _received([result])
    assert compiled_lines is not None
    assert compiled_lines(page.SerializeToString()) is None
    with pytest.raises(ValueError):
        records.page_lines(page)


def test_deep_structs_equal_json_format() -> None:
    """Deep, but within what protobuf parses (100 messages deep, two a level here)."""
    nested: dict[str, Any] = {"leaf": [1, {"x": None}]}
    for _ in range(30):
        nested = {"n": nested, "s": "x"}
    result = ExportedComment()
    result.comment.user_properties.update(nested)
    page = _received([result])
    assert compiled_lines is not None
    assert compiled_lines(page.SerializeToString()) == _line(page.comments[0]).encode()


def _field(number: int, data: bytes) -> bytes:
    """A length-delimited field, as protobuf writes it."""
    length, made = len(data), bytearray()
    while length > 0x7F:
        made.append(length & 0x7F | 0x80)
        length >>= 7
    made.append(length)
    return bytes([number << 3 | 2]) + bytes(made) + data


@pytest.mark.parametrize("levels", [60, 70])
def test_structs_deeper_than_64_levels_are_refused(levels: int) -> None:
    """Bytes that never came through protobuf (which refuses nesting this deep): the C
    writer stops at 64 Struct levels, and answers None."""
    assert compiled_lines is not None
    struct = b""
    for _ in range(levels):
        struct = _field(1, _field(1, b"k") + _field(2, _field(5, struct)))
    page = _field(1, _field(1, _field(7, struct)))
    expected = '{"comment":{"user_properties":' + '{"k":' * levels + "{}" + "}" * levels
    assert compiled_lines(page) == (None if levels > 63 else (expected + "}}\n").encode())


def test_out_of_order_or_repeated_fields_are_left_to_python() -> None:
    """Protobuf merges a singular field met twice and lets the last value win: shapes the
    C writer does not write, and answers None for."""
    assert compiled_lines is not None
    one = ExportedComment()
    one.comment.id = "a"
    one.comment.uid = "b"
    twice = one.SerializeToString() + ExportedComment(comment={"id": "c"}).SerializeToString()
    swapped = (
        ExportedComment(predictions={"labels": [{"name": "p"}]}).SerializeToString()
        + one.SerializeToString()
    )
    for body in (twice, swapped):
        page = b"\x0a" + bytes([len(body)]) + body
        assert compiled_lines(page) is None


def test_damaged_bytes_are_refused_or_read_as_protobuf_reads_them() -> None:
    """Bytes flipped, cut or inserted anywhere in real pages: the C writer answers None,
    or lines whose values are json_format's of the page protobuf parses from the same
    bytes (when protobuf refuses the bytes, C must have answered None or read a prefix
    protobuf also refuses for its UTF-8 or its tags, so only the no-crash holds)."""
    assert compiled_lines is not None
    rng = random.Random(7)
    pages = [
        StreamExportDatasetResponse(comments=_corpus(40)[i : i + 4]).SerializeToString()
        for i in range(0, 40, 4)
    ]
    written = 0
    for _ in range(3000):
        data = bytearray(rng.choice(pages))
        for _ in range(rng.choice([1, 1, 2, 5])):
            at = rng.randrange(len(data))
            action = rng.random()
            if action < 0.6:
                data[at] = rng.randrange(256)
            elif action < 0.8:
                del data[at:]
            else:
                data[at:at] = bytes([rng.randrange(256)])
        damaged = bytes(data)
        lines = compiled_lines(damaged)
        try:
            page = StreamExportDatasetResponse.FromString(damaged)
        except DecodeError:
            continue
        if lines is None:
            continue
        written += 1
        got = [json.loads(line) for line in lines.split(b"\n")[:-1]]
        expected = [_reference(r) for r in page.comments]
        assert got == expected
    assert written > 100
