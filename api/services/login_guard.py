"""Sign-in throttling and lockout, and the once-only use of a TOTP code.

Failed attempts are counted in Redis in fixed windows (`RedisKeys.login_failures`), per
account and per client IP, separately for the password step and the second-factor step
(TOTP or recovery code). Once a counter reaches its limit, every attempt it covers answers
429 with Retry-After (the window's remaining seconds), even with the right password: a
guesser learns nothing more until the window ends. The account counter is keyed by the
submitted address, known or not, so a lockout does not reveal which addresses exist. A
successful sign-in clears the account's counters, never the IP's (an attacker could
otherwise reset it with an account of their own).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from api.errors import ApiError
from api.services.security import sha256_hex, totp_step
from kibamail.redis_keys import RedisKeys


@dataclass(frozen=True)
class Limit:
    scope: str
    attempts: int
    window_seconds: int


PASSWORD_ACCOUNT = Limit("password-account", 5, 900)
PASSWORD_IP = Limit("password-ip", 50, 900)
SECOND_FACTOR_ACCOUNT = Limit("2fa-account", 5, 900)
SECOND_FACTOR_IP = Limit("2fa-ip", 50, 900)
# A code is valid for its step and one either side (api.services.security.totp_step).
TOTP_USED_SECONDS = 120

Counter = tuple[Limit, str]


def account_subject(email: str) -> str:
    return sha256_hex(email.strip().lower())


def password_counters(email: str, client_ip: str) -> tuple[Counter, Counter]:
    return (PASSWORD_ACCOUNT, account_subject(email)), (PASSWORD_IP, client_ip)


def second_factor_counters(user_id: str, client_ip: str) -> tuple[Counter, Counter]:
    return (SECOND_FACTOR_ACCOUNT, user_id), (SECOND_FACTOR_IP, client_ip)


class LoginGuard:
    def __init__(self, redis: Any) -> None:
        self._redis = redis

    def check(self, *counters: Counter) -> None:
        """429 + Retry-After when any counter reached its limit."""
        pipe = self._redis.pipeline(transaction=False)
        for limit, subject in counters:
            key = RedisKeys.login_failures(limit.scope, subject)
            pipe.get(key)
            pipe.ttl(key)
        replies = pipe.execute()
        retry = 0
        for index, (limit, _subject) in enumerate(counters):
            count, ttl = replies[2 * index], replies[2 * index + 1]
            if count is not None and int(count) >= limit.attempts:
                retry = max(retry, ttl if ttl > 0 else limit.window_seconds)
        if retry:
            raise ApiError(
                429,
                "too many failed sign-in attempts; try again later",
                "too_many_attempts",
                headers={"Retry-After": str(retry)},
            )

    def failed(self, *counters: Counter) -> None:
        # Not one MULTI: the counters (account, IP) are separate keys, in different slots of
        # a Redis Cluster; each key's SET NX + INCR keep their order on its connection.
        pipe = self._redis.pipeline(transaction=False)
        for limit, subject in counters:
            key = RedisKeys.login_failures(limit.scope, subject)
            pipe.set(key, 0, nx=True, ex=limit.window_seconds)  # the window starts now
            pipe.incr(key)
        pipe.execute()

    def succeeded(self, counter: Counter) -> None:
        limit, subject = counter
        self._redis.delete(RedisKeys.login_failures(limit.scope, subject))


def accept_totp_once(redis: Any, user_id: str, secret: str, code: str) -> str | None:
    """None when the code is right and unused (it is used now); else the refusal's code:
    `invalid_totp` (wrong) or `totp_replayed` (accepted before)."""
    step = totp_step(secret, code)
    if step is None:
        return "invalid_totp"
    if not redis.set(RedisKeys.totp_used(user_id, step), "1", nx=True, ex=TOTP_USED_SECONDS):
        return "totp_replayed"
    return None
