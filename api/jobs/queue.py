"""A small at-least-once job queue on a Redis Stream with a consumer group.

Every worker process joins the group; a job is acknowledged only after its handler
returned, and jobs left pending by a dead worker are reclaimed (XAUTOCLAIM) after
`claim_idle_ms`. Handlers must therefore be idempotent (the broadcast ones are, via
the BROADCAST:{broadcastId}:{contactId} guard).
"""

from __future__ import annotations

import logging
import os
import socket
from collections.abc import Callable, Iterable
from typing import Any

import orjson
import redis as redis_lib

log = logging.getLogger(__name__)

JOB_STREAM = "api:jobs"
JOB_GROUP = "api-workers"

Handler = Callable[[dict[str, Any]], None]


def encode_job(kind: str, payload: dict[str, Any]) -> dict[str, bytes]:
    return {"kind": kind.encode(), "payload": orjson.dumps(payload)}


def enqueue(redis: Any, kind: str, payload: dict[str, Any]) -> str:
    entry = redis.xadd(JOB_STREAM, encode_job(kind, payload))
    return entry.decode() if isinstance(entry, bytes) else str(entry)


_XADD_MANY_LUA = """
for i = 2, #ARGV do
  redis.call('XADD', KEYS[1], '*', 'kind', ARGV[1], 'payload', ARGV[i])
end
return #ARGV - 1
"""


def enqueue_many(
    redis: Any, kind: str, payloads: Iterable[dict[str, Any]], batch: int = 1000
) -> int:
    """The fan-out path: server-side XADD loops, 1,000 jobs per round trip."""
    script = redis.register_script(_XADD_MANY_LUA)
    count = 0
    chunk: list[bytes] = []
    for payload in payloads:
        chunk.append(orjson.dumps(payload))
        if len(chunk) >= batch:
            count += int(script(keys=[JOB_STREAM], args=[kind, *chunk]))
            chunk = []
    if chunk:
        count += int(script(keys=[JOB_STREAM], args=[kind, *chunk]))
    return count


def ensure_group(redis: Any) -> None:
    try:
        redis.xgroup_create(JOB_STREAM, JOB_GROUP, id="0", mkstream=True)
    except redis_lib.ResponseError as exc:
        if "BUSYGROUP" not in str(exc):
            raise


class Worker:
    def __init__(
        self,
        redis: Any,
        handlers: dict[str, Handler],
        consumer: str | None = None,
        batch: int = 50,
        claim_idle_ms: int = 15_000,
    ) -> None:
        self.redis = redis
        self.handlers = handlers
        self.consumer = consumer or f"{socket.gethostname()}-{os.getpid()}"
        self.batch = batch
        self.claim_idle_ms = claim_idle_ms
        self.stopping = False
        ensure_group(redis)

    def _handle(self, entry_id: bytes, fields: dict[bytes, bytes]) -> None:
        kind = fields.get(b"kind", b"").decode()
        handler = self.handlers.get(kind)
        if handler is None:
            log.error("dropping job %s of unknown kind %r", entry_id, kind)
        else:
            handler(orjson.loads(fields[b"payload"]))

    def run_once(self, block_ms: int = 1000) -> int:
        """Reclaim jobs of dead workers, then process one batch; returns jobs handled."""
        _next, claimed, *_ = self.redis.xautoclaim(
            JOB_STREAM, JOB_GROUP, self.consumer, self.claim_idle_ms, "0-0", count=self.batch
        )
        entries = [(entry_id, fields) for entry_id, fields in claimed if fields]
        if not entries:
            response = self.redis.xreadgroup(
                JOB_GROUP, self.consumer, {JOB_STREAM: ">"}, count=self.batch, block=block_ms
            )
            entries = [e for _stream, stream_entries in response or [] for e in stream_entries]
        done = []
        for entry_id, fields in entries:
            try:
                self._handle(entry_id, fields)
                done.append(entry_id)
            except Exception:
                log.exception("job %s failed; retried after %d ms", entry_id, self.claim_idle_ms)
        if done:  # acknowledged only after the work: a crash before this line re-runs them
            pipe = self.redis.pipeline(transaction=False)
            pipe.xack(JOB_STREAM, JOB_GROUP, *done)
            pipe.xdel(JOB_STREAM, *done)
            pipe.execute()
        return len(entries)

    def run(self) -> None:
        while not self.stopping:
            self.run_once()
