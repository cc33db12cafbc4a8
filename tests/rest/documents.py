"""The example answers of the source documents (the design's seeds), copied as written
there: 000 correction sessions, 002 Communications Mining datasets, 003 and 004 practice
sessions (001, improvement batches, describes its answers without an example)."""

from __future__ import annotations

from typing import Any

# 002: GET /api/v1/datasets/<project>/<dataset_name>, and the PUT and POST answers.
DATASET: dict[str, Any] = {
    "created": "2018-10-15T15:48:49.603000Z",
    "description": "An optional long form description.",
    "has_sentiment": True,
    "id": "18ba5ce699f8da1f",
    "last_modified": "2018-10-15T15:48:49.603000Z",
    "model_family": "english",
    "name": "example",
    "owner": "<project>",
    "source_ids": ["18ba5ce699f8da1f"],
    "title": "An Example Dataset",
}
DATASET_ANSWER: dict[str, Any] = {"dataset": DATASET, "status": "ok"}
DATASETS_ANSWER: dict[str, Any] = {"datasets": [DATASET], "status": "ok"}
MODEL_TAGS_ANSWER: dict[str, Any] = {
    "model_tags": [
        {"name": "prod", "updated_at": "2021-11-16T12:31:00.123Z", "version": 5},
        {"name": "staging", "updated_at": "2021-11-15T12:30:00.123Z", "version": 7},
    ],
    "status": "ok",
}
DELETE_ANSWER: dict[str, Any] = {"status": "ok"}
EXPORT_ANSWER: dict[str, Any] = {
    "comments": [
        {
            "annotations": {
                "labels": {
                    "assigned": [
                        {"name": "Parent Label", "sentiment": "positive"},
                        {"name": "Parent Label > Child Label", "sentiment": "positive"},
                    ]
                }
            },
            "comment": {
                "context": "1596721237668",
                "created_at": "2020-08-06T13:20:28.531000Z",
                "has_annotations": True,
                "id": "0123456789abcdef",
                "last_modified": "2020-08-06T13:40:37.668000Z",
                "messages": [
                    {
                        "body": {
                            "text": "Alice,\n\nHere are the figures for today.\n\nRegards,\nBob"
                        },
                        "from": "bob@organisation.org",
                        "sent_at": "2011-12-11T11:05:10Z",
                        "subject": {"text": "Today's figures"},
                        "to": ["alice@company.com"],
                    }
                ],
                "source_id": "47194279497e141e",
                "text_format": "plain",
                "thread_id": "123456",
                "timestamp": "2011-12-11T11:05:10Z",
                "uid": "47194279497e141e.0123456789abcdef",
                "user_properties": {
                    "string:Recipient Domain": "company.com",
                    "string:Sender Domain": "organisation.org",
                },
            },
            "predictions": {
                "labels": [
                    {
                        "name": "Another Parent Label",
                        "probability": 0.954979807138443,
                        "sentiment": -0.4281917143125379,
                    },
                    {
                        "name": "Another Parent Label > Another Child Label",
                        "probability": 0.7726812064647675,
                        "sentiment": -0.6603664430231163,
                    },
                ]
            },
        }
    ],
    "continuation": "2021-02-16T10:55:05Z.c060a787c0b2bbf95526ad5cf28bf582",
    "status": "ok",
}

# 000: the 201 answer of POST /api/v1/projects/{project_id}/correction-sessions.
CORRECTION_SESSION: dict[str, Any] = {
    "created": "2023-11-02",
    "finished": "2023-11-02",
    "document_count": 100,
    "document_group_id": 87,
    "organization_id": 1,
    "user_id": 1,
    "project_id": 1,
    "uuid": "3fa85f64-5717-4562-b3fc-2c963f66afa6",
    "id": 1,
    "name": "This is my first correction session",
    "progress": 87.7,
    "model": {"id": 1, "display_name": "This is my model"},
    "status": "CREATED",
    "mode": "CORRECTION",
    "type": "ABSA",
    "description": "string",
    "classes": ["Comfort"],
    "labels": ["POS"],
    "predicted_score": 0,
}
CORRECTION_STATUSES = (
    "CREATED",
    "STARTED",
    "ANNOTATING",
    "FAILED",
    "FINISHED",
    "SAMPLING",
    "PREDICTING",
    "DELETING",
)
CORRECTION_TYPES = ("ABSA", "CLASS", "LABEL", "CLASSLABEL")

# 003 and 004: the answer of POST /user/practice/sessions and PATCH .../{session_id}.
PRACTICE_SESSION: dict[str, Any] = {
    "session_id": 123,
    "user_id": 123,
    "created_at": "2023-11-07T05:31:56Z",
    "updated_at": "2023-11-07T05:31:56Z",
    "class_id": 123,
    "project_id": 123,
    "knowledge_ids": [123],
    "agent_id": 123,
    "title": "<string>",
    "notes": "<string>",
    "settings": {
        "setting_id": 123,
        "session_id": 123,
        "created_at": "2023-11-07T05:31:56Z",
        "updated_at": "2023-11-07T05:31:56Z",
        "style_preset": "accurate",
        "style_params": {},
        "generation_params": {},
        "agent_snapshot": {},
        "few_shot_links": [
            {
                "id": 123,
                "setting_id": 123,
                "example_id": 123,
                "sort_order": 123,
                "created_at": "2023-11-07T05:31:56Z",
                "example": {
                    "example_id": 123,
                    "user_id": 123,
                    "input_text": "<string>",
                    "output_text": "<string>",
                    "is_active": True,
                    "created_at": "2023-11-07T05:31:56Z",
                    "updated_at": "2023-11-07T05:31:56Z",
                    "title": "<string>",
                    "meta": {},
                },
            }
        ],
    },
    "responses": [
        {
            "response_id": 123,
            "session_model_id": 123,
            "session_id": 123,
            "model_name": "<string>",
            "prompt_text": "<string>",
            "response_text": "<string>",
            "created_at": "2023-11-07T05:31:56Z",
            "token_usage": {},
            "latency_ms": 123,
        }
    ],
}
