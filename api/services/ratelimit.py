"""Per-API-key token bucket in Redis, read together with the key's cached record.

One EVALSHA per authenticated request does everything the hot path needs from Redis
before the handler: refill and take a token (rate and burst from `ApiSettings`; the
clock is Redis's own TIME, so every API process and host agrees), read the cached
API-key record (a revocation is seen on the next request), and the set-if-absent
marker that throttles `last_used_at` writes to one per minute per key.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from kibamail.redis_keys import RedisKeys

LAST_USED_RESOLUTION_SECONDS = 60

# One token bucket per key, refilled from Redis's clock; shared by every script that
# rate-limits (this module's and api.fastpath.send_script's single-round-trip send).
TOKEN_BUCKET_LUA = """
local function take_token(bucket_key, rate, burst)
  local now = redis.call('TIME')
  local t = tonumber(now[1]) + tonumber(now[2]) / 1000000
  local bucket = redis.call('HMGET', bucket_key, 'tokens', 'ts')
  local tokens = tonumber(bucket[1])
  local ts = tonumber(bucket[2])
  if tokens == nil or ts == nil then tokens = burst; ts = t end
  tokens = math.min(burst, tokens + math.max(0, t - ts) * rate)
  local allowed = 0
  if tokens >= 1 then tokens = tokens - 1; allowed = 1 end
  redis.call('HSET', bucket_key, 'tokens', tostring(tokens), 'ts', tostring(t))
  redis.call('EXPIRE', bucket_key, math.ceil(burst / rate) + 1)
  return allowed, tokens
end
"""

_TAKE_TOKEN_LUA = (
    TOKEN_BUCKET_LUA
    + """
local allowed, tokens = take_token(KEYS[1], tonumber(ARGV[1]), tonumber(ARGV[2]))
local first_use = 0
if allowed == 1 and redis.call('SET', KEYS[3], '1', 'NX', 'EX', ARGV[3]) then first_use = 1 end
local cached = redis.call('GET', KEYS[2])
if not cached then cached = '' end
return {allowed, tostring(tokens), first_use, cached}
"""
)


def bucket_key(key_hash: str) -> str:
    return f"apirate:{key_hash[:32]}"


def last_used_key(key_hash: str) -> str:
    return f"apikey-used:{key_hash[:24]}"


@dataclass(frozen=True)
class RateDecision:
    allowed: bool
    tokens: float
    rate: int
    burst: int
    first_use: bool
    cached_key: bytes | None

    def headers(self) -> dict[str, str]:
        """IETF RateLimit header fields; Reset = seconds until the bucket is full again."""
        remaining = max(0, math.floor(self.tokens))
        reset = max(1, math.ceil((self.burst - self.tokens) / self.rate))
        return {
            "RateLimit-Limit": str(self.burst),
            "RateLimit-Remaining": str(remaining),
            "RateLimit-Reset": str(reset),
            "RateLimit-Policy": f"{self.burst};w={max(1, math.ceil(self.burst / self.rate))}",
        }

    def retry_after(self) -> str:
        return str(max(1, math.ceil((1 - self.tokens) / self.rate)))


class ApiKeyLimiter:
    def __init__(self, redis: Any, rate_per_second: int, burst: int) -> None:
        self._script = redis.register_script(_TAKE_TOKEN_LUA)
        self.rate = rate_per_second
        self.burst = max(burst, 1)

    async def take(self, key_hash: str) -> RateDecision:
        allowed, tokens, first_use, cached = await self._script(
            keys=[bucket_key(key_hash), RedisKeys.api_key(key_hash), last_used_key(key_hash)],
            args=[self.rate, self.burst, LAST_USED_RESOLUTION_SECONDS],
        )
        return RateDecision(
            allowed=bool(allowed),
            tokens=float(tokens),
            rate=self.rate,
            burst=self.burst,
            first_use=bool(first_use),
            cached_key=cached or None,
        )
