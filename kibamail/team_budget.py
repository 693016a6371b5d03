"""The per-team send budget every intake charges: API sends, batches, scheduled sends,
broadcast launches and SMTP submissions.

One token bucket (rate + burst) and one per-UTC-day counter per team, in the keys the
MTA's `rate_limit` policy has always used (`RedisKeys.team_send_bucket`,
`RedisKeys.team_daily_sent`), charged per RECIPIENT (message x recipient: billing
counts recipients, and so does the MTA's daily limit). Because every path charges the
same counters, neither more API keys nor mixing the API with SMTP raises a team's
budget. The bucket runs on Redis's own clock (TIME), so every process and host agrees.

The Lua pieces compose into bigger scripts (the API's one-round-trip send); check and
charge happen atomically, and a refusal changes nothing.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from kibamail.redis_keys import RedisKeys
from kibamail.settings import SendingLimits

# Outcomes (the first element of every script's answer).
OK, RATE_LIMITED, DAILY_CAP, OVER_BURST, OVER_DAILY_CAP, PAUSED, BULK = range(7)

DAY_COUNTER_TTL_SECONDS = 90_000  # a little over a day: the counter outlives its UTC day

# take_team_budget(bucket, day, rate, burst, per_day, cost, take_rate) -> status, tokens, used
# team_refusal(paused key, bulk score key, max score, check_bulk) -> nil | PAUSED/BULK, detail
TEAM_BUDGET_LUA = """
local function take_team_budget(bucket_key, day_key, rate, burst, per_day, cost, take_rate)
  local used = tonumber(redis.call('GET', day_key) or '0') or 0
  local tokens = burst
  local t = 0
  if take_rate == 1 then
    local now = redis.call('TIME')
    t = tonumber(now[1]) + tonumber(now[2]) / 1000000
    local b = redis.call('HMGET', bucket_key, 'tokens', 'ts')
    local old, ts = tonumber(b[1]), tonumber(b[2])
    if old == nil or ts == nil then old = burst; ts = t end
    tokens = math.min(burst, old + math.max(0, t - ts) * rate)
    if cost > burst then return 3, tokens, used end
    if tokens < cost then return 1, tokens, used end
  end
  if cost > per_day then return 4, tokens, used end
  if used + cost > per_day then return 2, tokens, used end
  if take_rate == 1 then
    tokens = tokens - cost
    redis.call('HSET', bucket_key, 'tokens', tostring(tokens), 'ts', tostring(t))
    redis.call('EXPIRE', bucket_key, math.ceil(burst / rate) + 60)
  end
  if cost > 0 then
    redis.call('INCRBY', day_key, cost)
    redis.call('EXPIRE', day_key, 90000)
  end
  return 0, tokens, used + cost
end

local function team_refusal(paused_key, score_key, max_score, check_bulk)
  local paused = redis.call('GET', paused_key)
  if paused then return 5, paused end
  if check_bulk == 1 then
    local score = tonumber(redis.call('GET', score_key) or '0') or 0
    if score > max_score then return 6, tostring(score) end
  end
  return nil, ''
end
"""

# KEYS: budget_keys(). ARGV: budget_args(). Returns {status, tokens, used, detail}.
CHARGE_LUA = (
    TEAM_BUDGET_LUA
    + """
if ARGV[6] == '1' then
  local refused, detail = team_refusal(KEYS[1], KEYS[2], tonumber(ARGV[4]), tonumber(ARGV[7]))
  if refused then return {refused, '0', 0, detail} end
end
local status, tokens, used = take_team_budget(KEYS[3], KEYS[4], tonumber(ARGV[1]),
  tonumber(ARGV[2]), tonumber(ARGV[3]), tonumber(ARGV[5]), tonumber(ARGV[8]))
return {status, tostring(tokens), used, ''}
"""
)


def utc_day(now: datetime | None = None) -> str:
    return (now or datetime.now(UTC)).strftime("%Y%m%d")


def seconds_to_utc_midnight(now: datetime | None = None) -> int:
    now = now or datetime.now(UTC)
    midnight = (now + timedelta(days=1)).replace(hour=0, minute=0, second=0, microsecond=0)
    return max(1, math.ceil((midnight - now).total_seconds()))


def budget_keys(team_id: str, day: str | None = None) -> list[str]:
    """Pause flag, bulk score, bucket, today's counter (the order every script expects)."""
    return [
        RedisKeys.team_paused(team_id),
        RedisKeys.reputation_throttle("bulk_score", team_id),
        RedisKeys.team_send_bucket(team_id),
        RedisKeys.team_daily_sent(team_id, day or utc_day()),
    ]


def budget_args(
    limits: SendingLimits, cost: int, *, check_team: bool, check_bulk: bool, take_rate: bool
) -> list[Any]:
    """ARGV for CHARGE_LUA (the send scripts pass the same values, in the same order)."""
    return [
        limits.per_second,
        limits.burst,
        limits.per_day,
        limits.bulk_max_score,
        cost,
        int(check_team),
        int(check_bulk),
        int(take_rate),
    ]


@dataclass(frozen=True)
class BudgetResult:
    """What a charge answered; `tokens`/`used` describe the bucket and today's counter
    before a refused charge (after an accepted one)."""

    status: int
    tokens: float
    used: int
    detail: str
    cost: int

    @classmethod
    def parse(cls, answer: list[Any], cost: int) -> BudgetResult:
        status, tokens, used, detail = answer
        text = detail.decode() if isinstance(detail, bytes) else str(detail or "")
        return cls(int(status), float(tokens), int(used), text, cost)


async def charge(
    redis: Any,
    team_id: str,
    limits: SendingLimits,
    cost: int,
    *,
    check_bulk: bool,
    take_rate: bool = True,
) -> BudgetResult:
    """Check pause (and bulk score for transactional mail), then take `cost` recipients
    from the bucket and today's counter; all or nothing."""
    args = budget_args(limits, cost, check_team=True, check_bulk=check_bulk, take_rate=take_rate)
    answer = await redis.eval(CHARGE_LUA, 4, *budget_keys(team_id), *args)
    return BudgetResult.parse(answer, cost)


def charge_sync(
    redis: Any,
    team_id: str,
    limits: SendingLimits,
    cost: int,
    *,
    check_bulk: bool,
    take_rate: bool = True,
) -> BudgetResult:
    """charge() for synchronous callers (routes running in the threadpool)."""
    args = budget_args(limits, cost, check_team=True, check_bulk=check_bulk, take_rate=take_rate)
    return BudgetResult.parse(redis.eval(CHARGE_LUA, 4, *budget_keys(team_id), *args), cost)


def pause_reason(raw: bytes | str | None) -> str:
    """The readable reason of a `team_paused` flag (JSON {"reason": ...} or plain text)."""
    text = raw.decode(errors="replace") if isinstance(raw, bytes) else str(raw or "")
    try:
        reason = json.loads(text).get("reason", "")
    except (ValueError, AttributeError):
        reason = text
    return str(reason) or "sending paused"


def bulk_score(raw: bytes | str | None) -> float:
    """The scoring dataflow's bulk score (0 when absent or unreadable)."""
    try:
        return float(raw) if raw else 0.0
    except ValueError:
        return 0.0
