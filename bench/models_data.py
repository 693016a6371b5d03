"""Synthetic raw events generated inside ClickHouse (INSERT ... SELECT FROM numbers()).

Generating server-side keeps 10M-row loads to seconds and needs no Python loop; the
same generator gives tests and dashboards demo-like data with every status, provider,
machine opens and duplicates.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

TEAMS = 20
PROVIDER_DOMAINS = (
    "gmail.com",
    "outlook.com",
    "yahoo.com",
    "icloud.com",
    "gmx.de",
    "example.org",
    "corp.example",
)
COUNTRIES = ("US", "DE", "FR", "GB", "BR", "IN", "JP", "KE", "NG", "CA")
# Each message produces two status events: accepted, then one outcome.
EVENTS_PER_MESSAGE = 2


@dataclass(frozen=True)
class SyntheticBatch:
    """One load: ids are offset so a second batch adds new events (not duplicates)."""

    message_events: int
    opens: int
    clicks: int
    start: datetime
    days: int
    id_offset: int = 0
    teams: int = TEAMS
    # None: ingested now (the column default). A number: ingested that many seconds after
    # the event occurred, as a live sink writes it; the benchmark loads history this way so
    # an incremental run sees what production sees (last hour's ingest, not all history).
    ingested_lag_seconds: int | None = None


def _ingested(batch: SyntheticBatch, occurred_column: str) -> tuple[str, str]:
    """(column list suffix, select expression suffix) for ingested_at."""
    if batch.ingested_lag_seconds is None:
        return "", ""
    return ", ingested_at", f", {occurred_column} + toIntervalSecond({batch.ingested_lag_seconds})"


def _domain_expr(hash_expr: str) -> str:
    domains = ", ".join(f"'{d}'" for d in PROVIDER_DOMAINS)
    return f"[{domains}][{hash_expr} % {len(PROVIDER_DOMAINS)} + 1]"


def message_events_sql(database: str, batch: SyntheticBatch) -> str:
    span = batch.days * 86400
    messages = max(1, batch.message_events // EVENTS_PER_MESSAGE)
    start = int(batch.start.replace(tzinfo=UTC).timestamp())
    ingested_column, ingested_value = _ingested(batch, "occurred")
    return f"""
INSERT INTO {database}.raw_message_events
    (event_id, event_version, team_id, occurred_at, message_id, status, recipient,
     recipient_domain, sender_domain, kind, pool, source_ip, mx_host, attempt, smtp_code,
     enhanced_code, smtp_response, bounce_class, reason, transcript, broadcast_id,
     contact_id, variant_id, tags{ingested_column})
SELECT
    concat('e', toString(n)) AS event_id,
    1,
    concat('team_', toString(msg % {batch.teams})) AS team_id,
    toDateTime64({start} + intDiv(msg * {span}, {messages}) + step * 7, 3, 'UTC') AS occurred,
    concat('m', toString(msg)) AS message_id,
    multiIf(step = 0, 'accepted',
            h % 1000 < 40, 'deferred',
            h % 1000 < 90, 'bounced',
            h % 1000 < 93, 'complained',
            'delivered') AS status,
    concat('c', toString(msg % 50000), '@', domain) AS recipient,
    {_domain_expr("h")} AS domain,
    concat('mail', toString(msg % {batch.teams} % 3), '.team', toString(msg % {batch.teams}),
           '.example') AS sender_domain,
    if(msg % 4 = 0, 'transactional', 'marketing') AS kind,
    if(msg % 4 = 0, 'tx', 'mkt'),
    if(step = 0, '', concat('192.0.2.', toString(msg % 8 + 1))),
    if(step = 0, '', concat('mx.', domain)),
    toUInt16(step),
    toUInt16(if(status = 'bounced', 550, if(status = 'deferred', 451, 250))),
    if(status = 'bounced', '5.1.1', ''),
    '',
    multiIf(status = 'bounced' AND h % 3 = 0, 'soft', status = 'bounced', 'hard', ''),
    '',
    '',
    if(kind = 'marketing', concat('b', toString(msg % 40)), ''),
    if(kind = 'marketing', concat('c', toString(msg % 50000)), ''),
    if(kind = 'marketing', if(msg % 2 = 0, 'A', 'B'), ''),
    []{ingested_value}
FROM (
    SELECT
        number + {batch.id_offset} AS n,
        intDiv(n, {EVENTS_PER_MESSAGE}) AS msg,
        n % {EVENTS_PER_MESSAGE} AS step,
        cityHash64(msg) AS h
    FROM numbers({batch.message_events})
)
"""


def engagement_sql(database: str, table: str, batch: SyntheticBatch, rows: int) -> str:
    """Opens or clicks on the batch's messages; ~20% are machine opens (proxies)."""
    span = batch.days * 86400
    messages = max(1, batch.message_events // EVENTS_PER_MESSAGE)
    first_message = batch.id_offset // EVENTS_PER_MESSAGE
    start = int(batch.start.replace(tzinfo=UTC).timestamp())
    click_cols = ", url, link_id" if table == "raw_email_clicks" else ""
    click_vals = ", concat('https://example.com/p/', toString(h % 20)), toString(h % 5)"
    click_vals = click_vals if table == "raw_email_clicks" else ""
    prefix = "k" if table == "raw_email_clicks" else "o"
    countries = ", ".join(f"'{c}'" for c in COUNTRIES)
    ingested_column, ingested_value = _ingested(batch, "occurred")
    return f"""
INSERT INTO {database}.{table}
    (event_id, event_version, team_id, occurred_at, message_id, ip, user_agent{click_cols},
     broadcast_id, contact_id, variant_id, country, city, latitude, longitude, ua_client,
     ua_os, ua_device, is_machine, machine_reason, is_first{ingested_column})
SELECT
    concat('{prefix}', toString(n)),
    1,
    concat('team_', toString(msg % {batch.teams})),
    toDateTime64({start} + intDiv((msg - {first_message}) * {span}, {messages}) + 600
                 + h % 3600, 3, 'UTC') AS occurred,
    concat('m', toString(msg)),
    concat('198.51.100.', toString(h % 250 + 1)),
    'Mozilla/5.0'{click_vals},
    if(msg % 4 = 0, '', concat('b', toString(msg % 40))),
    if(msg % 4 = 0, '', concat('c', toString(msg % 50000))),
    if(msg % 4 = 0, '', if(msg % 2 = 0, 'A', 'B')),
    [{countries}][h % {len(COUNTRIES)} + 1],
    '',
    NULL,
    NULL,
    'Chrome',
    'Windows',
    'desktop',
    h % 5 = 0,
    if(h % 5 = 0, 'apple_mpp', ''),
    h % 3 = 0{ingested_value}
FROM (
    SELECT
        number + {batch.id_offset} AS n,
        {first_message} + cityHash64(n, '{prefix}') % {messages} AS msg,
        cityHash64(n) AS h
    FROM numbers({rows})
)
"""


def load(client: Any, database: str, batch: SyntheticBatch) -> dict[str, int]:
    """Insert one synthetic batch; returns rows inserted per raw table."""
    client.command(message_events_sql(database, batch))
    if batch.opens:
        client.command(engagement_sql(database, "raw_email_opens", batch, batch.opens))
    if batch.clicks:
        client.command(engagement_sql(database, "raw_email_clicks", batch, batch.clicks))
    return {
        "raw_message_events": batch.message_events,
        "raw_email_opens": batch.opens,
        "raw_email_clicks": batch.clicks,
    }


DMARC_SOURCES = (
    # source ip, reverse dns, asn, network, country, sending service
    ("192.0.2.1", "mta1.kibamail.example", 64500, "Kibamail", "US", "kibamail"),
    ("192.0.2.2", "mta2.kibamail.example", 64500, "Kibamail", "US", "kibamail"),
    ("198.51.100.7", "mail.crm.example", 64501, "CRM Cloud", "DE", "crm"),
    ("203.0.113.9", "", 64502, "Bulletproof Hosting", "RU", ""),
    ("203.0.113.77", "host77.isp.example", 64503, "Home ISP", "BR", ""),
)


def _dmarc_source_column(index: int) -> str:
    """One attribute of every DMARC_SOURCES entry as a ClickHouse array literal."""
    return "[" + ", ".join(repr(source[index]) for source in DMARC_SOURCES) + "]"


def dmarc_records_sql(database: str, start: datetime, days: int, rows: int, teams: int = 3) -> str:
    """DMARC aggregate-report records: our IPs pass and align, a CRM passes on DKIM only,
    spoofers fail and get quarantined or rejected."""
    start_day = start.date().isoformat()
    column = _dmarc_source_column
    return f"""
INSERT INTO {database}.raw_dmarc_records
    (report_key, record_index, team_id, domain, org_name, report_id, day, begin_at, end_at,
     source_ip, reverse_dns, asn, as_org, country, sending_service, message_count,
     disposition, dkim_aligned, spf_aligned, dmarc_pass, header_from, policy_p)
SELECT
    concat('synthetic-', toString(intDiv(number, 5))) AS report_key,
    toUInt32(number % 5) AS record_index,
    concat('team_', toString(number % {teams})),
    concat('mail', toString(number % {teams}), '.team', toString(number % {teams}), '.example'),
    ['google.com', 'yahoo.com', 'outlook.com'][intDiv(number, 5) % 3 + 1],
    toString(intDiv(number, 5)),
    toDate('{start_day}') + toIntervalDay(intDiv(number, 5) % {days}) AS report_day,
    toDateTime(report_day),
    toDateTime(report_day) + toIntervalSecond(86399),
    {column(0)}[number % 5 + 1],
    {column(1)}[number % 5 + 1],
    toUInt32({column(2)}[number % 5 + 1]),
    {column(3)}[number % 5 + 1],
    {column(4)}[number % 5 + 1],
    {column(5)}[number % 5 + 1],
    toUInt64(cityHash64(number) % 200 + 1),
    multiIf(number % 5 = 3, 'reject', number % 5 = 4, 'quarantine', 'none'),
    toUInt8(number % 5 < 3),
    toUInt8(number % 5 < 2),
    toUInt8(number % 5 < 3),
    concat('mail', toString(number % {teams}), '.team', toString(number % {teams}), '.example'),
    'quarantine'
FROM numbers({rows})
"""
