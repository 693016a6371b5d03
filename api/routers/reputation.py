"""Reputation and sending state, team-scoped: the score and its inputs, any pause or
throttle in force and why, and an Administrator's request that the operators review a pause.

The score is fct_reputation_daily's formula on the team's summed inputs over the window
(api.services.warehouse_reads); the pause and throttle are read live from Redis through
kibamail.team_pauses and mta's throttle decision (`RedisKeys.reputation_throttle`); the
pause history from the durable audit (kibamail.pause_audit, `raw_team_pause_audit`).
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Annotated, Any

import orjson
from fastapi import APIRouter, Depends, Query
from pydantic import BaseModel, ConfigDict, Field
from starlette.concurrency import run_in_threadpool

from api.deps import StateDep, TeamContext, TeamReports, require
from api.errors import ApiError
from api.routers.deliverability import Cursor, Since, Until
from api.routers.pagination import Limit
from api.services import warehouse_reads as reads
from api.services.rbac import Action
from api.state import AppState
from kibamail import pause_audit, team_pauses
from kibamail.redis_keys import RedisKeys
from kibamail.team_budget import bulk_score

router = APIRouter(prefix="/v1/teams/{team_id}", tags=["reputation"])
TeamReview = Annotated[TeamContext, Depends(require(Action.SENDING_REVIEW))]
ERROR = {"content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}}}


class ReviewIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    note: str = Field(min_length=3, max_length=2000, description="What changed, for the operators")


def _pause(record: team_pauses.PauseRecord | None) -> dict[str, Any] | None:
    if record is None:
        return None
    return {
        "state": record.state,
        "source": record.source,
        "reason": record.reason,
        "score": record.score,
        "components": record.components,
        "sample_subjects": record.sample_subjects,
        "paused_at": record.paused_at,
        "confirmed_at": (record.confirmed or {}).get("at"),
        "review_requested_at": (record.review or {}).get("at"),
    }


PAUSE_HISTORY = 20
_HISTORY_FIELDS = ("action", "at", "reason", "pause_reason", "durable")


def _pause_history(state: AppState, team_id: str) -> list[dict[str, Any]]:
    """The team's last pause decisions from the durable audit (ClickHouse) plus those the
    sink has not written yet; who decided stays with the operators' console."""
    try:
        entries = pause_audit.history(
            state.sync_redis,
            state.warehouse(),
            state.settings.clickhouse.database,
            team_id,
            PAUSE_HISTORY,
        )
    except Exception as exc:  # the warehouse being down must not look like "no history"
        raise ApiError(503, f"event store unavailable: {type(exc).__name__}") from exc
    return [{k: e[k] for k in _HISTORY_FIELDS} for e in entries]


def _sending_state(state: AppState, team_id: str) -> dict[str, Any]:
    redis = state.sync_redis
    throttle_raw, score_raw = redis.mget(
        [
            RedisKeys.reputation_throttle("team", team_id),
            RedisKeys.reputation_throttle("bulk_score", team_id),
        ]
    )
    throttle = None
    if throttle_raw:
        try:
            value = orjson.loads(throttle_raw)
            throttle = {
                "action": str(value.get("action", "")),
                "factor": float(value.get("factor", 0.0)),
                "reason": str(value.get("reason", "")),
            }
        except (orjson.JSONDecodeError, AttributeError, TypeError, ValueError):
            throttle = None
    return {
        "pause": _pause(team_pauses.read_pause(redis, team_id)),
        "pause_history": _pause_history(state, team_id),
        "throttle": throttle,
        "bulk_score": bulk_score(score_raw),
    }


@router.get("/reputation", summary="Reputation score and inputs; any pause or throttle and why")
async def summary(
    team_id: str,
    ctx: TeamReports,
    state: StateDep,
    days: Annotated[int, Query(ge=1, le=90, description="Window in UTC days")] = 7,
) -> dict[str, Any]:
    until = datetime.now(UTC).date()
    score = await run_in_threadpool(
        reads.reputation_inputs, state, ctx.team_id, until - timedelta(days=days - 1), until
    )
    sending = await run_in_threadpool(_sending_state, state, ctx.team_id)
    return {**score, **sending, "sending": "paused" if sending["pause"] else "active"}


@router.get("/reputation/daily", summary="Reputation per day, sending domain and IP")
async def daily(
    team_id: str,
    ctx: TeamReports,
    state: StateDep,
    since: Since = None,
    until: Until = None,
    cursor: Cursor = None,
    limit: Limit = 100,
) -> dict[str, Any]:
    first, last = reads.date_range(since, until)
    return await run_in_threadpool(
        reads.reputation_daily, state, ctx.team_id, first, last, cursor, limit
    )


def _request_review(state: AppState, team_id: str, user: str, note: str) -> dict[str, Any]:
    try:
        record = team_pauses.request_review(state.sync_redis, team_id, requested_by=user, note=note)
    except team_pauses.PauseError as exc:
        raise ApiError(409, str(exc)) from exc
    return {"pause": _pause(record)}


@router.post(
    "/reputation/review",
    status_code=202,
    summary="Ask the operators to review this team's sending pause (Administrators)",
    responses={409: {"description": "The team is not paused, or a review is pending.", **ERROR}},
)
async def request_review(
    team_id: str, body: ReviewIn, ctx: TeamReview, state: StateDep
) -> dict[str, Any]:
    who = ctx.principal.user_id or f"api_key:{ctx.principal.api_key_id}"
    return await run_in_threadpool(_request_review, state, ctx.team_id, who, body.note)
