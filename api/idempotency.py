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
from pipelines.contracts import RedisKeys

TTL_SECONDS = 24 * 3600
MAX_KEY_LENGTH = 256


class IdempotencyClaim:
    def __init__(self, state: AppState, team_id: str, key: str, body: bytes) -> None:
        if not key or len(key) > MAX_KEY_LENGTH:
            raise ApiError(422, f"Idempotency-Key must be 1..{MAX_KEY_LENGTH} characters")
        self._redis = state.redis
        self._redis_key = RedisKeys.idempotency(team_id, key)
        self._fingerprint = hashlib.sha256(body).hexdigest()

    async def acquire(self) -> dict[str, Any] | None:
        """None when we own the key now; the stored response when this is a replay."""
        record = orjson.dumps({"fingerprint": self._fingerprint, "response": None})
        if await self._redis.set(self._redis_key, record, nx=True, ex=TTL_SECONDS):
            return None
        raw = await self._redis.get(self._redis_key)
        if raw is None:  # expired between the two calls: claim again
            return await self.acquire()
        stored = orjson.loads(raw)
        if stored["fingerprint"] != self._fingerprint:
            raise ApiError(
                409,
                "Idempotency-Key was already used with a different request body",
                "idempotency_key_reused",
            )
        if stored["response"] is None:
            raise ApiError(409, "a request with this Idempotency-Key is in progress", "in_progress")
        return dict(stored["response"])

    async def complete(self, response: dict[str, Any]) -> None:
        record = orjson.dumps({"fingerprint": self._fingerprint, "response": response})
        await self._redis.set(self._redis_key, record, ex=TTL_SECONDS)

    async def release(self) -> None:
        await self._redis.delete(self._redis_key)
