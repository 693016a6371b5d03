"""Yahoo Mail and AOL bounces.

Yahoo writes "Sorry, we were unable to deliver your message to the following address."
then, per recipient, "<addr>:" and "Remote host said: 554 delivery error: dd ..." (the
reply may sit on the next line, followed by the SMTP command in brackets). AOL sends a
Postfix-style DSN marked by X-AOL-IP whose diagnostics name DNS failures in its own words.
"""

from __future__ import annotations

import re

from ..mail import Mail
from ..model import Reason
from .base import Failure
from .provider_common import dsn_records, failure, has_header, lines, record_failure

_YAHOO_START = "sorry, we were unable to deliver your message to the following address"
_YAHOO_END = "--- below this line is a copy of the message"
_RECIPIENT = re.compile(r"^\s*<([^<>\s]+@[^<>\s]+)>:\s*$")
_COMMAND = re.compile(r"\[([A-Z_]{4,9})\]\s*$")
_YAHOO_HINTS: tuple[tuple[str, Reason], ...] = (
    ("no mx or a records for", Reason.HOST_UNKNOWN),
    # Yahoo's own replies: "554 delivery error: dd This user doesn't have a ... account".
    ("delivery error: dd this user doesn't have a", Reason.USER_UNKNOWN),
    ("delivery error: dd requested mail box not found", Reason.USER_UNKNOWN),
    ("this mailbox is disabled (554.30)", Reason.SUSPENDED),
)


class _Yahoo:
    name = "yahoo"

    def __call__(self, mail: Mail) -> list[Failure] | None:
        if _YAHOO_START not in mail.text.lower():
            return None
        found: list[tuple[str, list[str]]] = []
        started = False
        for line in lines(mail):
            lowered = line.strip().lower()
            if lowered.startswith(_YAHOO_END):
                break
            if lowered.startswith(_YAHOO_START):
                started = True
                continue
            if not started or not lowered:
                continue
            recipient = _RECIPIENT.match(line)
            if recipient:
                found.append((recipient.group(1), []))
            elif found:
                text = line.strip()
                if text.lower().startswith("remote host said:"):
                    text = text[len("remote host said:") :].strip()
                text = _COMMAND.sub("", text).strip()
                if text:
                    found[-1][1].append(text)
        failures = []
        for addr, texts in found:
            diagnostic = " ".join(texts).replace("\\n", " ")
            lowered = diagnostic.lower()
            hint = next((reason for text, reason in _YAHOO_HINTS if text in lowered), None)
            failures.append(failure(addr, diagnostic, reason_hint=hint))
        return failures


_AOL_HINTS: tuple[tuple[str, Reason], ...] = (
    ("host or domain name not found", Reason.HOST_UNKNOWN),
    ("type=mx: malformed or unexpected name server reply", Reason.NULL_MX),
)


class _Aol:
    name = "aol"

    def __call__(self, mail: Mail) -> list[Failure] | None:
        if not has_header(mail, "X-AOL-IP"):
            return None
        failures = []
        for record in dsn_records(mail):
            lowered = record.diagnostic.lower()
            hint = next((reason for text, reason in _AOL_HINTS if text in lowered), None)
            failures.append(record_failure(record, hint))
        return failures


YAHOO = _Yahoo()
AOL = _Aol()
