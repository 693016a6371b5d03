"""fml, the Japanese mailing-list manager: rejections sent back by the list's admin.

They are not delivery failures of a mailbox but the list refusing our post (not a
member, loop, duplicate), so each names the address in ``<...>`` and the cause.
"""

from __future__ import annotations

import re

from ..mail import Mail
from ..model import Reason
from .base import Failure
from .text_helpers import body_lines, cut, failure, hint, unique

_BOUNDARY = re.compile(r"^Original mail as follows:", re.I)
_ENTRY = re.compile(r"<([^\s<>]+@[^\s<>]+)>")
_HINTS = (
    (
        re.compile(
            r"NOT MEMBER article from|reject mail from|reject since .+ header may cause mail loop"
            r"|reject spammers:|You are not a member of this mailing list|are not member",
            re.I,
        ),
        Reason.SENDER_REJECTED,
    ),
    (
        re.compile(
            r"Duplicated Message-ID|has detected a loop condition|Loop Back Warning|Loop Alert",
            re.I,
        ),
        Reason.SYSTEM_ERROR,
    ),
    (re.compile(r"Security alert", re.I), Reason.SECURITY_ERROR),
)


class _Fml:
    name = "fml"

    def __call__(self, mail: Mail) -> list[Failure] | None:
        if not mail.header("X-MLServer") or not re.search(r"-admin@", mail.sender, re.I):
            return None
        if not re.search(r"<\d+\.FML", mail.header("Message-ID"), re.I):
            return None
        lines = cut(body_lines(mail), _BOUNDARY)
        found: list[Failure] = []
        body = " ".join(line.strip() for line in lines if line.strip())
        for line in lines:
            match = _ENTRY.search(line)
            if match:
                text = " ".join([line.strip(), body])
                reason = hint(line, _HINTS) or hint(body + " " + mail.subject, _HINTS)
                found.append(failure(match.group(1), text, code=0, reason_hint=reason))
        return unique(found)


FML = _Fml()
