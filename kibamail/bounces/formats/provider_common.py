"""Small readers the provider formats share: DSN fields, SMTP codes, addresses, headers.

Many providers send a ``multipart/report`` whose human part carries what the
``message/delivery-status`` part leaves out (a bare ``Status: 5.0.0``, no
Diagnostic-Code). A provider parser that claims such a report starts from these
DSN records and adds its own text, so claiming never loses what the generic reader
would have found.
"""

from __future__ import annotations

import email
import re
from dataclasses import dataclass, field
from email.message import Message
from typing import cast

from ..mail import Mail, header_text
from ..model import Reason
from .base import Failure

ADDRESS = re.compile(r"[A-Za-z0-9.!#$%&'*+/=?^_`{|}~-]+@[A-Za-z0-9](?:[A-Za-z0-9.-]*[A-Za-z0-9])?")
_ENHANCED = re.compile(r"(?<![\d.])([245])\.(\d{1,3})\.(\d{1,3})(?![\d])")
_REPLY = re.compile(r"(?<![\d.#])([245]\d\d)(?:[ -]|$)")
_BLANK = re.compile(r"\n[ \t]*\n")


def enhanced_status(text: str) -> str:
    """The first enhanced status code in ``text`` ("5.1.1"), "" when none."""
    match = _ENHANCED.search(text)
    return ".".join(match.groups()) if match else ""


def reply_code(text: str) -> int:
    """The first three-digit SMTP reply code in ``text`` (not part of a dotted code)."""
    match = _REPLY.search(text)
    return int(match.group(1)) if match else 0


def address(text: str) -> str:
    """The first e-mail address in ``text``, lower-cased domain kept as written."""
    text = text.replace("mailto:", " ")
    match = ADDRESS.search(text)
    return match.group(0).strip(".") if match else ""


def sweep(text: str) -> str:
    """Whitespace collapsed, a folded diagnostic read as one line."""
    return " ".join(text.split())


def has_header(mail: Mail, *names: str) -> bool:
    return any(mail.message.get(name) is not None for name in names)


def lines(mail: Mail) -> list[str]:
    return [line.rstrip() for line in mail.text.splitlines()]


def failure(
    recipient: str,
    diagnostic: str,
    *,
    status: str = "",
    action: str = "failed",
    remote_mta: str = "",
    reason_hint: Reason | None = None,
) -> Failure:
    """A Failure with the SMTP code and enhanced status taken from the diagnostic."""
    diagnostic = sweep(diagnostic)
    return Failure(
        recipient=recipient,
        diagnostic=diagnostic,
        status=status or enhanced_status(diagnostic),
        smtp_code=reply_code(diagnostic),
        action=action,
        remote_mta=remote_mta,
        reason_hint=reason_hint,
    )


@dataclass
class DsnRecord:
    """One per-recipient block of a ``message/delivery-status`` part."""

    recipient: str
    action: str = "failed"
    status: str = ""
    diagnostic: str = ""
    remote_mta: str = ""
    fields: dict[str, str] = field(default_factory=dict)


def _blocks(part: Message) -> list[Message]:
    payload = part.get_payload()
    if isinstance(payload, list):
        return cast("list[Message]", payload)
    raw = part.get_payload(decode=True)
    text = raw.decode("utf-8", "replace") if isinstance(raw, bytes) else str(payload)
    text = text.replace("\r\n", "\n").strip("\n")
    return [email.message_from_string(block.strip("\n") + "\n\n") for block in _BLANK.split(text)]


def _value(block: Message, name: str) -> str:
    value = header_text(block.get(name))
    return value.split(";", 1)[1].strip() if ";" in value else value.strip()


def _host(value: str) -> str:
    """``dns; mx.example.org. (192.0.2.1, ...)`` -> ``mx.example.org``."""
    value = value.split(";", 1)[-1].strip()
    return value.split()[0].strip(".[]").lower() if value else ""


def dsn_records(mail: Mail) -> list[DsnRecord]:
    """Per-recipient DSN blocks of the report's own delivery-status parts."""
    records: list[DsnRecord] = []
    for part in mail.parts:
        if part.get_content_type() not in (
            "message/delivery-status",
            "message/global-delivery-status",
        ):
            continue
        per_message: dict[str, str] = {}
        for block in _blocks(part):
            names = {key.lower() for key in block}
            if not names & {"final-recipient", "original-recipient"}:
                per_message.update({k.lower(): header_text(v) for k, v in block.items()})
                continue
            recipient = address(_value(block, "Final-Recipient")) or address(
                _value(block, "Original-Recipient")
            )
            if not recipient:
                continue
            remote = _value(block, "Remote-MTA") or per_message.get("reporting-mta", "")
            records.append(
                DsnRecord(
                    recipient=recipient,
                    action=(_value(block, "Action") or "failed").lower().split()[0],
                    status=enhanced_status(_value(block, "Status")),
                    diagnostic=sweep(_value(block, "Diagnostic-Code")),
                    remote_mta=_host(remote),
                    fields={k.lower(): header_text(v) for k, v in block.items()},
                )
            )
    return records


def record_failure(record: DsnRecord, reason_hint: Reason | None = None) -> Failure:
    """A DSN record as a Failure; a bare x.0.0 Status yields to the diagnostic's code."""
    status = record.status
    found = enhanced_status(record.diagnostic)
    if found and (not status or status.endswith(".0.0")):
        status = found
    return failure(
        record.recipient,
        record.diagnostic,
        status=status,
        action=record.action,
        remote_mta=record.remote_mta,
        reason_hint=reason_hint,
    )


def original_to(mail: Mail) -> list[str]:
    """Recipients named in the quoted original's To/Cc, when the report names none."""
    if mail.original is None:
        return []
    found: list[str] = []
    for name in ("To", "Cc"):
        for match in ADDRESS.finditer(header_text(mail.original.get(name))):
            if match.group(0) not in found:
                found.append(match.group(0))
    return found


_PF_RECIPIENT = re.compile(r"^<?(" + ADDRESS.pattern + r")>?:\s*(.*)$")


def colon_recipients(text_lines: list[str]) -> list[Failure]:
    """Postfix-like paragraphs: "<addr>: reply" at the margin, continued until a blank line."""
    found: list[tuple[str, list[str]]] = []
    open_paragraph = False
    for line in text_lines:
        match = _PF_RECIPIENT.match(line)
        if match:
            found.append((match.group(1), [match.group(2)]))
            open_paragraph = True
        elif not line.strip():
            open_paragraph = False
        elif open_paragraph:
            found[-1][1].append(line.strip())
    return [failure(recipient, " ".join(texts)) for recipient, texts in found]
