"""Deliverability self-service: per provider and day, bounce reasons, domain checks.

Readable by every member role (Action.REPORTS_READ); served from fct_deliverability_daily,
fct_bounces_daily and raw_domain_checks (api.services.warehouse_reads). Opens and clicks
are human ones: machine opens and clicks are counted apart and never enter a rate.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Query
from starlette.concurrency import run_in_threadpool

from api.deps import StateDep, TeamReports
from api.routers.pagination import Limit
from api.services import warehouse_reads as reads
from api.services.domains import api_status, check_status, stored_checks

router = APIRouter(prefix="/v1/teams/{team_id}", tags=["deliverability"])

_DAY = {"pattern": r"^\d{4}-\d{2}-\d{2}$", "json_schema_extra": {"format": "date"}}
Since = Annotated[
    str | None, Query(alias="from", description="First UTC day (default: 30 days ago)", **_DAY)
]
Until = Annotated[
    str | None, Query(alias="to", description="Last UTC day (default: today)", **_DAY)
]
# Aggregated reads page by position in their fixed order (as the activity reads do).
Cursor = Annotated[str | None, Query(pattern=r"^[0-9]{1,9}$", description="opaque")]
Provider = Annotated[
    str | None,
    Query(
        pattern=r"^[a-z0-9.-]{1,253}$", description="google, microsoft, yahoo, apple, gmx, other"
    ),
]


@router.get(
    "/deliverability/daily", summary="Delivered/deferred/bounced/complained per day and provider"
)
async def daily(
    team_id: str,
    ctx: TeamReports,
    state: StateDep,
    since: Since = None,
    until: Until = None,
    provider: Provider = None,
    cursor: Cursor = None,
    limit: Limit = 100,
) -> dict[str, Any]:
    first, last = reads.date_range(since, until)
    return await run_in_threadpool(
        reads.deliverability_daily, state, ctx.team_id, first, last, provider, cursor, limit
    )


@router.get("/deliverability/providers", summary="Totals per mailbox provider over a range")
async def providers(
    team_id: str, ctx: TeamReports, state: StateDep, since: Since = None, until: Until = None
) -> dict[str, Any]:
    first, last = reads.date_range(since, until)
    rows = await run_in_threadpool(reads.deliverability_providers, state, ctx.team_id, first, last)
    return {"from": first.isoformat(), "to": last.isoformat(), "data": rows}


@router.get(
    "/deliverability/bounces", summary="Bounces and deferrals by reason, action and provider"
)
async def bounces(
    team_id: str,
    ctx: TeamReports,
    state: StateDep,
    since: Since = None,
    until: Until = None,
    provider: Provider = None,
    cursor: Cursor = None,
    limit: Limit = 100,
) -> dict[str, Any]:
    first, last = reads.date_range(since, until)
    return await run_in_threadpool(
        reads.bounce_reasons, state, ctx.team_id, first, last, provider, cursor, limit
    )


@router.get(
    "/domains/{domain_id}/checks", summary="A domain's checks: status per record and history"
)
async def domain_checks(
    team_id: str,
    domain_id: str,
    ctx: TeamReports,
    state: StateDep,
    cursor: Cursor = None,
    limit: Limit = 100,
) -> dict[str, Any]:
    domain = await run_in_threadpool(reads.owned_domain, state, ctx.team_id, domain_id=domain_id)
    current = [
        {
            "check": name,
            "status": api_status(entry),
            "result": check_status(entry),
            "found": entry.get("found"),
            "reason": entry.get("reason"),
        }
        for name, entry in sorted(stored_checks(domain).items())
    ]
    history = await run_in_threadpool(
        reads.domain_check_history, state, ctx.team_id, domain.name, cursor, limit
    )
    return {
        "domain": domain.name,
        "status": domain.status,
        "last_checked_at": reads.json_value(domain.last_checked_at),
        "records": current,
        "history": history["data"],
        "next_cursor": history["next_cursor"],
    }
