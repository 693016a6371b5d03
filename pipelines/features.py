"""Features of one submitted message for bulk-behaviour scoring (computed by the MTA).

The MTA calls :func:`submission_features` for every accepted transactional message
and produces the result to ``Topic.SUBMISSION_FEATURES``; the scoring dataflow
compares them across a team's recent traffic. Bodies are reduced to a 64-bit simhash
(near-identical texts differ in few bits), so no message content leaves the MTA.
"""

from __future__ import annotations

import email
import hashlib
import re
from collections.abc import Iterable
from email.message import Message

import numpy as np

from pipelines.contracts import SubmissionFeatures

WORD = re.compile(r"[a-z0-9]{2,}")
TAG = re.compile(r"<[^>]+>")
PROMO = re.compile(
    r"\b(sale|% off|discount|limited time|newsletter|shop now|deal|offer ends|promo code)\b",
    re.IGNORECASE,
)


def _hash64(token: str) -> int:
    return int.from_bytes(hashlib.blake2b(token.encode(), digest_size=8).digest(), "big")


BIT_SHIFTS = np.arange(64, dtype=np.uint64)


def simhash64(text: str) -> int:
    """Charikar simhash over word 3-shingles; signed to fit ClickHouse/JSON int64."""
    words = WORD.findall(text.lower())
    if not words:
        return 0
    shingles = {" ".join(words[i : i + 3]) for i in range(max(1, len(words) - 2))}
    hashes = np.fromiter((_hash64(s) for s in shingles), dtype=np.uint64, count=len(shingles))
    ones = ((hashes[:, None] >> BIT_SHIFTS) & np.uint64(1)).sum(axis=0)
    value = sum(1 << bit for bit in np.flatnonzero(ones * 2 > len(shingles)).tolist())
    return value - (1 << 64) if value >= 1 << 63 else value


def hamming(a: int, b: int) -> int:
    return ((a ^ b) & 0xFFFF_FFFF_FFFF_FFFF).bit_count()


def _body_text(message: Message) -> tuple[str, str]:
    """(plain text, html) of the message; html stripped of tags for the plain fallback."""
    plain, html = "", ""
    for part in message.walk():
        if part.is_multipart():
            continue
        ctype = part.get_content_type()
        payload = part.get_payload(decode=True)
        if not isinstance(payload, bytes):
            continue
        try:
            content = payload.decode(part.get_content_charset() or "utf-8", errors="replace")
        except LookupError:
            content = payload.decode("utf-8", errors="replace")
        if ctype == "text/plain" and not plain:
            plain = content
        elif ctype == "text/html" and not html:
            html = content
    return plain or TAG.sub(" ", html), html


def marketing_markers(message: Message, text: str, html: str) -> list[str]:
    markers = []
    if message.get("List-Id"):
        markers.append("list-id")
    if (message.get("Precedence") or "").lower() in {"bulk", "list"}:
        markers.append("precedence-bulk")
    lowered = f"{text}\n{html}".lower()
    if "unsubscribe" in lowered:
        markers.append("unsubscribe-link")
    if "view in browser" in lowered or "view this email in your browser" in lowered:
        markers.append("view-in-browser")
    if "utm_source=" in lowered or "utm_campaign=" in lowered:
        markers.append("utm-tracking")
    if PROMO.search(lowered):
        markers.append("promotional-language")
    return markers


def submission_features(
    team_id: str, message_id: str, data: bytes, recipients: Iterable[str]
) -> SubmissionFeatures:
    """Features of one RFC 5322 message as submitted (headers + body bytes)."""
    # compat32 parsing: several times faster than policy.default, and enough here.
    message = email.message_from_bytes(data)
    text, html = _body_text(message)
    rcpts = list(recipients)
    return SubmissionFeatures(
        team_id=team_id,
        message_id=message_id,
        recipient_count=len(rcpts),
        recipient_domains=sorted({r.rsplit("@", 1)[-1].lower() for r in rcpts if "@" in r}),
        body_simhash=simhash64(text),
        subject_simhash=simhash64(str(message.get("Subject", ""))),
        has_list_unsubscribe=message.get("List-Unsubscribe") is not None,
        marketing_markers=marketing_markers(message, text, html),
        size_bytes=len(data),
    )
