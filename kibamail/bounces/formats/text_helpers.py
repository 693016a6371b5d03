"""Line-level tools shared by the plain-text format parsers.

Plain-text bounces differ in their markers but not in their raw material: a recipient
address, a few lines of diagnostic, an SMTP reply code, an enhanced status, the remote
MTA's name. These helpers read those the same way for every format (and for B3b's
provider formats), so each parser only states its own markers.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from email.message import Message
from typing import cast

from ..mail import Mail, header_text, part_text
from ..model import Reason
from .base import Failure

ADDRESS = re.compile(
    r"[\w.!#$%&'*+/=?^`{|}~-]+@[^\W_](?:[\w-]*[^\W_])?(?:\.[\w-]+)*\.[^\W\d_]{2,}|"
    r"[\w.!#$%&'*+/=?^`{|}~-]+@\[[0-9.:a-fA-F]+\]"
)
_ENHANCED = re.compile(r"(?<![\w.#])#?([245])\.(\d{1,3})\.(\d{1,3})(?![\d]|\.\d)")
_QMAIL_STATUS = re.compile(r"\(#([245])\.(\d{1,3})\.(\d{1,3})\)")
_REPLY = re.compile(r"(?:^|(?<=[\s:;\[(<>\"']))([245][0-5][0-9])(?=[ \t-]|$)")
_QUOTE = re.compile(r"^(?:>(?!>>) ?)+")
_SPACES = re.compile(r"\s+")
_REMOTE = (
    re.compile(r"\bhost\s+([A-Za-z0-9][-A-Za-z0-9.]*[A-Za-z0-9])\s*\[[0-9a-fA-F.:]+\]"),
    re.compile(r"\bremote host ([-0-9A-Za-z.]+[0-9A-Za-z]) said:"),
    re.compile(r"\bGiving up on ([-0-9A-Za-z.:]+[0-9A-Za-z])"),
    re.compile(r"\bConnected to ([-0-9A-Za-z.]+[0-9A-Za-z]) but"),
    re.compile(r"\bwhile talking to ([-0-9A-Za-z.]+[0-9A-Za-z])\.?:"),
    re.compile(r"\bhost:\s*([-0-9A-Za-z.]+[0-9A-Za-z])"),
)


def squash(text: str) -> str:
    """Whitespace runs (line breaks of a wrapped diagnostic included) to one space."""
    return _SPACES.sub(" ", text).strip()


def normalize(text: str) -> str:
    """LF line ends; one level of ``> `` quoting removed when the report is quoted.

    A forwarded bounce quotes every line; a Sendmail transcript's ``>>>`` lines are
    never mistaken for quoting.
    """
    text = text.replace("\r\n", "\n").replace("\r", "\n")
    lines = text.split("\n")
    quoted = sum(1 for line in lines if _QUOTE.match(line))
    filled = sum(1 for line in lines if line.strip())
    if filled and quoted * 3 >= filled:
        lines = [_QUOTE.sub("", line) for line in lines]
    return "\n".join(line.rstrip() for line in lines)


def body_lines(mail: Mail) -> list[str]:
    """The report's text as normalized lines; computed once per mail (every format reader
    asks), a fresh list each time so a reader may change its copy."""
    cached = mail.memo.get("lines")
    if cached is None:
        cached = mail.memo["lines"] = tuple(normalize(mail.text).split("\n"))
    return list(cast("tuple[str, ...]", cached))


def cut(lines: Sequence[str], boundary: re.Pattern[str]) -> list[str]:
    """The lines before the first one matching ``boundary`` (the quoted original's start)."""
    for index, line in enumerate(lines):
        if boundary.search(line):
            return list(lines[:index])
    return list(lines)


def after(lines: Sequence[str], marker: re.Pattern[str]) -> list[str] | None:
    """The lines after the first one matching ``marker``; None when it is absent."""
    for index, line in enumerate(lines):
        if marker.search(line):
            return list(lines[index + 1 :])
    return None


def find_address(text: str) -> str:
    """The first address in ``text``, angle brackets, quotes and trailing dots removed."""
    match = ADDRESS.search(text)
    return match.group(0).rstrip(".") if match else ""


def enhanced_status(text: str) -> str:
    """The first RFC 3463 code (``5.1.1``; qmail's ``(#5.1.1)`` included), or ""."""
    match = _QMAIL_STATUS.search(text) or _ENHANCED.search(text)
    if not match:
        return ""
    return ".".join(match.groups())


def smtp_code(text: str) -> int:
    """The first three-digit SMTP reply code standing as a word, or 0."""
    match = _REPLY.search(text)
    return int(match.group(1)) if match else 0


def remote_host(text: str) -> str:
    """The remote MTA named in a diagnostic (``host mx.example.net[192.0.2.1] said``)."""
    for pattern in _REMOTE:
        match = pattern.search(text)
        if match:
            return match.group(1).strip("[]").rstrip(".")
    return ""


def hint(text: str, table: Iterable[tuple[re.Pattern[str], Reason]]) -> Reason | None:
    """The reason of the first pattern found in ``text``; None when none is."""
    for pattern, reason in table:
        if pattern.search(text):
            return reason
    return None


def failure(
    recipient: str,
    diagnostic: str,
    *,
    status: str = "",
    code: int = 0,
    action: str = "failed",
    remote: str = "",
    reason_hint: Reason | None = None,
) -> Failure:
    """A Failure with status, reply code and remote MTA read from the text when not given."""
    text = squash(diagnostic)
    return Failure(
        recipient=recipient.strip().strip("<>\"'").rstrip(".:,;"),
        diagnostic=text,
        status=status or enhanced_status(text),
        smtp_code=code or smtp_code(text),
        action=action,
        remote_mta=remote or remote_host(text),
        reason_hint=reason_hint,
    )


def header(mail: Mail, name: str) -> str:
    return mail.header(name)


def received(mail: Mail) -> list[str]:
    return [header_text(value) for value in mail.message.get_all("Received") or []]


def sender_is_daemon(mail: Mail) -> bool:
    sender = mail.sender.lower()
    return any(
        word in sender
        for word in ("mailer-daemon", "mail delivery", "postmaster", "mail administrator")
    )


def has_delivery_status(mail: Mail) -> bool:
    return any(part.get_content_type() == "message/delivery-status" for part in mail.parts)


@dataclass
class DsRecipient:
    """One per-recipient block of a message/delivery-status part."""

    recipient: str
    action: str = "failed"
    status: str = ""
    diagnostic: str = ""
    remote_mta: str = ""


_STATUS_TYPES = ("message/delivery-status", "message/global-delivery-status")


def _fields(part: Message) -> list[tuple[str, str]]:
    """(name, value) of every field of the status part, in order, continuations joined."""
    out: list[tuple[str, str]] = []
    for line in part_text(part).split("\n"):
        if line[:1] in (" ", "\t") and out:
            out[-1] = (out[-1][0], out[-1][1] + " " + line.strip())
            continue
        name, sep, value = line.partition(":")
        if sep and name.strip() and " " not in name.strip():
            out.append((name.strip().lower(), value.strip()))
    return out


def _typed(value: str) -> str:
    """A field value without its type prefix (``rfc822;``, ``smtp;``, ``dns;``)."""
    text = squash(header_text(value))
    head, sep, rest = text.partition(";")
    return rest.strip() if sep and " " not in head.strip() else text


def delivery_status(mail: Mail) -> list[DsRecipient]:
    """Per-recipient fields of every message/delivery-status part, in order.

    Several MTAs (Sendmail, Courier, Exim with DSN) send both a human-readable text and
    a status part; their parsers read the text for what it alone says and take the
    fields from here. A new recipient starts at each Final-Recipient (or at an
    Original-Recipient not followed by one), so blocks run together without blank lines
    are still told apart.
    """
    cached = mail.memo.get("delivery_status")
    if cached is None:
        cached = mail.memo["delivery_status"] = tuple(_delivery_status(mail))
    return list(cast("tuple[DsRecipient, ...]", cached))


def _delivery_status(mail: Mail) -> list[DsRecipient]:
    found: list[DsRecipient] = []
    for part in mail.parts:
        if part.get_content_type() not in _STATUS_TYPES:
            continue
        current: DsRecipient | None = None
        pending_original = ""
        for name, value in _fields(part):
            if name == "original-recipient":
                pending_original = find_address(_typed(value))
                continue
            if name == "final-recipient":
                address = find_address(_typed(value)) or pending_original
                pending_original = ""
                current = DsRecipient(recipient=address) if address else None
                if current is not None:
                    found.append(current)
                continue
            if current is None and pending_original and name in ("action", "status"):
                current = DsRecipient(recipient=pending_original)
                found.append(current)
                pending_original = ""
            if current is None:
                continue
            if name == "action":
                current.action = (value.strip().lower().split() or ["failed"])[0]
            elif name == "status":
                current.status = enhanced_status(value)
            elif name == "diagnostic-code":
                current.diagnostic = _typed(value)
            elif name == "remote-mta":
                current.remote_mta = _typed(value).split(" ")[0].rstrip(".")
    return found


def merge_status(failures: list[Failure], mail: Mail) -> list[Failure]:
    """Fill what the text did not say from the delivery-status part (same recipient).

    Recipients only the status part names are added; the text's diagnostic wins when
    it is longer (it usually carries the remote reply the status part abbreviates).
    """
    by_address = {f.recipient.lower(): f for f in failures}
    for ds in delivery_status(mail):
        known = by_address.get(ds.recipient.lower())
        if known is None:
            added = failure(
                ds.recipient,
                ds.diagnostic,
                status=ds.status,
                action=ds.action,
                remote=ds.remote_mta,
            )
            failures.append(added)
            by_address[ds.recipient.lower()] = added
            continue
        if ds.status and (not known.status or known.status.endswith(".0.0")):
            known.status = ds.status
        if ds.action and known.action == "failed":
            known.action = ds.action
        if ds.remote_mta and not known.remote_mta:
            known.remote_mta = ds.remote_mta
        if len(squash(ds.diagnostic)) > len(known.diagnostic):
            known.diagnostic = squash(ds.diagnostic)
            known.smtp_code = known.smtp_code or smtp_code(known.diagnostic)
    return failures


def unique(failures: list[Failure]) -> list[Failure]:
    """One Failure per recipient (the first, which carries the fullest text)."""
    seen: set[str] = set()
    out: list[Failure] = []
    for item in failures:
        key = item.recipient.lower()
        if key and key not in seen:
            seen.add(key)
            out.append(item)
    return out


def original_to(mail: Mail) -> str:
    """The To address of the quoted original: the recipient when the report names none."""
    if mail.original is None:
        return ""
    return find_address(header_text(mail.original.get("To")))


def compile_all(*patterns: str, flags: int = re.IGNORECASE) -> tuple[re.Pattern[str], ...]:
    return tuple(re.compile(p, flags) for p in patterns)


def any_match(text: str, patterns: Iterable[re.Pattern[str]]) -> bool:
    return any(p.search(text) for p in patterns)
