"""Single-flight lookups: concurrent misses of one cache key share one call.

The delivery worker runs ~100 deliveries at once. When a per-process cache entry (MX
route, host addresses, DKIM key, policy flags) is missing or has just expired, every one
of them would otherwise ask DNS or Redis for the same answer at the same moment; with a
``SingleFlight`` the first asks and the others await its result (or its error).
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Hashable
from typing import Any, TypeVar

T = TypeVar("T")


def _retrieve(future: asyncio.Future[Any]) -> None:
    if not future.cancelled():
        future.exception()  # mark it retrieved even when every waiter was cancelled


class SingleFlight:
    def __init__(self) -> None:
        self._inflight: dict[Hashable, asyncio.Future[Any]] = {}

    async def run(self, key: Hashable, call: Callable[[], Awaitable[T]]) -> T:
        """``await call()``, unless a call for ``key`` is already running: then its result."""
        future = self._inflight.get(key)
        if future is None:
            future = asyncio.ensure_future(call())
            self._inflight[key] = future
            future.add_done_callback(lambda done: self._forget(key, done))
        # shield: one waiter being cancelled must not cancel the lookup the others await.
        return await asyncio.shield(future)

    def _forget(self, key: Hashable, done: asyncio.Future[Any]) -> None:
        if self._inflight.get(key) is done:
            del self._inflight[key]
        _retrieve(done)
