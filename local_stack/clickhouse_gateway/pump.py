"""Move a request body from the socket to a blocking consumer without stalling either side.

The receive loop keeps reading while a worker thread decodes and feeds chDB, so a client
streaming a large insert never waits for the engine (up to ``max_queued`` bytes in memory);
the worker gets the body in pieces of at least ``feed_bytes`` so per-call overhead stays
small. On a shared two-core machine this matters: every time a client blocks on a full
socket it must wait to be scheduled again.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any


class ClientGone(Exception):
    """The client disconnected before the request was complete."""


class BodyTooLarge(Exception):
    def __init__(self, size: int) -> None:
        super().__init__(size)
        self.size = size


async def pump(
    receive: Callable[[], Awaitable[dict[str, Any]]],
    consume: Callable[[bytes], Awaitable[None]],
    *,
    max_body: int,
    feed_bytes: int = 1 << 20,
    max_queued: int = 32 << 20,
) -> None:
    """Read ASGI ``http.request`` messages and hand them to ``consume`` (one call at a time)."""
    queue: list[bytes] = []
    queued = 0
    received = 0
    finished = False
    wake = asyncio.Event()
    room = asyncio.Event()
    room.set()

    async def feeder() -> None:
        nonlocal queued
        while True:
            await wake.wait()
            wake.clear()
            if queue and (queued >= feed_bytes or finished):
                data = queue[0] if len(queue) == 1 else b"".join(queue)
                queue.clear()
                queued = 0
                room.set()
                await consume(data)
                wake.set()  # more may have arrived meanwhile
            elif finished:
                return

    task = asyncio.create_task(feeder())
    try:
        while not finished:
            if not room.is_set():
                waiter = asyncio.create_task(room.wait())
                await asyncio.wait({waiter, task}, return_when=asyncio.FIRST_COMPLETED)
                waiter.cancel()
            if task.done():
                break  # the consumer failed: its exception is raised below
            message = await receive()
            if message["type"] == "http.disconnect":
                raise ClientGone
            body = message.get("body", b"")
            if body:
                received += len(body)
                if received > max_body:
                    raise BodyTooLarge(received)
                queue.append(body)
                queued += len(body)
                if queued >= max_queued:
                    room.clear()
            finished = not message.get("more_body", False)
            if finished or queued >= feed_bytes:
                wake.set()
        await task
    finally:
        if not task.done():
            task.cancel()
            # consume() waits for its worker thread even when cancelled; let it.
            await asyncio.wait({task})
