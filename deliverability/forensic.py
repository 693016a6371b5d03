"""RFC 6591 failure (forensic) reports and RFC 8460 SMTP TLS reports."""

from __future__ import annotations

import email
import email.policy
import email.utils
import hashlib
import ipaddress
from email.message import Message
from typing import Any, cast

import orjson

from deliverability.models import ForensicReport, ReportError, TlsPolicyResult, TlsReport

_ORIGINAL_HEADERS = ("from", "to", "subject", "date", "message-id", "reply-to")
_MULTI_VALUED = {"authentication-results", "original-rcpt-to", "reported-uri", "dkim-domain"}


def _feedback_fields(text: str) -> dict[str, Any]:
    """The machine-readable part: RFC 5965 fields, names lower-cased, repeats as lists."""
    fields: dict[str, Any] = {}
    parsed = email.message_from_string(text.strip() + "\n\n", policy=email.policy.compat32)
    for name, value in parsed.items():
        key = name.lower()
        clean = " ".join(str(value).split())
        if key in _MULTI_VALUED:
            fields.setdefault(key, []).append(clean)
        else:
            fields.setdefault(key, clean)
    return fields


def _part_text(part: Any) -> str:
    payload = part.get_payload()
    if isinstance(payload, list):  # message/* parsed as a sub-message by the email package
        return "".join(sub.as_string() for sub in payload)
    decoded = part.get_payload(decode=True)
    if isinstance(decoded, bytes):
        return decoded.decode(part.get_content_charset() or "utf-8", errors="replace")
    return str(payload)


def is_failure_report(message: email.message.Message) -> bool:
    return (
        message.get_content_type() == "multipart/report"
        and str(message.get_param("report-type") or "").lower() == "feedback-report"
    )


def parse_failure_report(message: email.message.Message, source: str = "") -> ForensicReport:
    """Parse a multipart/report; report-type=feedback-report message."""
    fields: dict[str, Any] | None = None
    original: dict[str, str] = {}
    warnings: list[str] = []
    for part in message.walk():
        ctype = part.get_content_type()
        if ctype == "message/feedback-report":
            fields = _feedback_fields(_part_text(part))
        elif ctype in ("message/rfc822", "text/rfc822-headers") and not original:
            inner = part.get_payload()
            headers: Message
            if isinstance(inner, list) and inner:
                headers = cast(Message, inner[0])
            else:
                headers = email.message_from_string(_part_text(part))
            original = {k: str(headers[k]) for k in _ORIGINAL_HEADERS if headers[k] is not None}
    if fields is None:
        raise ReportError("failure report without a message/feedback-report part")
    feedback_type = fields.get("feedback-type")
    if not feedback_type:
        raise ReportError("failure report without Feedback-Type")
    if not original:
        warnings.append("no original message or headers attached")
    arrival = fields.get("arrival-date") or fields.get("received-date")
    arrival_unix: int | None = None
    if arrival:
        try:
            arrival_unix = int(email.utils.parsedate_to_datetime(arrival).timestamp())
        except (TypeError, ValueError):
            warnings.append(f"unparseable Arrival-Date {arrival!r}")
    source_ip = fields.get("source-ip")
    if source_ip:
        try:
            source_ip = str(ipaddress.ip_address(source_ip))
        except ValueError:
            warnings.append(f"Source-IP is not an IP address: {source_ip!r}")
    reported_domain = fields.get("reported-domain")
    report_id = (
        str(message.get("Message-ID") or "").strip("<> ")
        or hashlib.sha256(message.as_bytes()).hexdigest()[:32]
    )
    return ForensicReport(
        report_id=report_id,
        feedback_type=feedback_type.lower(),
        arrival_date=arrival_unix,
        source_ip=source_ip,
        reported_domain=reported_domain.lower() if reported_domain else None,
        fields=fields,
        original_headers=original,
        warnings=warnings,
        source=source,
    )


def _rfc3339_to_unix(value: Any, field: str) -> int:
    from datetime import datetime

    if not isinstance(value, str):
        raise ReportError(f"TLS report date-range/{field} missing")
    try:
        return int(datetime.fromisoformat(value.replace("Z", "+00:00")).timestamp())
    except ValueError as exc:
        raise ReportError(f"TLS report date-range/{field} is not RFC 3339: {value!r}") from exc


def _int(value: Any) -> int:
    return value if isinstance(value, int) and not isinstance(value, bool) else 0


def parse_tls_report(data: bytes, source: str = "") -> TlsReport:
    """Parse an RFC 8460 JSON report; raises ReportError with the missing member."""
    try:
        doc = orjson.loads(data)
    except orjson.JSONDecodeError as exc:
        raise ReportError(f"not valid JSON ({exc})") from exc
    if not isinstance(doc, dict):
        raise ReportError("not an SMTP TLS report (JSON is not an object)")
    missing = [
        k for k in ("organization-name", "date-range", "report-id", "policies") if k not in doc
    ]
    if missing:
        raise ReportError(f"not an SMTP TLS report: missing {', '.join(missing)}")
    date_range = doc["date-range"] if isinstance(doc["date-range"], dict) else {}
    policies: list[TlsPolicyResult] = []
    warnings: list[str] = []
    if not isinstance(doc["policies"], list):
        raise ReportError("SMTP TLS report 'policies' is not a list")
    for index, item in enumerate(doc["policies"]):
        policy = item.get("policy") if isinstance(item, dict) else None
        summary = item.get("summary") if isinstance(item, dict) else None
        if not isinstance(policy, dict) or not isinstance(summary, dict):
            warnings.append(f"policy {index} skipped: missing policy or summary")
            continue
        details = item.get("failure-details") or []
        policies.append(
            TlsPolicyResult(
                policy_type=str(policy.get("policy-type", "")).lower(),
                policy_domain=str(policy.get("policy-domain", "")).lower(),
                policy_strings=[str(s) for s in policy.get("policy-string") or []],
                mx_hosts=[str(s) for s in policy.get("mx-host") or []],
                successful_sessions=_int(summary.get("total-successful-session-count")),
                failed_sessions=_int(summary.get("total-failure-session-count")),
                failure_details=[d for d in details if isinstance(d, dict)],
            )
        )
    contact = doc.get("contact-info")
    return TlsReport(
        report_id=str(doc["report-id"]),
        organization_name=str(doc["organization-name"]),
        contact_info=str(contact) if contact is not None else None,
        begin=_rfc3339_to_unix(date_range.get("start-datetime"), "start-datetime"),
        end=_rfc3339_to_unix(date_range.get("end-datetime"), "end-datetime"),
        policies=policies,
        warnings=warnings,
        source=source,
    )
