"""Reputation throttling at delivery: obeys the decisions ``pipelines.throttle`` writes.

The Flink reputation windows feed ``pipelines/throttle.py``, which writes JSON
``{"action": "pause"|"slow", "factor", "reason", "event_id"}`` (with a TTL) under
``RedisKeys.reputation_throttle("team", team)`` and ``("ip_provider", "ip|provider")``.
This unit turns them into delivery behaviour (KumoMTA's automatic traffic shaping):

- team ``pause``: the message is held (retried later, never dropped) naming the reason;
- team ``slow``: the team's delivery rate (the rate_limit unit's ``per_second`` unless
  ``team_per_second`` is set) times ``factor``, shared by every MTA process through a
  GCRA slot in Redis; a message whose slot is further than ``max_wait_seconds`` away
  is held until then;
- ip_provider ``pause``: that source IP is not used for the provider; another IP of the
  pool takes the mail, or it is held when none is left;
- ip_provider ``slow``: that IP x provider is paced at the shaping rate (or
  ``slow_base_per_minute`` when the group is unshaped) times ``factor``.

The Flink job names providers ``google``/``microsoft``/``yahoo``/``apple`` and any other
recipient by its domain, so both ``ip|<provider group>`` and ``ip|<recipient domain>``
are looked up. Reads go through the chain's FlagCache (a decision takes effect within
its TTL, ~1 s, in every process).
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
from dataclasses import dataclass
from typing import Any, Literal

import orjson
from pydantic import Field

from kibamail.redis_keys import RedisKeys

from . import metrics
from .policies import ACCEPT, REGISTRY, Params, Policy, PolicyContext, Verdict

log = logging.getLogger(__name__)

# How long a team's daily fix_our_side counts stay readable.
FIX_OUR_SIDE_DAYS = 8


def queue_fix_our_side(pipe: Any, team_id: str, reason: str, now: float) -> None:
    """Count a fix_our_side outcome in the team's reputation inputs (on ``pipe``, in the
    outcome's MULTI): ``RedisKeys.fix_our_side`` per UTC day, by reason."""
    day = time.strftime("%Y-%m-%d", time.gmtime(now))
    key = RedisKeys.fix_our_side(team_id, day)
    pipe.hincrby(key, reason, 1)
    pipe.expire(key, FIX_OUR_SIDE_DAYS * 86400)


def fix_our_side_recorded(team_id: str, reason: str, provider_group: str, detail: str) -> None:
    """The signal after the outcome is stored: a metric to alert on and a log line. The
    recipient is not suppressed: the failure is about our IP, domain or content."""
    metrics.FIX_OUR_SIDE.labels(reason, provider_group or "default").inc()
    log.warning(
        "fix our side: team %s, %s at %s: %s",
        team_id,
        reason,
        provider_group or "default",
        detail[:200],
    )


ThrottleAction = Literal["pause", "slow"]


@dataclass(frozen=True)
class Throttle:
    action: ThrottleAction
    factor: float
    reason: str


def parse_throttle(raw: Any) -> Throttle | None:
    """A stored decision, or None when absent or unreadable (never throttle on garbage)."""
    if not raw:
        return None
    try:
        value = orjson.loads(raw)
        action = value["action"]
        factor = float(value.get("factor", 0.0))
    except (orjson.JSONDecodeError, KeyError, TypeError, ValueError):
        return None
    if action not in ("pause", "slow"):
        return None
    factor = min(max(factor, 0.0), 1.0)
    if action == "slow" and factor <= 0.0:
        action = "pause"
    return Throttle(action, factor, str(value.get("reason", "")) or "reputation signals")


def worst(throttles: list[Throttle | None]) -> Throttle | None:
    """The most severe decision: any pause, else the smallest slow factor."""
    found = [t for t in throttles if t is not None]
    pauses = [t for t in found if t.action == "pause"]
    if pauses:
        return pauses[0]
    return min(found, key=lambda t: t.factor) if found else None


def ip_provider_keys(ip: str, provider_group: str, recipient_domain: str) -> list[str]:
    """The keys the Flink job may have used for this IP x recipient."""
    names = [recipient_domain.lower()]
    if provider_group != "default":
        names.insert(0, provider_group)
    return [RedisKeys.reputation_throttle("ip_provider", f"{ip}|{name}") for name in names]


def rank_source_ips(
    ips: list[str], throttles: dict[str, Throttle | None]
) -> tuple[list[str], dict[str, Throttle]]:
    """Usable IPs, healthiest first (paused ones removed), and the paused ones' decisions."""
    paused = {ip: t for ip, t in throttles.items() if t is not None and t.action == "pause"}
    usable = [ip for ip in ips if ip not in paused]
    usable.sort(key=lambda ip: -(throttles.get(ip) or Throttle("slow", 1.0, "")).factor)
    return usable, paused


# GCRA: one slot per message at 1/rate spacing. Reserves the slot only when it is at
# most max_wait away; returns {reserved 0|1, seconds until the slot}.
_RESERVE_SLOT = """
local now, interval, max_wait = tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3])
local tat = tonumber(redis.call('GET', KEYS[1]) or '0')
local start = math.max(tat, now)
local wait = start - now
if wait > max_wait then return {0, tostring(wait)} end
local nxt = start + interval
redis.call('SET', KEYS[1], tostring(nxt), 'PX', math.ceil((nxt - now) * 1000) + 1000)
return {1, tostring(wait)}
"""


class ReputationThrottleParams(Params):
    team_per_second: float | None = Field(None, gt=0)
    slow_base_per_minute: float = Field(600.0, gt=0)
    max_wait_seconds: float = Field(1.0, ge=0)
    paused_retry_seconds: float | None = Field(None, gt=0)


class ReputationThrottle(Policy):
    name = "reputation_throttle"
    stages = ("delivery",)
    Params = ReputationThrottleParams

    @property
    def team_rate(self) -> float:
        p: Any = self.params
        if p.team_per_second:
            return float(p.team_per_second)
        for entry in self.config.policies:
            if entry.name == "rate_limit" and "per_second" in entry.params:
                return float(entry.params["per_second"])
        return 10.0

    @property
    def retry_seconds(self) -> float:
        p: Any = self.params
        return float(p.paused_retry_seconds or self.config.queue.held_retry_seconds)

    def _hold(self, text: str, after: float) -> Verdict:
        return Verdict("hold", 451, "4.7.1", text, after)

    async def check(self, ctx: PolicyContext) -> Verdict:
        ips = ctx.source_ips or ([ctx.source_ip] if ctx.source_ip else [])
        team_key = RedisKeys.reputation_throttle("team", ctx.team_id)
        per_ip = {ip: ip_provider_keys(ip, ctx.provider_group, ctx.recipient_domain) for ip in ips}
        keys = [team_key] + [k for ks in per_ip.values() for k in ks]
        values = dict(zip(keys, await self.flags.get_many(ctx.redis, keys), strict=True))
        team = parse_throttle(values[team_key])
        if team is not None and team.action == "pause":
            return self._hold(f"Sending paused by reputation: {team.reason}", self.retry_seconds)
        ip_throttles = {
            ip: worst([parse_throttle(values[k]) for k in ks]) for ip, ks in per_ip.items()
        }
        if ips:
            usable, paused = rank_source_ips(ips, ip_throttles)
            if not usable:
                reason = next(iter(paused.values())).reason
                return self._hold(
                    f"every IP of pool {ctx.pool or '?'} is paused for {ctx.provider_group} "
                    f"by reputation: {reason}",
                    self.retry_seconds,
                )
            ctx.source_ips = usable
            ctx.source_ip = usable[0]
            shaping = self.config.shaping_for(ctx.provider_group)
            base = shaping.messages_per_minute or self.params.slow_base_per_minute  # type: ignore[attr-defined]
            ctx.pace_per_minute = {
                ip: base * t.factor
                for ip, t in ip_throttles.items()
                if t is not None and t.action == "slow" and ip in usable
            }
        if team is not None:
            return await self._team_slot(ctx, team)
        return ACCEPT

    async def _team_slot(self, ctx: PolicyContext, team: Throttle) -> Verdict:
        rate = self.team_rate * team.factor
        max_wait: float = self.params.max_wait_seconds  # type: ignore[attr-defined]
        script = ctx.redis.register_script(_RESERVE_SLOT)
        reserved, wait = await script(
            keys=[RedisKeys.rate_bucket(ctx.team_id, "reputation")],
            args=[time.time(), 1.0 / rate, max_wait],
        )
        wait = float(wait)
        if int(reserved):
            if wait > 0:
                await asyncio.sleep(wait)
            return ACCEPT
        # Spread the held messages over the time the slowed rate needs for them.
        return self._hold(
            f"Sending slowed to {team.factor:.0%} by reputation: {team.reason}",
            wait * random.uniform(1.0, 1.5),
        )


REGISTRY[ReputationThrottle.name] = ReputationThrottle
