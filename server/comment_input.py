"""Checks of synced comments, and their canonical form (only the fields a sync writes)."""

from __future__ import annotations

import functools
import math
import re
from collections.abc import Iterator, Sequence

from google.protobuf.unknown_fields import UnknownFieldSet

from corrigo.server.errors import InvalidArgument
from corrigo.server.store.sources import MAX_SYNC
from corrigo.server.validation import Violations
from corrigo.v1.comments_pb2 import Comment, CommentMessage

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


def _message(checks: Violations, at: str, message: CommentMessage) -> None:
    checks.text(f"{at}.subject.text", message.subject.text, 1024)
    checks.text(f"{at}.body.text", message.body.text, 65536)
    checks.text(f"{at}.from", getattr(message, "from"), _MAX_ADDRESS)
    for name in ("to", "cc", "bcc"):
        addresses = getattr(message, name)
        if not checks.check(
            len(addresses) <= _MAX_RECIPIENTS,
            f"{at}.{name}",
            f"at most {_MAX_RECIPIENTS} recipients, got {len(addresses)}",
        ):
            continue
        for i, address in enumerate(addresses):
            checks.text(f"{at}.{name}[{i}]", address, _MAX_ADDRESS)
    if message.HasField("sent_at"):
        checks.check(
            _timestamp_ok(message.sent_at.seconds, message.sent_at.nanos),
            f"{at}.sent_at",
            "must be a valid timestamp",
        )
    checks.text(f"{at}.language", message.language, 35)


def _properties(checks: Violations, at: str, comment: Comment) -> None:
    fields = comment.user_properties.fields
    if not checks.check(
        len(fields) <= _MAX_PROPERTIES,
        at,
        f"at most {_MAX_PROPERTIES} properties, got {len(fields)}",
    ):
        return
    for key, value in fields.items():
        kind, sep, name = key.partition(":")
        where = f"{at}[{key!r}]"
        if not sep or kind not in ("string", "number"):
            checks.add(where, "keys are 'string:<name>' or 'number:<name>'")
            continue
        if not 1 <= len(name) <= _MAX_PROPERTY_NAME or name != name.strip():
            checks.add(
                where, f"the name after '{kind}:' must be 1..{_MAX_PROPERTY_NAME} characters"
            )
            continue
        held = value.WhichOneof("kind")
        if kind == "string":
            if held != "string_value":
                checks.add(where, "a 'string:' property needs a string value")
            else:
                checks.text(where, value.string_value, _MAX_PROPERTY_VALUE)
        elif held != "number_value" or not math.isfinite(value.number_value):
            checks.add(where, "a 'number:' property needs a finite number value")


def _message_valid(message: CommentMessage) -> bool:
    # A text can have no more characters than the message has bytes, and a recipient
    # takes at least two bytes: a limit above the message's size cannot be passed, and
    # is not looked at.
    size = message.ByteSize()
    if size > _MAX_ADDRESS:
        for addresses in (message.to, message.cc, message.bcc):
            if len(addresses) > _MAX_RECIPIENTS:
                return False
            for address in addresses:
                if len(address) > _MAX_ADDRESS:
                    return False
        if len(getattr(message, "from")) > _MAX_ADDRESS:
            return False
        if size > 1024 and len(message.subject.text) > 1024:
            return False
        if size > 65536 and len(message.body.text) > 65536:
            return False
    # An unset sent_at reads as 0 seconds, 0 nanos: valid, so presence is not asked.
    sent_at = message.sent_at
    return len(message.language) <= 35 and _timestamp_ok(sent_at.seconds, sent_at.nanos)


@functools.lru_cache(maxsize=1024)
def _property_kind(key: str) -> str | None:
    """'string' or 'number' for a well-formed property key, else None. (Cached: the
    comments of a sync tend to share their keys.)"""
    kind, sep, name = key.partition(":")
    if not sep or kind not in ("string", "number") or name != name.strip():
        return None
    return kind if 1 <= len(name) <= _MAX_PROPERTY_NAME else None


def _properties_valid(comment: Comment) -> bool:
    fields = comment.user_properties.fields
    if len(fields) > _MAX_PROPERTIES:
        return False
    for key in fields:  # (the map's items() view walks it in Python: slower)
        value = fields[key]
        # (A key too long to be valid is not looked up: the cache keeps its keys.)
        kind = _property_kind(key) if len(key) <= _MAX_PROPERTY_KEY else None
        held = value.WhichOneof("kind")
        if kind == "string":
            if held != "string_value" or len(value.string_value) > _MAX_PROPERTY_VALUE:
                return False
        elif kind is None or held != "number_value" or not math.isfinite(value.number_value):
            return False
    return True


def _valid(comment: Comment) -> bool:
    """Whether `_collect_violations` would find nothing wrong: every one of its checks,
    without naming fields (the common case costs a fraction of collecting violations)."""
    if COMMENT_ID.match(comment.id) is None or not comment.HasField("timestamp"):
        return False
    timestamp = comment.timestamp
    if not _timestamp_ok(timestamp.seconds, timestamp.nanos):
        return False
    messages = comment.messages
    if len(comment.thread_id) > _MAX_THREAD or not 1 <= len(messages) <= _MAX_MESSAGES:
        return False
    for message in messages:
        if not _message_valid(message):
            return False
    return (
        _properties_valid(comment)
        and (not comment.text_format or comment.text_format in TEXT_FORMATS)
        and comment.ByteSize() <= MAX_COMMENT_BYTES
    )


def canonical(comment: Comment) -> Comment:
    """The synced fields of a comment, `text_format` defaulted: what a sync stores. (The
    request's own message, completed in place, when it holds nothing else.)"""
    if not len(UnknownFieldSet(comment)):
        if not (
            comment.uid
            or comment.source_id
            or comment.context
            or comment.has_annotations
            or comment.HasField("created_at")
            or comment.HasField("last_modified")
        ):
            if not comment.text_format:
                comment.text_format = "plain"
            return comment
        # The comment less its output-only fields: a copy in C, then those cleared.
        canonical = Comment()
        canonical.CopyFrom(comment)
        canonical.ClearField("uid")
        canonical.ClearField("source_id")
        canonical.ClearField("created_at")
        canonical.ClearField("last_modified")
        canonical.ClearField("context")
        canonical.ClearField("has_annotations")
        canonical.text_format = comment.text_format or "plain"
        return canonical
    # Fields this server does not know are not kept: the synced fields one by one.
    canonical = Comment(
        id=comment.id,
        thread_id=comment.thread_id,
        messages=comment.messages,
        text_format=comment.text_format or "plain",
    )
    canonical.timestamp.CopyFrom(comment.timestamp)
    if comment.HasField("user_properties"):
        canonical.user_properties.CopyFrom(comment.user_properties)
    return canonical


def _collect_violations(checks: Violations, at: str, comment: Comment) -> None:
    """Every problem of a comment, each named by its field."""
    checks.check(
        bool(COMMENT_ID.match(comment.id)),
        f"{at}.id",
        "required: 1..256 letters, digits or '-_.:=+/@'",
    )
    if checks.check(comment.HasField("timestamp"), f"{at}.timestamp", "required"):
        checks.check(
            _timestamp_ok(comment.timestamp.seconds, comment.timestamp.nanos),
            f"{at}.timestamp",
            "must be a valid timestamp",
        )
    checks.text(f"{at}.thread_id", comment.thread_id, _MAX_THREAD)
    if checks.check(
        1 <= len(comment.messages) <= _MAX_MESSAGES,
        f"{at}.messages",
        f"1..{_MAX_MESSAGES} messages required, got {len(comment.messages)}",
    ):
        for i, message in enumerate(comment.messages):
            _message(checks, f"{at}.messages[{i}]", message)
    _properties(checks, f"{at}.user_properties", comment)
    if comment.text_format:
        checks.check(
            comment.text_format in TEXT_FORMATS,
            f"{at}.text_format",
            f"must be one of {', '.join(TEXT_FORMATS)}",
        )
    size = comment.ByteSize()
    checks.check(
        size <= MAX_COMMENT_BYTES,
        at,
        f"at most {MAX_COMMENT_BYTES} bytes serialized, got {size}",
    )


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
        if not _valid(comment):
            _collect_violations(checks, f"{field}[{i}]", comment)
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
