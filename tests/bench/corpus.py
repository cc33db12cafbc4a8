"""The benchmark's data: email-like comments, their labels and their predictions.

Deterministic (seeded), so runs compare. Each comment has two messages of a few hundred
characters, a thread, two user properties; each is labelled with two labels and
predicted with two.
"""

from __future__ import annotations

import random
from collections.abc import Iterator

from corrigo.v1.comments_pb2 import (
    AssignedLabels,
    Comment,
    CommentMessage,
    Label,
    MessageText,
    PredictedLabel,
)
from corrigo.v1.models_pb2 import CommentPredictions

# 2020-01-01T00:00:00Z: comments are a minute apart on average, with jitter, so the
# timestamp order is close to, but not the same as, the sync order.
START_SECONDS = 1_577_836_800
LABELS = ["Billing", "Billing > Refund", "Billing > Invoice", "Access", "Access > Password"]
_WORDS = [
    "invoice",
    "refund",
    "account",
    "password",
    "order",
    "delivery",
    "please",
    "thanks",
    "regards",
    "urgent",
    "payment",
    "customer",
    "support",
    "ticket",
    "issue",
    "update",
    "request",
    "confirm",
    "attached",
    "monday",
]


def _text(rng: random.Random, words: int) -> str:
    return " ".join(rng.choice(_WORDS) for _ in range(words))


def comment(rng: random.Random, index: int) -> Comment:
    seconds = START_SECONDS + index * 60 + rng.randrange(3600)
    made = Comment(
        id=f"c{index:07d}",
        thread_id=f"t{index // 3:07d}",
        messages=[
            CommentMessage(
                subject=MessageText(text=f"Re: {_text(rng, 5)}"),
                body=MessageText(text=_text(rng, 40)),
                to=["support@company.example"],
                language="en",
                **{"from": f"customer{index % 997}@mail.example"},
            ),
            CommentMessage(
                subject=MessageText(text=f"Re: {_text(rng, 5)}"),
                body=MessageText(text=_text(rng, 25)),
                to=[f"customer{index % 997}@mail.example"],
                language="en",
                **{"from": "support@company.example"},
            ),
        ],
    )
    made.timestamp.seconds = seconds
    made.messages[0].sent_at.seconds = seconds
    made.messages[1].sent_at.seconds = seconds + 600
    made.user_properties.update(
        {"string:Sender Domain": "mail.example", "number:Priority": index % 5}
    )
    return made


def comments(count: int, seed: int, prefix: str = "") -> Iterator[Comment]:
    rng = random.Random(seed)
    for i in range(count):
        made = comment(rng, i)
        if prefix:
            made.id = prefix + made.id
        yield made


def assigned(index: int) -> bytes:
    """A comment's two assigned labels, serialized as the store keeps them."""
    first = LABELS[index % 2 * 3]
    return AssignedLabels(
        assigned=[
            Label(name=first, sentiment="positive"),
            Label(name=LABELS[1 + index % 4], sentiment="negative"),
        ]
    ).SerializeToString()


def predicted(uid: str, index: int) -> CommentPredictions:
    return CommentPredictions(
        uid=uid,
        labels=[
            PredictedLabel(name=LABELS[index % 5], probability=0.91, sentiment=0.25),
            PredictedLabel(name=LABELS[(index + 1) % 5], probability=0.42, sentiment=-0.5),
        ],
    )
