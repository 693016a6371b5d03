"""Mailbox providers whose reports follow their own layout: Zoho, Yandex, iCloud, SendGrid.

Zoho writes "addr Invalid Address, ERROR_CODE :550, ERROR_CODE :5.1.1 ..." or
"[Status: Error, Address: <addr>, ResponseCode 421, , Host not reachable.]"; Yandex and
iCloud run Postfix behind their own sender and header markers; SendGrid's relay writes
DSN fields into its plain text ("This is an automatically generated message from
SendGrid.") with dates and Action values of its own.
"""

from __future__ import annotations

import re

from ..mail import Mail
from ..model import Reason
from .base import Failure
from .provider_common import (
    colon_recipients,
    dsn_records,
    failure,
    has_header,
    lines,
    record_failure,
)
from .text_helpers import received

_ZOHO_LINE = re.compile(r"^([^\s@]+@[^\s@]+)\s+(.+)$")
_ZOHO_STATUS = re.compile(r"^\[Status: .*?<([^<>\s]+@[^<>\s]+)>,\s*(.*)\]?$")


class _Zoho:
    name = "zoho"

    def __call__(self, mail: Mail) -> list[Failure] | None:
        marked = has_header(mail, "X-ZohoMail") or mail.header("X-Mailer") == "Zoho Mail"
        if (
            not marked
            or "this message was created automatically by mail delivery" not in mail.text.lower()
        ):
            return None
        failures = []
        for line in lines(mail):
            status = _ZOHO_STATUS.match(line.strip())
            if status:
                hint = Reason.EXPIRED if "host not reachable" in line.lower() else None
                failures.append(
                    failure(status.group(1), status.group(2).rstrip("]"), reason_hint=hint)
                )
                continue
            match = _ZOHO_LINE.match(line.strip())
            if match and "error_code" in match.group(2).lower():
                diagnostic = re.sub(r"ERROR_CODE\s*:", "", match.group(2)).replace(",", " ")
                failures.append(failure(match.group(1).strip("<>"), diagnostic))
        return failures


def _postfix_like(mail: Mail) -> list[Failure]:
    """DSN records enriched by the Postfix text ("<addr>: host ... said: ...")."""
    text = {f.recipient.lower(): f for f in colon_recipients(lines(mail))}
    records = dsn_records(mail)
    if not records:
        return list(text.values())
    failures = []
    for record in records:
        item = record_failure(record)
        prose = text.get(record.recipient.lower())
        if prose is not None and (not item.diagnostic or not item.smtp_code):
            item.diagnostic, item.smtp_code = prose.diagnostic, prose.smtp_code
            item.status = item.status or prose.status
        failures.append(item)
    return failures


class _Yandex:
    name = "yandex"

    def __call__(self, mail: Mail) -> list[Failure] | None:
        if not has_header(mail, "X-Yandex-Uniq", "X-Yandex-Front"):
            return None
        if "mailer-daemon@yandex." not in mail.sender.lower():
            return None
        return _postfix_like(mail)


_APPLE_HOSTS = ("icloud.com", "me.com", "mac.com")


class _ICloud:
    """Apple iCloud Mail's outbound MTA (Postfix underneath, Apple's sender and hosts)."""

    name = "icloud"

    def __call__(self, mail: Mail) -> list[Failure] | None:
        sender = mail.sender.lower()
        if "mailer-daemon@" not in sender or not any(h in sender for h in _APPLE_HOSTS):
            return None
        if not any(".icloud.com" in r or ".apple.com" in r for r in received(mail)[:3]):
            return None
        return _postfix_like(mail)


_FIELD = re.compile(r"^([A-Za-z-]+):\s*(.*)$")


class _SendGrid:
    name = "sendgrid"

    def __call__(self, mail: Mail) -> list[Failure] | None:
        if "apps@sendgrid.net" not in mail.header("Return-Path").lower():
            return None
        if "this is an automatically generated message from sendgrid." not in mail.text.lower():
            return None
        records = dsn_records(mail)
        if records:
            return [self._expired(record_failure(r)) for r in records]
        failures: list[Failure] = []
        fields: dict[str, str] = {}
        for line in [*lines(mail), ""]:
            match = _FIELD.match(line.strip())
            if match:
                fields[match.group(1).lower()] = match.group(2).strip()
                continue
            if "final-recipient" in fields and not line.strip():
                recipient = fields["final-recipient"].split(";")[-1].strip()
                diagnostic = fields.get("diagnostic-code", "")
                diagnostic = (
                    diagnostic.split(";", 1)[1]
                    if diagnostic.lower().startswith("smtp;")
                    else diagnostic
                )
                item = failure(
                    recipient,
                    diagnostic,
                    status=fields.get("status", ""),
                    action=fields.get("action", "failed").lower(),
                )
                failures.append(self._expired(item))
                fields = {}
        return failures

    @staticmethod
    def _expired(item: Failure) -> Failure:
        found = failure("", item.diagnostic).status
        if found and (not item.status or item.status.endswith(".0.0")):
            item.status = found
        if item.action == "expired":
            item.action, item.reason_hint = "failed", Reason.EXPIRED
        return item


ZOHO = _Zoho()
YANDEX = _Yandex()
ICLOUD = _ICloud()
SENDGRID = _SendGrid()
