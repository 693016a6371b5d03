"""AUTH brute-force defence: a growing delay per failure, then a lockout of the client IP.

Two counters in Redis (shared by every MTA process behind the load balancer):

- per client IP (``RedisKeys.auth_failures``): every failure counts; at
  ``auth_lockout_after`` the IP is locked out. It only decays (expires
  ``auth_lockout_seconds`` after the last failure): a successful login from that IP, say
  with an attacker's own valid credential, must not wipe the guesses made before it.
- per credential (``RedisKeys.auth_credential_failures``): failures on one username from
  any IP grow the delay; that credential's own successful login clears it. It never locks
  the credential out (anyone could lock a customer out by guessing on its name).
"""

from __future__ import annotations

import asyncio
import hashlib
from typing import Any

from kibamail.redis_keys import RedisKeys

from .config import SubmissionConfig


class AuthGuard:
    def __init__(self, redis: Any, config: SubmissionConfig, client_ip: str) -> None:
        self.redis = redis
        self.config = config
        self.key = RedisKeys.auth_failures(client_ip)

    @staticmethod
    def credential_key(username: str) -> str:
        digest = hashlib.sha256(username.encode("utf-8", "surrogatepass")).hexdigest()
        return RedisKeys.auth_credential_failures(digest)

    async def locked(self) -> bool:
        count = await self.redis.get(self.key)
        return int(count or 0) >= self.config.auth_lockout_after

    async def failed(self, username: str) -> None:
        """Count the failure for the IP and the credential; make the client wait longer
        each time either has failed before."""
        window = self.config.auth_lockout_seconds
        # Two independent counters (two slots on a cluster): one round trip, no MULTI.
        pipe = self.redis.pipeline(transaction=False)
        pipe.incr(self.key)
        pipe.expire(self.key, window)
        credential = self.credential_key(username)
        pipe.incr(credential)
        pipe.expire(credential, window)
        results = await pipe.execute()
        count = max(int(results[0]), int(results[2]))
        delay = min(
            self.config.auth_fail_delay_seconds * 2 ** (count - 1),
            self.config.auth_fail_delay_max_seconds,
        )
        await asyncio.sleep(delay)

    async def succeeded(self, username: str) -> None:
        """Clears only this credential's failures; the IP's counter keeps decaying."""
        await self.redis.delete(self.credential_key(username))
