"""Exim's bounces and delay warnings, and the services that run a re-branded Exim.

Exim lists each address indented two spaces under "The following address(es) failed:"
(or "...has not yet been delivered..." in a delay warning) with its error indented
four; older versions put the errors in "------ address ------" sections below. mail.ru
prefixes a Russian preamble, McAfee MXLogic writes ``<address>: reply`` on one line;
both keep Exim's opening sentence, so they share this reader under their own names.
"""

from __future__ import annotations

import re

from ..mail import Mail
from ..model import Reason
from .base import Failure
from .text_helpers import (
    ADDRESS,
    body_lines,
    cut,
    failure,
    hint,
    merge_status,
    unique,
)

_OPENING = re.compile(
    r"This message was created automatically by mail delivery software"
    r"|A message that you sent was rejected by the local scanning code"
    r"|A message that you sent contained one or more recipient addresses"
    r"|^Message \S+ (?:has been frozen|was frozen on arrival)",
    re.IGNORECASE,
)
_SUBJECT = re.compile(
    r"Mail delivery failed|Warning: message .+ delayed|Delivery Status Notification|Mail failure"
    r"|Message frozen|error\(s\) in forwarding or filtering|Undelivered Mail|Mail delivery",
    re.IGNORECASE,
)
_MESSAGE_ID = re.compile(r"<\w{6}-\w{6}-\w{2,4}@")
_BOUNDARY = re.compile(
    r"^-+ ?This is a copy of (?:the|your) message"
    r"|^Included is a copy of the message header"
    r"|^-+ ?The header of the original message is following"
    r"|^-+ ?Original message follows"
    r"|^No action is required on your part"
    r"|^Content-Type:\s*message/rfc822",
    re.IGNORECASE,
)
_DELAYED = re.compile(
    r"has not yet been delivered to one or more of its|^Warning: message .+ delayed", re.IGNORECASE
)
_ENTRY = re.compile(
    r"^ {1,3}(?:\"|<)?(?P<addr>[^\s<>\"]+@[^\s<>\"]+?)(?:\"|>)?"
    r"(?:\s+<(?P<alt>[^\s<>]+@[^\s<>]+)>)?\s*(?::\s*(?P<rest>.*))?$"
)
_LOCAL_ENTRY = re.compile(r"^ {1,3}(an undisclosed address|pipe to \|.+|save to .+|/\S+)$")
_GENERATED = re.compile(r"^\s+\(?(?:ultimately )?generated (?:from|by) ([^\s)]+@[^\s)]+)")
_SECTION = re.compile(r"^-{3,} ?(\S+@\S+?) ?-{3,}$")
_LIST_START = re.compile(
    r"address(?:\(es\)|es)? failed:|following address failed:"
    r"|not yet been delivered (?:is|are):|incorrectly constructed:",
    re.IGNORECASE,
)

_HINTS = (
    (re.compile(r"user not found", re.I), Reason.USER_UNKNOWN),
    (
        re.compile(
            r"Unrouteable address|all relevant MX records point to non-existent hosts"
            r"|all host address lookups failed permanently",
            re.I,
        ),
        Reason.HOST_UNKNOWN,
    ),
    (re.compile(r"mailbox is full|quota exceed", re.I), Reason.MAILBOX_FULL),
    (
        re.compile(
            r"an MX or SRV record indicated no SMTP service|no host found for existing SMTP", re.I
        ),
        Reason.NULL_MX,
    ),
    (
        re.compile(
            r"angle-brackets nested too deep|expected word or \"<\"|domain missing in source-routed"
            r"|malformed address:|incorrectly constructed",
            re.I,
        ),
        Reason.SYNTAX_ERROR,
    ),
    (
        re.compile(
            r"delivery to (?:file|pipe) forbidden|local delivery failed|LMTP error after", re.I
        ),
        Reason.SYSTEM_ERROR,
    ),
    (re.compile(r"Too many \"Received\" headers", re.I), Reason.CONTENT_ERROR),
    (re.compile(r"remote (?:mail server|mailer) after (?:HELO|EHLO)", re.I), Reason.BLOCKED),
    # A refusal of MAIL FROM says when, not why (a blocklisted IP is refused there too):
    # a weak hint, the reply text decides (the reference reads it as "onhold" the same way).
    # ... except that an address refused at MAIL FROM can only be ours.
    (
        re.compile(
            r"remote (?:mail server|mailer) after (?:pipelined )?MAIL FROM:\S*(?: SIZE=\d+)?:"
            r".*(?:sender|address rejected|envelope)",
            re.I,
        ),
        Reason.SENDER_REJECTED,
    ),
    (re.compile(r"remote (?:mail server|mailer) after (?:pipelined )?MAIL", re.I), Reason.ON_HOLD),
    (
        re.compile(
            r"retry timeout exceeded|retry time not reached for any host after a long failure"
            r"|all hosts have been failing for a long time",
            re.I,
        ),
        Reason.EXPIRED,
    ),
    (re.compile(r"has been frozen|was frozen on arrival", re.I), Reason.ON_HOLD),
)


def read_exim_body(mail: Mail, lines: list[str]) -> list[Failure]:
    """The recipients of an Exim-style report (also used by Exim's re-branded clones)."""
    section = cut(lines, _BOUNDARY)
    action = "delayed" if (_DELAYED.search(mail.subject) or _delayed_text(section)) else "failed"
    entries: list[tuple[str, list[str]]] = []
    sections: dict[str, list[str]] = {}
    in_list = False
    current_section: str | None = None
    for line in section:
        match = _SECTION.match(line.strip())
        if match:
            current_section = match.group(1).strip("<>").lower()
            sections.setdefault(current_section, [])
            in_list = False
            continue
        if current_section is not None:
            if line.strip():
                sections[current_section].append(line.strip())
            continue
        if _LIST_START.search(line):
            in_list = True
            continue
        if not in_list and not entries:
            continue
        entry = _ENTRY.match(line)
        if entry and not line.startswith("    "):
            address = entry.group("alt") or entry.group("addr")
            entries.append((address, [entry.group("rest")] if entry.group("rest") else []))
            continue
        local = _LOCAL_ENTRY.match(line)
        if local and not line.startswith("    "):
            entries.append(("", [local.group(1)]))
            continue
        generated = _GENERATED.match(line)
        if generated and entries:
            address, texts = entries[-1]
            if "@" not in address:
                entries[-1] = (generated.group(1), texts)
            continue
        if entries and line.startswith((" ", "\t")) and line.strip():
            entries[-1][1].append(line.strip())
        elif entries and line.strip() and not line.startswith((" ", "\t")):
            in_list = False
    found: list[Failure] = []
    for address, texts in entries:
        if "@" not in address:
            continue
        text = " ".join(t for t in texts if t)
        text = re.sub(r"^Delay reason:\s*", "", text)
        extra = sections.get(address.lower())
        if extra:
            text = (text + " " + " ".join(extra)).strip()
        found.append(failure(address, text, action=action, reason_hint=hint(text, _HINTS)))
    if not found:
        for address in ADDRESS.findall(mail.header("X-Failed-Recipients")):
            text = _indented_after(section, address)
            found.append(failure(address, text, action=action, reason_hint=hint(text, _HINTS)))
    return unique(merge_status(found, mail))


def _indented_after(section: list[str], address: str) -> str:
    """The more-indented lines under ``address`` in a report whose wording we do not know."""
    for index, line in enumerate(section):
        if line.strip().strip("<>").lower() == address.lower():
            depth = len(line) - len(line.lstrip())
            texts = []
            for following in section[index + 1 :]:
                if not following.strip() or len(following) - len(following.lstrip()) <= depth:
                    break
                texts.append(following.strip())
            return " ".join(texts)
    return ""


def _delayed_text(section: list[str]) -> bool:
    return any(_DELAYED.search(line) for line in section[:12])


def _opening(lines: list[str]) -> int | None:
    for index, line in enumerate(lines[:80]):
        if _OPENING.search(line):
            return index
    return None


def _corroborated(mail: Mail, lines: list[str]) -> bool:
    sender = mail.sender.lower()
    return bool(
        mail.header("X-Failed-Recipients")
        or "mail delivery system" in sender
        or "mailer-daemon" in sender
        or _MESSAGE_ID.search(mail.header("Message-ID"))
        or _SUBJECT.search(mail.subject)
        or any(_LIST_START.search(line) for line in lines[:80])
    )


class _Exim:
    name = "exim"

    def __call__(self, mail: Mail) -> list[Failure] | None:
        lines = body_lines(mail)
        start = _opening(lines)
        if start is None and not mail.header("X-Failed-Recipients"):
            return None
        if not _corroborated(mail, lines):
            return None
        return read_exim_body(mail, lines[start or 0 :])


class _MailRu:
    """mail.ru: a Russian preamble, then Exim's report."""

    name = "mailru"

    def __call__(self, mail: Mail) -> list[Failure] | None:
        sender = mail.sender.lower()
        if not re.search(r"mailer-daemon@(?:[\w-]+\.)*mail\.ru|@(?:[\w-]+\.)*mail\.ru>?$", sender):
            return None
        lines = body_lines(mail)
        start = _opening(lines)
        if start is None:
            return None
        return read_exim_body(mail, lines[start:])


_MXL_ENTRY = re.compile(r"^\s*<([^\s<>]+@[^\s<>]+)>:\s*(.+)$")


class _MxLogic:
    """McAfee SaaS (MX Logic): Exim's opening, one ``<address>: reply`` line each."""

    name = "mxlogic"

    def __call__(self, mail: Mail) -> list[Failure] | None:
        marked = any(mail.header(h) for h in ("X-MX-Bounce", "X-MXL-Hash", "X-MXL-NoteHash"))
        if not marked:
            return None
        lines = cut(body_lines(mail), _BOUNDARY)
        found: list[Failure] = []
        texts: list[list[str]] = []
        addresses: list[str] = []
        for line in lines:
            match = _MXL_ENTRY.match(line)
            if match:
                addresses.append(match.group(1))
                texts.append([match.group(2)])
            elif addresses and line.strip():
                texts[-1].append(line.strip())
            elif addresses and not line.strip():
                addresses.append("")
                texts.append([])
        for address, text_lines in zip(addresses, texts, strict=True):
            if address:
                text = " ".join(text_lines)
                found.append(failure(address, text, reason_hint=hint(text, _HINTS)))
        if not found:
            return read_exim_body(mail, body_lines(mail))
        return unique(found)


EXIM = _Exim()
MAILRU = _MailRu()
MXLOGIC = _MxLogic()
