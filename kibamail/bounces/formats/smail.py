"""Smail 3's report, still sent by Deutsche Telekom (T-Online) and a few old hosts.

Addresses sit between ``|---- Failed addresses follow: ----|`` and ``|---- Message text
follows: ----|`` (or "Message header follows"), each followed by its reason on the same
line after "..." or indented below; a "Message log follows" block may precede them.
"""

from __future__ import annotations

import re

from ..mail import Mail
from .base import Failure
from .text_helpers import ADDRESS, body_lines, failure, unique

_FAILED = re.compile(r"^\|?-{5,}\s*Failed addresses follow:?\s*-*\|?$", re.I)
_LOG = re.compile(r"^\|?-{5,}\s*Message log follows:?\s*-*\|?$", re.I)
_END = re.compile(r"^\|?-{5,}\s*Message (?:text|header|body) follows:?\s*-*\|?$", re.I)
_ENTRY = re.compile(r"^ {0,3}<?([^\s<>]+@[^\s<>]+)>?(?:\s*\.{2,}\s*|\s*:\s*|\s+)?(.*)$")


class _Smail:
    name = "smail"

    def __call__(self, mail: Mail) -> list[Failure] | None:
        lines = body_lines(mail)
        start = next((i for i, line in enumerate(lines) if _FAILED.match(line.strip())), None)
        if start is None:
            return None
        log: list[str] = []
        log_start = next(
            (i for i, line in enumerate(lines[:start]) if _LOG.match(line.strip())), None
        )
        if log_start is not None:
            log = [line.strip() for line in lines[log_start + 1 : start] if line.strip()]
        entries: list[tuple[str, list[str]]] = []
        for line in lines[start + 1 :]:
            if _END.match(line.strip()):
                break
            match = _ENTRY.match(line)
            address = match.group(1).rstrip(":,.") if match else ""
            if match and ADDRESS.fullmatch(address) and not line.startswith("    "):
                entries.append((address, [match.group(2)] if match.group(2) else []))
            elif entries and line.strip():
                entries[-1][1].append(line.strip())
        found = []
        for address, texts in entries:
            text = " ".join(texts) or " ".join(log)
            found.append(failure(address, text))
        return unique(found)


SMAIL = _Smail()
