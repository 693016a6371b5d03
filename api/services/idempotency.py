"""`Idempotency-Key`: a retried request gets the first answer; a different body gets 409.

The key is claimed with SET NX before any work, so two concurrent retries cannot both
send. A request that fails validation releases its claim (nothing was sent).
"""

from __future__ import annotations

import hashlib
from typing import Any

import orjson

from api.errors import ApiError
from api.state import AppState
from kibamail.redis_keys import RedisKeys

TTL_SECONDS = 24 * 3600
MAX_KEY_LENGTH = 256


def stored_response(raw: bytes, fingerprint: str) -> dict[str, Any]:
    """The first answer for a replay; 409 for another body or a request still running."""
    stored = orjson.loads(raw)
    if stored["fingerprint"] != fingerprint:
        raise ApiError(
            409,
            "Idempotency-Key was already used with a different request body",
            "idempotency_key_reused",
        )
    if stored["response"] is None:
        raise ApiError(409, "a request with this Idempotency-Key is in progress", "in_progress")
    return dict(stored["response"])


class IdempotencyClaim:
    """Claim-then-work, for requests that do more than one hand-over (batch, scheduled).
    The single immediate send does claim, suppression check and queueing in one script
    (api.services.sending.send_now) and only uses ``record``/``replay_if_stored``."""

    def __init__(self, state: AppState, team_id: str, key: str, body: bytes) -> None:
        if not key or len(key) > MAX_KEY_LENGTH:
            raise ApiError(422, f"Idempotency-Key must be 1..{MAX_KEY_LENGTH} characters")
        self._redis = state.redis
        self.redis_key = RedisKeys.idempotency(team_id, key)
        self.fingerprint = hashlib.sha256(body).hexdigest()

    def record(self, response: dict[str, Any] | None) -> bytes:
        return orjson.dumps({"fingerprint": self.fingerprint, "response": response})

    async def replay_if_stored(self) -> dict[str, Any] | None:
        """After a refused request: a completed first attempt still answers the replay."""
        raw = await self._redis.get(self.redis_key)
        return None if raw is None else stored_response(raw, self.fingerprint)

    async def acquire(self) -> dict[str, Any] | None:
        """None when we own the key now; the stored response when this is a replay."""
        if await self._redis.set(self.redis_key, self.record(None), nx=True, ex=TTL_SECONDS):
            return None
        raw = await self._redis.get(self.redis_key)
        if raw is None:  # expired between the two calls: claim again
            return await self.acquire()
        return stored_response(raw, self.fingerprint)

    async def complete(self, response: dict[str, Any]) -> None:
        await self._redis.set(self.redis_key, self.record(response), ex=TTL_SECONDS)

    async def release(self) -> None:
        await self._redis.delete(self.redis_key)
