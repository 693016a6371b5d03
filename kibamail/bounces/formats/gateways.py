"""Mail gateways in front of the recipient: Mimecast, MessageLabs (Symantec.cloud), Barracuda.

Each names its own product in the headers or subject and words the failure its own way:
Mimecast lists "-- addr" then "-- reason" lines, MessageLabs sends a DSN from
MAILER-DAEMON@messagelabs.com, Barracuda's spam firewall says "blocked by our bulk email
filter". (Trend Micro InterScan is read by ``appliances``.)
"""

from __future__ import annotations

import re

from ..mail import Mail
from ..model import Reason
from .base import Failure
from .provider_common import ADDRESS, dsn_records, failure, has_header, lines, record_failure

_EDGE_BLOCK = re.compile(r"recipient address rejected: access denied\.?\s*AS\(2018\d+\)", re.I)


class _Mimecast:
    name = "mimecast"

    def __call__(self, mail: Mail) -> list[Failure] | None:
        marked = "email delivery failure" in mail.subject.lower()
        marked = marked or ".mimecast.lan>" in mail.header("Message-ID").lower()
        if not marked:
            return None
        # "-- addr" lines, then "-- problem" and "-- additional information" for all of them.
        recipients: list[str] = []
        problem: list[str] = []
        details: list[str] = []
        section = problem
        for line in lines(mail):
            if line.lower().startswith("additional information"):
                section = details
            if not line.startswith("-- "):
                continue
            value = line[3:].strip()
            if ADDRESS.fullmatch(value.strip("<>")):
                recipients.append(value.strip("<>"))
            elif recipients:
                section.append(value)
        if not recipients:
            return [record_failure(r) for r in dsn_records(mail)]
        records = {r.recipient.lower(): r for r in dsn_records(mail)}
        failures = []
        for recipient in recipients:
            # The remote reply first: it is what the classifier should read.
            diagnostic = " ".join(details + problem)
            record = records.get(recipient.lower())
            hint = Reason.USER_UNKNOWN if _EDGE_BLOCK.search(diagnostic) else None
            item = failure(recipient, diagnostic, reason_hint=hint)
            if record is not None:
                item.action = record.action
                item.status = item.status or record.status
                item.remote_mta = record.remote_mta
            failures.append(item)
        return failures


_MESSAGELABS_HINTS: tuple[tuple[re.Pattern[str], Reason], ...] = (
    (re.compile(r"542 .+ Rejected|No such user", re.I), Reason.USER_UNKNOWN),
    (
        re.compile(r"Please turn on SMTP Authentication in your mail client", re.I),
        Reason.SECURITY_ERROR,
    ),
)


class _MessageLabs:
    """Symantec.cloud (formerly MessageLabs)."""

    name = "messagelabs"

    def __call__(self, mail: Mail) -> list[Failure] | None:
        if not has_header(mail, "X-Msg-Ref") or "messagelabs.com" not in mail.sender.lower():
            return None
        if not mail.subject.startswith("Mail Delivery Failure"):
            return None
        failures = []
        for record in dsn_records(mail):
            hint = next((r for p, r in _MESSAGELABS_HINTS if p.search(record.diagnostic)), None)
            failures.append(record_failure(record, hint))
        return failures


_BARRACUDA_TO = re.compile(r"^\s*Your message to:\s*(.+)$", re.I)


class _Barracuda:
    name = "barracuda"

    def __call__(self, mail: Mail) -> list[Failure] | None:
        if not mail.subject.rstrip().endswith("our bulk email filter**"):
            return None
        records = dsn_records(mail)
        sentence = " ".join(
            line.strip()
            for line in lines(mail)
            if "spam firewall" in line.lower() or "bulk email filter" in line.lower()
        )
        if records:
            failures = []
            for record in records:
                record.diagnostic = record.diagnostic or sentence
                failures.append(record_failure(record, Reason.SPAM_DETECTED))
            return failures
        found = []
        for line in lines(mail):
            match = _BARRACUDA_TO.match(line)
            if match:
                found += ADDRESS.findall(match.group(1))
        return [
            failure(a, sentence or mail.subject, reason_hint=Reason.SPAM_DETECTED) for a in found
        ]


MIMECAST = _Mimecast()
MESSAGELABS = _MessageLabs()
BARRACUDA = _Barracuda()
