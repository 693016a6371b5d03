"""The soft-bounce window: repeated soft bounces of one address end up suppressing it.

A single soft bounce (mailbox full, expired after retries, system error, ...) never
suppresses: the address may well take the next message. Big providers stop mailing an
address that keeps failing, and so do we, as ``[soft_bounce_window]`` in
``kibamail/bounces/taxonomy.toml`` documents: ``count`` soft bounces with one of the
listed ``reasons``, of the same address for one team, spread over at least ``days`` days
with no delivery in between, suppress it (the reason recorded in
``RedisKeys.suppression_reasons``). Blocks and other ``fix_our_side`` outcomes are about
us and never count.

The counter is a Redis hash per team and address (``RedisKeys.soft_bounces``), updated by
one Lua script queued in the outcome's MULTI (so a redelivered entry cannot count twice
under a different outcome); it expires ``2 x days`` after the last soft bounce, and a
delivery to the address deletes it.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cache
from typing import Any

import orjson

from kibamail.bounces.model import Reason
from kibamail.bounces.taxonomy import taxonomy
from kibamail.redis_keys import RedisKeys

# KEYS: counter, suppression set, suppression reasons.
# ARGV: now, count, span seconds, ttl seconds, address, reason JSON.
# Returns 1 when this bounce suppressed the address.
_COUNT = """
local first = tonumber(redis.call('HGET', KEYS[1], 'first') or '')
local now = tonumber(ARGV[1])
if not first then
  first = now
  redis.call('HSET', KEYS[1], 'first', ARGV[1])
end
local n = redis.call('HINCRBY', KEYS[1], 'count', 1)
redis.call('HSET', KEYS[1], 'last', ARGV[1])
redis.call('EXPIRE', KEYS[1], tonumber(ARGV[4]))
if n >= tonumber(ARGV[2]) and now - first >= tonumber(ARGV[3]) then
  redis.call('SADD', KEYS[2], ARGV[5])
  redis.call('HSET', KEYS[3], ARGV[5], ARGV[6])
  redis.call('DEL', KEYS[1])
  return 1
end
return 0
"""


@dataclass(frozen=True)
class SoftBounceWindow:
    count: int
    days: float
    reasons: frozenset[str]

    @property
    def span_seconds(self) -> int:
        return int(self.days * 86400)

    @property
    def ttl_seconds(self) -> int:
        return max(self.span_seconds * 2, 86400)

    def counts(self, reason: str, action: str) -> bool:
        """Whether an outcome is a soft bounce of the window (a retry-action reason listed)."""
        return action == "retry" and reason in self.reasons

    def queue_soft_bounce(
        self, pipe: Any, team_id: str, address: str, reason: str, now: float
    ) -> None:
        """Count one soft bounce on ``pipe`` (suppresses when the window is full)."""
        address = address.lower()
        why = orjson.dumps(
            {
                "reason": "soft_bounce_window",
                "last_reason": reason,
                "detail": f"{self.count} soft bounces over {self.days:g}+ days, no delivery",
                "at": int(now),
            }
        ).decode()
        pipe.eval(
            _COUNT,
            3,
            RedisKeys.soft_bounces(team_id, address),
            RedisKeys.suppression(team_id),
            RedisKeys.suppression_reasons(team_id),
            f"{now:.3f}",
            self.count,
            self.span_seconds,
            self.ttl_seconds,
            address,
            why,
        )

    @staticmethod
    def queue_delivered(pipe: Any, team_id: str, address: str) -> None:
        """A delivery resets the address's count."""
        pipe.delete(RedisKeys.soft_bounces(team_id, address))


def reason_action(reason: str) -> str:
    """The taxonomy's action for a reason (``[reasons.<reason>] action``)."""
    return taxonomy().action(Reason(reason)).value


@cache
def window() -> SoftBounceWindow:
    """The documented window (``[soft_bounce_window]`` of the taxonomy)."""
    data = taxonomy().soft_bounce_window
    return SoftBounceWindow(data.count, data.days, frozenset(r.value for r in data.reasons))


def suppression_reason(reason: str, source: str, now: float) -> str:
    """The JSON recorded with an MTA-made suppression (RedisKeys.suppression_reasons)."""
    return orjson.dumps({"reason": reason, "source": source, "at": int(now)}).decode()
