"""api.fastpath.autopipeline on real Redis: concurrent script calls share a pipeline, each caller
gets its own result, and a flushed script cache is recovered from."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from api.fastpath.autopipeline import ScriptBatcher
from kibamail.clients import async_redis_client
from kibamail.settings import Settings

pytestmark = pytest.mark.integration

_INCR_BY = "return redis.call('INCRBY', KEYS[1], ARGV[1])"


async def _calls(settings: Settings, count: int, flush_scripts: bool) -> tuple[list[Any], int]:
    redis = async_redis_client(settings)
    try:
        batcher = ScriptBatcher(redis, _INCR_BY)
        if flush_scripts:
            await redis.script_flush()
        pipelines: list[int] = []
        original = redis.pipeline

        def counting_pipeline(*args: Any, **kwargs: Any) -> Any:
            pipelines.append(1)
            return original(*args, **kwargs)

        redis.pipeline = counting_pipeline
        results = await asyncio.gather(*(batcher([f"autopipe:{i % 3}"], [i]) for i in range(count)))
        return list(results), len(pipelines)
    finally:
        await redis.aclose()


def test_concurrent_calls_share_one_pipeline_and_get_their_own_results(
    test_settings: Settings, redis_client: Any
) -> None:
    results, pipelines = asyncio.run(_calls(test_settings, 30, flush_scripts=False))
    assert pipelines == 1
    running = {0: 0, 1: 0, 2: 0}
    expected = []
    for i in range(30):
        running[i % 3] += i
        expected.append(running[i % 3])
    assert results == expected  # scripts ran in call order, answers routed back
    assert int(redis_client.get("autopipe:0")) == sum(range(0, 30, 3))


def test_a_flushed_script_cache_is_reloaded_and_every_call_runs_once(
    test_settings: Settings, redis_client: Any
) -> None:
    results, _ = asyncio.run(_calls(test_settings, 12, flush_scripts=True))
    assert len(results) == 12
    assert sum(int(redis_client.get(f"autopipe:{k}")) for k in range(3)) == sum(range(12))
