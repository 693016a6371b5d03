"""The API's async Redis pool under a burst: requests wait for a connection instead of
failing (redis-py's default pool raises MaxConnectionsError past 100 in flight -> 500)."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from api.app import REDIS_POOL_SIZE, build_state
from api.tests.conftest import RecordingProducer
from kibamail.settings import Settings

pytestmark = pytest.mark.integration


async def _burst(settings: Settings, concurrent: int) -> list[Any]:
    state = build_state(settings, RecordingProducer())
    try:
        # BLPOP with a timeout holds its connection for a while, like a slow script would.
        calls = [state.redis.blpop([f"pool-burst:{i}"], timeout=0.2) for i in range(concurrent)]
        return list(await asyncio.gather(*calls))
    finally:
        await state.redis.aclose(close_connection_pool=True)
        state.sync_redis.close()
        state.engine.dispose()


def test_a_burst_beyond_the_pool_waits_instead_of_failing(
    api_settings: Settings, redis_client: Any
) -> None:
    results = asyncio.run(_burst(api_settings, REDIS_POOL_SIZE * 2 + 50))
    assert results == [None] * (REDIS_POOL_SIZE * 2 + 50)
