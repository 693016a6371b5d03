"""Customer self-service reads from the warehouse marts (dbt/models/marts) and the raw
report tables where no mart exists (TLS-RPT, DMARC failure reports, domain checks);
billing's own reads are api.services.usage_reads.

Every query binds the caller's team id as a server-side parameter in its WHERE clause, so
no request can read another team's rows; the routers add the 404 for ids and domains the
team does not own. Dates are UTC days, timestamps ISO-8601 UTC (`api.schemas.iso_utc`).
A warehouse that does not answer is 503, never an empty answer; a mart no dbt build has
made yet (a new installation) reads as no rows.
"""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from typing import Any

import orjson

from api.errors import ApiError
from api.schemas import iso_utc
from api.state import AppState


def json_value(value: Any) -> Any:
    if isinstance(value, datetime):
        return iso_utc(value if value.tzinfo else value.replace(tzinfo=UTC))
    if isinstance(value, date):
        return value.isoformat()
    if isinstance(value, Decimal):
        return str(value)
    if isinstance(value, float):
        return round(value, 6)
    return value


def query(state: AppState, sql: str, params: dict[str, Any]) -> list[dict[str, Any]]:
    """Rows as JSON-ready dicts; `{db}` in `sql` is the warehouse database."""
    sql = sql.replace("{db}", state.settings.clickhouse.database)
    try:
        result = state.warehouse().query(sql, parameters=params)
    except Exception as exc:  # the warehouse being down must not look like "no data"
        if "UNKNOWN_TABLE" in str(exc):  # it answered: no dbt build has made the mart yet
            return []
        raise ApiError(503, f"event store unavailable: {type(exc).__name__}") from exc
    return [{k: json_value(v) for k, v in row.items()} for row in result.named_results()]


def offset_of(cursor: str | None) -> int:
    """Aggregated reads page by position in their fixed order: the cursor is an offset
    (the routers' OffsetCursor admits digits only, like the activity reads)."""
    return int(cursor) if cursor else 0


def page(
    state: AppState, sql: str, params: dict[str, Any], cursor: str | None, limit: int
) -> dict[str, Any]:
    """{"data", "next_cursor"} for an ORDER BY query (one row more than the page is read)."""
    offset = offset_of(cursor)
    rows = query(
        state,
        f"{sql} LIMIT {{limit:UInt32}} OFFSET {{offset:UInt64}}",
        {**params, "limit": limit + 1, "offset": offset},
    )
    more = len(rows) > limit
    return {
        "data": rows[:limit],
        "next_cursor": str(offset + limit) if more else None,
    }


# The days a ClickHouse Date holds; a range outside it is the caller's error, not a 5xx.
FIRST_DAY, LAST_DAY = date(1970, 1, 1), date(2149, 6, 6)


def parse_day(value: str, name: str) -> date:
    """An ISO-8601 calendar day (422 otherwise), brought inside the days a ClickHouse Date
    holds: a range reaching past them reads what exists, never a warehouse error."""
    try:
        day = date.fromisoformat(value)
    except ValueError:
        day = None
    if day is None or len(value) != 10:
        raise ApiError(
            422,
            f"{name} must be a day, YYYY-MM-DD",
            details=[{"path": name, "message": "not a YYYY-MM-DD day"}],
        )
    return min(max(day, FIRST_DAY), LAST_DAY)


def date_range(since: str | None, until: str | None, days: int = 30) -> tuple[date, date]:
    """Inclusive UTC days; default: the last `days` days up to today (from after to: no
    day, so no rows)."""
    last = parse_day(until, "to") if until else datetime.now(UTC).date()
    first = parse_day(since, "from") if since else max(last - timedelta(days=days - 1), FIRST_DAY)
    return first, last


# --- deliverability --------------------------------------------------------------------

_DELIVERY_SUMS = (
    "sum(sent) AS sent, sum(delivered) AS delivered, sum(deferred) AS deferred, "
    "sum(bounced) AS bounced, sum(complaints) AS complained, "
    "sum(unique_human_opens) AS unique_opens, sum(human_opens) AS opens, "
    "sum(unique_human_clicks) AS unique_clicks, sum(human_clicks) AS clicks, "
    "sum(machine_opens) AS machine_opens, sum(machine_clicks) AS machine_clicks, "
    "sum(unsubscribes) AS unsubscribes, "
    "if(delivered = 0, 0, unique_opens / delivered) AS open_rate, "
    "if(delivered = 0, 0, unique_clicks / delivered) AS click_rate"
)


def _range_params(team_id: str, since: date, until: date, provider: str | None) -> tuple[str, Any]:
    where = "team_id = {team:String} AND event_date BETWEEN {since:Date} AND {until:Date}"
    params: dict[str, Any] = {"team": team_id, "since": since, "until": until}
    if provider:
        where += " AND provider = {provider:String}"
        params["provider"] = provider
    return where, params


def deliverability_daily(
    state: AppState, team_id: str, since: date, until: date, provider: str | None,
    cursor: str | None, limit: int,
) -> dict[str, Any]:  # fmt: skip
    """Per UTC day and mailbox provider; opens and clicks are human ones (machine opens
    and clicks counted apart, never in a rate)."""
    where, params = _range_params(team_id, since, until, provider)
    sql = (
        f"SELECT event_date AS day, provider, {_DELIVERY_SUMS} "
        f"FROM {{db}}.fct_deliverability_daily WHERE {where} "
        "GROUP BY day, provider ORDER BY day DESC, provider"
    )
    return page(state, sql, params, cursor, limit)


def deliverability_providers(
    state: AppState, team_id: str, since: date, until: date
) -> list[dict[str, Any]]:
    where, params = _range_params(team_id, since, until, None)
    sql = (
        f"SELECT provider, {_DELIVERY_SUMS} FROM {{db}}.fct_deliverability_daily "
        f"WHERE {where} GROUP BY provider ORDER BY sent DESC, provider"
    )
    return query(state, sql, params)


def bounce_reasons(
    state: AppState, team_id: str, since: date, until: date, provider: str | None,
    cursor: str | None, limit: int,
) -> dict[str, Any]:  # fmt: skip
    """The bounce taxonomy's reasons and actions (kibamail.bounces), per provider."""
    where, params = _range_params(team_id, since, until, provider)
    sql = (
        "SELECT reason, action, provider, sum(bounced) AS bounced, sum(deferred) AS deferred, "
        "sum(expired) AS expired, sum(complaints) AS complained, sum(suppressed) AS suppressed, "
        f"sum(recipients) AS recipients FROM {{db}}.fct_bounces_daily WHERE {where} "
        "GROUP BY reason, action, provider "
        "ORDER BY bounced + deferred + expired + complained DESC, reason, action, provider"
    )
    return page(state, sql, params, cursor, limit)


# --- DMARC and TLS reports ---------------------------------------------------------------


def dmarc_daily(
    state: AppState, team_id: str, domain: str, since: date, until: date,
    cursor: str | None, limit: int,
) -> dict[str, Any]:  # fmt: skip
    """Pass/fail per day and source IP, with the reporting organisations."""
    sql = (
        "SELECT day, source_ip, reverse_dns, as_org, sending_service, country, reporters, "
        "messages, dmarc_pass, dmarc_fail, dkim_aligned, spf_aligned, disposition_none, "
        "disposition_quarantine, disposition_reject, published_policy "
        "FROM {db}.fct_dmarc_daily WHERE team_id = {team:String} AND domain = {domain:String} "
        "AND day BETWEEN {since:Date} AND {until:Date} ORDER BY day DESC, source_ip"
    )
    params = {"team": team_id, "domain": domain, "since": since, "until": until}
    return page(state, sql, params, cursor, limit)


def dmarc_failing_sources(
    state: AppState, team_id: str, domain: str, since: date, until: date, limit: int
) -> list[dict[str, Any]]:
    sql = (
        "SELECT source_ip, any(reverse_dns) AS reverse_dns, any(as_org) AS as_org, "
        "any(sending_service) AS sending_service, groupUniqArrayArray(reporters) AS reporters, "
        "sum(dmarc_fail) AS dmarc_fail, sum(messages) AS messages, min(day) AS first_day, "
        "max(day) AS last_day FROM {db}.fct_dmarc_daily WHERE team_id = {team:String} "
        "AND domain = {domain:String} AND day BETWEEN {since:Date} AND {until:Date} "
        "GROUP BY source_ip HAVING dmarc_fail > 0 "
        "ORDER BY dmarc_fail DESC, source_ip LIMIT {limit:UInt32}"
    )
    params = {"team": team_id, "domain": domain, "since": since, "until": until, "limit": limit}
    return query(state, sql, params)


def tls_reports(
    state: AppState, team_id: str, domain: str, cursor: str | None, limit: int
) -> dict[str, Any]:
    """RFC 8460 reports (no mart yet: the raw table, deduplicated by FINAL)."""
    sql = (
        "SELECT report_id, organization_name, begin_at, end_at, policy_type, mx_hosts, "
        "successful_sessions, failed_sessions, failure_details_json AS failure_details "
        "FROM {db}.raw_tls_reports FINAL WHERE team_id = {team:String} "
        "AND policy_domain = {domain:String} ORDER BY begin_at DESC, report_key, policy_index"
    )
    result = page(state, sql, {"team": team_id, "domain": domain}, cursor, limit)
    for row in result["data"]:
        row["failure_details"] = orjson.loads(row["failure_details"] or "[]")
    return result


def forensic_reports(
    state: AppState, team_id: str, domain: str, cursor: str | None, limit: int
) -> dict[str, Any]:
    """RFC 6591 failure reports received for the domain (raw table, FINAL)."""
    sql = (
        "SELECT report_key AS id, arrival_at, source_ip, feedback_type, auth_failure, "
        "delivery_result, dkim_domain, original_from, original_subject, original_message_id "
        "FROM {db}.raw_dmarc_failure_reports FINAL WHERE team_id = {team:String} "
        "AND reported_domain = {domain:String} ORDER BY arrival_at DESC, report_key"
    )
    return page(state, sql, {"team": team_id, "domain": domain}, cursor, limit)


# --- reputation and domain checks ------------------------------------------------------


def reputation_score(bounce: float, complaint: float, defer: float, engagement: float) -> float:
    """The dbt macro reputation_score, on the team's summed inputs."""
    score = 100 - 10000 * complaint - 500 * bounce - 50 * defer + min(10.0, 20 * engagement)
    return round(max(0.0, min(100.0, score)), 1)


def reputation_inputs(state: AppState, team_id: str, since: date, until: date) -> dict[str, Any]:
    sql = (
        "SELECT sum(delivered) AS delivered, sum(deferred) AS deferred, sum(bounced) AS bounced, "
        "sum(complaints) AS complaints, sum(unique_human_opens) AS unique_human_opens "
        "FROM {db}.fct_reputation_daily WHERE team_id = {team:String} "
        "AND event_date BETWEEN {since:Date} AND {until:Date}"
    )
    rows = query(state, sql, {"team": team_id, "since": since, "until": until})
    names = ("delivered", "deferred", "bounced", "complaints", "unique_human_opens")
    counts = {k: int((rows[0] if rows else {}).get(k) or 0) for k in names}
    attempts = counts["delivered"] + counts["deferred"] + counts["bounced"]
    delivered = counts["delivered"]
    rates = {
        "bounce_rate": counts["bounced"] / attempts if attempts else 0.0,
        "defer_rate": counts["deferred"] / attempts if attempts else 0.0,
        "complaint_rate": counts["complaints"] / delivered if delivered else 0.0,
        "engagement_rate": min(1.0, counts["unique_human_opens"] / delivered) if delivered else 0.0,
    }
    score = reputation_score(
        rates["bounce_rate"], rates["complaint_rate"], rates["defer_rate"], rates["engagement_rate"]
    ) if attempts else None  # fmt: skip
    return {
        "score": score,
        "window": {"from": since.isoformat(), "to": until.isoformat()},
        "inputs": {**counts, "attempts": attempts, **{k: round(v, 6) for k, v in rates.items()}},
    }


def reputation_daily(
    state: AppState, team_id: str, since: date, until: date, cursor: str | None, limit: int
) -> dict[str, Any]:
    sql = (
        "SELECT event_date AS day, sender_domain, source_ip, delivered, deferred, bounced, "
        "complaints, unique_human_opens, bounce_rate, defer_rate, complaint_rate, "
        "engagement_rate, reputation_score FROM {db}.fct_reputation_daily "
        "WHERE team_id = {team:String} AND event_date BETWEEN {since:Date} AND {until:Date} "
        "ORDER BY day DESC, sender_domain, source_ip"
    )
    return page(state, sql, {"team": team_id, "since": since, "until": until}, cursor, limit)


def domain_check_history(
    state: AppState, team_id: str, domain: str, cursor: str | None, limit: int
) -> dict[str, Any]:
    """Each record's status transitions (raw_domain_checks, newest first)."""
    sql = (
        "SELECT checked_at, record, previous_status, current_status, reason "
        "FROM {db}.raw_domain_checks FINAL WHERE team_id = {team:String} "
        "AND domain = {domain:String} ORDER BY checked_at DESC, record, event_id"
    )
    return page(state, sql, {"team": team_id, "domain": domain}, cursor, limit)


def owned_domain(state: AppState, team_id: str, *, name: str = "", domain_id: str = "") -> Any:
    """The team's sending domain by name or id; 404 for anyone else's (or none)."""
    from sqlalchemy import select

    from api.models import Domain

    query_ = select(Domain).where(Domain.team_id == team_id)
    query_ = query_.where(Domain.id == domain_id) if domain_id else query_.where(
        Domain.name == name.lower()
    )  # fmt: skip
    with state.sessions() as session:
        domain = session.scalar(query_)
        if domain is None:
            raise ApiError(404, "domain not found")
        session.expunge(domain)
        return domain
