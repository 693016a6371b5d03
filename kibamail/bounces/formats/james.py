"""Apache James: "[BOUNCE]" notices and the mailet's "Error message below:" reports.

James 3 writes "Failed recipient(s):" then the addresses, "Error message:" then the
remote reply; James 2's notifier writes the error first and the envelope after
"Message details:" (``RCPT TO: a@b``).
"""

from __future__ import annotations

import re

from ..mail import Mail
from .base import Failure
from .text_helpers import ADDRESS, body_lines, failure, received, unique

_STOP = re.compile(r"^(?:Message details:|Original message|-{3,})", re.I)


def _is_james(mail: Mail, lines: list[str]) -> bool:
    if mail.subject.strip().upper().startswith("[BOUNCE]"):
        return True
    if ".JavaMail." in mail.header("Message-ID") and any("Error message" in line for line in lines):
        return True
    if any("JAMES SMTP Server" in r for r in received(mail)):
        return True
    return any(line.startswith("Hi. This is the James mail server") for line in lines[:5])


class _James:
    name = "james"

    def __call__(self, mail: Mail) -> list[Failure] | None:
        lines = body_lines(mail)
        if not _is_james(mail, lines):
            return None
        addresses: list[str] = []
        errors: list[str] = []
        state = ""
        for line in lines:
            stripped = line.strip()
            if re.match(r"^Failed recipient\(?s?\)?:", stripped, re.I):
                state = "rcpt"
                continue
            if re.match(r"^Error message(?: below)?:", stripped, re.I):
                state = "error"
                continue
            rcpt_to = re.match(r"^RCPT TO:\s*<?([^\s<>]+@[^\s<>]+)>?", stripped, re.I)
            if rcpt_to:
                addresses.append(rcpt_to.group(1))
                continue
            if _STOP.match(stripped):
                state = "details" if stripped.lower().startswith("message details") else ""
                continue
            if not stripped:
                if state == "rcpt" and addresses:
                    state = ""
                continue
            if state == "rcpt":
                addresses += ADDRESS.findall(stripped)
            elif state == "error":
                errors.append(stripped)
        text = " ".join(errors)
        return unique([failure(a, text) for a in addresses])


JAMES = _James()
