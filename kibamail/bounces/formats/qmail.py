"""qmail-send's bounce and its descendants (netqmail, vpopmail, qmail-ldap, clones).

qmail writes one block per recipient: ``<address>:`` on its own line, then what
qmail-remote or qmail-local said, until a blank line; the original follows
"--- Below this line is a copy of the message.". Clones keep that layout behind other
greetings (and other languages), so the greeting is matched loosely but only trusted
together with qmail's ``Received: (qmail NNN invoked for bounce)`` or "failure notice".
"""

from __future__ import annotations

import re

from ..mail import Mail
from ..model import Reason
from .base import Failure
from .text_helpers import body_lines, compile_all, cut, failure, hint, received

_GREETING = re.compile(r"^\s*Hi\. This is the qmail(?:-send)? program at", re.IGNORECASE)
_CLONE_GREETINGS = compile_all(
    r"^\s*Hi\. .+ unable to deliver your message to the following addresses",
    r"I'm afraid I wasn't able to deliver your message to the following addresses",
    r"^\s*Su mensaje no pudo ser entregado",
    r"^\s*This is the machine generated message from mail service",
    r"^\s*This is the mail delivery agent at",
    r"^\s*Unable to deliver message to the following address",
    r"^\s*Unfortunately, your mail was not delivered to the following address",
    r"^\s*Your (?:mail message|message) to the following address",
    r"^\s*He/Her is not .+ user",
    r"^\s*We're sorry\.",
)
_BOUNDARY = re.compile(
    r"^\s*---\s*(?:Below this line is a copy of the message|Original message follows"
    r"|Below the next line is a copy of the message|Enclosed are the original headers)",
    re.IGNORECASE,
)
_RECIPIENT = re.compile(r"^\s*(?:To\s*:\s*)?<([^<>\s]+@[^<>\s]+)>\s*:\s*(.*)$")
_INVOKED = re.compile(r"\(qmail \d+ invoked (?:for bounce|from network)\)")
_SUBJECTS = re.compile(
    r"^(?:failure notice|Permanent Delivery Failure|Delivery failure|fail(?:ure|ed) delivery)",
    re.IGNORECASE,
)
_TEMPORARY = re.compile(
    r"This is a temporary error|I'll keep trying|will keep trying|not yet given up", re.IGNORECASE
)

_HINTS = (
    (re.compile(r"couldn't find any host (?:named|by that name)", re.I), Reason.HOST_UNKNOWN),
    (re.compile(r"no mailbox here by that name", re.I), Reason.USER_UNKNOWN),
    (re.compile(r"Connected to .+ but sender was rejected", re.I), Reason.SENDER_REJECTED),
    (re.compile(r"Connected to .+ but my name was rejected", re.I), Reason.BLOCKED),
    (re.compile(r"disk quota exceeded|over quota|mailbox is full", re.I), Reason.MAILBOX_FULL),
    (
        re.compile(r"exceeds my databytes limit|exceeds fixed maximum message size", re.I),
        Reason.MESSAGE_TOO_BIG,
    ),
    (re.compile(r"Mailaddress is administrative?le?y disabled", re.I), Reason.SUSPENDED),
    (re.compile(r"exeeded the maximum size the user accepts", re.I), Reason.EXCEED_LIMIT),
    (re.compile(r"this message has been in the queue too long", re.I), Reason.EXPIRED),
    (
        re.compile(
            r"wasn't able to establish an SMTP connection|couldn't find a mail exchanger"
            r"|Although I'm listed as a best-preference MX",
            re.I,
        ),
        Reason.NETWORK_ERROR,
    ),
    (re.compile(r"not enough free space", re.I), Reason.SYSTEM_FULL),
    (
        re.compile(r"LDAP|qmail-forward|homedir creat|bad interpreter", re.I),
        Reason.SYSTEM_ERROR,
    ),
)


def _is_qmail(mail: Mail, lines: list[str]) -> int | None:
    """Index of the greeting line when this is a qmail (or clone) bounce."""
    for index, line in enumerate(lines[:60]):
        if _GREETING.search(line):
            return index
    corroborated = _SUBJECTS.search(mail.subject) is not None or any(
        _INVOKED.search(r) for r in received(mail)
    )
    if not corroborated:
        return None
    for index, line in enumerate(lines[:60]):
        if any(p.search(line) for p in _CLONE_GREETINGS):
            return index
    return None


class _Qmail:
    name = "qmail"

    def __call__(self, mail: Mail) -> list[Failure] | None:
        lines = body_lines(mail)
        start = _is_qmail(mail, lines)
        if start is None:
            return None
        section = cut(lines[start:], _BOUNDARY)
        action = "delayed" if _TEMPORARY.search("\n".join(section[:6])) else "failed"
        blocks: list[tuple[str, list[str]]] = []
        for line in section[1:]:
            match = _RECIPIENT.match(line)
            if match:
                blocks.append((match.group(1), [match.group(2)] if match.group(2) else []))
            elif blocks and line.strip():
                blocks[-1][1].append(line.strip())
        found: list[Failure] = []
        for address, text_lines in blocks:
            text = " ".join(text_lines)
            # "Remote host said:" carries the remote reply; qmail's own words frame it.
            said = re.search(r"Remote host said:\s*(.+?)(?:\s*Giving up on .*)?$", text)
            remote_reply = said.group(1) if said else ""
            host = re.match(
                r"^([-\w.:]+) (?:does not like recipient|failed on DATA|failed after I sent)", text
            )
            # "Giving up on <host>." is qmail-remote's sign-off for every permanent
            # failure, not a queue expiry: keep it out of what the classifier reads.
            text = re.sub(r"\s*Giving up on [^\s]+?\.?$", "", text)
            found.append(
                failure(
                    address,
                    text,
                    code=_code(remote_reply),
                    remote=host.group(1) if host else "",
                    action=action,
                    reason_hint=hint(text, _HINTS),
                )
            )
        return found


def _code(reply: str) -> int:
    match = re.match(r"\s*([245]\d\d)\b", reply)
    return int(match.group(1)) if match else 0


QMAIL = _Qmail()
