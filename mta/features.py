"""Features of an accepted transactional submission, for the bulk-behaviour scoring flow."""

from __future__ import annotations

import hashlib
import re
from email.parser import BytesHeaderParser
from email.policy import default as default_policy

import numpy as np

from pipelines.contracts import SubmissionFeatures

_WORD = re.compile(rb"\w+")
_MARKERS: dict[str, re.Pattern[bytes]] = {
    "unsubscribe_link": re.compile(rb"unsubscribe", re.IGNORECASE),
    "view_in_browser": re.compile(rb"view (this email )?in (your )?browser", re.IGNORECASE),
    "tracking_pixel": re.compile(rb"<img[^>]+(width|height)=[\"']?1[\"' ]", re.IGNORECASE),
    "promo_words": re.compile(rb"\b(sale|discount|% off|limited time|newsletter)\b", re.I),
}


def simhash(data: bytes, max_words: int = 400) -> int:
    """64-bit simhash over 3-word shingles: near-identical bodies give close hashes.

    Vectorised with numpy (bit counting per position) because it runs on the SMTP
    acceptance path for every transactional submission.
    """
    words = _WORD.findall(data.lower())[:max_words]
    shingles = [b" ".join(words[i : i + 3]) for i in range(max(1, len(words) - 2))]
    digests = b"".join(hashlib.blake2b(s, digest_size=8).digest() for s in shingles)
    bits = np.unpackbits(np.frombuffer(digests, dtype=np.uint8).reshape(-1, 8), axis=1)
    majority = bits.sum(axis=0) * 2 > len(shingles)
    value = int.from_bytes(np.packbits(majority).tobytes(), "big")
    # Signed 64-bit so it fits ClickHouse Int64 and JSON readers.
    return value - (1 << 64) if value >= 1 << 63 else value


def submission_features(
    team_id: str, message_id: str, recipients: list[str], data: bytes
) -> SubmissionFeatures:
    head, _, body = data.partition(b"\r\n\r\n")
    headers = BytesHeaderParser(policy=default_policy).parsebytes(head + b"\r\n\r\n")
    subject = str(headers.get("subject", "")).encode()
    return SubmissionFeatures(
        event_id=hashlib.sha256(f"features|{message_id}".encode()).hexdigest()[:32],
        team_id=team_id,
        message_id=message_id,
        recipient_count=len(recipients),
        recipient_domains=sorted({r.rsplit("@", 1)[-1].lower() for r in recipients}),
        body_simhash=simhash(body),
        subject_simhash=simhash(subject),
        has_list_unsubscribe="list-unsubscribe" in headers,
        marketing_markers=[name for name, rx in _MARKERS.items() if rx.search(body)],
        size_bytes=len(data),
    )
