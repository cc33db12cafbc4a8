"""The comment checks name every problem of a synced comment by its field, and let a
valid comment through in its canonical form."""

from __future__ import annotations

import pytest

from corrigo.client import fields
from corrigo.server.api.errors import InvalidArgument
from corrigo.server.domain import comment_input
from corrigo.v1.comments_pb2 import Comment, CommentMessage
from tests import full_records


def _valid() -> Comment:
    made = Comment(id="a.b:c=d+e/f@g", thread_id="t" * 256)
    made.timestamp.seconds = 253402300799
    message = CommentMessage(language="x" * 35, to=["a" * 512] * 2, cc=["c@d.e"] * 256)
    message.subject.text = "é" * 1024
    message.body.text = "b" * 65536
    setattr(message, "from", "f" * 512)
    message.sent_at.seconds = -62135596800
    made.messages.append(message)
    made.user_properties.update({"string:a": "w" * 4096, "number:n": 1.5})
    return made


def _violations(comment: Comment) -> list[tuple[str, str]]:
    try:
        list(comment_input.checked_parts("comments", [comment], 256))
    except InvalidArgument as err:
        return err.violations
    return []


def test_a_comment_at_every_limit_passes_in_its_canonical_form() -> None:
    parts = list(comment_input.checked_parts("comments", [_valid()], 256))
    assert len(parts) == 1 and parts[0][0].text_format == "plain"


def test_every_problem_is_named_by_its_field_in_field_order() -> None:
    bad = _valid()
    bad.id = "bad id"
    bad.timestamp.nanos = 1_000_000_000
    bad.thread_id += "t"
    message = bad.messages[0]
    message.subject.text += "é"
    message.body.text += "b"
    setattr(message, "from", "f" * 513)
    message.to.append("a" * 513)
    message.cc.append("c@d.e")
    message.sent_at.seconds -= 1
    message.language += "x"
    bad.user_properties.update(
        {"other:x": "v", "string: pad": "v", "string:s": 1, "string:a": "w" * 4097}
    )
    bad.user_properties.update({"number:n": float("inf")})
    bad.text_format = "html"
    at = "comments[0]"
    named = [field for field, _ in _violations(bad)]
    assert named[:10] + named[15:] == [
        f"{at}.id",
        f"{at}.timestamp",
        f"{at}.thread_id",
        f"{at}.messages[0].subject.text",
        f"{at}.messages[0].body.text",
        f"{at}.messages[0].from",
        f"{at}.messages[0].to[2]",
        f"{at}.messages[0].cc",
        f"{at}.messages[0].sent_at",
        f"{at}.messages[0].language",
        f"{at}.text_format",
    ]
    # (Properties in the map's own order.)
    assert sorted(named[10:15]) == sorted(
        f"{at}.user_properties[{key!r}]"
        for key in ("other:x", "string: pad", "string:s", "string:a", "number:n")
    )


@pytest.mark.parametrize(
    ("change", "field", "description"),
    [
        (lambda c: c.ClearField("timestamp"), "comments[0].timestamp", "required"),
        (lambda c: c.ClearField("messages"), "comments[0].messages", "required"),
        (
            lambda c: c.user_properties.update({f"number:{i}": i for i in range(256)}),
            "comments[0].user_properties",
            "at most 256 properties",
        ),
        (
            lambda c: c.messages[0].body.__setattr__("text", "b" * 300_000),
            "comments[0]",
            "at most 262144 bytes serialized",
        ),
    ],
)
def test_a_whole_part_that_is_wrong_is_named_once(
    change: object, field: str, description: str
) -> None:
    bad = _valid()
    change(bad)  # type: ignore[operator]
    named = [(f, d) for f, d in _violations(bad) if f == field]
    assert len(named) == 1 and named[0][1].startswith(description), _violations(bad)


def test_every_required_field_is_named_when_missing() -> None:
    """The fields the protos mark REQUIRED are the ones a sync asks for."""
    required = [f.name for f in fields.required(Comment.DESCRIPTOR)]
    assert required == ["id", "timestamp", "messages"]
    assert [f for f, d in _violations(Comment()) if d == "required"] == [
        f"comments[0].{name}" for name in required
    ]


@pytest.mark.parametrize("unknown", [b"", b"\xa0\x06\x01"])
def test_the_canonical_form_keeps_every_synced_field(unknown: bytes) -> None:
    """A comment with every field set (from the descriptors), with or without a field this
    server does not know: every field a sync writes is kept, those the server sets
    (OUTPUT_ONLY) and the unknown one are not."""
    sent = Comment.FromString(full_records.full_comment().SerializeToString() + unknown)
    expected = Comment()
    expected.CopyFrom(sent)
    expected.DiscardUnknownFields()
    fields.clear_output_only(expected)
    (part,) = comment_input.checked_parts("comments", [sent], 256)
    assert full_records.differences(expected, part[0]) == []
    assert part[0].SerializeToString(deterministic=True) == expected.SerializeToString(
        deterministic=True
    )
