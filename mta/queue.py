"""The durable, shared delivery queue: a Redis Stream plus a sorted set of retries.

- New mail is an entry in ``RedisKeys.SUBMISSION_STREAM`` (see ``kibamail.intake``). Every
  MTA process reads it through the consumer group ``RedisKeys.SUBMISSION_GROUP``; an
  entry is acknowledged (XACK + XDEL) only in the MULTI that records its outcome.
- A worker that dies leaves its entries pending; after ``claim_idle_seconds`` another
  worker takes them over with XAUTOCLAIM. Live workers keep their in-flight entries
  fresh (XCLAIM JUSTID) so slow deliveries are not stolen.
- Deferred or held mail becomes a retry job: a hash ``RedisKeys.retry_job(id)`` with the
  same stream fields (attempt + 1, remaining recipients) scored by due time in
  ``RedisKeys.RETRY_SCHEDULE``. A Lua script moves due jobs back into the stream
  atomically, so any number of processes can run the mover.
"""

from __future__ import annotations

import random
import time
import uuid
from typing import Any

from kibamail.contracts import OutboundMessage
from kibamail.intake import QUEUE_SUBMISSION_LUA, submission_record
from kibamail.redis_keys import RedisKeys

from .config import QueueConfig

Entry = tuple[bytes, dict[bytes, bytes]]

# A retry job is kibamail.intake's record without a mapping (written at first hand-over,
# it is not rewritten); its entry goes back through the one queue_submission.
_MOVE_DUE = (
    QUEUE_SUBMISSION_LUA
    + """
local ids = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', ARGV[1], 'LIMIT', 0, tonumber(ARGV[2]))
for _, id in ipairs(ids) do
  local key = ARGV[3] .. id
  local f = redis.call('HMGET', key, 'meta', 'data')
  if f[1] then
    queue_submission('', KEYS[2], '', 0, f[1], f[2] or '')
  end
  redis.call('DEL', key)
  redis.call('ZREM', KEYS[1], id)
end
return #ids
"""
)


def backoff_seconds(config: QueueConfig, attempt: int) -> float:
    """Exponential backoff with +-10 % jitter so retries of a burst spread out."""
    base = min(config.retry_base_seconds * (2 ** max(attempt - 1, 0)), config.retry_max_seconds)
    return base * random.uniform(0.9, 1.1)


class SubmissionQueue:
    def __init__(self, redis: Any, config: QueueConfig, consumer: str) -> None:
        self.redis = redis
        self.config = config
        self.consumer = consumer
        self._move_due = redis.register_script(_MOVE_DUE)

    async def ensure_group(self) -> None:
        try:
            await self.redis.xgroup_create(
                RedisKeys.SUBMISSION_STREAM, RedisKeys.SUBMISSION_GROUP, id="0", mkstream=True
            )
        except Exception as exc:
            if "BUSYGROUP" not in str(exc):
                raise

    async def read_new(self, count: int, block_ms: int = 1000) -> list[Entry]:
        result = await self.redis.xreadgroup(
            RedisKeys.SUBMISSION_GROUP,
            self.consumer,
            {RedisKeys.SUBMISSION_STREAM: ">"},
            count=count,
            block=block_ms,
        )
        return list(result[0][1]) if result else []

    async def reclaim(self, count: int) -> list[Entry]:
        """Entries idle longer than claim_idle_seconds (their worker died)."""
        idle_ms = int(self.config.claim_idle_seconds * 1000)
        _next, entries, deleted = (
            await self.redis.xautoclaim(
                RedisKeys.SUBMISSION_STREAM,
                RedisKeys.SUBMISSION_GROUP,
                self.consumer,
                idle_ms,
                "0-0",
                count=count,
            )
        )[:3]
        if deleted:
            await self.redis.xack(RedisKeys.SUBMISSION_STREAM, RedisKeys.SUBMISSION_GROUP, *deleted)
        return [(eid, f) for eid, f in entries if f]

    async def touch(self, entry_ids: list[bytes]) -> None:
        """Reset the idle time of entries this worker is still delivering."""
        if entry_ids:
            await self.redis.xclaim(
                RedisKeys.SUBMISSION_STREAM,
                RedisKeys.SUBMISSION_GROUP,
                self.consumer,
                0,
                entry_ids,
                justid=True,
            )

    async def move_due(self, limit: int = 500) -> int:
        return int(
            await self._move_due(
                keys=[RedisKeys.RETRY_SCHEDULE, RedisKeys.SUBMISSION_STREAM],
                args=[time.time(), limit, RedisKeys.retry_job("")],
            )
        )

    @staticmethod
    def ack(pipe: Any, entry_id: bytes) -> None:
        pipe.xack(RedisKeys.SUBMISSION_STREAM, RedisKeys.SUBMISSION_GROUP, entry_id)
        pipe.xdel(RedisKeys.SUBMISSION_STREAM, entry_id)
        pipe.delete(RedisKeys.delivery_progress(entry_id.decode()))

    @staticmethod
    def schedule(pipe: Any, message: OutboundMessage, due_at: float) -> str:
        job_id = uuid.uuid4().hex
        pipe.hset(RedisKeys.retry_job(job_id), mapping=submission_record(message).stream_fields())
        pipe.zadd(RedisKeys.RETRY_SCHEDULE, {job_id: due_at})
        return job_id

    async def progress(self, entry_id: bytes) -> dict[str, str]:
        raw = await self.redis.hgetall(RedisKeys.delivery_progress(entry_id.decode()))
        return {k.decode(): v.decode() for k, v in raw.items()}

    async def depths(self) -> tuple[int, int, float]:
        """(stream pending+new entries, retry jobs, seconds the oldest due job is overdue)."""
        pipe = self.redis.pipeline(transaction=False)
        pipe.xlen(RedisKeys.SUBMISSION_STREAM)
        pipe.zcard(RedisKeys.RETRY_SCHEDULE)
        pipe.zrange(RedisKeys.RETRY_SCHEDULE, 0, 0, withscores=True)
        xlen, zcard, oldest = await pipe.execute()
        overdue = max(0.0, time.time() - oldest[0][1]) if oldest else 0.0
        return int(xlen), int(zcard), overdue
