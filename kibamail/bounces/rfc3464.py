"""RFC 3464 delivery status notifications (and RFC 6533 global ones) as MTAs really send them.

Tolerates what the wild adds to the standard: the status part base64 or
quoted-printable encoded or sent as text/plain, recipient blocks without blank lines
between them, folded Diagnostic-Code, ``rfc822;<a@b>`` with odd spacing, a Final-Recipient
that is missing or mangled (Original-Recipient / X-Actual-Recipient then), no Action.
Only the report's own status parts count: a DSN quoted inside the original (a bounce
of a bounce) is never read as ours.
"""

from __future__ import annotations

import re
from email.message import Message
from typing import cast

from .formats.base import Failure
from .mail import QUOTED_TYPES, STATUS_TYPES, Mail, part_text

_FIELD = re.compile(r"^([A-Za-z][A-Za-z0-9-]*)[ \t]*:[ \t]*(.*)$")
ADDRESS = re.compile(r"[^\s<>;:\"'(),\[\]]+@[A-Za-z0-9][A-Za-z0-9.-]*[A-Za-z0-9]")
_STATUS = re.compile(r"\b([245])\.(\d{1,3})\.(\d{1,3})\b")
_SMTP_CODE = re.compile(r"^\s*(?:smtp|x-[a-z-]+|[a-z-]*)?\s*;?\s*\(?([245]\d\d)\b", re.IGNORECASE)
_ANY_CODE = re.compile(r"(?<![\d.])([245]\d\d)(?:[ -]|$)")
_DSN_TEXT = re.compile(r"^(?:final|original)-recipient[ \t]*:", re.IGNORECASE | re.MULTILINE)
_RECIPIENT_FIELDS = ("final-recipient", "original-recipient", "x-actual-recipient")
_ACTIONS = {
    "failed": "failed",
    "failure": "failed",
    "fail": "failed",
    "delayed": "delayed",
    "delay": "delayed",
    "delivered": "delivered",
    "relayed": "relayed",
    "expanded": "expanded",
}


def address_in(value: str) -> str:
    """The first mail address in a DSN field or a line, lower-cased; "" if none."""
    value = value.replace("\\x{40}", "@").replace("\\x40", "@")
    match = ADDRESS.search(value)
    return match.group(0).strip(".").lower() if match else ""


def smtp_code_of(diagnostic: str) -> int:
    match = _SMTP_CODE.match(diagnostic) or _ANY_CODE.search(diagnostic)
    return int(match.group(1)) if match else 0


def status_of(text: str) -> str:
    match = _STATUS.search(text)
    return f"{match.group(1)}.{match.group(2)}.{match.group(3)}" if match else ""


def _status_parts(msg: Message) -> list[Message]:
    """The report's status parts, not descending into quoted originals."""
    found: list[Message] = []
    stack = [msg]
    while stack:
        part = stack.pop(0)
        ctype = part.get_content_type()
        if ctype in STATUS_TYPES:
            found.append(part)
        elif ctype in QUOTED_TYPES:
            continue
        elif part.is_multipart():
            payload = part.get_payload()
            if isinstance(payload, list):
                stack[0:0] = cast("list[Message]", payload)
    return found


def _fields(text: str) -> list[list[tuple[str, str]]]:
    """Blocks of (lower-case name, unfolded value); a new Final-Recipient starts a block."""
    blocks: list[list[tuple[str, str]]] = [[]]
    for line in text.splitlines():
        if not line.strip():
            if blocks[-1]:
                blocks.append([])
            continue
        if line[:1] in (" ", "\t") and blocks[-1]:
            name, value = blocks[-1][-1]
            blocks[-1][-1] = (name, f"{value} {line.strip()}".strip())
            continue
        match = _FIELD.match(line)
        if not match:
            continue
        name = match.group(1).lower()
        current = blocks[-1]
        names = {n for n, _ in current}
        if (name == "final-recipient" and name in names) or (
            name == "original-recipient" and "action" in names
        ):
            blocks.append([])
        blocks[-1].append((name, match.group(2).strip()))
    return [block for block in blocks if block]


def _failure(block: dict[str, str], reporting: dict[str, str]) -> Failure | None:
    recipient = ""
    for name in _RECIPIENT_FIELDS:
        recipient = address_in(block.get(name, ""))
        if recipient:
            break
    if not recipient:
        return None
    status = status_of(block.get("status", ""))
    diagnostic = block.get("diagnostic-code", "")
    diagnostic = re.sub(r"^\s*smtp\s*;\s*", "", diagnostic, flags=re.IGNORECASE)
    if status.endswith(".0.0"):
        # "Status: 5.0.0" says only "failed" (Exim, Courier, Domino write it always); the
        # remote reply's own code in Diagnostic-Code is the specific one.
        quoted = status_of(diagnostic)
        if quoted[:1] == status[:1] and not quoted.endswith(".0.0"):
            status = quoted
    action_text = block.get("action", "").strip().lower().split(" ")[0].rstrip(";.")
    action = _ACTIONS.get(action_text, "")
    if not action:
        action = "failed"
    remote = block.get("remote-mta", "") or reporting.get("reporting-mta", "")
    remote = re.sub(r"^\s*dns\s*;\s*", "", remote, flags=re.IGNORECASE).strip().strip("[]")
    return Failure(
        recipient=recipient,
        diagnostic=diagnostic,
        status=status,
        smtp_code=smtp_code_of(diagnostic),
        action=action,
        remote_mta=remote.split()[0] if remote else "",
    )


def failures_from_text(text: str) -> list[Failure]:
    blocks = _fields(text)
    reporting: dict[str, str] = {}
    found: list[Failure] = []
    seen: set[tuple[str, str]] = set()
    for pairs in blocks:
        block: dict[str, str] = {}
        for name, value in pairs:
            block.setdefault(name, value)
        if not any(name in block for name in _RECIPIENT_FIELDS):
            reporting.update(block)
            continue
        failure = _failure(block, reporting)
        if failure is not None and (failure.recipient, failure.action) not in seen:
            seen.add((failure.recipient, failure.action))
            found.append(failure)
    return found


def _dsn_in_text_part(mail: Mail) -> str:
    """A multipart/report whose status part came as text/plain (some gateways do that)."""
    if "delivery-status" not in str(mail.message.get("Content-Type", "")).lower():
        return ""
    return mail.text if _DSN_TEXT.search(mail.text) else ""


def parse_rfc3464(mail: Mail) -> list[Failure] | None:
    """The recipients of a DSN; None when the message carries no delivery status."""
    parts = _status_parts(mail.message)
    if parts:
        found: list[Failure] = []
        for part in parts:
            found.extend(failures_from_text(part_text(part)))
        return found
    text = _dsn_in_text_part(mail)
    if text:
        return failures_from_text(text)
    return None


def parse_inline_dsn(mail: Mail) -> list[Failure]:
    """DSN fields pasted into a plain-text bounce (no status part); [] when none."""
    if not _DSN_TEXT.search(mail.text):
        return []
    return [f for f in failures_from_text(mail.text) if f.status or f.diagnostic]
