"""Sendmail's bounces and warnings (v8 with or without a DSN part, and Sendmail 5).

Sendmail's text says what its DSN part leaves out: the remote server's own words
(``<<< 550 ...`` after ``>>> RCPT To:<a@b>``), its summary per recipient
(``550 5.1.1 <a@b>... User unknown``, ``<a@b>... Deferred: Connection timed out``) and
whether it gave up ("Cannot send message for 5 days"). The transcript is read for those;
the DSN fields fill in status, action and remote MTA. TransWARE Active!hunter writes the
same sections and is read here too.
"""

from __future__ import annotations

import re

from ..mail import Mail
from ..model import Reason
from .base import Failure
from .text_helpers import (
    ADDRESS,
    body_lines,
    delivery_status,
    failure,
    find_address,
    hint,
    merge_status,
    unique,
)

_SECTION = re.compile(r"^\s*-{3,}\s*(.+?)\s*-{3,}\s*$")
_FATAL = re.compile(r"addresses had (?:permanent fatal|permanent delivery) errors", re.I)
_TRANSIENT = re.compile(r"addresses had transient non-fatal errors", re.I)
_TRANSCRIPT = re.compile(r"Transcript of session (?:follows|is unavailable)", re.I)
_ORIGINAL = re.compile(
    r"(?:Original message|Message header|Unsent message|No message was collected)"
    r"(?: follows)?",
    re.I,
)
_TALKING = re.compile(r"^\.*\s*while talking to ([-\w.]+?)\.?:\s*$", re.I)
_SUMMARY = re.compile(
    r"^(?:(?P<code>[245]\d\d)[ -](?:(?P<status>[245]\.\d{1,3}\.\d{1,3})\s+)?)?"
    r"<?(?P<addr>[^\s<>]+@[^\s<>]+?)>?(?:,|\.\.\.)\s*(?P<text>.+)$"
)
_WARNING = re.compile(
    r"THIS IS A WARNING MESSAGE ONLY|Warning: message still undelivered|Will keep trying", re.I
)
_GAVE_UP = re.compile(
    r"Cannot send message (?:for|within) \d+|could not be delivered for (?:\d+|too long)"
    r"|Message will be deleted from queue|Message timed out",
    re.I,
)

_HINTS = (
    (
        re.compile(r"Host unknown|host not found|Name server: .+: host not found", re.I),
        Reason.HOST_UNKNOWN,
    ),
    (re.compile(r"\.\.\. User unknown|\bUser unknown\b", re.I), Reason.USER_UNKNOWN),
    (
        re.compile(r"Relaying denied|relay(?:ing)? (?:not permitted|prohibited)", re.I),
        Reason.NO_RELAYING,
    ),
    (re.compile(r"Mailbox (?:is )?full|over quota|quota exceeded", re.I), Reason.MAILBOX_FULL),
    (
        re.compile(r"Message is too large|exceeds (?:the )?(?:maximum )?size", re.I),
        Reason.MESSAGE_TOO_BIG,
    ),
    (re.compile(r"Too many hops", re.I), Reason.NETWORK_ERROR),
)
_EXPIRY = (
    (_GAVE_UP, Reason.EXPIRED),
    (re.compile(r"Deferred: |Connection (?:timed out|refused)", re.I), Reason.EXPIRED),
)


def _sections(lines: list[str]) -> dict[str, list[str]]:
    """The text under each "----- Title -----" line, by kind (fatal, transient, transcript)."""
    out: dict[str, list[str]] = {"fatal": [], "transient": [], "transcript": [], "intro": []}
    current = "intro"
    for line in lines:
        if re.match(r"^Content-Type:\s*(?:message/rfc822|text/rfc822-headers)", line, re.I):
            break
        match = _SECTION.match(line)
        if match:
            title = match.group(1)
            if _FATAL.search(title):
                current = "fatal"
            elif _TRANSIENT.search(title):
                current = "transient"
            elif _TRANSCRIPT.search(title):
                current = "transcript"
            elif _ORIGINAL.search(title):
                break
            continue
        out[current].append(line)
    return out


def _is_sendmail(mail: Mail, lines: list[str]) -> bool:
    for line in lines:
        match = _SECTION.match(line)
        if match and (
            _FATAL.search(match.group(1))
            or _TRANSIENT.search(match.group(1))
            or _TRANSCRIPT.search(match.group(1))
        ):
            return True
    return False


class _Transcript:
    """What the session transcript says per recipient."""

    def __init__(self, lines: list[str]) -> None:
        self.replies: dict[str, list[str]] = {}
        self.summaries: dict[str, str] = {}
        self.remotes: dict[str, str] = {}
        self.general: list[str] = []
        self.notes: list[str] = []
        remote = ""
        rcpt = ""
        for raw in lines:
            line = raw.strip()
            if not line:
                continue
            talking = _TALKING.match(line)
            if talking:
                remote, rcpt = talking.group(1), ""
                continue
            if line.startswith(">>>"):
                command = line[3:].strip()
                rcpt = find_address(command) if command.upper().startswith("RCPT") else ""
                if rcpt:
                    self.remotes.setdefault(rcpt.lower(), remote)
                continue
            if line.startswith("<<<"):
                reply = line[3:].strip()
                if rcpt:
                    self.replies.setdefault(rcpt.lower(), []).append(reply)
                elif reply not in self.general:
                    self.general.append(reply)
                continue
            summary = _SUMMARY.match(line)
            if summary:
                address = summary.group("addr").lower()
                self.summaries.setdefault(address, line)
                self.remotes.setdefault(address, remote)
                continue
            self.notes.append(line)


def _fatal_addresses(lines: list[str]) -> dict[str, str]:
    """Addresses of the "had permanent fatal errors" list with their "(reason: ...)" text."""
    found: dict[str, str] = {}
    last = ""
    for raw in lines:
        line = raw.strip()
        if not line:
            continue
        reason = re.match(r"^\(reason:\s*(.+?)\)?$", line, re.I)
        if reason and last:
            found[last] = reason.group(1)
            continue
        if line.startswith("(expanded from"):
            continue
        address = ""
        # The list's own lines open with the address; an address further in is a reply's
        # ("please try <new@...>") or a DSN field's, never a failed recipient.
        # (ActiveHunter writes ">>> addr <addr>".)
        bracketed = re.match(r"(?:>>>\s*\S+\s+)?<([^\s<>]+@[^\s<>]+)>", line)
        if bracketed:
            address = bracketed.group(1)
        elif ADDRESS.fullmatch(line.rstrip(".")):
            address = line.rstrip(".")
        if address:
            last = address
            found.setdefault(address, "")
    return found


class _Sendmail:
    name = "sendmail"

    def __call__(self, mail: Mail) -> list[Failure] | None:
        lines = body_lines(mail)
        if not _is_sendmail(mail, lines):
            return None
        sections = _sections(lines)
        transcript = _Transcript(sections["transcript"])
        warning = bool(
            sections["transient"]
            or mail.subject.lower().startswith("warning:")
            or any(_WARNING.search(line) for line in lines[:40])
        )
        default_action = "delayed" if warning else "failed"
        listed = _fatal_addresses(sections["fatal"] or sections["transient"])
        addresses: list[str] = list(listed)
        addresses += [s.recipient for s in delivery_status(mail)]
        addresses += [
            _SUMMARY.match(line.strip()).group("addr")  # type: ignore[union-attr]
            for line in transcript.summaries.values()
        ]
        addresses += list(transcript.replies)
        context = " ".join([mail.subject, *transcript.notes])
        found: list[Failure] = []
        for address in unique_addresses(addresses):
            key = address.lower()
            replies = transcript.replies.get(key) or transcript.general
            summary = transcript.summaries.get(key, "")
            text = " ".join(replies) or summary or listed.get(address, "")
            text = text or " ".join(transcript.notes)
            if summary and replies and summary not in text:
                text = f"{text} {summary}"
            reason = hint(" ".join([text, summary, listed.get(address, "")]), _HINTS)
            if reason is None and default_action == "failed":
                reason = hint(" ".join([context, summary, text]), _EXPIRY)
            found.append(
                failure(
                    address,
                    text,
                    action=default_action,
                    remote=transcript.remotes.get(key, ""),
                    reason_hint=reason,
                )
            )
        return unique(merge_status(found, mail))


def unique_addresses(addresses: list[str]) -> list[str]:
    seen: set[str] = set()
    out = []
    for address in addresses:
        cleaned = address.strip("<>").rstrip(".,:")
        if "@" in cleaned and cleaned.lower() not in seen:
            seen.add(cleaned.lower())
            out.append(cleaned)
    return out


SENDMAIL = _Sendmail()
