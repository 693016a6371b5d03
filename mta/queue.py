"""The durable, shared delivery queue: one Redis Stream and one retry schedule per slot group.

- New mail is an entry in its team's group stream ``RedisKeys.submission_stream(g)``
  (see ``kibamail.intake``; ``SLOT_GROUPS`` of them, so a cluster spreads the queue over
  its masters). Every MTA process reads every group's stream through the consumer group
  ``RedisKeys.SUBMISSION_GROUP``; an entry is acknowledged (XACK + XDEL) only in the MULTI
  that records its outcome, which touches only keys of the entry's group (``mta.commit``).
- Reading: on one Redis node, one blocking XREADGROUP names all the group streams. On a
  cluster a command naming two slots is a CROSSSLOT error, so it is one non-blocking
  XREADGROUP per group in one pipeline (redis-py sends it per node, concurrently); when
  every group is empty the reader sleeps a little longer each time (``IdlePoll``), so an
  idle queue costs a few pipelined round trips a second.
- A worker that dies leaves its entries pending; after ``claim_idle_seconds`` another
  worker takes them over with XAUTOCLAIM (per group). Live workers keep their in-flight
  entries fresh (XCLAIM JUSTID) so slow deliveries are not stolen.
- Deferred or held mail becomes a retry job: a hash ``RedisKeys.retry_job(g, id)`` with
  the same stream fields (attempt + 1, remaining recipients) scored by due time in the
  group's ``RedisKeys.retry_schedule(g)``. A Lua script per group moves due jobs back
  into that group's stream atomically, so any number of processes can run the mover.
"""

from __future__ import annotations

import random
import time
import uuid
from typing import Any

from kibamail.contracts import OutboundMessage
from kibamail.intake import QUEUE_SUBMISSION_LUA, submission_record
from kibamail.redis_batching import IdlePoll, is_cluster_client
from kibamail.redis_keys import SLOT_GROUPS, RedisKeys

from .config import QueueConfig

Entry = tuple[bytes, dict[bytes, bytes]]
# An entry and the slot group whose stream it came from.
GroupEntry = tuple[int, Entry]

# A retry job is kibamail.intake's record without a mapping (written at first hand-over,
# it is not rewritten); its entry goes back through the one queue_submission. The job
# hashes (ARGV[3] .. id) share KEYS[1]'s hash tag: same slot.
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


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value


class SubmissionQueue:
    def __init__(
        self, redis: Any, config: QueueConfig, consumer: str, groups: int = SLOT_GROUPS
    ) -> None:
        self.redis = redis
        self.config = config
        self.consumer = consumer
        self.groups = list(range(groups))
        self.cluster = is_cluster_client(redis)
        self._group_of = {RedisKeys.submission_stream(g): g for g in self.groups}
        self._idle = IdlePoll()
        self._busy: set[int] = set()  # groups the last read found entries in

    async def ensure_group(self) -> None:
        for g in self.groups:
            try:
                await self.redis.xgroup_create(
                    RedisKeys.submission_stream(g),
                    RedisKeys.SUBMISSION_GROUP,
                    id="0",
                    mkstream=True,
                )
            except Exception as exc:
                if "BUSYGROUP" not in str(exc):
                    raise

    async def read_new(self, count: int, block_ms: int = 1000) -> list[GroupEntry]:
        """New entries of every group (at most ``count`` per group on one node)."""
        if not self.cluster:
            streams = dict.fromkeys(self._group_of, ">")
            result = await self.redis.xreadgroup(
                RedisKeys.SUBMISSION_GROUP, self.consumer, streams, count=count, block=block_ms
            )
            return [
                (self._group_of[_text(name)], e) for name, entries in result or [] for e in entries
            ]
        # Split the room among the groups that had work last time; the others get 1 each.
        share = max(1, -(-count // max(1, len(self._busy))))
        pipe = self.redis.pipeline(transaction=False)
        for g in self.groups:
            pipe.xreadgroup(
                RedisKeys.SUBMISSION_GROUP,
                self.consumer,
                {RedisKeys.submission_stream(g): ">"},
                count=share if g in self._busy or not self._busy else 1,
            )
        found: list[GroupEntry] = []
        self._busy = set()
        for g, result in zip(self.groups, await pipe.execute(), strict=True):
            for _name, entries in result or []:
                if entries:
                    self._busy.add(g)
                found += [(g, e) for e in entries]
        await self._idle.after(bool(found), block_ms / 1000)
        return found

    async def reclaim(self, count: int) -> list[GroupEntry]:
        """Entries idle longer than claim_idle_seconds (their worker died), every group."""
        idle_ms = int(self.config.claim_idle_seconds * 1000)
        pipe = self.redis.pipeline(transaction=False)
        for g in self.groups:
            pipe.xautoclaim(
                RedisKeys.submission_stream(g),
                RedisKeys.SUBMISSION_GROUP,
                self.consumer,
                idle_ms,
                "0-0",
                count=count,
            )
        claimed: list[GroupEntry] = []
        acks = self.redis.pipeline(transaction=False)
        for g, answer in zip(self.groups, await pipe.execute(), strict=True):
            _next, entries, deleted = answer[:3]
            if deleted:  # trimmed away meanwhile: nothing left to deliver
                acks.xack(RedisKeys.submission_stream(g), RedisKeys.SUBMISSION_GROUP, *deleted)
            claimed += [(g, (eid, f)) for eid, f in entries if f]
        if len(acks):
            await acks.execute()
        return claimed

    async def touch(self, entries: list[tuple[int, bytes]]) -> None:
        """Reset the idle time of entries this worker is still delivering."""
        by_group: dict[int, list[bytes]] = {}
        for g, entry_id in entries:
            by_group.setdefault(g, []).append(entry_id)
        if not by_group:
            return
        pipe = self.redis.pipeline(transaction=False)
        for g, ids in by_group.items():
            pipe.xclaim(
                RedisKeys.submission_stream(g),
                RedisKeys.SUBMISSION_GROUP,
                self.consumer,
                0,
                ids,
                justid=True,
            )
        await pipe.execute()

    async def move_due(self, limit: int = 500) -> int:
        """Due retry jobs of every group back into their group's stream."""
        pipe = self.redis.pipeline(transaction=False)
        now = time.time()
        for g in self.groups:
            keys = [RedisKeys.retry_schedule(g), RedisKeys.submission_stream(g)]
            pipe.eval(_MOVE_DUE, len(keys), *keys, now, limit, RedisKeys.retry_job(g, ""))
        return sum(int(n) for n in await pipe.execute())

    @staticmethod
    def ack(pipe: Any, group: int, entry_id: bytes) -> None:
        stream = RedisKeys.submission_stream(group)
        pipe.xack(stream, RedisKeys.SUBMISSION_GROUP, entry_id)
        pipe.xdel(stream, entry_id)
        pipe.delete(RedisKeys.delivery_progress(group, entry_id.decode()))

    @staticmethod
    def schedule(pipe: Any, group: int, message: OutboundMessage, due_at: float) -> str:
        job_id = uuid.uuid4().hex
        fields = submission_record(message).stream_fields()
        pipe.hset(RedisKeys.retry_job(group, job_id), mapping=fields)
        pipe.zadd(RedisKeys.retry_schedule(group), {job_id: due_at})
        return job_id

    async def progress(self, group: int, entry_id: bytes) -> dict[str, str]:
        raw = await self.redis.hgetall(RedisKeys.delivery_progress(group, entry_id.decode()))
        return {k.decode(): v.decode() for k, v in raw.items()}

    async def depths(self) -> tuple[int, int, float]:
        """(stream pending+new entries, retry jobs, seconds the oldest due job is overdue),
        every group together."""
        pipe = self.redis.pipeline(transaction=False)
        for g in self.groups:
            pipe.xlen(RedisKeys.submission_stream(g))
            pipe.zcard(RedisKeys.retry_schedule(g))
            pipe.zrange(RedisKeys.retry_schedule(g), 0, 0, withscores=True)
        answers = await pipe.execute()
        xlen = sum(int(n) for n in answers[0::3])
        zcard = sum(int(n) for n in answers[1::3])
        oldest = min((found[0][1] for found in answers[2::3] if found), default=None)
        overdue = max(0.0, time.time() - oldest) if oldest is not None else 0.0
        return xlen, zcard, overdue
