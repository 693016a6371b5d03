"""OpenSMTPD's MAILER-DAEMON notices (bounce, delay, success and relay).

"This is the MAILER-DAEMON, please DO NOT REPLY to this email." then one line per
recipient, ``a@b: reason``, under a sentence that says which notice it is; the original
follows "Below is a copy of the original message:".
"""

from __future__ import annotations

import re

from ..mail import Mail
from ..model import Reason
from .base import Failure
from .text_helpers import body_lines, cut, failure, hint, unique

_OPENING = re.compile(r"This is the MAILER-DAEMON, please DO NOT REPLY to this e-?mail", re.I)
_BOUNDARY = re.compile(r"^\s*Below is a copy of the original message", re.I)
_ENTRY = re.compile(r"^\s*<?([^\s<>@]+@[^\s<>:]+?)>?:?\s+(.+)$")
_ACTIONS = (
    (re.compile(r"An error has occurred while attempting to deliver", re.I), "failed"),
    (re.compile(r"A message is delayed for more than", re.I), "delayed"),
    (re.compile(r"was successfully delivered to these recipients", re.I), "delivered"),
    (re.compile(r"was relayed to these recipients", re.I), "relayed"),
)
_HINTS = (
    (re.compile(r"Envelope expired", re.I), Reason.EXPIRED),
    (re.compile(r"Invalid domain name|Domain does not exist", re.I), Reason.HOST_UNKNOWN),
    (re.compile(r"Destination seem to reject all mails", re.I), Reason.NULL_MX),
    (
        re.compile(
            r"Address family mismatch|All routes to destination blocked|bad DNS lookup error"
            r"|Could not retrieve source address|Loop detected|Network error on destination MXs"
            r"|No MX found for (?:domain|destination)|No valid route to (?:remote MX|destination)"
            r"|Temporary failure in MX lookup",
            re.I,
        ),
        Reason.NETWORK_ERROR,
    ),
    (re.compile(r"Could not retrieve credentials", re.I), Reason.SECURITY_ERROR),
)


class _OpenSmtpd:
    name = "opensmtpd"

    def __call__(self, mail: Mail) -> list[Failure] | None:
        lines = body_lines(mail)
        start = next((i for i, line in enumerate(lines[:40]) if _OPENING.search(line)), None)
        if start is None:
            return None
        found: list[Failure] = []
        action = "failed"
        for line in cut(lines[start + 1 :], _BOUNDARY):
            for pattern, named in _ACTIONS:
                if pattern.search(line):
                    action = named
                    break
            else:
                match = _ENTRY.match(line)
                if match and not line.lstrip().lower().startswith(("the ", "please ", "you ")):
                    text = match.group(2)
                    found.append(
                        failure(match.group(1), text, action=action, reason_hint=hint(text, _HINTS))
                    )
        return unique(found)


OPENSMTPD = _OpenSmtpd()
