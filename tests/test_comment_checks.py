"""The comment checks' fast path (`_valid`) agrees with the checks that name fields:
whatever it lets through has no violation, and whatever it stops has one."""

from __future__ import annotations

import math
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from corrigo.server import comment_input
from corrigo.server.validation import Violations
from corrigo.v1.comments_pb2 import Comment, CommentMessage


def _mostly(valid: list[Any], invalid: list[Any]) -> st.SearchStrategy[Any]:
    """One of the values, a valid one nine times out of ten or so."""
    return st.sampled_from(valid * (9 * max(1, len(invalid)) // len(valid) + 1) + invalid)


# Texts at and just past the limits (35, 256, 512, 1024, 4096 characters; "é" is 2 bytes).
_text = _mostly(
    ["", "a", "é" * 35, "a" * 256, "é" * 512, "a" * 1024],
    ["a" * 36, "é" * 257, "a" * 513, "é" * 1025, "a" * 4097],
)


@st.composite
def messages(draw: st.DrawFn) -> CommentMessage:
    made = CommentMessage(language=draw(_mostly(["", "en"], ["x" * 36])))
    made.subject.text = draw(_text)
    made.body.text = draw(_mostly(["", "hi", "b" * 65536], ["b" * 65537]))
    setattr(made, "from", draw(_text))
    made.to.extend(draw(st.lists(_text, max_size=2)))
    made.cc.extend(["c@d.e"] * draw(_mostly([0, 1, 256], [257])))
    if draw(st.booleans()):
        made.sent_at.seconds = draw(_mostly([0, 253402300799], [-62135596801, 253402300800]))
    return made


@st.composite
def comments(draw: st.DrawFn) -> Comment:
    made = Comment(
        id=draw(_mostly(["c1", "a.b:c=d+e/f@g"], ["", "bad id", "x" * 257])),
        thread_id=draw(_text),
        text_format=draw(_mostly(["", "plain", "markdown"], ["html"])),
    )
    if draw(_mostly([True], [False])):
        made.timestamp.seconds = draw(_mostly([0, -62135596800], [253402300800]))
        made.timestamp.nanos = draw(_mostly([0, 999_999_999], [1_000_000_000]))
    made.messages.extend(draw(st.lists(messages(), min_size=draw(_mostly([1], [0])), max_size=2)))
    keys = _mostly(["string:a", "number:n"], ["other:x", "string:", "string: pad", "nokey"])
    values = draw(st.dictionaries(keys, st.just(None), max_size=3))
    for key in values:
        kind = key.split(":", 1)[0]
        good = ["v", "w" * 4096] if kind != "number" else [1.5, 0]
        made.user_properties.update({key: draw(_mostly(good, ["w" * 4097, math.inf, "s"]))})
    return made


@settings(max_examples=400, deadline=None)
@given(comments())
def test_fast_path_agrees_with_the_named_checks(comment: Comment) -> None:
    named = Violations()
    comment_input._collect_violations(named, "c", comment)
    assert comment_input._valid(comment) == (not named.items), named.items
