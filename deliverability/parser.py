"""One entry point for every report format: bytes (or a file) in, reports and reasons out.

Errors are collected per part, never raised past ``parse_bytes``: one bad
attachment or file must not stop the rest of a mailbox or a batch.
"""

from __future__ import annotations

import email
import email.policy
import re
from pathlib import Path

from deliverability.aggregate import parse_aggregate
from deliverability.extract import Payload, email_attachments, to_utf8, unwrap
from deliverability.forensic import is_failure_report, parse_failure_report, parse_tls_report
from deliverability.models import AggregateReport, ParseOutcome, ReportError

# An element opened (never closed) before <feedback>, e.g. a stray
# `<xs:schema xmlns:xs=...>` some reporters wrap the report in. Only the start tag is
# matched: what follows must be the <feedback> element itself.
_STRAY_ROOT = re.compile(
    rb"\A(?P<head>(?:\xef\xbb\xbf)?\s*(?:<\?xml[^>]*\?>)?\s*)"
    rb"<(?P<name>(?:[A-Za-z_][\w.-]*:)?[A-Za-z_][\w.-]*)(?:\s[^<>]*)?>\s*"
    rb"(?=<(?:[A-Za-z_][\w.-]*:)?feedback[\s>])"
)


def _without_stray_root(data: bytes) -> tuple[bytes, str]:
    """The report without an unclosed wrapper element before <feedback> (and which
    one it was), or the data unchanged and ""."""
    match = _STRAY_ROOT.match(data[:4096])
    if match is None:
        return data, ""
    name = match.group("name")
    local = name.rpartition(b":")[2].lower()
    if local == b"feedback" or re.search(rb"</\s*" + re.escape(name) + rb"\s*>", data):
        return data, ""
    return match.group("head") + data[match.end() :], name.decode("ascii")


def _aggregate(data: bytes, name: str) -> AggregateReport:
    """parse_aggregate, recovering a report wrapped in a stray unclosed root element."""
    stripped, wrapper = _without_stray_root(to_utf8(data))
    report = parse_aggregate(stripped, name)
    if wrapper:
        report.warnings.insert(
            0, f"stray unclosed root element <{wrapper}> before <feedback> removed"
        )
    return report


def _parse_payload(payload: Payload, outcome: ParseOutcome) -> None:
    try:
        if payload.kind == "xml":
            outcome.reports.append(_aggregate(payload.data, payload.name))
        elif payload.kind == "json":
            outcome.reports.append(parse_tls_report(payload.data, payload.name))
        elif payload.kind == "email":
            _parse_email(payload.data, payload.name, outcome)
    except ReportError as exc:
        reason = str(exc)
        outcome.errors.append(
            reason if reason.startswith(payload.name) else f"{payload.name}: {reason}"
        )


def _parse_email(data: bytes, name: str, outcome: ParseOutcome) -> None:
    message = email.message_from_bytes(data, policy=email.policy.compat32)
    if is_failure_report(message):
        outcome.reports.append(parse_failure_report(message, name))
        return
    before = len(outcome.reports) + len(outcome.errors)
    payloads, errors = email_attachments(data, name)
    outcome.errors.extend(errors)
    for payload in payloads:
        _parse_payload(payload, outcome)
    if len(outcome.reports) + len(outcome.errors) == before:
        raise ReportError("email carries no DMARC or SMTP TLS report")


def parse_bytes(data: bytes, name: str = "<bytes>") -> ParseOutcome:
    """Parse any supported input; the outcome lists reports found and parts rejected."""
    outcome = ParseOutcome(source=name)
    try:
        payloads = unwrap(data, name)
    except ReportError as exc:
        reason = str(exc)
        outcome.errors.append(reason if reason.startswith(name) else f"{name}: {reason}")
        return outcome
    for payload in payloads:
        _parse_payload(payload, outcome)
    return outcome


def parse_file(path: str | Path) -> ParseOutcome:
    """Parse one file; unreadable files become an error in the outcome, not an exception."""
    name = str(path)
    try:
        data = Path(path).read_bytes()
    except OSError as exc:
        return ParseOutcome(source=name, errors=[f"{name}: cannot read ({exc.strerror or exc})"])
    return parse_bytes(data, name)
