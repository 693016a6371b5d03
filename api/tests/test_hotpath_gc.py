"""The hot path freezes the worker's start-up heap once, so full GC collections (150-225 ms
pauses measured by bench.api_probe) no longer traverse it while serving."""

from __future__ import annotations

import gc
from collections.abc import Iterator
from typing import Any

import pytest

from api.fastpath.asgi import HotPaths

pytestmark = pytest.mark.unit


@pytest.fixture
def unfrozen() -> Iterator[None]:
    gc.unfreeze()
    yield
    gc.unfreeze()


async def test_first_http_request_freezes_the_heap_once(unfrozen: None) -> None:
    calls: list[str] = []

    async def inner(scope: dict[str, Any], receive: Any, send: Any) -> None:
        calls.append(scope["type"])

    app = HotPaths(inner)
    await app({"type": "lifespan"}, None, None)
    assert gc.get_freeze_count() == 0  # start-up is not over yet
    await app({"type": "http", "method": "GET", "path": "/healthz"}, None, None)
    frozen = gc.get_freeze_count()
    assert frozen > 0
    keep = [object() for _ in range(10)]  # new objects stay collectable
    await app({"type": "http", "method": "GET", "path": "/healthz"}, None, None)
    assert gc.get_freeze_count() == frozen
    assert calls == ["lifespan", "http", "http"] and keep
