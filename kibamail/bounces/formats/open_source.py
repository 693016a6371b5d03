"""Order in which the open-source MTAs' plain-text formats are tried."""

from __future__ import annotations

from .base import FormatParser

OPEN_SOURCE_FORMATS: tuple[FormatParser, ...] = ()
