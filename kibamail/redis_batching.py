"""Redis auto-pipelining: the calls of concurrent tasks share one pipeline round trip.

redis-py pays its connection-pool checkout, retry wrapper and socket round trip per
command; under load many tasks reach Redis at about the same moment, and one pipeline
pays those costs once per batch (profiling showed them as a quarter of an API send's
CPU). Both batchers here queue each caller with a future, send the batch as ONE
pipeline with ``raise_on_error=False`` and route the answers back in order:

- a command that fails fails only its own caller (its error is that caller's result);
- a round trip that fails (connection trouble) fails every caller of that batch;
- nobody waits when Redis is idle: the first caller schedules the flush on the next
  loop step and whoever arrives in the meantime joins it.

Two entry points, for two shapes of use:

``PipelineBatcher.run(build, group)`` is group commit (the MTA): each caller hands a
function that queues any number of commands on the pipeline and gets their results, or
the first error among them. One batch is on the wire at a time and everyone who arrives
meanwhile joins the next one (at most ``max_batch`` callers each), so batches grow with
load. With ``transaction=True`` a batch is one MULTI/EXEC, so each caller's commands
stay atomic (the XACK-with-its-outcome guarantee holds). On a Redis Cluster a MULTI must
stay in one slot, so transactional batches are kept per slot group (``group``: the
kibamail.redis_keys group every key of the caller is tagged with), one batch per group
in flight at a time; a single node batches everyone together. A builder that raises
fails alone: the commands it queued are dropped.

``ScriptBatcher(redis, source)(keys, args)`` is the API hot path's auto-pipelining of
one Lua script (ioredis' "autopipelining"): the calls made in one event-loop turn go as
one non-transactional pipeline of EVALSHAs, sent at once (batches of several turns may
be in flight together), each script still atomic on its own. It keeps the per-call cost
to one future and one queue entry: no builder closure, no result slices. A lone call is
sent without a pipeline; a flushed script cache (NOSCRIPT) is reloaded and the affected
calls rerun.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterable
from typing import Any

from redis.asyncio.cluster import RedisCluster as AsyncRedisCluster
from redis.cluster import RedisCluster
from redis.exceptions import NoScriptError

Build = Callable[[Any], None]
Pending = list[tuple[Build, asyncio.Future[list[Any]]]]


def is_cluster_client(client: Any) -> bool:
    """True for a sync or asyncio RedisCluster client."""
    return isinstance(client, RedisCluster | AsyncRedisCluster)


async def ready(client: Any) -> None:
    """Load an asyncio RedisCluster's slot map on THIS event loop before a transaction.

    redis-py 8.1's asyncio cluster transaction resolves each queued command's slot with
    ``asyncio.run`` in a helper thread, which would open the client's first connections on
    that thread's loop when the client has not been initialized yet (later use then fails
    with "attached to a different loop"). No-op for other clients and once initialized."""
    if isinstance(client, AsyncRedisCluster) and client._initialize:
        await client.initialize()


class IdlePoll:
    """The pause of a cluster's multi-stream reader after a round that found nothing.

    No blocking read spans slots on a cluster, so readers poll one stream per group; the
    pause doubles from ``first`` to ``cap`` while the streams stay empty, so an idle queue
    costs a few pipelined round trips a second and a busy one none."""

    def __init__(self, first: float = 0.005, cap: float = 0.2) -> None:
        self.first, self.cap = first, cap
        self.pause = first

    async def after(self, found: bool, limit: float) -> None:
        """Reset after a round that found entries; otherwise sleep (at most ``limit``)."""
        if found:
            self.pause = self.first
            return
        await asyncio.sleep(min(self.pause, limit))
        self.pause = min(self.pause * 2, self.cap)


def _drop_from(pipe: Any, start: int) -> None:
    """Forget the commands queued from ``start`` on (single-node or cluster pipeline)."""
    stack = getattr(pipe, "command_stack", None)
    if stack is None:  # redis.asyncio.cluster.ClusterPipeline keeps it in its strategy
        stack = pipe._execution_strategy._command_queue
    del stack[start:]


async def _execute(pipe: Any, futures: Iterable[asyncio.Future[Any]]) -> list[Any] | None:
    """The pipeline's per-command results (errors as values), or None once a failed
    round trip has been handed to every caller still waiting in ``futures``."""
    try:
        results: list[Any] = await pipe.execute(raise_on_error=False)
        return results
    except BaseException as exc:
        for future in futures:
            if not future.done():
                future.set_exception(exc)
        if not isinstance(exc, Exception):
            raise
        return None


class PipelineBatcher:
    """Group commit: ``run(build)`` queues ``build``'s commands in the next shared pipeline."""

    def __init__(self, redis: Any, *, transaction: bool, max_batch: int = 256) -> None:
        self.redis = redis
        self.transaction = transaction
        self.max_batch = max_batch
        self.per_group = transaction and is_cluster_client(redis)
        self._pending: dict[int | None, Pending] = {}
        self._flusher: asyncio.Task[None] | None = None
        self.round_trips = 0

    async def run(self, build: Build, group: int | None = None) -> list[Any]:
        """Queue ``build``'s commands; their results, or the first error among them.
        ``group``: the slot group of every key ``build`` touches (needed on a cluster
        with ``transaction=True``; ignored otherwise)."""
        if self.per_group and group is None:
            raise ValueError("a transactional batch on a Redis Cluster needs the slot group")
        future: asyncio.Future[list[Any]] = asyncio.get_running_loop().create_future()
        self._pending.setdefault(group if self.per_group else None, []).append((build, future))
        if self._flusher is None or self._flusher.done():
            self._flusher = asyncio.create_task(self._flush())
        return await future

    async def _flush(self) -> None:
        await asyncio.sleep(0)  # let the tasks runnable in this loop step join the batch
        while self._pending:
            batches = []
            for group, queue in list(self._pending.items()):
                batches.append(queue[: self.max_batch])
                del queue[: self.max_batch]
                if not queue:
                    del self._pending[group]
            if len(batches) == 1:
                await self._execute(batches[0])
            else:
                await asyncio.gather(*(self._execute(batch) for batch in batches))

    async def _execute(self, batch: Pending) -> None:
        if self.per_group:
            await ready(self.redis)
        pipe = self.redis.pipeline(transaction=self.transaction)
        spans: list[tuple[int, int]] = []
        for build, future in batch:
            start = len(pipe)
            try:
                build(pipe)
            except Exception as exc:  # a bad builder fails alone: drop what it queued
                _drop_from(pipe, start)
                future.set_exception(exc)
            spans.append((start, len(pipe)))
        self.round_trips += 1
        if len(pipe):
            results = await _execute(pipe, (future for _build, future in batch))
            if results is None:
                return
        else:
            results = []
        for (start, end), (_build, future) in zip(spans, batch, strict=True):
            if future.done():
                continue
            mine = results[start:end]
            error = next((r for r in mine if isinstance(r, Exception)), None)
            if error is not None:
                future.set_exception(error)
            else:
                future.set_result(mine)


class ScriptBatcher:
    """Auto-pipelining of one Lua script: ``await batcher(keys, args)`` is its result."""

    def __init__(self, redis: Any, source: str) -> None:
        self._redis = redis
        self._script = redis.register_script(source)  # EVAL fallback for NOSCRIPT
        self._pending: list[tuple[list[Any], list[Any], asyncio.Future[Any]]] = []
        self._running: set[asyncio.Task[None]] = set()

    async def __call__(self, keys: list[Any], args: list[Any]) -> Any:
        loop = asyncio.get_running_loop()
        future: asyncio.Future[Any] = loop.create_future()
        self._pending.append((keys, args, future))
        if len(self._pending) == 1:
            loop.call_soon(self._flush)
        return await future

    def _flush(self) -> None:
        batch, self._pending = self._pending, []
        task = asyncio.ensure_future(self._run(batch))
        self._running.add(task)
        task.add_done_callback(self._running.discard)

    async def _run(self, batch: list[tuple[list[Any], list[Any], asyncio.Future[Any]]]) -> None:
        if len(batch) == 1:
            keys, args, future = batch[0]
            await self._settle(future, self._script(keys=keys, args=args))
            return
        pipe = self._redis.pipeline(transaction=False)
        try:
            for keys, args, _ in batch:
                # execute_command, not pipe.evalsha: redis-py's cluster pipeline refuses
                # the evalsha method but routes the command by its keys' slot.
                pipe.execute_command("EVALSHA", self._script.sha, len(keys), *keys, *args)
        except Exception as exc:
            for _, _, future in batch:
                if not future.done():
                    future.set_exception(exc)
            return
        results = await _execute(pipe, (future for _, _, future in batch))
        if results is None:
            return
        for (keys, args, future), result in zip(batch, results, strict=True):
            if isinstance(result, NoScriptError):  # not run: Script loads it and retries
                await self._settle(future, self._script(keys=keys, args=args))
            elif future.done():
                continue
            elif isinstance(result, Exception):
                future.set_exception(result)
            else:
                future.set_result(result)

    @staticmethod
    async def _settle(future: asyncio.Future[Any], call: Any) -> None:
        try:
            result = await call
        except Exception as exc:
            if not future.done():
                future.set_exception(exc)
            return
        if not future.done():
            future.set_result(result)
