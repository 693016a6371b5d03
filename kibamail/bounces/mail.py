"""A received message as every parser reads it: headers, decoded text, quoted original.

Real bounces come in any charset and transfer encoding, as HTML-only NDRs, with the
original attached, inlined as text or cut off. Decoding happens once here so a format
parser only looks for its own markers.
"""

from __future__ import annotations

import email
import email.policy
import html
import re
from dataclasses import dataclass, field
from email.message import Message
from typing import cast

_TAG = re.compile(r"<(script|style)\b.*?</\1>|<[^>]+>", re.IGNORECASE | re.DOTALL)
_BLANKS = re.compile(r"[ \t\xa0]+")
_HEADER_LINE = re.compile(r"^[A-Za-z][A-Za-z0-9-]*:[ \t]")


def _decode_part(part: Message) -> str:
    payload = part.get_payload(decode=True)
    if not isinstance(payload, bytes):
        raw = part.get_payload()
        return raw if isinstance(raw, str) else ""
    charset = part.get_content_charset() or "utf-8"
    try:
        return payload.decode(charset, "replace")
    except LookupError:  # an unknown charset name: keep what ASCII survives
        return payload.decode("utf-8", "replace")


def html_to_text(markup: str) -> str:
    text = _TAG.sub(
        lambda m: "\n" if m.group(0)[1:3].lower() in ("br", "p>", "tr", "di") else " ", markup
    )
    text = html.unescape(text)
    return "\n".join(_BLANKS.sub(" ", line).strip() for line in text.splitlines())


def header_text(value: object) -> str:
    """A header decoded from RFC 2047 words, unfolded; "" when absent or undecodable."""
    if value is None:
        return ""
    try:
        parts = email.header.decode_header(str(value))
    except Exception:
        return str(value)
    out = []
    for chunk, charset in parts:
        if isinstance(chunk, bytes):
            try:
                out.append(chunk.decode(charset or "utf-8", "replace"))
            except LookupError:
                out.append(chunk.decode("utf-8", "replace"))
        else:
            out.append(chunk)
    return re.sub(r"\s*\r?\n\s*", " ", "".join(out)).strip()


@dataclass
class Mail:
    """One received message, decoded."""

    message: Message
    subject: str
    sender: str  # the From header, decoded
    text: str  # every text/* part outside the quoted original, decoded (HTML as text)
    # Headers of the message being reported on: from message/rfc822 or
    # text/rfc822-headers parts, else from the first header block quoted in the text.
    original: Message | None
    parts: list[Message] = field(default_factory=list)

    def header(self, name: str) -> str:
        return header_text(self.message.get(name))


def _is_quoted_original(part: Message) -> bool:
    return part.get_content_type() in ("message/rfc822", "text/rfc822-headers")


def _text_parts(msg: Message) -> list[Message]:
    """Text parts of the report itself (a quoted original's body is not ours to read)."""
    found: list[Message] = []
    stack = [msg]
    while stack:
        part = stack.pop(0)
        if _is_quoted_original(part):
            continue
        if part.is_multipart():
            payload = part.get_payload()
            if isinstance(payload, list):
                stack[0:0] = cast("list[Message]", payload)
            continue
        if part.get_content_maintype() == "text":
            found.append(part)
    return found


def _original_headers(msg: Message, text: str) -> Message | None:
    for part in msg.walk():
        ctype = part.get_content_type()
        if ctype == "message/rfc822":
            payload = part.get_payload()
            if isinstance(payload, list) and payload:
                return cast(Message, payload[0])
        if ctype == "text/rfc822-headers":
            return email.message_from_string(_decode_part(part).lstrip())
    # Inlined originals: the first run of header lines that carries a Message-ID or a
    # From/To pair, after the report's own prose.
    lines = text.splitlines()
    for start, line in enumerate(lines):
        if not _HEADER_LINE.match(line.lstrip()):
            continue
        block: list[str] = []
        for candidate in lines[start:]:
            stripped = candidate.lstrip()
            if _HEADER_LINE.match(stripped) or (block and candidate[:1] in (" ", "\t")):
                block.append(stripped if _HEADER_LINE.match(stripped) else candidate)
            else:
                break
        names = {b.split(":", 1)[0].lower() for b in block if _HEADER_LINE.match(b)}
        if "message-id" in names or {"from", "to"} <= names or "x-kibamail-message-id" in names:
            return email.message_from_string("\n".join(block) + "\n\n")
    return None


def read_mail(data: bytes) -> Mail:
    """Parse and decode; never raises on malformed input (callers cap size first)."""
    msg = email.message_from_bytes(data, policy=email.policy.compat32)
    parts = _text_parts(msg)
    chunks = []
    for part in parts:
        body = _decode_part(part)
        chunks.append(html_to_text(body) if part.get_content_subtype() == "html" else body)
    text = "\n".join(chunks).replace("\r\n", "\n")
    return Mail(
        message=msg,
        subject=header_text(msg.get("Subject")),
        sender=header_text(msg.get("From")),
        text=text,
        original=_original_headers(msg, text),
        parts=list(msg.walk()),
    )
