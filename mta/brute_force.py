"""AUTH brute-force defence per client IP: a growing delay per failure, then a lockout.

The counter lives in Redis (``RedisKeys.auth_failures``) so every MTA process behind
the load balancer sees the same attempts.
"""

from __future__ import annotations

import asyncio
from typing import Any

from kibamail.redis_keys import RedisKeys

from .config import SubmissionConfig


class AuthGuard:
    def __init__(self, redis: Any, config: SubmissionConfig, client_ip: str) -> None:
        self.redis = redis
        self.config = config
        self.key = RedisKeys.auth_failures(client_ip)

    async def locked(self) -> bool:
        count = await self.redis.get(self.key)
        return int(count or 0) >= self.config.auth_lockout_after

    async def failed(self) -> None:
        """Count the failure and make the client wait longer each time."""
        pipe = self.redis.pipeline(transaction=True)
        pipe.incr(self.key)
        pipe.expire(self.key, self.config.auth_lockout_seconds)
        count = int((await pipe.execute())[0])
        delay = min(
            self.config.auth_fail_delay_seconds * 2 ** (count - 1),
            self.config.auth_fail_delay_max_seconds,
        )
        await asyncio.sleep(delay)

    async def succeeded(self) -> None:
        await self.redis.delete(self.key)
