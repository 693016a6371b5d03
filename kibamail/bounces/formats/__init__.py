"""Non-standard bounce formats of widely deployed MTAs and providers.

Each module exposes one ``FormatParser``; ``FORMATS`` is the order they are tried in
(most specific markers first). ``kibamail.bounces.parse`` tries them before the generic
RFC 3464 reader and keeps the first non-empty answer.
"""

from __future__ import annotations

from .base import Failure, FormatParser

FORMATS: tuple[FormatParser, ...] = ()

__all__ = ["FORMATS", "Failure", "FormatParser"]
