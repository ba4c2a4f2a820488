"""Keyset pagination on (created_at, id), shared by the lists of jobs: a cursor is the last
row's key, so page N costs what page 1 does, and rows written meanwhile shift nothing."""

from __future__ import annotations

import base64
import binascii
import uuid
from collections.abc import Sequence
from datetime import datetime
from typing import Annotated

import orjson
from fastapi import HTTPException, Query
from sqlalchemy import RowMapping

Key = tuple[datetime, uuid.UUID]

Limit = Annotated[int, Query(ge=1, description="Rows per page (at most SMARTQ_PAGE_LIMIT_MAX).")]
Cursor = Annotated[
    str | None, Query(description="The next_cursor of the previous page; none for the first.")
]


def encode_cursor(created_at: datetime, job_id: uuid.UUID) -> str:
    raw = orjson.dumps([created_at.isoformat(), str(job_id)])
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode_cursor(cursor: str | None) -> Key | None:
    """The key to continue after; 422 for anything that is not a cursor we gave out."""
    if not cursor:
        return None
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
        created, job_id = orjson.loads(raw)
        return datetime.fromisoformat(created), uuid.UUID(job_id)
    except (ValueError, TypeError, binascii.Error, orjson.JSONDecodeError):
        raise HTTPException(422, "invalid cursor; use the next_cursor of a previous page") from None


def check_limit(limit: int, most: int) -> None:
    if limit > most:
        raise HTTPException(422, f"limit is at most {most}")


def page(rows: Sequence[RowMapping], limit: int) -> tuple[Sequence[RowMapping], str | None]:
    """``rows`` fetched with ``limit + 1``: the page, and the cursor of the next one if any."""
    if len(rows) <= limit:
        return rows, None
    rows = rows[:limit]
    return rows, encode_cursor(rows[-1]["created_at"], rows[-1]["id"])
