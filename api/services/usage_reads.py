"""Billing self-service reads: this month so far, past months, invoices, breakdown, from
fct_billing_monthly and the monthly close's billing_invoices (api.services.warehouse_reads
runs the queries, team-scoped)."""

from __future__ import annotations

import calendar
from datetime import UTC, date, datetime
from decimal import Decimal
from typing import Any

import orjson
from sqlalchemy import select

from api.errors import ApiError
from api.models import ApiKey
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
# fct_usage_by_source_monthly's source_type values.
SOURCE_TYPES = ("api_key", "smtp_credential", "broadcast", "other")


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


def _key_rows(state: AppState, team_id: str, ids: list[str]) -> dict[str, ApiKey]:
    """The team's own keys among ``ids`` (a revoked key keeps its row, name and prefix)."""
    if not ids:
        return {}
    with state.sessions() as db:
        keys = db.scalars(select(ApiKey).where(ApiKey.team_id == team_id, ApiKey.id.in_(ids)))
        return {key.id: key for key in keys}


def _by_api_key(state: AppState, team_id: str, rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    keys = _key_rows(state, team_id, [r["source_id"] for r in rows])
    out = []
    for row in rows:
        key = keys.get(row["source_id"])
        status = "deleted" if key is None else "revoked" if key.revoked_at else "active"
        out.append(
            {
                "api_key_id": row["source_id"],
                "name": key.name if key else None,
                "prefix": key.prefix if key else None,
                "status": status,
                "recipients": int(row["accepted_recipients"]),
            }
        )
    return out


def breakdown(state: AppState, team_id: str, month: date) -> dict[str, Any]:
    """A month's accepted recipients by broadcast ('' = transactional sends) and kind, and
    by what submitted them (fct_usage_by_source_monthly): each API key (named from the
    team's own keys in the database), each SMTP credential, and the rest (dashboard sends,
    events recorded before sources were)."""
    params = {"team": team_id, "start": month}
    rows = query(
        state,
        "SELECT broadcast_id, kind, toUInt64(uniqExact(message_id, recipient)) AS recipients "
        "FROM {db}.fct_message_events WHERE team_id = {team:String} AND status = 'accepted' "
        "AND event_date >= {start:Date} AND event_date < addMonths({start:Date}, 1) "
        "GROUP BY broadcast_id, kind ORDER BY recipients DESC, broadcast_id, kind",
        params,
    )
    for row in rows:
        row["broadcast_id"] = row["broadcast_id"] or None
    sources = query(
        state,
        "SELECT source_type, source_id, accepted_recipients FROM {db}.fct_usage_by_source_monthly "
        "WHERE team_id = {team:String} AND usage_month = {start:Date} "
        "ORDER BY accepted_recipients DESC, source_id",
        params,
    )
    of = {kind: [r for r in sources if r["source_type"] == kind] for kind in SOURCE_TYPES}
    return {
        "month": month.isoformat()[:7],
        "by_broadcast": rows,
        "by_api_key": _by_api_key(state, team_id, of["api_key"]),
        "by_smtp_credential": [
            {
                "credential_id": r["source_id"],
                "username": r["source_id"],
                "recipients": int(r["accepted_recipients"]),
            }
            for r in of["smtp_credential"]
        ],
        "unattributed_recipients": sum(int(r["accepted_recipients"]) for r in of["other"]),
        "note": "by_api_key and by_smtp_credential count what each key or credential "
        "submitted; broadcasts count under by_broadcast; unattributed_recipients are "
        "dashboard sends and messages accepted before sources were recorded",
    }
