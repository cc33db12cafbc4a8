"""The physical limit of the export: the same rows read with the bare driver (sqlite3,
psycopg2) by the same keyset query, turned into the same serialized pages (the
comments of each page as ExportedComment fields, and its continuation), in one
process: no gRPC, no ORM, no event loop.

The pages are built from the stored bytes with the least Python per comment this
author knows (one tuple of parts per comment, one join per page); `same_page` checks
that they are byte for byte the server's.
"""

from __future__ import annotations

import secrets
import sqlite3
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from corrigo.server.api import pagination
from corrigo.server.api.wire import varint
from corrigo.server.store import database

# The export's page query for a dataset of one source, in `timestamp` order, with a
# model version: the comments after the keyset position, each with its labelling and
# prediction looked up by primary key (the server's query, see server/store/export_pages.py).
# Like the server, it leaves the order to the inner query and sorts the rows (one pass).
_PAGE_SQL = (
    'SELECT "page"."id", "page"."ts_us", "page"."body", '
    '(SELECT "t1"."assigned" FROM "labelling" AS "t1" '
    'WHERE "t1"."dataset_id" = {p} AND "t1"."comment_id" = "page"."id"), '
    '(SELECT "t2"."labels" FROM "prediction" AS "t2" '
    'WHERE "t2"."version_id" = {p} AND "t2"."comment_id" = "page"."id") '
    'FROM (SELECT "t3"."id", "t3"."ts_us", "t3"."body" FROM "comment" AS "t3" '
    'WHERE "t3"."source_id" = {p} AND ("t3"."ts_us", "t3"."id") > ({p}, {p}) '
    'AND ("t3"."ts_moved_us" IS NULL OR "t3"."ts_moved_us" <= {p}) '
    'ORDER BY "t3"."ts_us", "t3"."id" LIMIT {p}) AS "page"'
)
_IDS_SQL = (
    "SELECT s.id, d.id, v.id FROM source s, dataset d, model_version v "
    "WHERE s.hex_id = {p} AND d.hex_id = {p} AND v.dataset_id = d.id "
    "ORDER BY v.version DESC LIMIT 1"
)
_PAGE_BYTES = 2 * 1024 * 1024


def comments_field(rows: Sequence[Sequence[Any]], limit: int) -> tuple[bytes, int]:
    """ExportDatasetResponse.comments of up to `limit` rows (fewer past 2 MiB), and
    how many rows it holds."""
    parts: list[Any] = []
    extend = parts.extend
    size = 0
    taken = 0
    for _, _, body, assigned, predicted in rows[:limit]:
        flag = b"" if assigned is None else b"\x60\x01"
        labels = assigned or b""
        predictions = predicted or b""
        body_len = len(body) + len(flag)
        labels_len = len(labels)
        annotations_len = 1 + len(varint(labels_len)) + labels_len
        predictions_len = len(predictions)
        inner = (
            3
            + len(varint(body_len))
            + body_len
            + len(varint(annotations_len))
            + annotations_len
            + len(varint(predictions_len))
            + predictions_len
        )
        size += inner
        if taken and size > _PAGE_BYTES:
            break
        extend(
            (
                b"\x0a",
                varint(inner),
                b"\x0a",
                varint(body_len),
                body,
                flag,
                b"\x12",
                varint(annotations_len),
                b"\x0a",
                varint(labels_len),
                labels,
                b"\x1a",
                varint(predictions_len),
                predictions,
            )
        )
        taken += 1
    return b"".join(parts), taken


def _sort_key(row: Sequence[Any]) -> tuple[int, int]:
    return row[1], row[0]


@dataclass(frozen=True)
class LimitRun:
    comments: int
    pages: int
    seconds: float
    first_page: bytes

    @property
    def rate(self) -> float:
        return self.comments / self.seconds


def _connect(url: str) -> tuple[Any, str]:
    if database.is_postgres(url):
        import psycopg2

        conn = psycopg2.connect(url)
        conn.autocommit = True
        return conn, "%s"
    conn = sqlite3.connect(database.sqlite_path(url), isolation_level=None)
    return conn, "?"


def run(url: str, source_hex: str, dataset_hex: str, page: int) -> LimitRun:
    """Every page of the export, read and assembled as fast as the bare driver allows."""
    conn, placeholder = _connect(url)
    try:
        cursor = conn.cursor()
        cursor.execute(_IDS_SQL.format(p=placeholder), (source_hex, dataset_hex))
        source_id, dataset_id, version_id = cursor.fetchone()
        sql = _PAGE_SQL.format(p=placeholder)
        token_query = b"\x00" * 16
        tokens = pagination.PageTokens(secrets.token_bytes(pagination.KEY_BYTES))
        started_us = int(time.time() * 1_000_000)
        execute: Callable[..., Any] = cursor.execute
        after = (-(2**63), 0)
        count = pages = 0
        first = b""
        began = time.perf_counter()
        while True:
            execute(sql, (dataset_id, version_id, source_id, *after, started_us, page + 1))
            rows = cursor.fetchall()
            rows.sort(key=_sort_key)
            comments, taken = comments_field(rows, page)
            more = len(rows) > taken
            count += taken
            pages += 1
            if more:
                last = rows[taken - 1]
                after = (last[1], last[0])
                continuation = tokens.issue(token_query, [started_us, version_id, last[1], last[0]])
                # One copy of the page, as the server makes (its continuation_field).
                message = comments + (b"\x12" + varint(len(continuation)) + continuation.encode())
            else:
                message = comments
            if not first:
                first = message
            if not more:
                break
        seconds = time.perf_counter() - began
    finally:
        conn.close()
    return LimitRun(count, pages, seconds, first)
