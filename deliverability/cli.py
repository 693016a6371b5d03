"""`kibamail dmarc ...` command bodies (console/cli.py only declares the click group)."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

import orjson

from deliverability.models import AggregateReport, Report, TlsReport
from deliverability.parser import parse_file


def report_json(report: Report) -> bytes:
    """The one-line JSON the CLI prints for a report."""
    return orjson.dumps(report.to_dict())


def report_text(report: Report) -> str:
    """A one-line human summary (``--text``)."""
    if isinstance(report, AggregateReport):
        meta, policy = report.report_metadata, report.policy_published
        passed = sum(r.count for r in report.records if r.dmarc_pass)
        line = (
            f"{report.source}: aggregate {meta['org_name']} id={meta['report_id']} "
            f"domain={policy['domain']} p={policy['p']} records={len(report.records)} "
            f"messages={report.total_messages} dmarc_pass={passed}"
        )
    elif isinstance(report, TlsReport):
        line = f"{report.source}: smtp_tls {report.organization_name} id={report.report_id}"
    else:
        line = f"{report.source}: forensic {report.feedback_type} domain={report.reported_domain}"
    if report.warnings:
        line += f" warnings={len(report.warnings)}"
    return line


def parse_command(
    paths: Iterable[str],
    as_json: bool,
    out: Callable[[str], None],
    err: Callable[[str], None],
) -> int:
    """Parse every file (a bad one never stops the batch); exit status 1 if any failed.

    Each failing file gets exactly one stderr line naming it, with every reason (an
    email may carry several bad attachments) joined on that line."""
    status = 0
    for path in paths:
        outcome = parse_file(path)
        for report in outcome.reports:
            out(report_json(report).decode() if as_json else report_text(report))
        if outcome.errors or not outcome.reports:
            status = 1
            err(error_line(path, outcome.errors or [f"{path}: no report found"]))
    return status


def error_line(path: str, reasons: list[str]) -> str:
    """``error: PATH: reason[; reason...]`` on one line, whatever the reasons contain."""
    joined = "; ".join(" ".join(reason.split()) for reason in reasons)
    return f"error: {joined}" if joined.startswith(path) else f"error: {path}: {joined}"


def ingest_command(paths: Iterable[str], team_id: str, out: Callable[[str], None]) -> int:
    """Store each file's reports in the configured warehouse; exit 1 if any file failed."""
    from pathlib import Path

    from deliverability.ingest import ingest_bytes
    from kibamail.clients import clickhouse_client

    client = clickhouse_client()
    status = 0
    for path in paths:
        try:
            data = Path(path).read_bytes()
        except OSError as exc:
            out(orjson.dumps({"source": path, "errors": [f"cannot read ({exc})"]}).decode())
            status = 1
            continue
        result = ingest_bytes(data, client, name=path, team_id=team_id, via="cli")
        out(orjson.dumps(result.as_dict()).decode())
        if result.errors or not result.accepted:
            status = 1
    return status


def check_domain_command(
    domain: str,
    expected: dict[str, Any],
    nameservers: list[str],
    port: int,
    out: Callable[[str], None],
) -> int:
    """Print the per-record report as JSON; exit 0 only when the domain is ready."""
    from deliverability.domain_checks import ExpectedRecords, check_domain, make_resolver

    report = check_domain(domain, ExpectedRecords(**expected), make_resolver(nameservers, port))
    out(orjson.dumps(report.as_dict()).decode())
    return 0 if report.ready else 1
