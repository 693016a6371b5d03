"""Reads from ClickHouse: message events, contact timeline, broadcast statistics.

Every query binds the caller's team id as a server-side parameter in its WHERE
clause: no request can read another team's rows. FINAL collapses redelivered events.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated, Any

from fastapi import APIRouter, Query
from starlette.concurrency import run_in_threadpool

from api.deps import StateDep, TeamContactsRead, TeamReports
from api.errors import ApiError
from api.routers.pagination import Limit
from api.schemas import iso_utc
from api.state import AppState
from kibamail.contracts import ClickHouseTable

router = APIRouter(prefix="/v1/teams/{team_id}", tags=["activity"])

_EVENT_COLUMNS = (
    "event_id, occurred_at, message_id, status, recipient, kind, smtp_code, enhanced_code, "
    "bounce_class, reason, broadcast_id, contact_id, variant_id, tags"
)


def _query(state: AppState, sql: str, parameters: dict[str, Any]) -> list[dict[str, Any]]:
    try:
        result = state.warehouse().query(sql, parameters=parameters)
    except Exception as exc:  # the warehouse being down must not look like "no data"
        raise ApiError(503, f"event store unavailable: {type(exc).__name__}") from exc
    rows = []
    for row in result.named_results():
        rows.append({k: iso_utc(v) if isinstance(v, datetime) else v for k, v in row.items()})
    return rows


def _instant(value: str) -> datetime:
    """An ISO-8601 instant the event store can compare with (DateTime64 holds 1900-2299);
    anything else is 422, never a warehouse error (it was a 503)."""
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        parsed = None
    if parsed is not None and parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=UTC)
    if parsed is None or not EARLIEST <= parsed <= LATEST:
        raise ApiError(
            422,
            "before must be an ISO-8601 date-time between 1900 and 2299",
            details=[{"path": "before", "message": "not a date-time in range"}],
        )
    return parsed


EARLIEST = datetime(1900, 1, 2, tzinfo=UTC)
LATEST = datetime(2299, 12, 30, tzinfo=UTC)

# Event reads page by position in their fixed order: the cursor is an offset.
Cursor = Annotated[str | None, Query(pattern=r"^[0-9]{1,9}$", description="opaque")]


async def _page(
    state: AppState, sql: str, params: dict[str, Any], cursor: str | None, limit: int
) -> dict[str, Any]:
    offset = int(cursor or 0)
    params = {**params, "offset": offset, "limit": limit + 1}
    rows = await run_in_threadpool(
        _query, state, f"{sql} LIMIT {{limit:UInt32}} OFFSET {{offset:UInt64}}", params
    )
    more = len(rows) > limit
    return {
        "data": rows[:limit],
        "next_cursor": str(offset + limit) if more else None,
    }


def _table(state: AppState, table: ClickHouseTable) -> str:
    return f"{state.settings.clickhouse.database}.{table.value}"


@router.get("/messages/{message_id}/events", summary="Every event of one message")
async def message_events(
    team_id: str,
    message_id: str,
    ctx: TeamReports,
    state: StateDep,
    cursor: Cursor = None,
    limit: Limit = 100,
) -> dict[str, Any]:
    sql = (
        f"SELECT {_EVENT_COLUMNS} FROM {_table(state, ClickHouseTable.MESSAGE_EVENTS)} FINAL "
        "WHERE team_id = {team:String} AND message_id = {message:String} "
        "ORDER BY occurred_at, event_id"
    )
    params = {"team": ctx.team_id, "message": message_id}
    return await _page(state, sql, params, cursor, limit)


@router.get(
    "/messages", summary="The team's message events, by recipient and/or tag (newest first)"
)
async def search_messages(
    team_id: str,
    ctx: TeamReports,
    state: StateDep,
    recipient: Annotated[str | None, Query(max_length=320)] = None,
    tag: Annotated[str | None, Query(max_length=256)] = None,
    before: Annotated[
        str | None,
        Query(
            max_length=40,
            description="cursor: occurred_at of the last row (ISO-8601, 1900-2299)",
            json_schema_extra={"format": "date-time"},
        ),
    ] = None,
    limit: Annotated[int, Query(ge=1, le=500)] = 100,
) -> dict[str, Any]:
    where = ["team_id = {team:String}"]
    params: dict[str, Any] = {"team": ctx.team_id, "limit": limit}
    if recipient:
        where.append("recipient = {recipient:String}")
        params["recipient"] = recipient.lower()
    if tag:
        where.append("has(tags, {tag:String})")
        params["tag"] = tag
    if before is not None:
        where.append("occurred_at < {before:DateTime64(3, 'UTC')}")
        params["before"] = _instant(before)
    sql = (
        f"SELECT {_EVENT_COLUMNS} FROM {_table(state, ClickHouseTable.MESSAGE_EVENTS)} FINAL "
        f"WHERE {' AND '.join(where)} ORDER BY occurred_at DESC LIMIT {{limit:UInt32}}"
    )
    rows = await run_in_threadpool(_query, state, sql, params)
    next_cursor = rows[-1]["occurred_at"] if len(rows) == limit else None
    return {"data": rows, "next_cursor": next_cursor}


@router.get("/contacts/{contact_id}/timeline", summary="Everything that happened to a contact")
async def timeline(
    team_id: str,
    contact_id: str,
    ctx: TeamContactsRead,
    state: StateDep,
    cursor: Cursor = None,
    limit: Limit = 100,
) -> dict[str, Any]:
    sql = f"""
        SELECT * FROM (
        SELECT occurred_at, 'message' AS source, status AS type, message_id, broadcast_id, '' AS url
        FROM {_table(state, ClickHouseTable.MESSAGE_EVENTS)} FINAL
        WHERE team_id = {{team:String}} AND contact_id = {{contact:String}}
        UNION ALL
        SELECT occurred_at, 'open', 'opened', message_id, broadcast_id, ''
        FROM {_table(state, ClickHouseTable.EMAIL_OPENS)} FINAL
        WHERE team_id = {{team:String}} AND contact_id = {{contact:String}}
        UNION ALL
        SELECT occurred_at, 'click', 'clicked', message_id, broadcast_id, url
        FROM {_table(state, ClickHouseTable.EMAIL_CLICKS)} FINAL
        WHERE team_id = {{team:String}} AND contact_id = {{contact:String}}
        UNION ALL
        SELECT occurred_at, 'unsubscribe', 'unsubscribed', message_id, '', ''
        FROM {_table(state, ClickHouseTable.UNSUBSCRIBES)} FINAL
        WHERE team_id = {{team:String}} AND contact_id = {{contact:String}}
        ) ORDER BY occurred_at, source, message_id, url
    """
    params = {"team": ctx.team_id, "contact": contact_id}
    return await _page(state, sql, params, cursor, limit)


@router.get("/broadcasts/{broadcast_id}/stats", summary="Delivery and engagement per variant")
async def broadcast_stats(
    team_id: str, broadcast_id: str, ctx: TeamReports, state: StateDep
) -> dict[str, Any]:
    params = {"team": ctx.team_id, "broadcast": broadcast_id}
    where = "WHERE team_id = {team:String} AND broadcast_id = {broadcast:String}"
    statuses = await run_in_threadpool(
        _query,
        state,
        f"SELECT variant_id, status, uniqExact(message_id) AS messages "
        f"FROM {_table(state, ClickHouseTable.MESSAGE_EVENTS)} FINAL {where} "
        "GROUP BY variant_id, status ORDER BY variant_id, status",
        params,
    )
    engagement = await run_in_threadpool(
        _query,
        state,
        f"SELECT variant_id, 'opened' AS kind, uniqExact(message_id) AS messages "
        f"FROM {_table(state, ClickHouseTable.EMAIL_OPENS)} FINAL {where} GROUP BY variant_id "
        f"UNION ALL SELECT variant_id, 'clicked', uniqExact(message_id) "
        f"FROM {_table(state, ClickHouseTable.EMAIL_CLICKS)} FINAL {where} GROUP BY variant_id",
        params,
    )
    variants: dict[str, dict[str, int]] = {}
    for row in statuses:
        variants.setdefault(row["variant_id"], {})[row["status"]] = int(row["messages"])
    for row in engagement:
        variants.setdefault(row["variant_id"], {})[row["kind"]] = int(row["messages"])
    return {"broadcast_id": broadcast_id, "variants": variants}
