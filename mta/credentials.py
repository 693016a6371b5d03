"""SMTP credentials per team: created and revoked by the API, verified by the MTA.

Stored in Redis (``RedisKeys.smtp_credential``) as a hash with the team id, an argon2
hash of the password and a revoked flag. argon2 is deliberately slow, so the MTA keeps
a per-process cache of *verified* credentials: it maps the username to an HMAC of the
password under a random per-process key plus the stored hash it was verified against.
Every verification still reads the Redis hash (one round trip), so a revocation or a
rotated password takes effect immediately; only the argon2 work is skipped.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import time
from dataclasses import dataclass
from typing import Any

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError

from kibamail.redis_keys import RedisKeys

from .coalesce import SingleFlight

_HASHER = PasswordHasher()
USERNAME_PREFIX = "kbsmtp_"


@dataclass(frozen=True)
class VerifiedCredential:
    username: str
    team_id: str


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value or "")


def create_smtp_credential(redis: Any, team_id: str) -> tuple[str, str]:
    """Create a credential for a team; returns (username, password) — shown once."""
    if not team_id:
        raise ValueError("team_id is required")
    username = USERNAME_PREFIX + secrets.token_hex(8)
    password = secrets.token_urlsafe(24)
    # Two slots on a cluster, so no MULTI: the team's list first, then the credential
    # (a crash between leaves a listed name that logs nobody in, never an unlisted login).
    redis.sadd(RedisKeys.team_smtp_credentials(team_id), username)
    redis.hset(
        RedisKeys.smtp_credential(username),
        mapping={
            "team_id": team_id,
            "hash": _HASHER.hash(password),
            "revoked": "0",
            "created_at": str(int(time.time())),
        },
    )
    return username, password


def revoke_smtp_credential(redis: Any, username: str) -> bool:
    """Revoke a credential (kept for audit); returns False if it does not exist."""
    key = RedisKeys.smtp_credential(username)
    if not redis.exists(key):
        return False
    redis.hset(key, "revoked", "1")
    return True


def list_smtp_credentials(redis: Any, team_id: str) -> list[str]:
    return sorted(_text(m) for m in redis.smembers(RedisKeys.team_smtp_credentials(team_id)))


class CredentialVerifier:
    """Verifies username/password pairs; caches argon2 successes safely (see module doc)."""

    def __init__(self, max_entries: int = 100_000) -> None:
        self._key = secrets.token_bytes(32)
        self._cache: dict[str, tuple[bytes, str]] = {}
        self._max_entries = max_entries
        self._argon2 = SingleFlight()

    def _mac(self, password: str) -> bytes:
        return hmac.new(
            self._key, password.encode("utf-8", "surrogateescape"), hashlib.sha256
        ).digest()

    def _check(self, username: str, password: str, fields: list[Any]) -> VerifiedCredential | None:
        team_id, stored_hash, revoked = (_text(f) for f in fields)
        if not team_id or not stored_hash or revoked == "1":
            self._cache.pop(username, None)
            return None
        mac = self._mac(password)
        cached = self._cache.get(username)
        if cached and cached[1] == stored_hash and hmac.compare_digest(cached[0], mac):
            return VerifiedCredential(username, team_id)
        try:
            _HASHER.verify(stored_hash, password)
        except (VerificationError, InvalidHashError):
            return None
        if len(self._cache) >= self._max_entries:
            self._cache.clear()
        self._cache[username] = (mac, stored_hash)
        return VerifiedCredential(username, team_id)

    def verify(self, redis: Any, username: str, password: str) -> VerifiedCredential | None:
        fields = redis.hmget(RedisKeys.smtp_credential(username), "team_id", "hash", "revoked")
        return self._check(username, password, fields)

    async def verify_async(
        self, redis: Any, username: str, password: str
    ) -> VerifiedCredential | None:
        """For redis.asyncio clients; argon2 (rare after the first success) runs in a thread."""
        import asyncio

        fields = await redis.hmget(
            RedisKeys.smtp_credential(username), "team_id", "hash", "revoked"
        )
        team_id, stored_hash, revoked = (_text(f) for f in fields)
        cached = self._cache.get(username)
        if cached and cached[1] == stored_hash and revoked != "1" and team_id:
            return self._check(username, password, fields)
        # Concurrent logins with the same password (a client opening its pool of sessions)
        # share one argon2 run; a different password is a different key.
        key = (username, stored_hash, self._mac(password))
        return await self._argon2.run(
            key, lambda: asyncio.to_thread(self._check, username, password, fields)
        )


_DEFAULT_VERIFIER = CredentialVerifier()


def verify(redis: Any, username: str, password: str) -> VerifiedCredential | None:
    """Check a username/password (sync redis); None when unknown, wrong or revoked."""
    return _DEFAULT_VERIFIER.verify(redis, username, password)
