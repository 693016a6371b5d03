"""A small at-least-once job queue on a Redis Stream with a consumer group.

Every worker process joins the group; a job is acknowledged only after its handler
returned, and jobs left pending by a dead worker are reclaimed (XAUTOCLAIM) after
`claim_idle_ms`. Handlers must therefore be idempotent (the broadcast ones are, via
the BROADCAST:{broadcastId}:{contactId} guard).

A job that raises is retried with exponential backoff (a sorted set of delayed jobs,
moved back onto the stream when due) up to `max_attempts`; a job that still fails, one
that cannot be decoded or routed, or one whose worker died handling it `max_attempts`
times, goes to the dead-letter stream with the reason (never retried forever, never
dropped). Each move is one MULTI with the XACK, so a crash cannot lose or duplicate it.

One queue per slot group (kibamail.redis_keys): a job names its group (its team's) when
queued, and its stream, delayed set and dead letters carry the group's tag, like the
team keys a handler's dead-letter hook updates in the same MULTI, so every MULTI and
script stays in one slot of a Redis Cluster. A worker serves every group: new jobs come
from one XREADGROUP over every group's stream on a single node (a cluster refuses a
multi-slot read: there one per group, and a short sleep when all were empty); due retries
and dead workers' jobs are swept group by group every SWEEP_SECONDS.
"""

from __future__ import annotations

import logging
import os
import socket
import time
from collections.abc import Callable, Iterable
from typing import Any

import orjson
import redis as redis_lib

from kibamail.contracts import dead_letter
from kibamail.redis_batching import is_cluster_client
from kibamail.redis_keys import SLOT_GROUPS, group_tag

log = logging.getLogger(__name__)

JOB_SOURCE = "api:jobs"  # dead letters' source: api:jobs:<kind>
JOB_GROUP = "api-workers"
CLUSTER_IDLE_SECONDS = 0.05  # a cluster worker's pause after an empty round
# How often a worker promotes due retries and reclaims dead workers' jobs (every group).
SWEEP_SECONDS = 0.25


def job_stream(group: int) -> str:
    return f"api:jobs:{group_tag(group)}"


def delayed_jobs(group: int) -> str:
    """Sorted set: JSON job -> due time (unix seconds)."""
    return f"api:jobs:delayed:{group_tag(group)}"


def dead_letter_stream(group: int) -> str:
    return f"api:jobs:dead:{group_tag(group)}"


def queued_jobs(redis: Any) -> int:
    """Entries in every group's job stream (sync client)."""
    return sum(int(redis.xlen(job_stream(g))) for g in range(SLOT_GROUPS))


DEFAULT_MAX_ATTEMPTS = 5
DEFAULT_BACKOFF_SECONDS = 2.0  # 2, 4, 8, 16 s between the five attempts
DEAD_LETTER_MAXLEN = 100_000

Handler = Callable[[dict[str, Any]], None]
# Runs the jobs of one kind read together (lookups and writes batched); one result per
# payload, in order: None when that job succeeded, else its exception (retried alone).
BatchHandler = Callable[[list[dict[str, Any]]], list[Exception | None]]
JobEntry = tuple[bytes, dict[bytes, bytes]]
# Adds commands to the dead-lettering MULTI (e.g. count the contact as failed).
DeadLetterHook = Callable[[Any, dict[str, Any]], None]


class PermanentJobError(Exception):
    """A job that can never succeed: dead-lettered at once instead of retried."""


def encode_job(kind: str, payload: dict[str, Any]) -> dict[str, bytes]:
    return {"kind": kind.encode(), "payload": orjson.dumps(payload)}


def enqueue(redis: Any, kind: str, payload: dict[str, Any], group: int) -> str:
    entry = redis.xadd(job_stream(group), encode_job(kind, payload))
    return entry.decode() if isinstance(entry, bytes) else str(entry)


_XADD_MANY_LUA = """
for i = 2, #ARGV do
  redis.call('XADD', KEYS[1], '*', 'kind', ARGV[1], 'payload', ARGV[i])
end
return #ARGV - 1
"""


def enqueue_many(
    redis: Any, kind: str, payloads: Iterable[dict[str, Any]], group: int, batch: int = 1000
) -> int:
    """The fan-out path: server-side XADD loops, 1,000 jobs per round trip."""
    script = redis.register_script(_XADD_MANY_LUA)
    stream = job_stream(group)
    count = 0
    chunk: list[bytes] = []
    for payload in payloads:
        chunk.append(orjson.dumps(payload))
        if len(chunk) >= batch:
            count += int(script(keys=[stream], args=[kind, *chunk]))
            chunk = []
    if chunk:
        count += int(script(keys=[stream], args=[kind, *chunk]))
    return count


_PROMOTE_DUE_LUA = """
local due = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', ARGV[1], 'LIMIT', 0, ARGV[2])
for _, member in ipairs(due) do
  local job = cjson.decode(member)
  redis.call('XADD', KEYS[2], '*', 'kind', job['kind'], 'payload', job['payload'],
             'attempt', job['attempt'])
  redis.call('ZREM', KEYS[1], member)
end
return #due
"""


def ensure_group(redis: Any) -> None:
    for group in range(SLOT_GROUPS):
        try:
            redis.xgroup_create(job_stream(group), JOB_GROUP, id="0", mkstream=True)
        except redis_lib.ResponseError as exc:
            if "BUSYGROUP" not in str(exc):
                raise


class Worker:
    def __init__(
        self,
        redis: Any,
        handlers: dict[str, Handler],
        consumer: str | None = None,
        batch: int = 200,
        claim_idle_ms: int = 15_000,
        max_attempts: int = DEFAULT_MAX_ATTEMPTS,
        backoff_seconds: float = DEFAULT_BACKOFF_SECONDS,
        dead_letter_hooks: dict[str, DeadLetterHook] | None = None,
        batch_handlers: dict[str, BatchHandler] | None = None,
    ) -> None:
        self.redis = redis
        self.handlers = handlers
        self.batch_handlers = batch_handlers or {}
        self.consumer = consumer or f"{socket.gethostname()}-{os.getpid()}"
        self.batch = batch
        self.claim_idle_ms = claim_idle_ms
        self.max_attempts = max_attempts
        self.backoff_seconds = backoff_seconds
        self.dead_letter_hooks = dead_letter_hooks or {}
        self.stopping = False
        self._promote = redis.register_script(_PROMOTE_DUE_LUA)
        self._cluster = is_cluster_client(redis)
        self._next_sweep = 0.0
        self._all_new = {job_stream(g): ">" for g in range(SLOT_GROUPS)}
        self._group_of = {job_stream(g): g for g in range(SLOT_GROUPS)}
        ensure_group(redis)

    @staticmethod
    def _payload(fields: dict[bytes, bytes]) -> dict[str, Any]:
        try:
            payload = orjson.loads(fields[b"payload"])
        except (KeyError, orjson.JSONDecodeError) as exc:
            raise PermanentJobError(f"undecodable payload: {exc}") from exc
        if not isinstance(payload, dict):
            raise PermanentJobError("undecodable payload: not a JSON object")
        return payload

    def _handle_all(self, entries: list[JobEntry]) -> list[Exception | None]:
        """Run every entry: kinds with a batch handler in one call per kind, the others one
        by one. One result per entry, in order (None: done)."""
        results: list[Exception | None] = [None] * len(entries)
        batches: dict[str, list[tuple[int, dict[str, Any]]]] = {}
        for i, (_entry_id, fields) in enumerate(entries):
            kind = fields.get(b"kind", b"").decode(errors="replace")
            try:
                if kind not in self.handlers and kind not in self.batch_handlers:
                    raise PermanentJobError(f"no handler for job kind {kind!r}")
                payload = self._payload(fields)
                if kind in self.batch_handlers:
                    batches.setdefault(kind, []).append((i, payload))
                else:
                    self.handlers[kind](payload)
            except Exception as exc:
                results[i] = exc
        for kind, items in batches.items():
            try:
                outcomes = self.batch_handlers[kind]([payload for _i, payload in items])
            except Exception as exc:  # the batch as a whole failed: each job retries
                outcomes = [exc] * len(items)
            for (i, _payload), outcome in zip(items, outcomes, strict=True):
                results[i] = outcome
        return results

    def _finish(self, pipe: Any, group: int, entry_id: bytes) -> None:
        pipe.xack(job_stream(group), JOB_GROUP, entry_id)
        pipe.xdel(job_stream(group), entry_id)

    def _dead_letter(
        self,
        pipe: Any,
        group: int,
        entry_id: bytes,
        fields: dict[bytes, bytes],
        attempts: int,
        reason: str,
    ) -> None:
        kind = fields.get(b"kind", b"").decode(errors="replace")
        raw_payload = fields.get(b"payload", b"")
        log.error(
            "job %s (%s) dead-lettered after %d attempts: %s", entry_id, kind, attempts, reason
        )
        pipe.xadd(
            dead_letter_stream(group),
            {
                "kind": kind,
                "attempts": str(attempts),
                "envelope": dead_letter(f"{JOB_SOURCE}:{kind}", raw_payload, reason),
            },
            maxlen=DEAD_LETTER_MAXLEN,
            approximate=True,
        )
        hook = self.dead_letter_hooks.get(kind)
        if hook is not None:
            try:
                hook(pipe, orjson.loads(raw_payload))
            except (orjson.JSONDecodeError, KeyError, TypeError):
                log.error("dead-letter hook for %s could not read job %s", kind, entry_id)
        self._finish(pipe, group, entry_id)

    def _failed(
        self, pipe: Any, group: int, entry_id: bytes, fields: dict[bytes, bytes], exc: Exception
    ) -> None:
        attempt = int(fields.get(b"attempt", b"0") or 0) + 1
        reason = f"{type(exc).__name__}: {exc}"[:1000]
        if isinstance(exc, PermanentJobError) or attempt >= self.max_attempts:
            self._dead_letter(pipe, group, entry_id, fields, attempt, reason)
            return
        delay = self.backoff_seconds * 2 ** (attempt - 1)
        log.warning(
            "job %s failed (attempt %d), retry in %.1f s: %s", entry_id, attempt, delay, reason
        )
        job = {
            "id": entry_id.decode(),
            "kind": fields.get(b"kind", b"").decode(errors="replace"),
            "payload": fields.get(b"payload", b"").decode(errors="replace"),
            "attempt": str(attempt),
        }
        pipe.zadd(delayed_jobs(group), {orjson.dumps(job): time.time() + delay})
        self._finish(pipe, group, entry_id)

    def _crash_looping(
        self, group: int, claimed: list[tuple[bytes, dict[bytes, bytes]]]
    ) -> set[bytes]:
        """Reclaimed jobs whose workers died on them max_attempts times: dead-letter them."""
        if not claimed:
            return set()
        pending = self.redis.xpending_range(
            job_stream(group),
            JOB_GROUP,
            min=claimed[0][0],
            max=claimed[-1][0],
            count=len(claimed) * 2,
            consumername=self.consumer,
        )
        deliveries = {row["message_id"]: int(row["times_delivered"]) for row in pending}
        poisoned = set()
        pipe = self.redis.pipeline(transaction=True)
        for entry_id, fields in claimed:
            times = deliveries.get(entry_id, 0)
            if times > self.max_attempts:
                reason = f"a worker died while handling it {times - 1} times"
                self._dead_letter(pipe, group, entry_id, fields, times - 1, reason)
                poisoned.add(entry_id)
        if poisoned:
            pipe.execute()
        return poisoned

    def run_once(self, block_ms: int = 1000) -> int:
        """Every ``SWEEP_SECONDS``, a sweep of every group (due retries back onto the
        stream, jobs of dead workers reclaimed); then one batch of new jobs (one
        XREADGROUP over every group's stream on a single node, one per group on a
        cluster), waiting up to ``block_ms`` when there were none. Returns jobs handled."""
        handled = 0
        now = time.monotonic()
        if now >= self._next_sweep:
            self._next_sweep = now + SWEEP_SECONDS
            handled += sum(self._sweep(group) for group in range(SLOT_GROUPS))
        if handled:
            return handled
        handled = self._read_new(None)
        if handled or not block_ms:
            return handled
        if self._cluster:  # no multi-slot XREADGROUP on a cluster: poll again soon
            time.sleep(min(block_ms / 1000, CLUSTER_IDLE_SECONDS))
            return 0
        return self._read_new(block_ms)

    def _read_new(self, block_ms: int | None) -> int:
        """Process one batch of new jobs of every group; block only on a single node."""
        if self._cluster:
            return sum(self._process(g, self._read(g)) for g in range(SLOT_GROUPS))
        response = self.redis.xreadgroup(
            JOB_GROUP, self.consumer, self._all_new, count=self.batch, block=block_ms
        )
        handled = 0
        for name, entries in response or []:
            key = name.decode() if isinstance(name, bytes) else str(name)
            handled += self._process(self._group_of[key], entries)
        return handled

    def _read(self, group: int) -> list[tuple[bytes, dict[bytes, bytes]]]:
        response = self.redis.xreadgroup(
            JOB_GROUP, self.consumer, {job_stream(group): ">"}, count=self.batch
        )
        return [e for _stream, stream_entries in response or [] for e in stream_entries]

    def _sweep(self, group: int) -> int:
        stream = job_stream(group)
        self._promote(keys=[delayed_jobs(group), stream], args=[time.time(), self.batch * 10])
        _next, claimed, *_ = self.redis.xautoclaim(
            stream, JOB_GROUP, self.consumer, self.claim_idle_ms, "0-0", count=self.batch
        )
        entries = [(entry_id, fields) for entry_id, fields in claimed if fields]
        poisoned = self._crash_looping(group, entries)
        entries = [(entry_id, fields) for entry_id, fields in entries if entry_id not in poisoned]
        return self._process(group, entries) + len(poisoned)

    def _process(self, group: int, entries: list[tuple[bytes, dict[bytes, bytes]]]) -> int:
        done = []
        pipe = self.redis.pipeline(transaction=True)
        for (entry_id, fields), error in zip(entries, self._handle_all(entries), strict=True):
            if error is None:
                done.append(entry_id)
            else:
                self._failed(pipe, group, entry_id, fields, error)
        if done:  # acknowledged only after the work: a crash before this line re-runs them
            pipe.xack(job_stream(group), JOB_GROUP, *done)
            pipe.xdel(job_stream(group), *done)
        if len(pipe):
            pipe.execute()
        return len(entries)

    def delayed_count(self) -> int:
        return sum(int(self.redis.zcard(delayed_jobs(g))) for g in range(SLOT_GROUPS))

    def run(self) -> None:
        while not self.stopping:
            self.run_once()
