"""`corrigo batch sessions -o FILE`: an improvement batch's sessions to JSONL or Parquet.

A session's events are most of its bytes, so they are turned into JSON values directly
(`event_dict`, exactly `json_format`'s mapping); the rest of the session, small, goes
through json_format. The JSONL lines are what `corrigo batch sessions` prints.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any, TextIO

from google.protobuf import json_format

from corrigo.client import records
from corrigo.v1 import improvement_pb2
from corrigo.v1.practice_pb2 import PracticeEvent

FORMATS = ("jsonl", "parquet")
# What `json_format.MessageToJson(..., indent=None)` writes with.
_LINE = json.JSONEncoder(ensure_ascii=True)
_TYPES = {
    number: value.name for number, value in PracticeEvent.Type.DESCRIPTOR.values_by_number.items()
}
# Sessions per Parquet row group.
SESSIONS_PER_GROUP = 2048


def event_dict(event: PracticeEvent) -> dict[str, Any]:
    """`json_format.MessageToDict(event, preserving_proto_field_name=True)`."""
    made: dict[str, Any] = {}
    if event.event_id:
        made["event_id"] = event.event_id
    if event.session_id:
        made["session_id"] = event.session_id
    if event.type:
        made["type"] = _TYPES.get(event.type, event.type)
    if event.text:
        made["text"] = event.text
    if event.rating:
        made["rating"] = event.rating
    if event.response_id:
        made["response_id"] = event.response_id
    if event.HasField("data"):
        made["data"] = records.struct_dict(event.data)
    if event.HasField("created_at"):
        made["created_at"] = records.timestamp_text(event.created_at)
    return made


def session_dict(entry: improvement_pb2.BatchSession) -> dict[str, Any]:
    """`json_format.MessageToDict(entry, preserving_proto_field_name=True)`."""
    rest = improvement_pb2.BatchSession()
    rest.CopyFrom(entry)
    del rest.events[:]
    data = json_format.MessageToDict(rest, preserving_proto_field_name=True)
    if not entry.events:
        return data
    # Fields in number order, as json_format writes them: events (4) before event_count.
    made: dict[str, Any] = {k: data[k] for k in ("number", "scheduled_at", "session") if k in data}
    made["events"] = [event_dict(e) for e in entry.events]
    if "event_count" in data:
        made["event_count"] = data["event_count"]
    return made


def session_line(entry: improvement_pb2.BatchSession) -> str:
    """`json_format.MessageToJson(entry, preserving_proto_field_name=True, indent=None)`."""
    return _LINE.encode(session_dict(entry))


def write_jsonl(pages: Iterable[improvement_pb2.GetBatchSessionsResponse], out: TextIO) -> int:
    written = 0
    for page in pages:
        out.write("".join([session_line(s) + "\n" for s in page.sessions]))
        written += len(page.sessions)
    return written


def _rows(pages: Iterable[improvement_pb2.GetBatchSessionsResponse]) -> Iterator[list[Any]]:
    """The sessions in groups of about SESSIONS_PER_GROUP, as Parquet rows."""
    group: list[Any] = []
    for page in pages:
        for entry in page.sessions:
            data = session_dict(entry)
            group.append(
                {
                    "number": entry.number,
                    "scheduled_at": data.get("scheduled_at"),
                    "session": records.encode(data.get("session", {})),
                    "events": [
                        {
                            "event_id": e.event_id,
                            "session_id": e.session_id,
                            "type": _TYPES.get(e.type, str(e.type)),
                            "text": e.text,
                            "rating": e.rating,
                            "response_id": e.response_id,
                            "data": records.encode(records.struct_dict(e.data))
                            if e.HasField("data")
                            else None,
                            "created_at": records.timestamp_text(e.created_at)
                            if e.HasField("created_at")
                            else None,
                        }
                        for e in entry.events
                    ],
                    "event_count": entry.event_count,
                }
            )
        if len(group) >= SESSIONS_PER_GROUP:
            yield group
            group = []
    if group:
        yield group


def write_parquet(pages: Iterable[improvement_pb2.GetBatchSessionsResponse], path: Path) -> int:
    """One row per session (the session itself as its JSON text, the events nested), a
    row group per SESSIONS_PER_GROUP sessions. Times are RFC 3339 text, as in JSONL."""
    try:
        import pyarrow as pa
        import pyarrow.parquet as pq
    except ImportError:
        raise SystemExit(
            "corrigo batch sessions: Parquet needs pyarrow: pip install 'corrigo[parquet]'"
        ) from None
    event = pa.struct(
        [
            ("event_id", pa.int32()),
            ("session_id", pa.int32()),
            ("type", pa.string()),
            ("text", pa.string()),
            ("rating", pa.int32()),
            ("response_id", pa.int32()),
            ("data", pa.string()),
            ("created_at", pa.string()),
        ]
    )
    schema = pa.schema(
        [
            ("number", pa.int32()),
            ("scheduled_at", pa.string()),
            ("session", pa.string()),
            ("events", pa.list_(event)),
            ("event_count", pa.int32()),
        ]
    )
    written = 0
    with pq.ParquetWriter(path, schema) as writer:
        for group in _rows(pages):
            writer.write_table(pa.Table.from_pylist(group, schema=schema))
            written += len(group)
    return written
