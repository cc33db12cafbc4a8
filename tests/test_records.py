"""The export's fast JSON (client/records.py) against json_format, line by line, on a
varied corpus; and the fast parse against json_format.ParseDict."""

from __future__ import annotations

import csv
import io
import json
import random
from pathlib import Path
from typing import Any

import pyarrow.parquet as pq
import pytest
from google.protobuf import json_format

from corrigo.client import parquet_export, records
from corrigo.client.export import CSV_COLUMNS, CSV_LEFT_OUT, encode_page
from corrigo.v1.comments_pb2 import Comment, CommentMessage, Label, PredictedLabel
from corrigo.v1.datasets_pb2 import ExportedComment, StreamExportDatasetResponse
from tests import full_records

_TEXTS = [
    "",
    "plain",
    "Grüße aus Zürich \u2013 ☃ 😀 中文 العربية",
    'quotes " and \\ backslashes / slashes',
    "control \x00\x01\x1f\x7f tab\t newline\n return\r \b \f",
    "separators \u2028 \u2029 and a BOM \ufeff",
    "x" * 70_000,
]
_DOUBLES = [0.0, -0.0, 1.0, 0.5, 1e-7, 0.954979807138443, -0.4281917143125379, 1e16, 123456789.0]


def _text(rng: random.Random) -> str:
    return rng.choice(_TEXTS[:-1]) if rng.random() < 0.98 else _TEXTS[-1]


def _message(rng: random.Random) -> CommentMessage:
    made = CommentMessage()
    if rng.random() < 0.7:
        made.subject.text = _text(rng)  # set, possibly empty
    elif rng.random() < 0.5:
        made.subject.SetInParent()
    if rng.random() < 0.8:
        made.body.text = _text(rng)
    elif rng.random() < 0.5:
        made.body.SetInParent()
    if rng.random() < 0.7:
        setattr(made, "from", _text(rng))
    for field in ("to", "cc", "bcc"):
        getattr(made, field).extend(_text(rng) for _ in range(rng.choice([0, 0, 1, 3])))
    if rng.random() < 0.6:
        made.sent_at.seconds = rng.randrange(-2_000_000_000, 4_000_000_000)
        made.sent_at.nanos = rng.choice([0, 123_000_000, 123_456_000, 123_456_789, 1])
    if rng.random() < 0.5:
        made.language = rng.choice(["en", "de-CH", ""])
    return made


def _result(rng: random.Random, index: int) -> ExportedComment:
    comment = Comment()
    for field in ("id", "uid", "source_id", "thread_id", "text_format", "context"):
        if rng.random() < 0.8:
            setattr(comment, field, f"{field}-{index}-{_text(rng)[:20]}")
    for field in ("timestamp", "created_at", "last_modified"):
        if rng.random() < 0.8:
            getattr(comment, field).seconds = rng.randrange(0, 2_000_000_000)
            getattr(comment, field).nanos = rng.choice([0, 531_000_000, 5_000, 7])
    comment.messages.extend(_message(rng) for _ in range(rng.choice([0, 1, 2, 5])))
    if rng.random() < 0.8:
        properties: dict[str, Any] = {}
        for n in range(rng.choice([0, 1, 2, 6])):
            properties[f"string:{_text(rng)[:10]}{n}"] = _text(rng)[:50]
            properties[f"number:n{n}"] = rng.choice([0, 1, -3, 2.5, 1e20, 1e-9, 7])
        if rng.random() < 0.2:
            properties["other"] = {"nested": [1, "two", True, None, {"x": False}]}
        comment.user_properties.update(properties)
    comment.has_annotations = rng.random() < 0.5
    result = ExportedComment()
    if rng.random() < 0.95:
        result.comment.CopyFrom(comment)
    if rng.random() < 0.7:
        labels = [
            Label(name=_text(rng)[:30], sentiment=rng.choice(["positive", "negative", ""]))
            for _ in range(rng.choice([0, 1, 2]))
        ]
        if labels or rng.random() < 0.5:
            result.annotations.labels.assigned.extend(labels)
        else:
            result.annotations.SetInParent()
    if rng.random() < 0.7:
        result.predictions.labels.extend(
            PredictedLabel(
                name=_text(rng)[:30],
                probability=rng.choice(_DOUBLES),
                sentiment=rng.choice(_DOUBLES),
            )
            for _ in range(rng.choice([0, 1, 2, 4]))
        )
        result.predictions.SetInParent()
    return result


def _corpus(count: int = 600) -> list[ExportedComment]:
    rng = random.Random(19)
    made = [_result(rng, i) for i in range(count)]
    made.append(ExportedComment())
    # Through the wire, as the CLI receives them.
    return [ExportedComment.FromString(r.SerializeToString()) for r in made]


def _reference(result: ExportedComment) -> dict[str, Any]:
    return full_records.reference(result)


def test_lines_equal_json_format_line_by_line() -> None:
    corpus = _corpus()
    lines = []
    for result in corpus:
        expected = json.dumps(_reference(result), ensure_ascii=False, separators=(",", ":"))
        assert records.exported_line(result) == expected
        lines.append(expected + "\n")
    # As `corrigo export` writes a page: UTF-8, a newline after each line.
    assert records.exported_lines(corpus) == "".join(lines).encode()


def _line(result: ExportedComment) -> str:
    return json.dumps(_reference(result), ensure_ascii=False, separators=(",", ":"))


def test_every_field_is_written_and_read_back() -> None:
    """Records with every field set (from the descriptors): each field is in the line,
    which equals json_format's but for its sorted Struct keys, and reads back whole."""
    for result in full_records.full_results():
        line = records.exported_line(result)
        assert line == _line(result)
        data = json.loads(line)
        back = json_format.ParseDict(data, ExportedComment())
        assert full_records.differences(result, back) == []
        comment = records.comment_from_dict(data["comment"])
        assert full_records.differences(result.comment, comment) == []
        assert set(full_records.paths(back)) == set(full_records.paths(result))


def test_every_field_goes_through_parquet_and_back(tmp_path: Path) -> None:
    """Records with every field set (from the descriptors), written to Parquet and read
    back: the same records; a field the schema does not carry is named."""
    results = full_records.full_results()
    columns = parquet_export._Columns()
    columns.add_page(StreamExportDatasetResponse(comments=results))
    pq.write_table(columns.table(), tmp_path / "full.parquet")
    rows = pq.read_table(tmp_path / "full.parquet").to_pylist()
    for result, row in zip(results, rows, strict=True):
        back = parquet_export.result_from_row(row)
        assert full_records.differences(result, back) == []
        # Struct keys sorted, as in every file the export writes.
        assert row["user_properties"] == records.encode(
            full_records.reference(result)["comment"]["user_properties"]
        )


def test_struct_keys_are_sorted_whatever_the_maps_order() -> None:
    """The same properties inserted in opposite orders give the same bytes."""
    keys = [f"key {i}" for i in range(40)]
    one, two = ExportedComment(), ExportedComment()
    one.comment.user_properties.update({k: {"b": 1, "a": [k, {"d": 2, "c": 3}]} for k in keys})
    two.comment.user_properties.update(
        {k: {"a": [k, {"c": 3, "d": 2}], "b": 1} for k in reversed(keys)}
    )
    line = records.exported_line(one)
    assert line == records.exported_line(two) == _line(one)
    assert json.loads(line) == json_format.MessageToDict(one, preserving_proto_field_name=True)


def test_non_finite_doubles_are_written_as_json_format_writes_them() -> None:
    result = ExportedComment()
    for value in (float("nan"), float("inf"), float("-inf")):
        result.predictions.labels.add(name="x", probability=value, sentiment=value)
    expected = json.dumps(_reference(result), ensure_ascii=False, separators=(",", ":"))
    assert records.exported_line(result) == expected


def test_bad_values_fail_as_json_format_fails() -> None:
    result = ExportedComment()
    result.comment.timestamp.seconds = 253_402_300_800
    with pytest.raises(ValueError):
        records.exported_line(result)
    result = ExportedComment()
    result.comment.user_properties.update({"number:x": float("inf")})
    with pytest.raises(ValueError):
        records.exported_line(result)


def _reference_row(result: ExportedComment) -> list[str]:
    """A CSV row read from the message itself: the comment's first message, and
    json.dumps (default separators) of json_format's values for the structured fields."""
    data = _reference(result)
    comment = result.comment
    first = comment.messages[0] if comment.messages else CommentMessage()
    stamps = {f: data.get("comment", {}).get(f, "") for f in ("timestamp", "created_at")}
    return [
        comment.uid,
        comment.source_id,
        comment.id,
        comment.thread_id,
        stamps["timestamp"],
        stamps["created_at"],
        first.subject.text,
        first.body.text,
        getattr(first, "from"),
        ";".join(first.to),
        json.dumps(data.get("comment", {}).get("user_properties", {}), ensure_ascii=False),
        json.dumps(
            data.get("annotations", {}).get("labels", {}).get("assigned", []), ensure_ascii=False
        ),
        json.dumps(data.get("predictions", {}).get("labels", []), ensure_ascii=False),
    ]


def test_csv_rows_equal_the_messages_own() -> None:
    """The CSV export (rows made from the JSON lines) against rows read from the messages,
    a page at a time as `corrigo export --format csv` writes them."""
    corpus = full_records.full_results() + _corpus(600)
    for start in range(0, len(corpus), 128):
        sent = StreamExportDatasetResponse(comments=corpus[start : start + 128])
        page = StreamExportDatasetResponse.FromString(sent.SerializeToString())
        text = io.StringIO()
        csv.writer(text).writerows([_reference_row(r) for r in page.comments])
        assert encode_page(page, "csv") == text.getvalue().encode()


def test_every_field_is_a_csv_column_or_left_out() -> None:
    """The CSV's flat view names every field below ExportedComment: shown in a column (or
    within one), or declared left out; a field new to the protos fails here by name."""
    declared = [*CSV_COLUMNS.values(), *CSV_LEFT_OUT]
    leaves = list(full_records.leaf_paths(ExportedComment.DESCRIPTOR))

    def within(path: str, paths: list[str]) -> bool:
        return any(path == p or path.startswith(p + ".") for p in paths)

    unnamed = [path for path in leaves if not within(path, declared)]
    assert unnamed == [], f"add {unnamed} to CSV_COLUMNS or CSV_LEFT_OUT (client/export.py)"
    assert [path for path in declared if not any(within(leaf, [path]) for leaf in leaves)] == []
    assert len(set(declared)) == len(declared)


def test_parsing_equals_json_format() -> None:
    for result in _corpus():
        line = records.exported_line(result)
        data = json.loads(line).get("comment", {})
        expected = json_format.ParseDict(data, Comment(), ignore_unknown_fields=True)
        assert records.comment_from_dict(data) == expected
        # JSON names (camelCase), as json_format.MessageToJson writes them, too.
        camel = json.loads(json_format.MessageToJson(result.comment))
        assert records.comment_from_dict(camel) == result.comment


@pytest.mark.parametrize(
    "data",
    [
        {"id": 3},
        {"timestamp": "yesterday"},
        {"messages": {"body": "x"}},
        {"messages": [{"to": "a@b.c"}]},
        {"messages": [{"subject": "not an object"}]},
        {"has_annotations": "yes"},
        {"user_properties": [1]},
        {"user_properties": {}},
        {"messages": [{"subject": {}, "body": {"text": None}, "to": []}]},
        {"messages": [{"to": None, "from": None}], "id": None},
        {"threadId": "t", "id": "x"},
        {"messages": [{"sentAt": "2020-01-01T00:00:00Z"}]},
        {"timestamp": "2020-01-01T00:00:00.123+01:00"},
        {"timestamp": "2020-01-01T00:00:00.1234567891Z"},
        {"has_annotations": None, "context": 5},
    ],
)
def test_odd_comments_parse_or_fail_as_json_format(data: dict[str, Any]) -> None:
    try:
        expected = json_format.ParseDict(data, Comment(), ignore_unknown_fields=True)
    except json_format.ParseError as error:
        with pytest.raises(json_format.ParseError) as got:
            records.comment_from_dict(data)
        assert str(got.value) == str(error)
    else:
        assert records.comment_from_dict(data) == expected


@pytest.mark.parametrize(
    "line",
    [
        b'{"comment": {"id": "a"}}\n',
        '{"text": "Grüße ☃ 😀", "n": -0.0, "big": 1e16, "list": [1, 2.5, null, true]}'.encode(),
        b'{"a": 1, "a": 2}',
        b"NaN",
        b'{"x": Infinity}',
        b"123456789012345678901234567890",
    ],
)
def test_loads_answers_as_json(line: bytes) -> None:
    """What orjson reads and what it leaves to `json` (NaN) alike; an integer beyond 64
    bits comes back as the float a Struct would have made of it."""
    got = records.loads(line)
    expected = json.loads(line.decode("utf-8"))
    assert json.dumps(got) == json.dumps(expected) or (
        isinstance(expected, int) and got == float(expected)
    )


@pytest.mark.parametrize(
    "line",
    [
        b"",
        b"  \n",
        b"{",
        b'{"a": "\x01"}',
        b"{'a': 1}",
        b"\xff\xfe",
        b'{"a": 1} x',
        b"\xef\xbb\xbf{}",
    ],
)
def test_loads_fails_as_json(line: bytes) -> None:
    try:
        json.loads(line.decode("utf-8"))
    except ValueError as error:  # JSONDecodeError and UnicodeDecodeError alike
        with pytest.raises(type(error)) as got:
            records.loads(line)
        assert str(got.value) == str(error)
    else:
        pytest.fail("the line is valid JSON")
