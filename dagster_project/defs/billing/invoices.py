"""Monthly billing close: freeze fct_billing_monthly lines into billing_invoices.

Closing is idempotent per team and month: a team already invoiced for the month is
left alone, so rerunning a close (or a retried Dagster run) changes nothing, and late
events after the close never alter an issued invoice. Teams known to the API but
without traffic get a zero invoice.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from typing import Any

import orjson

FREE_EMAILS = 10_000
BLOCK_SIZE = 1_000
BLOCK_PRICE_MICROS = 250_000


class BillingCloseError(ValueError):
    """A close that must not happen (the month is not over yet)."""


@dataclass(frozen=True)
class CloseResult:
    month: date
    created: list[str] = field(default_factory=list)
    already_closed: list[str] = field(default_factory=list)
    total_micros: int = 0

    def as_dict(self) -> dict[str, Any]:
        return {
            "month": self.month.isoformat(),
            "created": len(self.created),
            "already_closed": len(self.already_closed),
            "total_micros": self.total_micros,
        }


def month_start(value: date) -> date:
    return date(value.year, value.month, 1)


def previous_month(today: date) -> date:
    first = month_start(today)
    return date(first.year - 1, 12, 1) if first.month == 1 else date(first.year, first.month - 1, 1)


def invoice_id(team_id: str, month: date) -> str:
    """Deterministic, so a duplicate close can only ever write the same invoice."""
    return f"inv_{month:%Y%m}_{team_id}"


def invoice_lines(accepted: int, blocks: int) -> list[dict[str, Any]]:
    free = min(accepted, FREE_EMAILS)
    return [
        {"description": "Included emails", "quantity": free, "amount_micros": 0},
        {
            "description": f"Additional emails, per started block of {BLOCK_SIZE:,}",
            "quantity": blocks,
            "unit_price_micros": BLOCK_PRICE_MICROS,
            "amount_micros": blocks * BLOCK_PRICE_MICROS,
        },
    ]


def close_month(
    client: Any,
    database: str,
    month: date,
    known_team_ids: set[str] | None = None,
    now: datetime | None = None,
) -> CloseResult:
    """Write the missing invoices of `month` (first day of a UTC month)."""
    month = month_start(month)
    today = (now or datetime.now(UTC)).date()
    if month >= month_start(today):
        raise BillingCloseError(
            f"cannot close {month:%Y-%m}: the month is not over (today is {today.isoformat()} UTC)"
        )
    params = {"month": month}
    closed = {
        row[0]
        for row in client.query(
            f"SELECT team_id FROM {database}.billing_invoices FINAL"
            " WHERE billing_month = {month:Date}",
            parameters=params,
        ).result_rows
    }
    usage = {
        row[0]: (int(row[1]), int(row[2]), int(row[3]), int(row[4]))
        for row in client.query(
            "SELECT team_id, accepted_recipients, free_recipients, billable_blocks, amount_micros"
            f" FROM {database}.fct_billing_monthly WHERE billing_month = {{month:Date}}",
            parameters=params,
        ).result_rows
    }
    teams = sorted(set(usage) | (known_team_ids or set()))
    rows: list[list[Any]] = []
    created: list[str] = []
    for team_id in teams:
        if team_id in closed:
            continue
        accepted, free, blocks, micros = usage.get(team_id, (0, 0, 0, 0))
        lines = orjson.dumps(invoice_lines(accepted, blocks)).decode()
        invoice = invoice_id(team_id, month)
        rows.append([invoice, team_id, month, accepted, free, blocks, micros, "USD", lines])
        created.append(team_id)
    if rows:
        client.insert(
            f"{database}.billing_invoices",
            rows,
            column_names=[
                "invoice_id",
                "team_id",
                "billing_month",
                "accepted_recipients",
                "free_recipients",
                "billable_blocks",
                "amount_micros",
                "currency",
                "lines",
            ],
        )
    total = client.query(
        f"SELECT sum(amount_micros) FROM {database}.billing_invoices FINAL"
        " WHERE billing_month = {month:Date}",
        parameters=params,
    ).result_rows[0][0]
    return CloseResult(
        month=month,
        created=created,
        already_closed=sorted(closed),
        total_micros=int(total or 0),
    )


def api_team_ids(database_url: str) -> set[str]:
    """Every team the API knows (so idle teams get zero invoices); empty when the API database
    has no schema yet (a fresh install). An unreachable database raises."""
    from sqlalchemy import inspect, text

    from api.db import make_engine

    engine = make_engine(database_url)
    try:
        if not inspect(engine).has_table("teams"):
            return set()
        with engine.connect() as conn:
            return {row[0] for row in conn.execute(text("SELECT id FROM teams"))}
    finally:
        engine.dispose()
