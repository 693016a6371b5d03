"""Which message and recipient a report is about, without trusting it to quote anything.

Strongest first: the signed VERP return path the report was sent to (``bounces+<ref>.<mac>``
in To/Delivered-To/X-Original-To/Envelope-To, the quoted original's Return-Path, or
anywhere in the message), then the platform's ``X-Kibamail-Message-ID``, then the original
Message-ID. Nothing here verifies the token's MAC (``kibamail.report_tokens`` does, with
the secret); this only finds it.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from email.message import Message

from kibamail.intake import PLATFORM_ID_HEADER

from .mail import Mail, header_text

_TOKEN = re.compile(r"\bbounces\+([a-z2-7]{16}\.[a-z2-7]{10})@", re.IGNORECASE)
_TOKEN_BYTES = re.compile(rb"\bbounces\+([a-z2-7]{16}\.[a-z2-7]{10})@", re.IGNORECASE)
_PLATFORM_ID_BYTES = re.compile(
    rb"^[ \t>]*x-kibamail-message-id:[ \t]*<?([^>\s]+)>?", re.IGNORECASE | re.MULTILINE
)
_PLATFORM_ID_TEXT = re.compile(
    r"^[ \t>]*x-kibamail-message-id:[ \t]*<?([^>\s]+)>?", re.IGNORECASE | re.MULTILINE
)
_ENVELOPE_HEADERS = ("To", "Delivered-To", "X-Original-To", "Envelope-To", "X-Envelope-To")


@dataclass(frozen=True)
class Attribution:
    return_path: str = ""  # "bounces+<ref>.<mac>", lower-case
    platform_message_id: str = ""
    message_id: str = ""


def _token_in(value: str) -> str:
    match = _TOKEN.search(value)
    return f"bounces+{match.group(1).lower()}" if match else ""


def _return_path(mail: Mail) -> str:
    for name in _ENVELOPE_HEADERS:
        for value in mail.message.get_all(name) or ():
            found = _token_in(str(value))
            if found:
                return found
    if mail.original is not None:
        for name in ("Return-Path", "Errors-To", "Sender", "From"):
            found = _token_in(str(mail.original.get(name, "")))
            if found:
                return found
    found = _token_in(mail.text)
    if found:
        return found
    match = _TOKEN_BYTES.search(mail.raw)
    return f"bounces+{match.group(1).decode().lower()}" if match else ""


def _strip_id(value: object) -> str:
    return header_text(value).strip().strip("<>").strip()


def _platform_id(mail: Mail, original: Message | None) -> str:
    if original is not None and original.get(PLATFORM_ID_HEADER):
        return _strip_id(original.get(PLATFORM_ID_HEADER))
    match = _PLATFORM_ID_TEXT.search(mail.text)
    if match:
        return match.group(1).strip()
    found = _PLATFORM_ID_BYTES.search(mail.raw)
    return found.group(1).decode("utf-8", "replace").strip() if found else ""


def attribute(mail: Mail) -> Attribution:
    original = mail.original
    message_id = _strip_id(original.get("Message-ID")) if original is not None else ""
    return Attribution(
        return_path=_return_path(mail),
        platform_message_id=_platform_id(mail, original),
        message_id=message_id,
    )
