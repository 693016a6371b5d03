"""A received message as every parser reads it: headers, decoded text, quoted original.

Real bounces come in any charset and transfer encoding, as HTML-only NDRs, with the
original attached, inlined as text or cut off. Decoding happens once here so a format
parser only looks for its own markers.
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import email
import email.errors
import email.header
import email.policy
import html
import quopri
import re
from dataclasses import dataclass, field
from email.message import Message
from typing import cast

# A tag, but not a bare address: NDRs write "<user@example.org>" in HTML as well.
_TAG = re.compile(
    r"<(script|style)\b.*?</\1>|<(?![^\s<>@]+@[^\s<>@]+>)[^>]+>", re.IGNORECASE | re.DOTALL
)
_SURROGATE = re.compile("[\udc80-\udcff]")
_HEADER_BREAK = re.compile(r"\s*\r?\n\s*")
# Parts the email package parses as nested messages but which carry report fields.
STATUS_TYPES = frozenset({"message/delivery-status", "message/global-delivery-status"})
QUOTED_TYPES = frozenset(
    {"message/rfc822", "message/global", "text/rfc822-headers", "message/global-headers"}
)
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


def unescape_8bit(text: str) -> str:
    """Raw 8-bit bytes the parser kept as surrogates (RFC 6532 headers, 8bit status
    parts), read as UTF-8 (else Latin-1) instead of left as lone surrogates."""
    if not _SURROGATE.search(text):
        return text
    return _bytes_text(text.encode("ascii", "surrogateescape"))


def _bytes_text(raw: bytes) -> str:
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError:
        return raw.decode("latin-1")


def part_text(part: Message) -> str:
    """The raw text of a part whatever the email package made of it.

    ``message/delivery-status`` is parsed into one sub-message per field block, and a
    base64 or quoted-printable one into garbage blocks: rebuild the text, then decode.
    """
    payload = part.get_payload()
    if not isinstance(payload, list):
        return _decode_part(part)
    blocks = []
    for block in payload:
        if not isinstance(block, Message):
            continue
        lines = [f"{name}: {value}" for name, value in block.raw_items()]
        raw = block.get_payload(decode=True)  # bytes, 8-bit kept (get_payload() drops it)
        body = _bytes_text(raw) if isinstance(raw, bytes) else ""
        if body.strip():
            lines.append(body if not lines else "\n" + body)
        blocks.append("\n".join(lines))
    text = "\n\n".join(blocks)
    cte = str(part.get("Content-Transfer-Encoding", "")).strip().lower()
    if cte == "base64":
        with contextlib.suppress(binascii.Error, ValueError):
            decoded = base64.b64decode("".join(text.split()), validate=False)
            text = decoded.decode("utf-8", "replace")
    elif cte == "quoted-printable":
        text = quopri.decodestring(text.encode("utf-8", "replace")).decode("utf-8", "replace")
    return unescape_8bit(text).replace("\r\n", "\n")


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
    if isinstance(value, email.header.Header):
        # Raw 8-bit bytes in a header (common in auto-replies): compat32 hands back a
        # Header whose str() is U+FFFD; read the bytes as UTF-8, else Latin-1.
        value = "".join(
            _bytes_text(chunk) if isinstance(chunk, bytes) else chunk
            for chunk, _ in email.header.decode_header(value)
        )
    text = unescape_8bit(str(value))
    if "=?" not in text:  # no encoded words: unfolding is all there is to do
        return _HEADER_BREAK.sub(" ", text).strip()
    try:
        parts = email.header.decode_header(text)
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
    return _HEADER_BREAK.sub(" ", "".join(out)).strip()


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
    # The report's parts in walk order; a quoted original counts as one part (its own
    # sub-parts are not listed), a status part's field blocks are not parts.
    parts: list[Message] = field(default_factory=list)
    raw: bytes = b""  # the message as received (attribution searches it last)

    _headers: dict[str, str] = field(default_factory=dict, repr=False)
    # What the format readers derive from the mail (normalized lines, status fields),
    # computed once for all of them (formats/text_helpers.py).
    memo: dict[str, object] = field(default_factory=dict, repr=False)

    def header(self, name: str) -> str:
        """A header of the report, decoded once (every format parser asks for some)."""
        key = name.lower()
        if key not in self._headers:
            self._headers[key] = header_text(self.message.get(name))
        return self._headers[key]


def _walk(msg: Message) -> list[tuple[Message, str]]:
    """The report's own parts with their content types, in walk order, in one pass.

    A quoted original is one part: its insides (a bounce of a bounce's own status part)
    are the original's, never the report's. A status part's field blocks are not parts.
    """
    found: list[tuple[Message, str]] = []
    stack = [msg]
    while stack:
        part = stack.pop(0)
        ctype = part.get_content_type()
        found.append((part, ctype))
        if ctype in QUOTED_TYPES or ctype in STATUS_TYPES:
            continue
        payload = part.get_payload()
        if isinstance(payload, list):
            stack[0:0] = [p for p in payload if isinstance(p, Message)]
    return found


def _original_headers(walked: list[tuple[Message, str]], text: str) -> Message | None:
    for part, ctype in walked:
        if ctype in ("message/rfc822", "message/global"):
            payload = part.get_payload()
            if isinstance(payload, list) and payload:
                return cast(Message, payload[0])
            if isinstance(payload, str):
                return email.message_from_string(_decode_part(part).lstrip())
        if ctype in ("text/rfc822-headers", "message/global-headers"):
            payload = part.get_payload()
            if isinstance(payload, list) and payload and isinstance(payload[0], Message):
                return cast(Message, payload[0])
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


_BOUNDARY_PARAM = re.compile(rb"(boundary\s*=\s*)(\"[^\"\r\n]*\"|[^;\s]+)", re.IGNORECASE)
_BOUNDARY_LINE = re.compile(rb"^--([!-~]{1,200}?)[ \t]*\r?$", re.MULTILINE)


def _repaired(msg: Message, data: bytes) -> Message:
    """A multipart whose declared boundary never occurs (gateways rewrite one and not the
    other): parse again with the boundary the body actually uses."""
    if not any(isinstance(d, email.errors.StartBoundaryNotFoundDefect) for d in msg.defects):
        return msg
    head, sep, body = data.partition(b"\r\n\r\n" if b"\r\n\r\n" in data[:65536] else b"\n\n")
    line = _BOUNDARY_LINE.search(body)
    if not sep or line is None:
        return msg
    boundary = line.group(1).removesuffix(b"--")
    fixed = _BOUNDARY_PARAM.sub(lambda m: m.group(1) + b'"' + boundary + b'"', head, count=1)
    repaired = email.message_from_bytes(fixed + sep + body, policy=email.policy.compat32)
    return repaired if repaired.is_multipart() else msg


def read_mail(data: bytes) -> Mail:
    """Parse and decode; never raises on malformed input (callers cap size first)."""
    msg = _repaired(email.message_from_bytes(data, policy=email.policy.compat32), data)
    walked = _walk(msg)
    chunks = []
    for part, ctype in walked:
        if ctype in STATUS_TYPES:
            chunks.append(part_text(part))
        elif ctype.startswith("text/") and ctype not in QUOTED_TYPES:
            body = _decode_part(part)
            chunks.append(html_to_text(body) if ctype == "text/html" else body)
    text = "\n".join(chunks).replace("\r\n", "\n")
    return Mail(
        message=msg,
        subject=header_text(msg.get("Subject")),
        sender=header_text(msg.get("From")),
        text=text,
        original=_original_headers(walked, text),
        parts=[part for part, _ in walked],
        raw=data,
    )
