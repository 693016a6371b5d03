"""`kibamail dmarc ...` command bodies (kibamail/cli.py only declares the click group)."""

from __future__ import annotations

from collections.abc import Callable, Iterable

import orjson

from dmarc.models import AggregateReport, Report
from dmarc.parser import parse_file


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
    elif report.report_type == "smtp_tls":
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
    """Parse every file (a bad one never stops the batch); exit status 1 if any failed."""
    status = 0
    for path in paths:
        outcome = parse_file(path)
        for report in outcome.reports:
            out(report_json(report).decode() if as_json else report_text(report))
        for reason in outcome.errors:
            err(f"error: {reason}")
        if outcome.errors or not outcome.reports:
            status = 1
            if not outcome.errors:
                err(f"error: {path}: no report found")
    return status
