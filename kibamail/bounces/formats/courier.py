"""The Courier mail server's delivery status notifications.

"This is a delivery status notification from <host>, running the Courier mail server"
then "UNDELIVERABLE MAIL" or "DELAYS IN DELIVERING YOUR MESSAGE"; each ``<a@b>:``
is followed by the remote host line and the ``>>>``/``<<<`` exchange that failed.
"""

from __future__ import annotations

import re

from ..mail import Mail
from ..model import Reason
from .base import Failure
from .text_helpers import body_lines, failure, hint, merge_status, unique

_OPENING = re.compile(
    r"This is a delivery status notification from .+running the Courier", re.I | re.S
)
_MESSAGE_ID = re.compile(r"<courier\.[0-9A-F]+\.[0-9A-F]+@", re.I)
_ENTRY = re.compile(r"^<([^\s<>]+@[^\s<>]+)>:\s*(.*)$")
_REMOTE = re.compile(r"^\s+([-\w.]+)\s*\[[0-9a-fA-F.:]+\]:?\s*$")
_HINTS = (
    (re.compile(r"No such domain\.", re.I), Reason.HOST_UNKNOWN),
    (re.compile(r"This domain's DNS violates RFC 1035", re.I), Reason.SYSTEM_ERROR),
    (re.compile(r"DNS lookup failed", re.I), Reason.NETWORK_ERROR),
)


class _Courier:
    name = "courier"

    def __call__(self, mail: Mail) -> list[Failure] | None:
        lines = body_lines(mail)
        head = "\n".join(lines[:12])
        marked = (
            _OPENING.search(head)
            or "courier mail server at" in mail.sender.lower()
            or _MESSAGE_ID.search(mail.header("Message-ID"))
        )
        if not marked:
            return None
        text_all = "\n".join(lines)
        action = "delayed" if "DELAYS IN DELIVERING YOUR MESSAGE" in text_all else "failed"
        entries: list[tuple[str, str, list[str]]] = []
        for line in lines:
            match = _ENTRY.match(line)
            if match:
                entries.append((match.group(1), "", [match.group(2)] if match.group(2) else []))
                continue
            if not entries:
                continue
            if line.startswith("-----"):
                entries.append(("", "", []))
                continue
            remote = _REMOTE.match(line)
            address, host, texts = entries[-1]
            if remote and not host:
                entries[-1] = (address, remote.group(1), texts)
            elif line.startswith("<<<") or (texts and line.strip() and not line.startswith(">>>")):
                texts.append(line.lstrip("< ").strip())
            elif line.strip() and not line.startswith(">>>"):
                texts.append(line.strip())
        found = [
            failure(
                address,
                " ".join(texts),
                action=action,
                remote=host,
                reason_hint=hint(" ".join(texts), _HINTS),
            )
            for address, host, texts in entries
            if address
        ]
        return unique(merge_status(found, mail))


COURIER = _Courier()
