"""Checks of synced comments, and their canonical form (only the fields a sync writes)."""

from __future__ import annotations

import functools
import math
import re
from collections.abc import Iterator, Sequence

from google.protobuf.unknown_fields import UnknownFieldSet

from corrigo.client import fields
from corrigo.server.api.errors import InvalidArgument
from corrigo.server.api.validation import Violations
from corrigo.server.store.sources import MAX_SYNC
from corrigo.v1.comments_pb2 import Comment

COMMENT_ID = re.compile(r"^[A-Za-z0-9\-_.:=+/@]{1,256}$")
TEXT_FORMATS = ("plain", "markdown")
_MAX_MESSAGES = 64
_MAX_RECIPIENTS = 256
_MAX_ADDRESS = 512
_MAX_PROPERTIES = 256
_MAX_PROPERTY_NAME = 128
_MAX_PROPERTY_KEY = len("string:") + _MAX_PROPERTY_NAME
_MAX_PROPERTY_VALUE = 4096
_MAX_THREAD = 256
# A stored comment's largest serialized size, so a page of the export can always hold one.
MAX_COMMENT_BYTES = 256 * 1024
# Timestamps from year 1 to 9999, as google.protobuf.Timestamp allows.
_MIN_SECONDS = -62135596800
_MAX_SECONDS = 253402300799


def _timestamp_ok(seconds: int, nanos: int) -> bool:
    return _MIN_SECONDS <= seconds <= _MAX_SECONDS and 0 <= nanos < 1_000_000_000


# What the protos say the server sets (a sync ignores it) and what a sync must hold.
_OUTPUT_ONLY = fields.Held(fields.output_only(Comment.DESCRIPTOR))
_REQUIRED = fields.Held(fields.required(Comment.DESCRIPTOR))


# A problem of a comment: the path of its field below the comment, and what is wrong.
Problem = tuple[str, str]


def _too_long(value: str, maximum: int) -> str:
    return f"at most {maximum} characters, got {len(value)}"


def _property_kind(key: str) -> str:
    """A property key's kind, 'string' or 'number', or what is wrong with the key."""
    kind, sep, name = key.partition(":")
    if not sep or kind not in ("string", "number"):
        return "keys are 'string:<name>' or 'number:<name>'"
    if not 1 <= len(name) <= _MAX_PROPERTY_NAME or name != name.strip():
        return f"the name after '{kind}:' must be 1..{_MAX_PROPERTY_NAME} characters"
    return kind


# Cached: the comments of a sync tend to share their keys.
_cached_property_kind = functools.lru_cache(maxsize=1024)(_property_kind)


def _problems(comment: Comment) -> Iterator[Problem]:
    """Every problem of a comment: the required fields missing, then the others in field
    order; the paths and descriptions are built only for a problem found, so a valid
    comment costs a walk of its fields."""
    for name in _REQUIRED.missing(comment):
        yield f".{name}", "required"
    if comment.id and COMMENT_ID.match(comment.id) is None:
        yield ".id", "required: 1..256 letters, digits or '-_.:=+/@'"
    if comment.HasField("timestamp"):
        timestamp = comment.timestamp
        if not _timestamp_ok(timestamp.seconds, timestamp.nanos):
            yield ".timestamp", "must be a valid timestamp"
    if len(comment.thread_id) > _MAX_THREAD:
        yield ".thread_id", _too_long(comment.thread_id, _MAX_THREAD)
    messages = comment.messages
    if len(messages) > _MAX_MESSAGES:
        yield ".messages", f"at most {_MAX_MESSAGES} messages, got {len(messages)}"
    else:
        for i, message in enumerate(messages):
            # A text can have no more characters than the message has bytes, and a
            # recipient takes at least two bytes: a limit above the message's size cannot
            # be passed, and is not looked at.
            size = message.ByteSize()
            if size > _MAX_ADDRESS:
                if size > 1024 and len(message.subject.text) > 1024:
                    yield f".messages[{i}].subject.text", _too_long(message.subject.text, 1024)
                if size > 65536 and len(message.body.text) > 65536:
                    yield f".messages[{i}].body.text", _too_long(message.body.text, 65536)
                sender = getattr(message, "from")
                if len(sender) > _MAX_ADDRESS:
                    yield f".messages[{i}].from", _too_long(sender, _MAX_ADDRESS)
                for name in ("to", "cc", "bcc"):
                    addresses = getattr(message, name)
                    if len(addresses) > _MAX_RECIPIENTS:
                        yield (
                            f".messages[{i}].{name}",
                            f"at most {_MAX_RECIPIENTS} recipients, got {len(addresses)}",
                        )
                        continue
                    for j, address in enumerate(addresses):
                        if len(address) > _MAX_ADDRESS:
                            yield f".messages[{i}].{name}[{j}]", _too_long(address, _MAX_ADDRESS)
            # An unset sent_at reads as 0 seconds, 0 nanos: valid, so presence is not asked.
            sent_at = message.sent_at
            if not _timestamp_ok(sent_at.seconds, sent_at.nanos):
                yield f".messages[{i}].sent_at", "must be a valid timestamp"
            if len(message.language) > 35:
                yield f".messages[{i}].language", _too_long(message.language, 35)
    properties = comment.user_properties.fields
    if len(properties) > _MAX_PROPERTIES:
        yield ".user_properties", f"at most {_MAX_PROPERTIES} properties, got {len(properties)}"
    else:
        for key in properties:  # (the map's items() view walks it in Python: slower)
            value = properties[key]
            # (A key too long to be valid is not cached: the cache keeps its keys.)
            kind = (
                _cached_property_kind(key) if len(key) <= _MAX_PROPERTY_KEY else _property_kind(key)
            )
            held = value.WhichOneof("kind")
            if kind == "string":
                if held != "string_value":
                    yield f".user_properties[{key!r}]", "a 'string:' property needs a string value"
                elif len(value.string_value) > _MAX_PROPERTY_VALUE:
                    yield (
                        f".user_properties[{key!r}]",
                        _too_long(value.string_value, _MAX_PROPERTY_VALUE),
                    )
            elif kind != "number":
                yield f".user_properties[{key!r}]", kind
            elif held != "number_value" or not math.isfinite(value.number_value):
                yield (
                    f".user_properties[{key!r}]",
                    "a 'number:' property needs a finite number value",
                )
    if comment.text_format and comment.text_format not in TEXT_FORMATS:
        yield ".text_format", f"must be one of {', '.join(TEXT_FORMATS)}"
    size = comment.ByteSize()
    if size > MAX_COMMENT_BYTES:
        yield "", f"at most {MAX_COMMENT_BYTES} bytes serialized, got {size}"


def canonical(comment: Comment) -> Comment:
    """The synced fields of a comment, `text_format` defaulted: what a sync stores. (The
    request's own message, completed in place, when it holds nothing else.)"""
    if not len(UnknownFieldSet(comment)) and not _OUTPUT_ONLY.any(comment):
        if not comment.text_format:
            comment.text_format = "plain"
        return comment
    # The comment less what the server sets and fields it does not know: a copy in C, then
    # those cleared.
    canonical = Comment()
    canonical.CopyFrom(comment)
    canonical.DiscardUnknownFields()
    fields.clear_output_only(canonical)
    canonical.text_format = comment.text_format or "plain"
    return canonical


def check_count(field: str, comments: Sequence[Comment]) -> None:
    """INVALID_ARGUMENT unless a sync holds 1..MAX_SYNC comments."""
    if not 1 <= len(comments) <= MAX_SYNC:
        raise InvalidArgument.field(field, f"1..{MAX_SYNC} comments per call, got {len(comments)}")


def checked_parts(field: str, comments: Sequence[Comment], size: int) -> Iterator[list[Comment]]:
    """The canonical forms of `comments`, `size` at a time, each part checked only when
    it is asked for: a caller writes one part while the next is checked. Once a comment
    fails (a bad field, an id twice), no further part is given; the rest are checked
    too, and INVALID_ARGUMENT names every problem."""
    checks = Violations()
    seen: set[str] = set()
    part: list[Comment] = []
    for i, comment in enumerate(comments):
        for path, problem in _problems(comment):
            checks.add(f"{field}[{i}]{path}", problem)
        comment_id = comment.id
        if comment_id in seen:
            checks.add(f"{field}[{i}].id", f"duplicate id {comment_id!r} in the call")
        seen.add(comment_id)
        if checks.items:
            continue
        part.append(canonical(comment))
        if len(part) == size:
            yield part
            part = []
    checks.raise_if_any()
    if part:
        yield part
