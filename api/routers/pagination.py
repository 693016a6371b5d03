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
# base64url without padding (never 4n+1 characters long): every such string decodes.
CURSOR_PATTERN = r"^(?:[A-Za-z0-9_-]{4})*(?:[A-Za-z0-9_-]{2,3})?$"
Cursor = Annotated[str | None, Query(max_length=200, pattern=CURSOR_PATTERN)]


def encode_cursor(value: str) -> str:
    return base64.urlsafe_b64encode(value.encode()).decode().rstrip("=")


def decode_cursor(cursor: str) -> str:
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
        return raw.decode(errors="replace")  # a key never seen: the page after it
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


def paginate_items(
    items: list[Any], key: Callable[[Any], str], cursor: str | None, limit: int
) -> dict[str, Any]:
    """The same page shape for small lists kept outside SQL (Redis sets, JSON columns):
    `items` sorted by the unique `key`, the cursor is the last key seen."""
    ordered = sorted(items, key=key)
    if cursor:
        after = decode_cursor(cursor)
        ordered = [item for item in ordered if key(item) > after]
    page = ordered[:limit]
    more = len(ordered) > limit
    return {"data": page, "next_cursor": encode_cursor(key(page[-1])) if more and page else None}
