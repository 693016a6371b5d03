"""Billing self-service reads: this month so far, past months, invoices, breakdown, from
fct_billing_monthly and the monthly close's billing_invoices (api.services.warehouse_reads
runs the queries, team-scoped)."""

from __future__ import annotations

import calendar
from datetime import UTC, date, datetime
from decimal import Decimal
from typing import Any

import orjson

from api.errors import ApiError
from api.schemas import iso_utc
from api.services.warehouse_reads import page, query
from api.state import AppState

# The price rule of fct_billing_monthly (dbt vars billing_free_emails, billing_block_size,
# billing_block_price_micros; the monthly close uses the same): first 10,000 recipients of
# a UTC month free, then $0.25 per started block of 1,000.
FREE_RECIPIENTS = 10_000
BLOCK_SIZE = 1_000
BLOCK_PRICE_MICROS = 250_000
CURRENCY = "USD"


def charge_micros(recipients: int) -> tuple[int, int]:
    """(billable blocks, amount in micro-dollars) for a month's accepted recipients."""
    over = max(recipients - FREE_RECIPIENTS, 0)
    blocks = -(-over // BLOCK_SIZE)
    return blocks, blocks * BLOCK_PRICE_MICROS


def dollars(micros: int) -> str:
    return f"{Decimal(micros) / 1_000_000:.2f}"


def usage_this_month(state: AppState, team_id: str, now: datetime | None = None) -> dict[str, Any]:
    """Recipients so far (fct_billing_monthly, built hourly), the free allowance left, the
    charge so far and the month's projection at the pace so far."""
    now = now or datetime.now(UTC)
    month = date(now.year, now.month, 1)
    rows = query(
        state,
        "SELECT accepted_recipients FROM {db}.fct_billing_monthly "
        "WHERE team_id = {team:String} AND billing_month = {month:Date}",
        {"team": team_id, "month": month},
    )
    recipients = int(rows[0]["accepted_recipients"]) if rows else 0
    days = calendar.monthrange(now.year, now.month)[1]
    elapsed = (now - datetime(now.year, now.month, 1, tzinfo=UTC)).total_seconds() / 86400
    projected = int(recipients * days / max(elapsed, 1.0))
    blocks, micros = charge_micros(recipients)
    projected_blocks, projected_micros = charge_micros(projected)
    return {
        "month": month.isoformat()[:7],
        "recipients": recipients,
        "free_allowance": FREE_RECIPIENTS,
        "free_remaining": max(FREE_RECIPIENTS - recipients, 0),
        "billable_blocks": blocks,
        "charge_micros": micros,
        "charge": dollars(micros),
        "projected_recipients": projected,
        "projected_billable_blocks": projected_blocks,
        "projected_charge_micros": projected_micros,
        "projected_charge": dollars(projected_micros),
        "currency": CURRENCY,
        "as_of": iso_utc(now),
    }


def months(state: AppState, team_id: str, cursor: str | None, limit: int) -> dict[str, Any]:
    """Past and current months (newest first), with the invoice id of closed ones."""
    sql = (
        "SELECT formatDateTime(m.billing_month, '%Y-%m') AS month, m.accepted_recipients "
        "AS recipients, m.free_recipients, m.billable_blocks, m.amount_micros AS charge_micros, "
        "toString(m.amount_usd) AS charge, i.invoice_id AS invoice_id "
        "FROM {db}.fct_billing_monthly AS m LEFT JOIN (SELECT invoice_id, billing_month "
        "FROM {db}.billing_invoices FINAL WHERE team_id = {team:String}) AS i "
        "ON m.billing_month = i.billing_month "
        "WHERE m.team_id = {team:String} ORDER BY m.billing_month DESC"
    )
    result = page(state, sql, {"team": team_id}, cursor, limit)
    for row in result["data"]:
        row["invoice_id"] = row["invoice_id"] or None
        row["currency"] = CURRENCY
    return result


_INVOICE_COLUMNS = (
    "invoice_id, formatDateTime(billing_month, '%Y-%m') AS month, accepted_recipients AS "
    "recipients, free_recipients, billable_blocks, amount_micros, currency, lines, closed_at"
)


def _invoice(row: dict[str, Any]) -> dict[str, Any]:
    row["lines"] = orjson.loads(row["lines"] or "[]")
    row["amount"] = dollars(int(row["amount_micros"]))
    return row


def invoices(state: AppState, team_id: str, cursor: str | None, limit: int) -> dict[str, Any]:
    sql = (
        f"SELECT {_INVOICE_COLUMNS} FROM {{db}}.billing_invoices FINAL "
        "WHERE team_id = {team:String} ORDER BY billing_month DESC"
    )
    result = page(state, sql, {"team": team_id}, cursor, limit)
    result["data"] = [_invoice(r) for r in result["data"]]
    return result


def invoice(state: AppState, team_id: str, invoice_id: str) -> dict[str, Any]:
    rows = query(
        state,
        f"SELECT {_INVOICE_COLUMNS} FROM {{db}}.billing_invoices FINAL "
        "WHERE team_id = {team:String} AND invoice_id = {invoice:String}",
        {"team": team_id, "invoice": invoice_id},
    )
    if not rows:
        raise ApiError(404, "invoice not found")
    return _invoice(rows[0])


def breakdown(state: AppState, team_id: str, month: date) -> dict[str, Any]:
    """A month's accepted recipients by broadcast ('' = transactional sends) and kind.
    Events do not record which API key or SMTP credential submitted a message."""
    rows = query(
        state,
        "SELECT broadcast_id, kind, toUInt64(uniqExact(message_id, recipient)) AS recipients "
        "FROM {db}.fct_message_events WHERE team_id = {team:String} AND status = 'accepted' "
        "AND event_date >= {start:Date} AND event_date < addMonths({start:Date}, 1) "
        "GROUP BY broadcast_id, kind ORDER BY recipients DESC, broadcast_id, kind",
        {"team": team_id, "start": month},
    )
    for row in rows:
        row["broadcast_id"] = row["broadcast_id"] or None
    return {
        "month": month.isoformat()[:7],
        "by_broadcast": rows,
        "by_api_key": None,
        "by_smtp_credential": None,
        "note": "message events do not record the API key or SMTP credential that "
        "submitted them, so usage cannot be split by either",
    }
