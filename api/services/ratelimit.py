"""Per-API-key token bucket in Redis, read together with the key's cached record.

One EVALSHA per authenticated request does everything the hot path needs from Redis
before the handler: refill and take a token (rate and burst from `ApiSettings`; the
clock is Redis's own TIME, so every API process and host agrees), read the cached
API-key record (a revocation is seen on the next request), and the set-if-absent
marker that throttles `last_used_at` writes to one per minute per key.

Below it, the refusals of the team's send budget (kibamail.team_budget), the limit that
holds across all of a team's keys and intakes.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from api.errors import ApiError
from kibamail import team_budget
from kibamail.redis_keys import RedisKeys
from kibamail.settings import SendingLimits
from kibamail.team_budget import BudgetResult

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


def bucket_key(team_id: str, key_hash: str) -> str:
    return RedisKeys.api_rate_bucket(team_id, key_hash)


def last_used_key(team_id: str, key_hash: str) -> str:
    return RedisKeys.api_key_used(team_id, key_hash)


MAX_KNOWN_TEAMS = 100_000


async def key_team(redis: Any, teams: dict[str, str], key_hash: str) -> str | None:
    """The team of an API key: the process's map, else Redis's directory
    (``RedisKeys.api_key_team``, written by api.deps); '' for a key known to be unknown,
    None when Redis has no entry (api.deps then reads the database). The key's other
    Redis keys carry that team's slot tag (kibamail.redis_keys), so the team comes first;
    a key's team never changes, so only the first request of a process pays the GET."""
    team = teams.get(key_hash)
    if team is not None:
        return team
    raw = await redis.get(RedisKeys.api_key_team(key_hash))
    if raw is None:
        return None
    team = raw.decode()
    if team:
        if len(teams) >= MAX_KNOWN_TEAMS:
            teams.clear()
        teams[key_hash] = team
    return team


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

    async def take(self, team_id: str, key_hash: str) -> RateDecision:
        allowed, tokens, first_use, cached = await self._script(
            keys=[
                bucket_key(team_id, key_hash),
                RedisKeys.api_key(team_id, key_hash),
                last_used_key(team_id, key_hash),
            ],
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


# The team's send budget (kibamail.team_budget): what matters across a team's API keys,
# SMTP credentials, batches and broadcasts. The per-key bucket above stays as an extra
# limit. Refusals mirror the MTA: a paused team is refused for now (SMTP 451 -> 429 with
# Retry-After), a bulk-scored team's transactional mail is refused (SMTP 550 -> 403).
PAUSED_RETRY_SECONDS = 300  # the MTA's default held_retry_seconds: when to look again


def team_refusal(result: BudgetResult, limits: SendingLimits) -> ApiError:
    """The ApiError for a refused team charge (429/403/422, readable, RateLimit-*)."""
    cost = result.cost
    if result.status == team_budget.PAUSED:
        reason = team_budget.pause_reason(result.detail)
        return ApiError(
            429,
            f"sending is paused for this team: {reason}",
            "team_paused",
            headers={"Retry-After": str(PAUSED_RETRY_SECONDS)},
        )
    if result.status == team_budget.BULK:
        return ApiError(
            403,
            "bulk-like traffic on the transactional stream (team bulk score "
            f"{result.detail} > {limits.bulk_max_score}); send it as a broadcast",
            "bulk_traffic",
        )
    if result.status == team_budget.OVER_BURST:
        return ApiError(
            422,
            f"this request needs {cost} sends (messages x recipients), more than the team's "
            f"burst of {limits.burst}; split it",
            "exceeds_team_burst",
        )
    if result.status == team_budget.OVER_DAILY_CAP:
        return ApiError(
            422,
            f"this request needs {cost} sends (messages x recipients), more than the team's "
            f"daily cap of {limits.per_day}",
            "exceeds_daily_cap",
        )
    if result.status == team_budget.DAILY_CAP:
        reset = team_budget.seconds_to_utc_midnight()
        left = max(0, limits.per_day - result.used)
        return ApiError(
            429,
            f"daily sending cap reached: {result.used} of {limits.per_day} recipients used "
            f"today (UTC), {left} left, this needs {cost}",
            "daily_cap_reached",
            headers={
                "RateLimit-Limit": str(limits.per_day),
                "RateLimit-Remaining": str(left),
                "RateLimit-Reset": str(reset),
                "RateLimit-Policy": f"{limits.per_day};w=86400",
                "Retry-After": str(reset),
            },
        )
    assert result.status == team_budget.RATE_LIMITED, result
    rate, burst, tokens = limits.per_second, limits.burst, result.tokens
    return ApiError(
        429,
        f"team sending rate exceeded: this needs {cost} sends, {math.floor(tokens)} available "
        f"(the team's budget, shared by all its API keys and SMTP: {rate:g}/s, burst {burst})",
        "rate_limited",
        headers={
            "RateLimit-Limit": str(burst),
            "RateLimit-Remaining": str(max(0, math.floor(tokens))),
            "RateLimit-Reset": str(max(1, math.ceil((burst - tokens) / rate))),
            "RateLimit-Policy": f"{burst};w={max(1, math.ceil(burst / rate))}",
            "Retry-After": str(max(1, math.ceil((cost - tokens) / rate))),
        },
    )


async def charge_team(
    redis: Any, team_id: str, limits: SendingLimits, cost: int, *, transactional: bool
) -> None:
    """Charge `cost` recipients to the team's budget or raise the refusal (nothing taken)."""
    result = await team_budget.charge(redis, team_id, limits, cost, check_bulk=transactional)
    if result.status != team_budget.OK:
        raise team_refusal(result, limits)
