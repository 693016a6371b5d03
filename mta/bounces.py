"""Bounce classification: enhanced status code first, then the providers' own texts.

Classes: hard (address does not exist), soft (try later), block (IP/reputation
blocking), policy (authentication/content policy, and protocol errors such as "503 send
HELO first", which are about our commands, not the address), quota (mailbox full).
Only ``hard`` (and complaints) put the address on the suppression list.
"""

from __future__ import annotations

import re

from kibamail.contracts import BounceClass

_ENHANCED = re.compile(r"\b([245])\.(\d{1,3})\.(\d{1,3})\b")

# Texts checked before the code: providers reuse 5.7.1 / 5.5.0 / 554 for many things.
_TEXT_RULES: tuple[tuple[re.Pattern[str], BounceClass], ...] = tuple(
    (re.compile(pattern, re.IGNORECASE), cls)
    for pattern, cls in (
        (
            r"does not exist|user unknown|no such user|mailbox unavailable|"
            r"doesn't have a .* account|address rejected: user|recipient not found|"
            r"unknown recipient|mailbox not found|invalid recipient",
            BounceClass.HARD,
        ),
        (
            r"over quota|out of storage|mailbox full|mailbox is full|insufficient storage",
            BounceClass.QUOTA,
        ),
        (
            r"block list|blocklist|blacklist|blocked using|spamhaus|unsolicited|"
            r"rate limited|reputation|complaints|\[TSS0\d\]",
            BounceClass.BLOCK,
        ),
        (
            r"unauthenticated|authentication level|dmarc|spf|dkim|policy reasons|"
            r"not accepted for policy",
            BounceClass.POLICY,
        ),
        (r"greylist|try again later|server busy|timeout", BounceClass.SOFT),
    )
)

_BY_ENHANCED: dict[tuple[str, str], BounceClass] = {
    ("1", "1"): BounceClass.HARD,  # x.1.1 bad mailbox
    ("1", "2"): BounceClass.HARD,  # x.1.2 bad system
    ("1", "10"): BounceClass.HARD,  # null MX
    ("2", "1"): BounceClass.SOFT,  # mailbox disabled temporarily
    ("2", "2"): BounceClass.QUOTA,
    ("3", "4"): BounceClass.POLICY,  # too big
    ("7", "1"): BounceClass.BLOCK,
    ("7", "26"): BounceClass.POLICY,
    ("7", "27"): BounceClass.POLICY,
}


def enhanced_code(text: str) -> str:
    match = _ENHANCED.search(text)
    return ".".join(match.groups()) if match else ""


def classify(code: int, enhanced: str, text: str) -> BounceClass:
    """Class of a non-2xx answer; 4xx without a better hint is soft."""
    if 200 <= code < 400:
        return BounceClass.NONE
    for pattern, cls in _TEXT_RULES:
        if pattern.search(text):
            if cls == BounceClass.HARD and code < 500:
                return BounceClass.SOFT
            return cls
    parts = (enhanced or enhanced_code(text)).split(".")
    if len(parts) == 3:
        by_code = _BY_ENHANCED.get((parts[1], parts[2]))
        if by_code is not None:
            return BounceClass.SOFT if by_code == BounceClass.HARD and code < 500 else by_code
        if parts[1] == "7":
            return BounceClass.POLICY
        if parts[1] == "5":  # protocol trouble (our commands), not the address
            return BounceClass.POLICY if code >= 500 else BounceClass.SOFT
    if 500 <= code <= 504:  # syntax / sequence errors: never suppress the recipient
        return BounceClass.POLICY
    if code >= 500:
        return BounceClass.HARD
    return BounceClass.SOFT
