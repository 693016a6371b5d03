"""Test helpers that read every slot group's submission stream (kibamail.redis_keys):
what the intake queued, whichever group each team's messages went to."""

from __future__ import annotations

from typing import Any

from kibamail.redis_keys import RedisKeys

Entry = tuple[Any, dict[bytes, bytes]]


def _order(entry: Entry) -> tuple[int, int]:
    raw = entry[0].decode() if isinstance(entry[0], bytes) else str(entry[0])
    ms, _, seq = raw.partition("-")
    return int(ms), int(seq or 0)


def submission_entries(redis: Any) -> list[Entry]:
    """Every queued entry of every group (sync client), by entry id (the order of one
    server's clock; entries of the same millisecond in two groups keep group order)."""
    entries = [e for stream in RedisKeys.submission_streams() for e in redis.xrange(stream)]
    return sorted(entries, key=_order)


def submission_count(redis: Any) -> int:
    """Entries in every group's submission stream (sync client)."""
    return sum(int(redis.xlen(stream)) for stream in RedisKeys.submission_streams())
