"""One entry point from a received message's bytes to findings: ``parse_message``.

Order matters: complaints first (an ARF report is also a multipart/report), then
auto-replies (which must never reach a bounce reader), then the non-standard formats
(their markers are specific), then RFC 3464, then the generic plain-text reader. A
person's forward of a bounce is unwrapped once; a bounce of a bounce reports only the
outer recipients (the quoted original is never read as a report). Every failure goes
through the one classifier.
"""

from __future__ import annotations

import logging
from dataclasses import replace

from .arf import Complaint, parse_arf
from .attribution import Attribution, attribute
from .autoreply import auto_reply_rule, retired_mailbox
from .classifier import classify
from .formats import FORMATS
from .formats.base import Failure
from .mail import Mail, read_mail
from .model import Action, Finding, Kind, Reason, Report
from .plaintext import forwarded_message, generic_failures
from .rfc3464 import address_in, parse_rfc3464

log = logging.getLogger(__name__)

_KIND_OF_ACTION = {
    "failed": Kind.BOUNCE,
    "delayed": Kind.DELAYED,
    "delivered": Kind.DELIVERED,
    "relayed": Kind.DELIVERED,
    "expanded": Kind.DELIVERED,
}
# Report kind when findings differ: a bounce outranks a delay outranks a notice.
_RANK = (Kind.COMPLAINT, Kind.BOUNCE, Kind.DELAYED, Kind.DELIVERED, Kind.AUTO_REPLY)


def _complaint_findings(complaint: Complaint, who: Attribution) -> list[Finding]:
    if complaint.feedback_type == "not-spam":
        reason, action = Reason.NOT_SPAM, Action.RETRY
    elif complaint.feedback_type == "auth-failure":
        # A DMARC/SPF failure report, not a person's complaint: about us, never suppress.
        reason, action = Reason.AUTH_FAILURE, Action.FIX_OUR_SIDE
    else:
        reason, action = Reason.COMPLAINT, Action.SUPPRESS
    return [
        Finding(
            recipient=recipient,
            kind=Kind.COMPLAINT,
            reason=reason,
            action=action,
            diagnostic=complaint.diagnostic,
            return_path=who.return_path,
            platform_message_id=who.platform_message_id,
            message_id=who.message_id,
            feedback_type=complaint.feedback_type,
            source_format=complaint.source,
            rule=f"arf:{complaint.feedback_type}",
        )
        for recipient in complaint.recipients or [""]
    ]


def _auto_reply_finding(mail: Mail, rule: str, who: Attribution) -> Finding:
    sender = address_in(mail.sender) or address_in(str(mail.message.get("Return-Path", "")))
    return Finding(
        recipient=sender,
        kind=Kind.AUTO_REPLY,
        reason=Reason.SUSPENDED if retired_mailbox(mail) else Reason.AUTO_REPLY,
        action=Action.RETRY,
        diagnostic=mail.subject[:300],
        return_path=who.return_path,
        platform_message_id=who.platform_message_id,
        message_id=who.message_id,
        source_format="autoreply",
        rule=f"autoreply:{rule}",
    )


def _classified(failure: Failure, source: str, who: Attribution) -> Finding:
    kind = _KIND_OF_ACTION.get(failure.action, Kind.BOUNCE)
    if kind is Kind.DELAYED:
        reason, action, status, rule = Reason.DELAYED, Action.RETRY, failure.status, "dsn:delayed"
    elif kind is Kind.DELIVERED:
        reason, action, status, rule = (
            Reason.DELIVERED,
            Action.RETRY,
            failure.status,
            "dsn:delivered",
        )
    else:
        try:
            verdict = classify(
                smtp_code=failure.smtp_code,
                status=failure.status,
                diagnostic=failure.diagnostic,
                dsn_action=failure.action,
                remote_host=failure.remote_mta,
                reason_hint=failure.reason_hint,
            )
            reason, action = verdict.reason, verdict.action
            status, rule = verdict.status or failure.status, verdict.rule
        except Exception:  # the classifier must not turn a report into a crash
            log.exception("classifier failed on %r", failure.diagnostic[:200])
            reason, action, status, rule = (
                Reason.UNDETERMINED,
                Action.RETRY,
                failure.status,
                "error",
            )
    return Finding(
        recipient=failure.recipient,
        kind=kind,
        reason=reason,
        action=action,
        status=status,
        diagnostic=failure.diagnostic,
        smtp_code=failure.smtp_code,
        return_path=who.return_path,
        platform_message_id=who.platform_message_id,
        message_id=who.message_id,
        remote_mta=failure.remote_mta,
        source_format=source,
        rule=rule,
    )


def _report(findings: list[Finding], source: str) -> Report:
    kinds = {f.kind for f in findings}
    kind = next((k for k in _RANK if k in kinds), Kind.BOUNCE)
    return Report(kind=kind, findings=findings, source_format=source)


def _with_status_recipients(found: list[Failure], mail: Mail) -> list[Failure]:
    """A format reads the human text; recipients only the report's status part names
    (a long list, a second status part) are added from RFC 3464."""
    extra = parse_rfc3464(mail) or []
    named = {f.recipient.lower() for f in found}
    return found + [f for f in extra if f.recipient.lower() not in named]


def _failures(mail: Mail) -> tuple[str, list[Failure] | None]:
    """The first reader that recognises the message, and what it found."""
    recognised = ""
    for parser in FORMATS:
        try:
            found = parser(mail)
        except Exception:  # one broken format reader must not hide the others
            log.exception("format %s failed", getattr(parser, "name", parser))
            continue
        if found:
            return parser.name, _with_status_recipients(found, mail)
        if found is not None and not recognised:
            recognised = parser.name
    found = parse_rfc3464(mail)
    if found:
        return "rfc3464", found
    if found is not None and not recognised:
        recognised = "rfc3464"
    generic = generic_failures(mail)
    if generic:
        return "generic", generic
    return recognised, ([] if recognised or generic is not None else None)


def _merge(inner: Report, outer: Attribution) -> Report:
    """An unwrapped forward keeps the outer message's attribution where the inner has none."""
    findings = [
        replace(
            f,
            return_path=f.return_path or outer.return_path,
            platform_message_id=f.platform_message_id or outer.platform_message_id,
            message_id=f.message_id or outer.message_id,
        )
        for f in inner.findings
    ]
    return Report(
        kind=inner.kind,
        findings=findings,
        source_format=f"forwarded:{inner.source_format}",
        warnings=inner.warnings,
    )


def _parse(data: bytes, depth: int) -> Report:
    mail = read_mail(data)
    who = attribute(mail)
    complaint = parse_arf(mail)
    if complaint is not None:
        return Report(
            kind=Kind.COMPLAINT,
            findings=_complaint_findings(complaint, who),
            source_format=complaint.source,
        )
    if depth == 0:
        inner_bytes = forwarded_message(mail)
        if inner_bytes is not None:
            inner = _parse(inner_bytes, depth + 1)
            if inner.kind not in (Kind.NONE, Kind.AUTO_REPLY):
                return _merge(inner, who)
    rule = auto_reply_rule(mail)
    if rule:
        finding = _auto_reply_finding(mail, rule, who)
        return Report(kind=Kind.AUTO_REPLY, findings=[finding], source_format="autoreply")
    source, failures = _failures(mail)
    if failures is None:
        return Report(kind=Kind.NONE)
    if not failures:
        return Report(kind=Kind.BOUNCE, source_format=source, warnings=["no recipient found"])
    return _report([_classified(f, source, who) for f in failures], source)


def parse_message(data: bytes) -> Report:
    """Everything ``data`` reports; never raises (a broken message is kind ``none``)."""
    try:
        return _parse(data, 0)
    except Exception as exc:  # malformed input of every kind ends here, not in the caller
        log.warning("unparseable message: %s", exc)
        return Report(kind=Kind.NONE, warnings=[f"unparseable: {type(exc).__name__}: {exc}"])
