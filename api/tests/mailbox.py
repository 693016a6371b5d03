"""Test helper: read what the API queued for the MTA (the only place a mailed token lives)."""

from __future__ import annotations

import email
import re
from email.message import EmailMessage
from email.policy import default
from typing import Any
from urllib.parse import urlsplit

from kibamail.contracts import OutboundMessage
from testing.submissions import submission_entries


def queued_messages(redis: Any, recipient: str) -> list[tuple[OutboundMessage, EmailMessage]]:
    """Every message on the MTA submission stream addressed to ``recipient``."""
    found = []
    for _entry_id, fields in submission_entries(redis):
        message = OutboundMessage.from_stream_fields(fields)
        if recipient.lower() in (r.lower() for r in message.recipients):
            parsed = email.message_from_bytes(message.data, policy=default)
            assert isinstance(parsed, EmailMessage)
            found.append((message, parsed))
    return found


def link_in(parsed: EmailMessage, path_prefix: str) -> str:
    """The path + query of the first link in the text body under ``path_prefix``."""
    body = parsed.get_body(preferencelist=("plain",))
    assert body is not None
    for url in re.findall(r"https?://\S+", body.get_content()):
        parts = urlsplit(url)
        if parts.path.startswith(path_prefix):
            return parts.path + (f"?{parts.query}" if parts.query else "")
    raise AssertionError(f"no {path_prefix} link in the email")
