"""Amazon SES: bounces of mail sent through SES, SES receiving's rejections, SNS JSON.

SES (sending) bounces come from MAILER-DAEMON@*amazonses.com with X-SES-Outgoing or
X-AWS-Outgoing: "An error occurred while trying to deliver the mail to the following
recipients:" or "The following message to <...> was undeliverable.", and a DSN whose
Status is often a bare 5.1.0 while the quoted reply ("550-'5.1.1 ...'") says more.
SES receiving rejects with "This message could not be delivered." and the template
text of the rule set. Notifications forwarded by SNS e-mail carry the JSON document.
"""

from __future__ import annotations

import json
import re
from typing import Any

from ..mail import Mail
from ..model import Reason
from .base import Failure
from .provider_common import (
    ADDRESS,
    dsn_records,
    enhanced_status,
    failure,
    has_header,
    lines,
    record_failure,
)

_QUOTED_STATUS = re.compile(r"[\"'](\d\.\d{1,3}\.\d{1,3}[^\"']*)[\"']")
_SENDING_STARTS = (
    "the following message to <",
    "an error occurred while trying to deliver the mail",
)


def _from_ses(mail: Mail) -> bool:
    if has_header(mail, "X-SES-Outgoing", "X-AWS-Outgoing"):
        return True
    return "amazonses.com" in mail.sender.lower()


def _sharpen(item: Failure) -> Failure:
    """A generic 5.1.0/5.0.0 Status yields to the status quoted inside the diagnostic."""
    if item.status[:5] in ("5.0.0", "5.1.0", "4.0.0", "4.1.0") or not item.status:
        quoted = _QUOTED_STATUS.search(item.diagnostic)
        found = enhanced_status(quoted.group(1)) if quoted else ""
        item.status = found or item.status
    if "delivery expired" in item.diagnostic.lower():
        item.reason_hint = Reason.EXPIRED
    return item


def json_notification(mail: Mail) -> dict[str, Any] | None:
    """An SES notification (SNS JSON, possibly wrapped in an SNS envelope) sent as mail."""
    text = mail.text
    if "notificationType" not in text:
        return None
    # Some relays fold long lines with a trailing "!".
    text = re.sub(r"!\n[ \t]*", "", text.replace("\r\n", "\n"))
    start, end = text.find("{"), text.rfind("}")
    if start < 0 or end <= start:
        return None
    try:
        document = json.loads(text[start : end + 1])
    except ValueError:
        return None
    if isinstance(document, dict) and isinstance(document.get("Message"), str):
        try:
            document = json.loads(document["Message"])
        except ValueError:
            return None
    return document if isinstance(document, dict) else None


_SUBTYPE_HINTS: dict[tuple[str, str], Reason] = {
    ("Transient", "MailboxFull"): Reason.MAILBOX_FULL,
    ("Transient", "MessageTooLarge"): Reason.MESSAGE_TOO_BIG,
    ("Permanent", "NoEmail"): Reason.USER_UNKNOWN,
}


def _from_json(document: dict[str, Any]) -> list[Failure] | None:
    kind = document.get("notificationType") or document.get("eventType")
    if kind == "Bounce":
        bounce = document.get("bounce") or {}
        hint = _SUBTYPE_HINTS.get((str(bounce.get("bounceType")), str(bounce.get("bounceSubType"))))
        mta = str(bounce.get("reportingMTA") or "").split(";")[-1].strip()
        failures = []
        for entry in bounce.get("bouncedRecipients") or []:
            recipient = str(entry.get("emailAddress") or "")
            if not ADDRESS.fullmatch(recipient):
                continue
            diagnostic = str(entry.get("diagnosticCode") or "")
            diagnostic = (
                diagnostic.split(";", 1)[1].strip() if ";" in diagnostic[:8] else diagnostic
            )
            item = failure(
                recipient,
                diagnostic,
                status=str(entry.get("status") or ""),
                action=str(entry.get("action") or "failed"),
                remote_mta=mta,
                reason_hint=hint,
            )
            failures.append(_sharpen(item))
        return failures
    if kind == "Delivery":
        delivery = document.get("delivery") or {}
        response = str(delivery.get("smtpResponse") or "")
        mta = str(delivery.get("reportingMTA") or "")
        return [
            failure(str(r), response, action="delivered", remote_mta=mta)
            for r in delivery.get("recipients") or []
            if ADDRESS.fullmatch(str(r))
        ]
    return None  # complaints are feedback reports: kibamail.bounces.arf reads them


class _AmazonSes:
    name = "amazonses"

    def __call__(self, mail: Mail) -> list[Failure] | None:
        if has_header(mail, "X-Amz-Sns-Message-Id") or mail.text.lstrip().startswith("{"):
            document = json_notification(mail)
            if document is not None:
                return _from_json(document)
        if mail.header("X-Mailer").startswith("Amazon WorkMail") or not _from_ses(mail):
            return None
        lowered = mail.text.lower()
        if not any(marker in lowered for marker in _SENDING_STARTS):
            return None
        records = dsn_records(mail)
        if records:
            return [_sharpen(record_failure(record)) for record in records]
        # No DSN part: the recipients listed under the sentence, the reason below them.
        found: list[Failure] = []
        reading = False
        for line in lines(mail):
            if any(line.strip().lower().startswith(m) for m in _SENDING_STARTS):
                reading = True
                inline = ADDRESS.search(line)
                if inline:
                    found.append(failure(inline.group(0), ""))
                continue
            if reading and ADDRESS.fullmatch(line.strip()):
                found.append(failure(line.strip(), ""))
            elif reading and found and line.strip() and not line.lower().startswith("the reason"):
                for item in found:
                    if not item.diagnostic:
                        item.diagnostic = line.strip()
                        sharp = failure(item.recipient, item.diagnostic)
                        item.smtp_code, item.status = sharp.smtp_code, sharp.status
                        _sharpen(item)
        return found


_RECEIVING_START = "this message could not be delivered."
_RECEIVING_HINTS: tuple[tuple[str, Reason], ...] = (
    ("mailbox does not exist", Reason.FILTERED),
    ("message too large", Reason.MESSAGE_TOO_BIG),
    ("mailbox full", Reason.MAILBOX_FULL),
    ("message content rejected", Reason.CONTENT_ERROR),
)


class _SesReceiving:
    """Rejections by an SES receiving rule set's Bounce action."""

    name = "ses_receiving"

    def __call__(self, mail: Mail) -> list[Failure] | None:
        if not has_header(mail, "X-SES-Outgoing"):
            return None
        if not any(line.strip().lower() == _RECEIVING_START for line in lines(mail)):
            return None
        failures = []
        for record in dsn_records(mail):
            lowered = record.diagnostic.lower()
            hint = next((reason for text, reason in _RECEIVING_HINTS if text in lowered), None)
            failures.append(_sharpen(record_failure(record, hint)))
        return failures


AMAZON_SES = _AmazonSes()
SES_RECEIVING = _SesReceiving()
