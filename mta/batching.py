"""Group commit for Redis: commands of concurrent tasks share one pipeline round trip.

Each delivery task describes its writes (or reads) as a function that queues commands
on a pipeline; ``PipelineBatcher.run`` queues it and returns that function's results
once the pipeline ran. The first caller starts a flush on the next loop step, so every
task that gets there in the meantime (and everyone who arrives while a flush is on the
wire) joins the next batch: one round trip per batch instead of one per message, and no
waiting when the worker is idle. With ``transaction=True`` a batch is one MULTI/EXEC, so
each task's commands stay atomic (the XACK-with-its-outcome guarantee holds).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

Build = Callable[[Any], None]


class PipelineBatcher:
    def __init__(self, redis: Any, *, transaction: bool, max_batch: int = 256) -> None:
        self.redis = redis
        self.transaction = transaction
        self.max_batch = max_batch
        self._pending: list[tuple[Build, asyncio.Future[list[Any]]]] = []
        self._flusher: asyncio.Task[None] | None = None
        self.round_trips = 0

    async def run(self, build: Build) -> list[Any]:
        """Queue ``build``'s commands; their results, or the first error among them."""
        future: asyncio.Future[list[Any]] = asyncio.get_running_loop().create_future()
        self._pending.append((build, future))
        if self._flusher is None or self._flusher.done():
            self._flusher = asyncio.create_task(self._flush())
        return await future

    async def _flush(self) -> None:
        await asyncio.sleep(0)  # let the tasks runnable in this loop step join the batch
        while self._pending:
            batch = self._pending[: self.max_batch]
            del self._pending[: self.max_batch]
            await self._execute(batch)

    async def _execute(self, batch: list[tuple[Build, asyncio.Future[list[Any]]]]) -> None:
        pipe = self.redis.pipeline(transaction=self.transaction)
        spans: list[tuple[int, int]] = []
        for build, future in batch:
            start = len(pipe)
            try:
                build(pipe)
            except Exception as exc:  # a bad builder fails alone: drop what it queued
                del pipe.command_stack[start:]
                future.set_exception(exc)
            spans.append((start, len(pipe)))
        self.round_trips += 1
        try:
            results = await pipe.execute(raise_on_error=False) if len(pipe) else []
        except BaseException as exc:
            for _build, future in batch:
                if not future.done():
                    future.set_exception(exc)
            if not isinstance(exc, Exception):
                raise
            return
        for (start, end), (_build, future) in zip(spans, batch, strict=True):
            if future.done():
                continue
            mine = results[start:end]
            error = next((r for r in mine if isinstance(r, Exception)), None)
            if error is not None:
                future.set_exception(error)
            else:
                future.set_result(mine)
