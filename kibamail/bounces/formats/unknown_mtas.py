"""Reports of MTAs that do not name themselves, common at Japanese ISPs (Sisimai's X1-X6).

Each has a fixed subject and sender and one fixed line shape per recipient:
``a@b [reason]`` (X1), ``  * a@b`` with ``SMTP:RCPT host ...: reply`` (X3),
"SMTP Server <host> rejected recipient <a@b> ... [reply]" (X6).
"""

from __future__ import annotations

import re

from ..mail import Mail
from ..model import Reason
from .base import Failure
from .text_helpers import body_lines, failure, unique


class _X1:
    name = "x1"

    def __call__(self, mail: Mail) -> list[Failure] | None:
        if (
            not mail.subject.startswith("Returned Mail: ")
            or "Mail Deliver System" not in mail.sender
        ):
            return None
        found = []
        for line in body_lines(mail):
            match = re.match(r"^([^\s@]+@[^\s]+?)\s+\[(.+)\]\s*$", line.strip())
            if match:
                found.append(failure(match.group(1), match.group(2)))
        return unique(found)


class _X3:
    name = "x3"

    def __call__(self, mail: Mail) -> list[Failure] | None:
        if not mail.subject.startswith(
            "Delivery status notification"
        ) or not mail.sender.startswith("Mail Delivery System"):
            return None
        lines = body_lines(mail)
        if not any(
            "automatically generated Delivery Status Notification" in line for line in lines[:20]
        ):
            return None
        addresses: list[str] = []
        diagnostic = ""
        for line in lines:
            entry = re.match(r"^\s+\*\s+([^\s@]+@\S+)\s*$", line)
            smtp = re.match(r"^SMTP:([A-Z]+)\s+(.+)$", line.strip())
            routing = re.match(r"^Routing:\s*(.+)$", line.strip())
            if entry:
                addresses.append(entry.group(1))
            elif smtp:
                diagnostic = smtp.group(2)
            elif routing:
                diagnostic = routing.group(1)
        expired = (
            Reason.EXPIRED if re.search(r"could not find a gateway for", diagnostic, re.I) else None
        )
        return unique([failure(a, diagnostic, reason_hint=expired) for a in addresses])


class _X6:
    name = "x6"

    def __call__(self, mail: Mail) -> list[Failure] | None:
        if not mail.subject.startswith("There was an error sending your mail"):
            return None
        found = []
        started = False
        for line in body_lines(mail):
            if re.match(r"^\d+\s*error\(s\):", line.strip()):
                started = True
                continue
            if not started:
                continue
            match = re.search(r"<([^\s<>@]+@[^\s<>@]+)>", line) or re.search(
                r"errors:\s*([^\s]+@[^\s]+?)\.?$", line
            )
            if match:
                found.append(failure(match.group(1), line.strip()))
            elif found and line.startswith((" ", "\t")) and line.strip():
                last = found[-1]
                found[-1] = failure(last.recipient, last.diagnostic + " " + line.strip())
        return unique(found)


X1 = _X1()
X3 = _X3()
X6 = _X6()
