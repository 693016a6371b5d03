"""Features of an accepted transactional submission, for the bulk-behaviour scoring flow.

Computed by the delivery worker for every SMTP transactional message, so it is on the
hot path: the Subject is read straight from the header bytes when it is plain ASCII
(the ``email`` parser, ~0.5 ms a message, only runs when a header needs decoding), and
the simhash avoids Python-level loops where it can.
"""

from __future__ import annotations

import hashlib
import re
from collections import Counter
from email.parser import BytesHeaderParser
from email.policy import default as default_policy

import numpy as np

from kibamail.contracts import SubmissionFeatures

_WORD = re.compile(rb"\w+")
_FIELD = re.compile(rb"([!-9;-~]+):[ \t]*")
_blake2b = hashlib.blake2b
# Case-insensitive markers, matched against the lower-cased body (lower-case patterns;
# bytes.lower() and re.IGNORECASE both fold ASCII only): ~4x cheaper than IGNORECASE.
_MARKERS: dict[str, re.Pattern[bytes]] = {
    "unsubscribe_link": re.compile(rb"unsubscribe"),
    "view_in_browser": re.compile(rb"view (this email )?in (your )?browser"),
    "tracking_pixel": re.compile(rb"<img[^>]+(width|height)=[\"']?1[\"' ]"),
    "promo_words": re.compile(rb"\b(sale|discount|% off|limited time|newsletter)\b"),
}
# Substrings every match of a marker contains (one of them): the regex runs only when
# one is there (a substring test is a fast scan; the patterns without a literal
# prefix walk the body byte by byte).
_NEEDLES: dict[str, tuple[bytes, ...]] = {
    "unsubscribe_link": (b"unsubscribe",),
    "view_in_browser": (b"browser",),
    "tracking_pixel": (b"<img",),
    "promo_words": (b"sale", b"discount", b"% off", b"limited time", b"newsletter"),
}


def marketing_markers(lowered: bytes) -> list[str]:
    """The markers found in a lower-cased body."""
    return [
        name
        for name, rx in _MARKERS.items()
        if any(needle in lowered for needle in _NEEDLES[name]) and rx.search(lowered)
    ]


def first_words(data: bytes, count: int, prefix: int = 8192) -> list[bytes]:
    """The first ``count`` lower-cased words; a big body is only scanned past ``prefix``
    bytes when the prefix holds fewer (the last word found there may be cut short)."""
    if len(data) > prefix:
        words = _WORD.findall(data[:prefix].lower())
        if len(words) > count:
            return words[:count]
    return _WORD.findall(data.lower())[:count]


def simhash(data: bytes, max_words: int = 400) -> int:
    """64-bit simhash over 3-word shingles: near-identical bodies give close hashes.

    Each distinct shingle is hashed once and votes with its multiplicity (templated
    mail repeats lines); the per-bit majority is counted with numpy because it runs
    for every SMTP transactional submission.
    """
    words = first_words(data, max_words)
    if len(words) < 3:
        shingles = [b" ".join(words)]
    else:
        shingles = list(map(b" ".join, zip(words, words[1:], words[2:], strict=False)))
    counts = Counter(shingles)
    digests = b"".join([_blake2b(s, digest_size=8).digest() for s in counts])
    if len(counts) == 1:  # the majority of one hash is that hash (short subjects)
        value = int.from_bytes(digests, "big")
    else:
        bits = np.unpackbits(np.frombuffer(digests, dtype=np.uint8)).reshape(-1, 64)
        votes = np.fromiter(counts.values(), dtype=np.int64, count=len(counts)) @ bits
        majority = votes * 2 > len(shingles)
        value = int.from_bytes(np.packbits(majority).tobytes(), "big")
    # Signed 64-bit so it fits ClickHouse Int64 and JSON readers.
    return value - (1 << 64) if value >= 1 << 63 else value


def plain_header_facts(head: bytes) -> tuple[str, bool] | None:
    """(Subject, has List-Unsubscribe) read from the raw header section when the Subject
    is plain ASCII without encoded words, exactly as ``email``'s default policy would
    return them; None when anything needs the real parser (encoded words, 8-bit bytes,
    lines that are not ``name: value`` or a continuation)."""
    subject: bytes | None = None
    in_subject = has_unsubscribe = False
    for index, line in enumerate(head.split(b"\r\n")):
        if index and line[:1] in (b" ", b"\t"):
            if in_subject:
                subject += line  # type: ignore[operator]
            continue
        match = _FIELD.match(line)
        if match is None:
            return None
        name = match.group(1).lower()
        in_subject = name == b"subject" and subject is None
        if in_subject:
            subject = line[match.end() :]
        elif name == b"list-unsubscribe":
            has_unsubscribe = True
    if subject is None:
        return "", has_unsubscribe
    if not subject.isascii() or b"=?" in subject or b"\r" in subject or b"\n" in subject:
        return None
    return subject.decode(), has_unsubscribe


def _parsed_header_facts(head: bytes) -> tuple[str, bool]:
    headers = BytesHeaderParser(policy=default_policy).parsebytes(head + b"\r\n\r\n")
    return str(headers.get("subject", "")), "list-unsubscribe" in headers


def submission_features(
    team_id: str, message_id: str, recipients: list[str], data: bytes
) -> SubmissionFeatures:
    head, _, body = data.partition(b"\r\n\r\n")
    subject_text, has_list_unsubscribe = plain_header_facts(head) or _parsed_header_facts(head)
    subject = subject_text.encode()
    return SubmissionFeatures(
        event_id=hashlib.sha256(f"features|{message_id}".encode()).hexdigest()[:32],
        team_id=team_id,
        message_id=message_id,
        recipient_count=len(recipients),
        recipient_domains=sorted({r.rsplit("@", 1)[-1].lower() for r in recipients}),
        body_simhash=simhash(body),
        subject_simhash=simhash(subject),
        has_list_unsubscribe=has_list_unsubscribe,
        marketing_markers=marketing_markers(body.lower()),
        size_bytes=len(data),
    )
