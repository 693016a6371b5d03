"""Last resorts: a bounce no reader knows, and bounces a person forwarded to us.

The generic reader accepts only mail from a mailer daemon or with a bounce-like subject,
and takes an address as a failed recipient only when an SMTP reply or a failure phrase
stands next to it, so ordinary mail never yields a recipient. The forward finder hands
back the inner message (an attached message/rfc822, or the text after "Forwarded
message" / "Begin forwarded message:") for one more parse.
"""

from __future__ import annotations

import re
from email.message import Message

from .autoreply import BOUNCE_SUBJECT, DAEMON
from .formats.base import Failure
from .mail import Mail
from .rfc3464 import ADDRESS, parse_inline_dsn, smtp_code_of, status_of

_ORIGINAL_MARKER = re.compile(
    r"^[ \t>-]*(?:-+ ?)?(?:this is a copy of the message|below this line is a copy"
    r"|original message (?:follows|headers?)"
    r"|the original message (?:headers? )?(?:is|are|was|follows)"
    r"|returned message|unsent message below|original message header|headers of the original"
    r"|-+ ?original message ?-+|content-type: message/rfc822|------ received:)",
    re.IGNORECASE | re.MULTILINE,
)
_SIGNAL = re.compile(
    r"(?<![\d.])[45]\d\d(?:[ -]|$)|\b[45]\.\d{1,3}\.\d{1,3}\b|user unknown|unknown user"
    r"|no such (?:user|mailbox|recipient|address|domain)|does ?n[o']t exist|not exist"
    r"|invalid (?:recipient|mailbox|address)|recipient (?:address )?rejected|address rejected"
    r"|mailbox (?:unavailable|not found|is full|full|disabled|inactive)|over ?quota|quota exceeded"
    r"|unrouteable|host (?:not found|unknown)|domain (?:not found|does not exist)|no mx"
    r"|relay(?:ing)? (?:denied|not permitted)|rejected|refused|blocked|blacklisted|blocklisted"
    r"|could not be delivered|permanent (?:error|failure)|timed? ?out|expired|too many"
    r"|spam|policy|suspended|unknown (?:recipient|address|mailbox)|account (?:disabled|closed)"
    r"|unavailable|undeliverable|delivery (?:failed|failure)|retry time|not a valid"
    r"|could not be reached|(?:address|recipient|user|mailbox) (?:was )?not found|no longer"
    r"|does not accept|not accepting|unknown or illegal|not (?:listed|known)",
    re.IGNORECASE,
)
_DELAY = re.compile(
    r"delay(?:ed)?\b|warning: (?:message|could not)|not (?:yet )?been delivered|still trying"
    r"|will (?:continue|keep) (?:to )?(?:try|retry)|will retry|retrying",
    re.IGNORECASE,
)
_NOT_RECIPIENT = re.compile(r"^(?:mailer-daemon|postmaster|root|bounces\+|abuse|noreply)", re.I)
_FORWARD_SUBJECT = re.compile(r"^\s*(?:fwd?|fw|wg|tr|rv|i|vs|doorst)\s*:", re.IGNORECASE)
_FORWARD_MARKER = re.compile(
    r"^[ \t>]*(?:-{2,} ?forwarded message ?-{2,}|begin forwarded message:"
    r"|-{2,} ?original message ?-{2,}|-{2,} ?weitergeleitete nachricht ?-{2,}"
    r"|-{2,} ?message transféré ?-{2,}|-{2,} ?mensaje reenviado ?-{2,}"
    r"|-{3,} ?forwarded message from .*)[ \t]*$",
    re.IGNORECASE | re.MULTILINE,
)
_QUOTE = re.compile(r"^> ?", re.MULTILINE)


def report_text(mail: Mail) -> str:
    """The report's own prose: the text up to where a quoted original begins."""
    match = _ORIGINAL_MARKER.search(mail.text)
    return mail.text[: match.start()] if match else mail.text


def _addresses(text: str) -> list[str]:
    found: list[str] = []
    for match in ADDRESS.finditer(text):
        address = match.group(0).strip(".").lower()
        if address not in found:
            found.append(address)
    return found


def _excluded(mail: Mail) -> set[str]:
    # The report's sender and addressee (us: the return path or the sending address).
    out = set(_addresses(mail.sender)) | set(_addresses(mail.header("To")))
    original = mail.original
    if original is not None:
        for name in ("From", "Return-Path", "Sender", "Reply-To"):
            out.update(_addresses(str(original.get(name, ""))))
    return out


def _usable(address: str, excluded: set[str]) -> bool:
    return address not in excluded and not _NOT_RECIPIENT.match(address)


def _paragraph_failure(address: str, paragraph: str, action: str) -> Failure:
    diagnostic = " ".join(line.strip() for line in paragraph.splitlines() if line.strip())[:500]
    return Failure(
        recipient=address,
        diagnostic=diagnostic,
        status=status_of(paragraph),
        smtp_code=smtp_code_of(diagnostic),
        action=action,
    )


def looks_like_bounce(mail: Mail) -> bool:
    if DAEMON.search(mail.sender):
        return True
    if mail.message.get("List-Unsubscribe") or mail.message.get("List-Id"):
        return False  # a shop's "delivery status" newsletter; no MTA report carries these
    return bool(BOUNCE_SUBJECT.search(mail.subject))


def generic_failures(mail: Mail) -> list[Failure] | None:
    """Recipients of a plain-text bounce in no known format; None if it is not a bounce."""
    if not looks_like_bounce(mail):
        return None
    inline = parse_inline_dsn(mail)
    if inline:
        return inline
    text = report_text(mail)
    action = "delayed" if _DELAY.search(mail.subject) else "failed"
    excluded = _excluded(mail)
    found: list[Failure] = []
    pending: list[str] = []
    signalled = False
    for paragraph in re.split(r"\n[ \t]*\n", text):
        addresses = [a for a in _addresses(paragraph) if _usable(a, excluded)]
        if not _SIGNAL.search(paragraph):
            pending = addresses
            continue
        signalled = True
        for address in addresses or pending:
            if all(f.recipient != address for f in found):
                found.append(_paragraph_failure(address, paragraph, action))
        pending = []
    if not found and mail.original is not None:
        to = [a for a in _addresses(str(mail.original.get("To", ""))) if _usable(a, excluded)]
        if len(to) == 1:
            signal = next((p for p in re.split(r"\n[ \t]*\n", text) if _SIGNAL.search(p)), "")
            found.append(_paragraph_failure(to[0], signal, action))
    return found if found or signalled else None


def forwarded_message(mail: Mail) -> bytes | None:
    """The message a person forwarded (attached or inline); None when there is none."""
    if DAEMON.search(mail.sender):
        return None
    forward_subject = bool(_FORWARD_SUBJECT.match(mail.subject))
    for part in mail.parts[1:]:
        if part.get_content_type() != "message/rfc822":
            continue
        payload = part.get_payload()
        if isinstance(payload, list) and payload and isinstance(payload[0], Message):
            inner = payload[0]
            if forward_subject or DAEMON.search(str(inner.get("From", ""))):
                return inner.as_bytes()
        break
    marker = _FORWARD_MARKER.search(mail.text)
    if marker is None:
        return None
    body = _QUOTE.sub("", mail.text[marker.end() :]).lstrip("\n")
    lines = body.splitlines()
    # The forwarding client's pseudo-headers end at the first blank line.
    end = next((i for i, line in enumerate(lines) if not line.strip()), len(lines))
    headers = [line.strip() for line in lines[:end] if ":" in line]
    if not any(h.lower().startswith(("from:", "subject:")) for h in headers):
        return None
    rest = "\n".join(lines[end:])
    return ("\n".join(headers) + "\n\n" + rest).encode("utf-8")
