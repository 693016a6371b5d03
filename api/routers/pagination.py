"""Cursor pagination: opaque cursors over a unique, ordered key (stable under inserts)."""

from __future__ import annotations

import base64
from collections.abc import Callable
from typing import Annotated, Any

from fastapi import Query
from sqlalchemy import Select
from sqlalchemy.orm import InstrumentedAttribute, Session

from api.errors import ApiError

Limit = Annotated[int, Query(ge=1, le=500)]
Cursor = Annotated[str | None, Query(max_length=200)]


def encode_cursor(value: str) -> str:
    return base64.urlsafe_b64encode(value.encode()).decode().rstrip("=")


def decode_cursor(cursor: str) -> str:
    try:
        return base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode()
    except (ValueError, UnicodeDecodeError) as exc:
        raise ApiError(
            422, "invalid cursor", details=[{"path": "cursor", "message": "invalid"}]
        ) from exc


def paginate(
    db: Session,
    query: Select[Any],
    key: InstrumentedAttribute[str],
    cursor: str | None,
    limit: int,
    render: Callable[[Any], dict[str, Any]],
) -> dict[str, Any]:
    """{"data": [...], "next_cursor": str | None} ordered by `key`."""
    if cursor:
        query = query.where(key > decode_cursor(cursor))
    rows = list(db.scalars(query.order_by(key).limit(limit + 1)))
    more = len(rows) > limit
    rows = rows[:limit]
    next_cursor = encode_cursor(getattr(rows[-1], key.key)) if more and rows else None
    return {"data": [render(r) for r in rows], "next_cursor": next_cursor}
