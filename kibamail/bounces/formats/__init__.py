"""Non-standard bounce formats of widely deployed MTAs and providers.

Each module exposes one ``FormatParser``. Providers' formats (``providers``) are tried
before the open-source MTAs' (``open_source``) because several providers run a re-branded
MTA underneath; ``kibamail.bounces.parse`` tries these before the generic RFC 3464 reader
and keeps the first non-empty answer.
"""

from __future__ import annotations

from .base import Failure, FormatParser
from .open_source import OPEN_SOURCE_FORMATS
from .providers import PROVIDER_FORMATS

FORMATS: tuple[FormatParser, ...] = PROVIDER_FORMATS + OPEN_SOURCE_FORMATS

__all__ = ["FORMATS", "Failure", "FormatParser"]
