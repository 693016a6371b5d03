"""Gmail, Google Workspace and Google Groups bounces.

Old Gmail: "Delivery to the following recipient failed permanently:" (or "has been
delayed:"), the address indented, then "Technical details of permanent failure:" with
the remote reply and Google's "(state N)". Current Gmail and Workspace: a headline
"** Address not found **" / "** Message blocked **" / "** Message not delivered **",
"Your message wasn't delivered to ..." and "The response was:" / "The response from the
remote server was:", with or without a DSN part. Google Groups: "We're writing to let
you know that the group you tried to contact (...) may not exist, or you may not have
permission to post messages to the group", the group in X-Failed-Recipients.
"""

from __future__ import annotations

import re

from ..mail import Mail
from ..model import Reason
from .base import Failure
from .provider_common import (
    ADDRESS,
    dsn_records,
    enhanced_status,
    failure,
    lines,
    original_to,
    sweep,
)

_SENDERS = ("mailer-daemon@googlemail.com", "mailer-daemon@google.com")


def _from_google(mail: Mail) -> bool:
    sender = mail.sender.lower()
    return any(s in sender for s in _SENDERS)


# --- Old Gmail -------------------------------------------------------------------------

_OLD_START = re.compile(
    r"^\s*Delivery to the following recipients? (failed permanently|has been delayed)"
)
_OLD_RECIPIENT = re.compile(r"^\s+(" + ADDRESS.pattern + r")\s*$")
_STATE = re.compile(r"\(state (\d+)\)")
_BY_HOST = re.compile(r"\bby\s+([A-Za-z0-9.-]+)\.\s+\[(\d+\.\d+\.\d+\.\d+)\]")
_STATE_HINTS: dict[str, Reason] = {
    "6": Reason.SYSTEM_ERROR,
    "8": Reason.SYSTEM_ERROR,
    "9": Reason.SYSTEM_ERROR,
    "12": Reason.NO_RELAYING,
    "13": Reason.BLOCKED,
    "14": Reason.USER_UNKNOWN,
    "15": Reason.FILTERED,
    "17": Reason.FILTERED,
    "18": Reason.FILTERED,
}
_OLD_MESSAGES: tuple[tuple[str, Reason], ...] = (
    ("DNS Error: Domain name not found", Reason.HOST_UNKNOWN),
    ("DNS Error: DNS server returned answer with no data", Reason.HOST_UNKNOWN),
    ("DNS Error: Could not contact DNS servers", Reason.EXPIRED),
    ("The recipient server did not accept our requests to connect", Reason.EXPIRED),
)
_OLD_END = ("----- Original message -----", "----- Message header follows -----")


def _old_hint(diagnostic: str, delayed: bool) -> Reason | None:
    status = enhanced_status(diagnostic)
    if status and not status.endswith(".0") and status.split(".")[1] != "0":
        return None  # a specific enhanced code says more than Google's state
    state = _STATE.search(diagnostic)
    if state and state.group(1) in _STATE_HINTS:
        return _STATE_HINTS[state.group(1)]
    for text, reason in _OLD_MESSAGES:
        if text in diagnostic:
            return reason
    return Reason.EXPIRED if delayed and "Message will be retried" not in diagnostic else None


def _old_gmail(text_lines: list[str]) -> list[Failure]:
    found: list[tuple[str, list[str], bool]] = []
    delayed = False
    started = False
    for line in text_lines:
        if line.strip() in _OLD_END:
            break
        start = _OLD_START.match(line)
        if start:
            started = True
            delayed = start.group(1) == "has been delayed"
            continue
        if not started or not line.strip():
            continue
        recipient = _OLD_RECIPIENT.match(line)
        if recipient:
            found.append((recipient.group(1), [], delayed))
        elif found:
            found[-1][1].append(line.strip())
    # "Delivery to the following recipients failed permanently:" lists several addresses
    # above one "Technical details" block: it explains every one of them.
    shared: list[str] = []
    for index in range(len(found) - 1, -1, -1):
        addr, texts, is_delayed = found[index]
        if texts:
            shared = texts
        else:
            found[index] = (addr, shared, is_delayed)
    failures = []
    for addr, texts, is_delayed in found:
        diagnostic = sweep(" ".join(texts))
        host = _BY_HOST.search(diagnostic)
        reply = (
            diagnostic.split("returned was:", 1)[-1].strip()
            if "returned was:" in diagnostic
            else ""
        )
        item = failure(
            addr,
            reply or diagnostic,
            action="delayed" if is_delayed else "failed",
            remote_mta=host.group(1).lower() if host else "",
            reason_hint=_old_hint(diagnostic, is_delayed),
        )
        failures.append(item)
    return failures


# --- Current Gmail / Google Workspace ------------------------------------------------

_HEADLINE = re.compile(r"^\s*\*\*\s*(.+?)\s*\*\*\s*$")
_RESPONSE = re.compile(
    r"^\s*The (?:response|error) (?:from the remote server )?(?:was|is)\s*:\s*(.*)$", re.I
)
_WHO = re.compile(
    r"(?:wasn.t delivered to|message to|delivering your message to"
    r"|couldn.t be delivered to)\s+(.+?)"
    r"(?:\s+because|\s+has been|\.\s|\.$|\s+See\b|$)",
    re.IGNORECASE,
)
_NEW_HINTS: tuple[tuple[str, Reason], ...] = (
    ("because the address couldn't be found", Reason.USER_UNKNOWN),
    ("because the address couldn\u2019t be found", Reason.USER_UNKNOWN),
    ("Null MX", Reason.NULL_MX),
    ("Access denied. AS(201806281)", Reason.USER_UNKNOWN),  # Exchange Online's edge blocking
    ("does not advertise AUTH capability", Reason.SECURITY_ERROR),
    (" had no relevant answers.", Reason.NETWORK_ERROR),
    (" responded with code NXDOMAIN", Reason.NETWORK_ERROR),
)


def _new_gmail(mail: Mail, text_lines: list[str]) -> tuple[list[str], str, str, bool]:
    """(recipients, headline sentence, remote response, delayed) of the current layout."""
    recipients: list[str] = []
    sentence = ""
    response: list[str] = []
    reading = False
    headline = ""
    for line in text_lines:
        head = _HEADLINE.match(line)
        if head and not headline:
            headline = head.group(1)
            continue
        if not headline:
            continue
        if line.startswith(
            ("----- Original message", "Content-Type:", "Reporting-MTA:", "Final-Recipient:")
        ):
            break
        who = _WHO.search(line)
        if who and not sentence:
            sentence = line.strip()
            recipients += [a for a in ADDRESS.findall(who.group(1)) if a not in recipients]
            continue
        response_line = _RESPONSE.match(line)
        if response_line:
            reading = True
            if response_line.group(1).strip():
                response.append(response_line.group(1).strip())
            continue
        if reading:
            if not line.strip() and response:
                reading = False
            elif line.strip():
                response.append(line.strip())
        elif not sentence and line.strip() and not line.lower().startswith("learn more"):
            sentence = line.strip()
    delayed = (
        headline.lower().startswith("delivery incomplete")
        or "gmail will retry" in mail.text.lower()
    )
    return (
        recipients,
        f"{headline}. {sentence}" if sentence else headline,
        sweep(" ".join(response)),
        delayed,
    )


class _Gmail:
    name = "gmail"

    def __call__(self, mail: Mail) -> list[Failure] | None:
        if (
            not _from_google(mail)
            or "we're writing to let you know that the group" in mail.text.lower()
        ):
            return None
        text_lines = lines(mail)
        if any(_OLD_START.match(line) for line in text_lines):
            return _old_gmail(text_lines)
        if not any(_HEADLINE.match(line) for line in text_lines):
            return None
        recipients, sentence, response, delayed = _new_gmail(mail, text_lines)
        records = {r.recipient.lower(): r for r in dsn_records(mail)}
        if not recipients:
            recipients = [r.recipient for r in records.values()] or original_to(mail)
        failures = []
        for recipient in recipients:
            record = records.get(recipient.lower())
            diagnostic = response or (record.diagnostic if record else "") or sentence
            hint = next(
                (reason for text, reason in _NEW_HINTS if text in f"{sentence} {diagnostic}"), None
            )
            item = failure(
                recipient,
                diagnostic,
                action=record.action if record else ("delayed" if delayed else "failed"),
                remote_mta=record.remote_mta if record else "",
                reason_hint=hint,
            )
            if record and record.status and (not item.status or item.status.endswith(".0.0")):
                item.status = record.status
            failures.append(item)
        return failures


# --- Google Groups ---------------------------------------------------------------------

_GROUP_TEXT = "we're writing to let you know that the group you tried to contact"
_BULLET = re.compile(r"^\s?\*\s?\S", re.MULTILINE)


class _GoogleGroups:
    name = "google_groups"

    def __call__(self, mail: Mail) -> list[Failure] | None:
        lowered = mail.text.lower().replace("\u2019", "'")
        if _GROUP_TEXT not in lowered:
            return None
        failed = [a for a in ADDRESS.findall(mail.header("X-Failed-Recipients"))]
        if not failed:
            group = re.search(
                r"the group you tried to contact \(([^)]+)\)", mail.text.replace("\u2019", "'")
            )
            failed = [
                a
                for a in original_to(mail)
                if "googlegroups.com" in a or (group and group.group(1) in a)
            ]
        paragraphs = [p for p in re.split(r"\n\s*\n", mail.text.strip()) if p.strip()]
        diagnostic = sweep(" ".join(paragraphs[:4]))
        hint = Reason.SENDER_REJECTED if len(_BULLET.findall(mail.text)) >= 4 else Reason.ON_HOLD
        return [failure(a, diagnostic, reason_hint=hint) for a in failed]


GMAIL = _Gmail()
GOOGLE_GROUPS = _GoogleGroups()
