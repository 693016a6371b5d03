"""Write parsed reports to the raw ClickHouse tables, idempotently (report key = identity).

A report's key is a hash of (type, reporter, report id, domain, team): the same report
re-sent, re-polled or re-uploaded is skipped here and, should two writers race,
collapsed by ReplacingMergeTree (read with FINAL) since every row carries the key.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import orjson

from deliverability.models import AggregateReport, ForensicReport, Report, TlsReport
from deliverability.sources import OFFLINE, SourceEnricher
from kibamail.contracts import ClickHouseTable

REPORT_COLUMNS = [
    "report_key", "team_id", "org_name", "reporter_email", "report_id", "domain", "begin_at",
    "end_at", "report_schema", "policy_p", "policy_sp", "policy_np", "policy_pct",
    "policy_adkim", "policy_aspf", "record_count", "message_count", "warnings", "source",
    "ingested_via",
]  # fmt: skip
RECORD_COLUMNS = [
    "report_key", "record_index", "team_id", "domain", "org_name", "report_id", "day",
    "begin_at", "end_at", "source_ip", "reverse_dns", "asn", "as_org", "country",
    "sending_service", "message_count", "disposition", "dkim_result", "spf_result",
    "dkim_aligned", "spf_aligned", "dmarc_pass", "header_from", "envelope_from", "envelope_to",
    "dkim_domains", "dkim_selectors", "dkim_results", "spf_domains", "spf_scopes",
    "spf_results", "override_types", "override_comments", "policy_p",
]  # fmt: skip
FAILURE_COLUMNS = [
    "report_key", "team_id", "reported_domain", "arrival_at", "source_ip", "feedback_type",
    "auth_failure", "delivery_result", "dkim_domain", "original_from", "original_subject",
    "original_message_id", "fields_json", "ingested_via",
]  # fmt: skip
TLS_COLUMNS = [
    "report_key", "policy_index", "team_id", "organization_name", "report_id", "begin_at",
    "end_at", "policy_domain", "policy_type", "mx_hosts", "successful_sessions",
    "failed_sessions", "failure_details_json", "ingested_via",
]  # fmt: skip


@dataclass(slots=True)
class StoreResult:
    """Per report: stored (new) or duplicate (already there), keyed by report key."""

    stored: list[str] = field(default_factory=list)
    duplicates: list[str] = field(default_factory=list)


def report_key(report: Report, team_id: str = "") -> str:
    """Identity of a report for one team: the same report mailed to two teams' rua
    addresses is stored for each (and re-sent to one, once)."""
    if isinstance(report, AggregateReport):
        meta = report.report_metadata
        parts = (
            "aggregate",
            meta["org_name"],
            meta["report_id"],
            report.policy_published["domain"],
        )
    elif isinstance(report, TlsReport):
        parts = ("smtp_tls", report.organization_name, report.report_id, "")
    else:
        parts = ("forensic", report.reported_domain or "", report.report_id, "")
    identity: tuple[str, ...] = (*parts, team_id) if team_id else parts
    return hashlib.sha256("\x1f".join(identity).encode()).hexdigest()[:32]


def _ts(seconds: int | None) -> datetime:
    return datetime.fromtimestamp(max(seconds or 0, 0), tz=UTC)


def _aggregate_rows(
    report: AggregateReport, key: str, team_id: str, via: str, enricher: SourceEnricher
) -> tuple[list[Any], list[list[Any]]]:
    meta, policy = report.report_metadata, report.policy_published
    begin, end = _ts(meta["begin"]), _ts(meta["end"])
    pct = policy["pct"]
    head = [
        key, team_id, meta["org_name"], meta["email"] or "", meta["report_id"], policy["domain"],
        begin, end, report.schema, policy["p"] or "", policy["sp"] or "", policy["np"] or "",
        min(max(pct, 0), 100) if pct is not None else None, policy["adkim"] or "",
        policy["aspf"] or "", len(report.records), report.total_messages, report.warnings,
        report.source, via,
    ]  # fmt: skip
    rows = []
    for index, rec in enumerate(report.records):
        source = enricher.lookup(rec.source_ip)
        dkim, spf = rec.auth_results["dkim"], rec.auth_results["spf"]
        rows.append([
            key, index, team_id, policy["domain"], meta["org_name"], meta["report_id"],
            begin.date(), begin, end, rec.source_ip, source.reverse_dns, source.asn,
            source.as_org, source.country, source.sending_service, rec.count, rec.disposition,
            rec.dkim, rec.spf, int(rec.dkim == "pass"), int(rec.spf == "pass"),
            int(rec.dmarc_pass), rec.header_from, rec.envelope_from or "", rec.envelope_to or "",
            [d.domain for d in dkim], [d.selector for d in dkim], [d.result for d in dkim],
            [s.domain for s in spf], [s.scope for s in spf], [s.result for s in spf],
            [o.type for o in rec.policy_override_reasons],
            [o.comment or "" for o in rec.policy_override_reasons], policy["p"] or "",
        ])  # fmt: skip
    return head, rows


def _failure_row(report: ForensicReport, key: str, team_id: str, via: str) -> list[Any]:
    fields = report.fields
    dkim_domain = fields.get("dkim-domain") or [""]
    return [
        key, team_id, report.reported_domain or "", _ts(report.arrival_date),
        report.source_ip or "", report.feedback_type, fields.get("auth-failure", ""),
        fields.get("delivery-result", ""), dkim_domain[0],
        report.original_headers.get("from", ""), report.original_headers.get("subject", ""),
        report.original_headers.get("message-id", ""), orjson.dumps(fields).decode(), via,
    ]  # fmt: skip


def _tls_rows(report: TlsReport, key: str, team_id: str, via: str) -> list[list[Any]]:
    return [
        [
            key,
            index,
            team_id,
            report.organization_name,
            report.report_id,
            _ts(report.begin),
            _ts(report.end),
            policy.policy_domain,
            policy.policy_type,
            policy.mx_hosts,
            policy.successful_sessions,
            policy.failed_sessions,
            orjson.dumps(policy.failure_details).decode(),
            via,
        ]
        for index, policy in enumerate(report.policies)
    ]


def _existing_keys(client: Any, table: str, keys: list[str]) -> set[str]:
    if not keys:
        return set()
    rows = client.query(
        f"SELECT DISTINCT report_key FROM {table} WHERE report_key IN %(keys)s",
        parameters={"keys": keys},
    ).result_rows
    return {row[0] for row in rows}


def store_reports(
    client: Any,
    reports: list[Report],
    *,
    team_id: str = "",
    via: str = "api",
    enricher: SourceEnricher = OFFLINE,
) -> StoreResult:
    """Insert reports not already stored; returns which keys were new and which were not."""
    result = StoreResult()
    by_table: dict[ClickHouseTable, list[tuple[str, Report]]] = {}
    for report in reports:
        table = {
            "aggregate": ClickHouseTable.DMARC_REPORTS,
            "forensic": ClickHouseTable.DMARC_FAILURE_REPORTS,
            "smtp_tls": ClickHouseTable.TLS_REPORTS,
        }[report.report_type]
        by_table.setdefault(table, []).append((report_key(report, team_id), report))
    for table, keyed in by_table.items():
        existing = _existing_keys(client, table.value, [key for key, _ in keyed])
        heads: list[list[Any]] = []
        rows: list[list[Any]] = []
        for key, report in keyed:
            if key in existing:
                result.duplicates.append(key)
                continue
            existing.add(key)
            result.stored.append(key)
            if isinstance(report, AggregateReport):
                head, records = _aggregate_rows(report, key, team_id, via, enricher)
                heads.append(head)
                rows.extend(records)
            elif isinstance(report, ForensicReport):
                heads.append(_failure_row(report, key, team_id, via))
            else:
                heads.extend(_tls_rows(report, key, team_id, via))
        if table is ClickHouseTable.DMARC_REPORTS:
            # Records first: a crash between the inserts leaves no report row, so a retry
            # re-inserts both (record rows collapse on their key under FINAL).
            if rows:
                client.insert(
                    ClickHouseTable.DMARC_RECORDS.value, rows, column_names=RECORD_COLUMNS
                )
            columns = REPORT_COLUMNS
        elif table is ClickHouseTable.DMARC_FAILURE_REPORTS:
            columns = FAILURE_COLUMNS
        else:
            columns = TLS_COLUMNS
        if heads:
            client.insert(table.value, heads, column_names=columns)
    return result
