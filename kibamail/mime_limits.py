"""Caps on the MIME structure of mail received from strangers (inbound reports).

A real DSN, ARF complaint or DMARC report mail has a handful of parts, two or three
levels deep. Anything far beyond that is refused rather than walked, so one hostile
message cannot pin a report worker (mta.inbound, deliverability.ingest).
"""

from __future__ import annotations

from email.message import Message

MAX_REPORT_BYTES = 25 * 1024 * 1024
MAX_PARTS = 200
MAX_DEPTH = 8


class MimeLimitError(ValueError):
    """The message exceeds a cap; the text says which, for the SMTP reply."""


def check_structure(
    message: Message, *, max_parts: int = MAX_PARTS, max_depth: int = MAX_DEPTH
) -> None:
    """Raise MimeLimitError when ``message`` has too many parts or nests too deep."""
    parts = 0
    stack: list[tuple[Message, int]] = [(message, 1)]
    while stack:
        part, depth = stack.pop()
        parts += 1
        if parts > max_parts:
            raise MimeLimitError(f"too many MIME parts (more than {max_parts})")
        if depth > max_depth:
            raise MimeLimitError(f"MIME parts nested too deep (more than {max_depth} levels)")
        payload = part.get_payload()
        if isinstance(payload, list):
            stack.extend((child, depth + 1) for child in payload if isinstance(child, Message))


def check_size(data: bytes, max_bytes: int = MAX_REPORT_BYTES) -> None:
    if len(data) > max_bytes:
        raise MimeLimitError(f"report too large ({len(data)} bytes, at most {max_bytes})")
