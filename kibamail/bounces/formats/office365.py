"""Office 365 / Exchange Online and Outlook.com reports.

Exchange Online writes two NDR layouts: the Exchange 2007 text ("Diagnostic
information for administrators:" ... "Remote Server returned '550 5.1.10
RESOLVER.ADR.RecipientNotFound; ...'") and the newer one ("Your message to ... couldn't
be delivered." ... "Status code: 550 5.1.10" ... "Reported error: ..."), often as HTML
only, in the sender's language. Both usually come with a DSN part whose Status is right
but whose codes (5.1.10, 5.4.1 with "AS(201806281)") the generic reader cannot explain;
the NDR's text and Exchange's tokens can.
"""

from __future__ import annotations

import re

from ..mail import Mail
from ..model import Reason
from .base import Failure
from .exchange import read_ndr_text, token_hint
from .provider_common import ADDRESS, dsn_records, failure, has_header, lines, record_failure, sweep
from .text_helpers import received

_O365_HEADERS = (
    "X-MS-Exchange-Message-Is-Ndr",
    "X-MS-Exchange-CrossTenant-OriginalArrivalTime",
    "X-MS-Exchange-CrossTenant-FromEntityHeader",
    "X-MS-Exchange-Transport-CrossTenantHeadersStamped",
    "X-Microsoft-Antispam-PRVS",
    "X-MS-Exchange-Organization-SCL",
)
_OUTLOOK_HOST = re.compile(
    r"\.(?:outbound\.protection|protection|prod)\.outlook\.com\b|\.outlook\.com\b", re.I
)
_A = r"<?(" + ADDRESS.pattern + r")>?"
_NEW_HEADLINE = re.compile(
    r"(?:your message to|votre message (?:à|a)|ihre nachricht an|su mensaje para"
    r"|il messaggio per)\s+" + _A + r"\s+(?:couldn.t be delivered|n.a pas pu être remis"
    r"|konnte nicht|no se pudo entregar|non è stato)",
    re.IGNORECASE,
)
_LABEL_RECIPIENT = re.compile(
    r"^\s*(?:recipient address|adresse du destinataire|empfängeradresse"
    r"|dirección del destinatario)\s*:\s*" + _A,
    re.IGNORECASE,
)
_LABEL_ERROR = re.compile(
    r"^\s*(?:reported error|erreur signalée|gemeldeter fehler|error notificado)\s*:\s*(.+)$", re.I
)
_LABEL_STATUS = re.compile(
    r"^\s*(?:status code|code d.état|statuscode|código de estado)\s*:\s*"
    r"([45]\d\d[ -][245]\.\d+\.\d+)",
    re.IGNORECASE,
)
_LABEL_REMOTE = re.compile(r"^\s*(?:remote server|serveur distant|remoteserver)\s*:\s*(\S+)", re.I)
# Directory-based edge blocking: the tenant has no such recipient.
_EDGE_BLOCK = re.compile(r"recipient address rejected: access denied\.?\s*AS\(2018\d+\)", re.I)


def _hint(diagnostic: str) -> Reason | None:
    if _EDGE_BLOCK.search(diagnostic):
        return Reason.USER_UNKNOWN
    return token_hint(diagnostic)


def _new_layout(text_lines: list[str]) -> list[Failure]:
    """The 2017+ layout: one headline per recipient, the admin details below."""
    recipients: list[str] = []
    headline = ""
    error = status = remote = ""
    for index, line in enumerate(text_lines):
        head = _NEW_HEADLINE.search(line)
        if head:
            if head.group(1) not in recipients:
                recipients.append(head.group(1))
            following = [t.strip() for t in text_lines[index + 1 : index + 4] if t.strip()]
            headline = headline or (following[0] if following else "")
            continue
        for pattern in (_LABEL_RECIPIENT,):
            match = pattern.match(line)
            if match and match.group(1) not in recipients:
                recipients.append(match.group(1))
        match = _LABEL_ERROR.match(line)
        if match and not error:
            error = match.group(1).strip()
        match = _LABEL_STATUS.match(line)
        if match and not status:
            status = match.group(1)
        match = _LABEL_REMOTE.match(line)
        if match and not remote:
            remote = match.group(1).strip().lower()
    if not recipients:
        return []
    diagnostic = error or sweep(f"{status} {headline}")
    return [
        failure(r, diagnostic, remote_mta=remote, reason_hint=_hint(diagnostic)) for r in recipients
    ]


def _with_admin(new: list[Failure], admin: list[Failure]) -> list[Failure]:
    """The new layout's recipients, each with the SMTP reply of the administrators' section.

    An HTML-only NDR (no DSN part) names only the first recipient in its headline and
    gives the replies ("Remote Server returned '550 5.1.10 ...'") per recipient below.
    """
    by_address = {item.recipient.lower(): item for item in new}
    for found in admin:
        if not found.smtp_code:
            continue
        item = by_address.get(found.recipient.lower())
        if item is None:
            new.append(found)
            by_address[found.recipient.lower()] = found
        elif not item.smtp_code:
            item.diagnostic, item.smtp_code, item.status = (
                found.diagnostic,
                found.smtp_code,
                found.status,
            )
            item.reason_hint = found.reason_hint or item.reason_hint
            item.remote_mta = item.remote_mta or found.remote_mta
    return new


def _merge(text: list[Failure], mail: Mail, generating: str = "") -> list[Failure]:
    """The text's recipients completed from the DSN part; the DSN's alone when the text has none."""
    records = dsn_records(mail)
    if not text:
        merged = []
        for record in records:
            item = record_failure(record, _hint(record.diagnostic))
            item.remote_mta = item.remote_mta or generating
            merged.append(item)
        return merged
    by_address = {r.recipient.lower(): r for r in records}
    for item in text:
        found = by_address.get(item.recipient.lower())
        if found is None:
            continue
        record = found
        item.action = record.action
        if record.status and not record.status.endswith(".0.0"):
            item.status = record.status
        item.remote_mta = item.remote_mta or record.remote_mta
        if not item.smtp_code and record.diagnostic:
            better = record_failure(record, _hint(record.diagnostic))
            item.diagnostic, item.smtp_code = better.diagnostic, better.smtp_code
            item.status = item.status or better.status
            item.reason_hint = item.reason_hint or better.reason_hint
    for item in text:
        item.remote_mta = item.remote_mta or generating
    return text


def _is_office365(mail: Mail) -> bool:
    score = sum(1 for name in _O365_HEADERS if has_header(mail, name))
    if any(_OUTLOOK_HOST.search(value) for value in received(mail)):
        score += 1
    if _OUTLOOK_HOST.search(mail.header("Message-ID")):
        score += 1
    sender = mail.sender.lower()
    if "postmaster@" in sender and ("outlook.com" in sender or ".onmicrosoft.com" in sender):
        score += 1
    if mail.subject.lower().startswith(
        ("undeliverable:", "unzustellbar:", "non remis", "no se puede entregar")
    ):
        score += 1
    return score >= 2


class _Office365:
    name = "office365"

    def __call__(self, mail: Mail) -> list[Failure] | None:
        text_lines = lines(mail)
        new = _new_layout(text_lines)
        if new:
            if not _is_office365(mail) and not any(_LABEL_ERROR.match(t) for t in text_lines):
                return None
            admin, generating = read_ndr_text(text_lines)
            return _merge(_with_admin(new, admin), mail, generating)
        if not _is_office365(mail):
            return None
        failures, generating = read_ndr_text(text_lines)
        worth_claiming = any(
            _EDGE_BLOCK.search(r.diagnostic) or "resolver." in r.diagnostic.lower()
            for r in dsn_records(mail)
        )
        if not failures and not worth_claiming:
            return None  # a plain DSN: nothing for us to add
        return _merge(failures, mail, generating)


_OUTLOOK_START = "this is an automatically generated delivery status notification"
_OUTLOOK_MESSAGES: tuple[tuple[str, Reason], ...] = (
    (
        "the mail could not be delivered to the recipient because the domain is not reachable",
        Reason.HOST_UNKNOWN,
    ),
    ("requested action not taken: mailbox unavailable", Reason.USER_UNKNOWN),
)


class _OutlookCom:
    """Outlook.com / Hotmail DSNs (before Exchange Online): DSN fields, sometimes no diagnostic."""

    name = "outlook_com"

    def __call__(self, mail: Mail) -> list[Failure] | None:
        score = sum(1 for h in ("X-Message-Delivery", "X-Message-Info") if has_header(mail, h))
        score += mail.subject.startswith("Delivery Status Notification")
        score += any(".hotmail.com" in value for value in received(mail))
        if score < 2 or _OUTLOOK_START not in mail.text.lower():
            return None
        failures = []
        for record in dsn_records(mail):
            if not record.diagnostic:
                record.diagnostic = (
                    "Delivery to the following recipients has been delayed."
                    if record.action == "delayed"
                    else "Unable to deliver message to the following recipients, due to being "
                    "unable to connect successfully to the destination mail server."
                )
            lowered = record.diagnostic.lower()
            hint = next((reason for text, reason in _OUTLOOK_MESSAGES if text in lowered), None)
            failures.append(record_failure(record, hint))
        return failures


OFFICE365 = _Office365()
OUTLOOK_COM = _OutlookCom()
