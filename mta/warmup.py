"""The IP warm-up unit: per source IP x provider group caps from the TOML schedule.

Picks the first IP of the (reputation-ranked) pool with room left this hour and day;
when none has room the message is held until the next hour (never dropped).
"""

from __future__ import annotations

from datetime import UTC, datetime

from kibamail.redis_keys import RedisKeys

from .policies import ACCEPT, REGISTRY, Policy, PolicyContext, Verdict

_WARMUP_TAKE = """
local day_cap, hour_cap = tonumber(ARGV[1]), tonumber(ARGV[2])
local d = tonumber(redis.call('GET', KEYS[1]) or '0')
local h = tonumber(redis.call('GET', KEYS[2]) or '0')
if d + 1 > day_cap or h + 1 > hour_cap then return 0 end
redis.call('INCR', KEYS[1]); redis.call('EXPIRE', KEYS[1], 90000)
redis.call('INCR', KEYS[2]); redis.call('EXPIRE', KEYS[2], 4000)
return 1
"""


class Warmup(Policy):
    """Per IP x provider group caps from the warm-up schedule; picks the first IP with room."""

    name = "warmup"
    stages = ("delivery",)

    async def check(self, ctx: PolicyContext) -> Verdict:
        warmup = self.config.warmup
        now = datetime.now(UTC)
        script = ctx.redis.register_script(_WARMUP_TAKE)
        for ip in ctx.source_ips or [ctx.source_ip]:
            cap = warmup.daily_cap(ip, now.date())
            if cap is None:
                ctx.source_ip = ip
                return ACCEPT
            hour_cap = max(1, int(cap * warmup.hourly_fraction))
            keys = [
                RedisKeys.warmup_counter(ip, ctx.provider_group, now.strftime("%Y%m%d")),
                RedisKeys.warmup_counter(ip, ctx.provider_group, now.strftime("%Y%m%d%H")),
            ]
            if int(await script(keys=keys, args=[cap, hour_cap])):
                ctx.source_ip = ip
                return ACCEPT
        wait = 3600 - (now.minute * 60 + now.second) + 1
        return Verdict(
            "hold",
            451,
            "4.7.1",
            f"warm-up cap reached for {ctx.provider_group} on pool {ctx.pool}",
            wait,
        )


REGISTRY[Warmup.name] = Warmup
