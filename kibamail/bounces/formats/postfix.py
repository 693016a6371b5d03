"""Postfix's bounce, delay and success notices (the text, with or without a DSN part).

After "This is the mail system at host ..." (or "This is the Postfix program", or a
site's renamed "The <name> program" signature) each recipient starts a line with
``<a@b>:`` (``<a@b> (expanded from <c@d>):`` for an alias) and its reason wraps onto
lines indented four spaces: ``host mx[ip] said: 550 5.1.1 ... (in reply to RCPT TO
command)``, "Host or domain name not found", "mail for ... loops back to myself",
"delivery temporarily suspended: ...". The DSN part, when present, adds the status.
"""

from __future__ import annotations

import re

from ..mail import Mail
from ..model import Reason
from .base import Failure
from .text_helpers import body_lines, failure, hint, merge_status, original_to, unique

_OPENING = re.compile(
    r"^\s*This is the (?:Postfix program|\w+ Postfix program|\w+ program|mail system) at host\b"
    r"|^\s*This is the (?:Postfix program|\w+ Postfix program)\b"
    r"|^\s+The (?:Postfix program|Postfix on .+ program|\w+ Postfix program|mail system)\s*$",
    re.IGNORECASE,
)
_ENTRY = re.compile(
    r"^<(?P<addr>[^\s<>]+@[^\s<>]+)>(?:\s*\(expanded from <(?P<alias>[^<>]+)>\))?:\s*(?P<rest>.*)$"
)
_WARNING = re.compile(r"THIS IS A WARNING ONLY|could not be delivered for more than", re.I)
_DELIVERED = re.compile(r"was successfully delivered to the destination", re.I)
_RELAYED = re.compile(r"delivered to a non-DSN|relayed to|forwarded to", re.I)
_COMMAND = re.compile(r"\(in reply to (?:end of )?([A-Z]{4})", re.I)

_HINTS = (
    (
        re.compile(r"Host not found, try again|Name service error .* try again", re.I),
        Reason.NETWORK_ERROR,
    ),
    (
        re.compile(
            r"Host or domain name not found|Name service error for name=.+Host not found", re.I
        ),
        Reason.HOST_UNKNOWN,
    ),
    (re.compile(r"\bnull MX\b|does not accept mail \(nullMX\)", re.I), Reason.NULL_MX),
    (
        re.compile(
            r"User unknown in (?:virtual|local) (?:mailbox|alias|recipient) table|unknown user:",
            re.I,
        ),
        Reason.USER_UNKNOWN,
    ),
    (re.compile(r"loops back to myself|mail forwarding loop for", re.I), Reason.NETWORK_ERROR),
    (re.compile(r"Message size exceeds fixed limit", re.I), Reason.MESSAGE_TOO_BIG),
    (re.compile(r"Disk quota exceeded|mailbox (?:is )?full|over quota", re.I), Reason.MAILBOX_FULL),
    # A banner refusal says when, not why ("poor reputation", a blocklist, "go away"): weak.
    (re.compile(r"refused to talk to me", re.I), Reason.ON_HOLD),
    # pipe(8)/local(8) running a program at the recipient: its words ("Invalid user
    # settings") are the program's, not a verdict on the address.
    (
        re.compile(r"Command died with (?:status|signal)|Command time limit exceeded", re.I),
        Reason.MAILER_ERROR,
    ),
)
_EXPIRY = re.compile(
    r"delivery temporarily suspended|Connection timed out|Connection refused"
    r"|conversation with .+ timed out",
    re.I,
)


_SENDER_WORDS = re.compile(r"sender|address rejected|envelope", re.I)


def _command_hint(text: str) -> Reason | None:
    match = _COMMAND.search(text)
    if match is None:
        return None
    command = match.group(1).upper()
    if command == "MAIL":
        # When, not why: a blocklisted IP, a rate limit or STARTTLS-required are refused at
        # MAIL FROM too. A weak hint (the reference reads it as "onhold"): the text decides,
        # except that an address refused at MAIL FROM can only be ours.
        return Reason.SENDER_REJECTED if _SENDER_WORDS.search(text) else Reason.ON_HOLD
    if command in ("HELO", "EHLO"):
        return Reason.BLOCKED
    return None


class _Postfix:
    name = "postfix"

    def __call__(self, mail: Mail) -> list[Failure] | None:
        lines = body_lines(mail)
        start = next((i for i, line in enumerate(lines[:80]) if _OPENING.search(line)), None)
        if start is None:
            return None
        head = "\n".join(lines[start : start + 25])
        if _DELIVERED.search(head):
            action = "relayed" if _RELAYED.search(head) else "delivered"
        elif _WARNING.search(head) or mail.subject.lower().startswith("delayed mail"):
            action = "delayed"
        else:
            action = "failed"
        entries: list[tuple[str, list[str]]] = []
        for line in lines[start + 1 :]:
            match = _ENTRY.match(line)
            if match:
                entries.append((match.group("addr"), [match.group("rest")]))
            elif entries and line.startswith((" ", "\t")) and line.strip():
                entries[-1][1].append(line.strip())
            elif entries and line.strip():
                entries.append(("", []))  # prose after the list ends the current entry
            if line.startswith("--- Delivery report unavailable ---"):
                break
        found: list[Failure] = []
        for address, texts in entries:
            if not address:
                continue
            text = " ".join(texts)
            reason = hint(text, _HINTS) or _command_hint(text)
            if reason is None and action == "failed" and _EXPIRY.search(text):
                reason = Reason.EXPIRED
            found.append(failure(address, text, action=action, reason_hint=reason))
        found = merge_status(found, mail)
        if not found and any("Delivery report unavailable" in line for line in lines):
            # Postfix lost its log: the returned original's To is the only recipient left.
            address = original_to(mail)
            if address:
                found.append(failure(address, "delivery report unavailable", action=action))
        return unique(found)


POSTFIX = _Postfix()
