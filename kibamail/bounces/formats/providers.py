"""Order in which the mailbox providers' and gateways' formats are tried."""

from __future__ import annotations

from .base import FormatParser

PROVIDER_FORMATS: tuple[FormatParser, ...] = ()
