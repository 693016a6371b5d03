"""When a send is due: ``send_at`` as a client gives it (a naive time is UTC)."""

from __future__ import annotations

from datetime import UTC, datetime


def in_future(when: datetime) -> bool:
    """True when ``when`` is still ahead: the send is scheduled, not sent now."""
    return (when if when.tzinfo else when.replace(tzinfo=UTC)) > datetime.now(UTC)
