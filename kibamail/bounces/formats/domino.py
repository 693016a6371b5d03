"""IBM (Lotus) Domino and the older Lotus Notes server's non-delivery reports.

Domino: "Your message / Subject: ... / was not delivered to: / <addresses> / because: /
<reason>" (its DSN part adds the status). Lotus Notes: "------- Failure Reasons --------"
then the reason, then the address, before "------- Returned Message --------".
"""

from __future__ import annotations

import re

from ..mail import Mail
from ..model import Reason
from .base import Failure
from .text_helpers import (
    ADDRESS,
    body_lines,
    failure,
    find_address,
    hint,
    merge_status,
    original_to,
    unique,
)

_HINTS = (
    (
        re.compile(
            r"not listed in (?:the )?Domino Directory|not listed in public Name & Address Book"
            r"|Domino ディレクトリには見つかりません|ディレクトリのリストにありません",
            re.I,
        ),
        Reason.USER_UNKNOWN,
    ),
    (re.compile(r"Cannot route mail to user", re.I), Reason.FILTERED),
    (re.compile(r"Several matches found in Domino Directory", re.I), Reason.SYSTEM_ERROR),
    (re.compile(r"Message has exceeded maximum hop count", re.I), Reason.NETWORK_ERROR),
    (re.compile(r"mail file is full|exceeded (?:its|their) quota", re.I), Reason.MAILBOX_FULL),
)


class _Domino:
    name = "domino"

    def __call__(self, mail: Mail) -> list[Failure] | None:
        if not mail.subject.upper().startswith(
            "DELIVERY FAILURE:"
        ) and not mail.subject.upper().startswith("DELIVERY REPORT"):
            return None
        lines = body_lines(mail)
        if not any(line.strip().lower().startswith("was not delivered to") for line in lines):
            return None
        addresses: list[str] = []
        reasons: list[str] = []
        state = ""
        for line in lines:
            stripped = line.strip()
            lowered = stripped.lower()
            if lowered.startswith("was not delivered to"):
                state = "rcpt"
            elif lowered.startswith("because:"):
                state = "why"
                rest = stripped[len("because:") :].strip()
                if rest:
                    reasons.append(rest)
            elif lowered.startswith("your message"):
                state = ""
            elif stripped and state == "rcpt" and ADDRESS.search(stripped):
                addresses.append(find_address(stripped))
            elif not stripped and state == "why" and reasons:
                state = ""
            elif stripped and state == "why":
                if lowered.startswith(("content-type:", "reporting-mta:")):
                    state = ""
                else:
                    reasons.append(stripped)
        text = " ".join(reasons)
        found = [
            failure(a, text, reason_hint=hint(text + " " + mail.subject, _HINTS)) for a in addresses
        ]
        if not found:
            found = [
                failure(a, text, reason_hint=hint(text + " " + mail.subject, _HINTS))
                for a in ADDRESS.findall(mail.subject)
            ]
        return unique(merge_status(found, mail))


_FAILURE_REASONS = re.compile(r"^-+\s*Failure Reasons\s*-+", re.I)
_RETURNED = re.compile(r"^-+\s*Returned Message\s*-+", re.I)


class _Notes:
    name = "notes"

    def __call__(self, mail: Mail) -> list[Failure] | None:
        lines = body_lines(mail)
        start = next(
            (i for i, line in enumerate(lines) if _FAILURE_REASONS.match(line.strip())), None
        )
        if start is None or not mail.subject.lower().startswith("undeliverable message"):
            return None
        found: list[Failure] = []
        pending: list[str] = []
        for line in lines[start + 1 :]:
            stripped = line.strip()
            if _RETURNED.match(stripped):
                break
            if not stripped or stripped.startswith("-"):
                continue
            if ADDRESS.fullmatch(stripped.strip("<>")):
                text = " ".join(pending)
                found.append(failure(stripped, text, reason_hint=hint(text, _HINTS)))
                pending = []
            else:
                pending.append(stripped)
        if not found and pending:
            address = original_to(mail)
            if address:
                text = " ".join(pending)
                found.append(failure(address, text, reason_hint=hint(text, _HINTS)))
        return unique(found)


DOMINO = _Domino()
NOTES = _Notes()
