"""Billing and usage, team-scoped: this month so far, past months, invoices, breakdown.

Administrators only (Action.BILLING, like the rest of billing); served from
fct_billing_monthly and the monthly close's billing_invoices (api.services.warehouse_reads).
"""

from __future__ import annotations

import re
from datetime import UTC, date, datetime
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, Query
from pydantic import BaseModel, Field
from starlette.concurrency import run_in_threadpool

from api.deps import StateDep, TeamContext, require
from api.errors import ApiError
from api.routers.deliverability import Cursor
from api.routers.pagination import Limit
from api.services import usage_reads as billing
from api.services import warehouse_reads as reads
from api.services.rbac import Action

router = APIRouter(prefix="/v1/teams/{team_id}", tags=["usage"])
TeamBilling = Annotated[TeamContext, Depends(require(Action.BILLING))]
Month = Annotated[
    str | None,
    Query(pattern=r"^(19[7-9]\d|20\d\d|21[0-4]\d)-(0[1-9]|1[0-2])$", description="YYYY-MM (UTC)"),
]


@router.get("/usage", summary="This month so far: recipients, free allowance left, projection")
async def this_month(team_id: str, ctx: TeamBilling, state: StateDep) -> dict[str, Any]:
    return await run_in_threadpool(billing.usage_this_month, state, ctx.team_id)


@router.get("/usage/months", summary="Usage and charge per month, newest first")
async def months(
    team_id: str, ctx: TeamBilling, state: StateDep, cursor: Cursor = None, limit: Limit = 24
) -> dict[str, Any]:
    return await run_in_threadpool(billing.months, state, ctx.team_id, cursor, limit)


class BroadcastUsage(BaseModel):
    broadcast_id: str | None = Field(description="null: transactional sends")
    kind: str
    recipients: int


class ApiKeyUsage(BaseModel):
    api_key_id: str
    name: str | None = Field(description="null once the key's row is gone")
    prefix: str | None
    status: Literal["active", "revoked", "deleted"]
    recipients: int


class SmtpCredentialUsage(BaseModel):
    credential_id: str
    username: str
    recipients: int


class UsageBreakdown(BaseModel):
    month: str = Field(description="YYYY-MM (UTC)")
    by_broadcast: list[BroadcastUsage]
    by_api_key: list[ApiKeyUsage] = Field(description="What each of the team's API keys sent")
    by_smtp_credential: list[SmtpCredentialUsage]
    unattributed_recipients: int = Field(
        description="Dashboard sends and messages accepted before sources were recorded"
    )
    note: str


@router.get(
    "/usage/breakdown",
    summary="A month's recipients by broadcast, API key and SMTP credential",
    response_model=UsageBreakdown,
)
async def breakdown(
    team_id: str, ctx: TeamBilling, state: StateDep, month: Month = None
) -> dict[str, Any]:
    if month is None:
        now = datetime.now(UTC)
        start = date(now.year, now.month, 1)
    else:
        start = reads.parse_day(f"{month}-01", "month")  # a month ClickHouse holds
        start = start.replace(day=1)
    return await run_in_threadpool(billing.breakdown, state, ctx.team_id, start)


@router.get("/invoices", summary="Invoices of closed months, newest first")
async def invoices(
    team_id: str, ctx: TeamBilling, state: StateDep, cursor: Cursor = None, limit: Limit = 24
) -> dict[str, Any]:
    return await run_in_threadpool(billing.invoices, state, ctx.team_id, cursor, limit)


_INVOICE_ID = re.compile(r"^inv_\d{6}_[\w-]{1,64}$")


@router.get("/invoices/{invoice_id}", summary="One invoice with its lines")
async def invoice(
    team_id: str, invoice_id: str, ctx: TeamBilling, state: StateDep
) -> dict[str, Any]:
    if not _INVOICE_ID.match(invoice_id):
        raise ApiError(404, "invoice not found")
    return await run_in_threadpool(billing.invoice, state, ctx.team_id, invoice_id)
