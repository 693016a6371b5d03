"""kibamail.redis_batching: concurrent callers share one pipeline, each gets its own
results or errors. Group commit (PipelineBatcher) on a fake pipeline; the script
auto-pipelining (ScriptBatcher) on real Redis, including a flushed script cache."""

from __future__ import annotations

import asyncio
import functools
from typing import Any

import pytest
from redis.exceptions import ResponseError

from kibamail.clients import async_redis_client
from kibamail.redis_batching import IdlePoll, PipelineBatcher, ScriptBatcher
from kibamail.settings import Settings


def echo(pipe: Any, value: Any) -> None:
    pipe.echo(value)


class FakePipeline:
    def __init__(self, owner: FakeRedis) -> None:
        self.owner = owner
        self.command_stack: list[tuple[str, Any]] = []

    def __len__(self) -> int:
        return len(self.command_stack)

    def echo(self, value: Any) -> None:
        self.command_stack.append(("echo", value))

    async def execute(self, raise_on_error: bool = True) -> list[Any]:
        self.owner.executed.append([v for _c, v in self.command_stack])
        if self.owner.down:
            raise ConnectionError("redis down")
        return [ValueError(v) if v == "bad" else v for _c, v in self.command_stack]


class FakeRedis:
    def __init__(self) -> None:
        self.executed: list[list[Any]] = []
        self.down = False

    def pipeline(self, transaction: bool) -> FakePipeline:
        return FakePipeline(self)


@pytest.mark.unit
def test_concurrent_callers_share_one_round_trip_with_their_own_results() -> None:
    redis = FakeRedis()

    async def main() -> list[Any]:
        batcher = PipelineBatcher(redis, transaction=True)

        def build(i: int) -> Any:
            return lambda pipe: (pipe.echo(i), pipe.echo(i * 10))

        return list(await asyncio.gather(*(batcher.run(build(i)) for i in range(5))))

    assert asyncio.run(main()) == [[i, i * 10] for i in range(5)]
    assert len(redis.executed) == 1


@pytest.mark.unit
def test_errors_stay_with_their_caller() -> None:
    redis = FakeRedis()

    def broken(pipe: Any) -> None:
        pipe.echo("queued before the crash")
        raise RuntimeError("builder bug")

    async def main() -> list[Any]:
        batcher = PipelineBatcher(redis, transaction=True)
        return list(
            await asyncio.gather(
                batcher.run(lambda p: p.echo("ok")),
                batcher.run(broken),
                batcher.run(lambda p: p.echo("bad")),
                return_exceptions=True,
            )
        )

    ok, builder_error, command_error = asyncio.run(main())
    assert ok == ["ok"]
    assert isinstance(builder_error, RuntimeError) and isinstance(command_error, ValueError)
    assert redis.executed == [["ok", "bad"]]  # the broken builder's command was dropped


@pytest.mark.unit
def test_a_failed_round_trip_fails_every_caller_of_the_batch() -> None:
    redis = FakeRedis()
    redis.down = True

    async def main() -> list[Any]:
        batcher = PipelineBatcher(redis, transaction=True)
        calls = [batcher.run(functools.partial(echo, value=i)) for i in range(3)]
        return list(await asyncio.gather(*calls, return_exceptions=True))

    assert all(isinstance(r, ConnectionError) for r in asyncio.run(main()))


_INCR_BY = "return redis.call('INCRBY', KEYS[1], ARGV[1])"


async def _script_calls(
    settings: Settings, count: int, flush_scripts: bool
) -> tuple[list[Any], int]:
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


@pytest.mark.integration
def test_concurrent_script_calls_share_one_pipeline_and_get_their_own_results(
    test_settings: Settings, redis_client: Any
) -> None:
    results, pipelines = asyncio.run(_script_calls(test_settings, 30, flush_scripts=False))
    assert pipelines == 1
    running = {0: 0, 1: 0, 2: 0}
    expected = []
    for i in range(30):
        running[i % 3] += i
        expected.append(running[i % 3])
    assert results == expected  # scripts ran in call order, answers routed back
    assert int(redis_client.get("autopipe:0")) == sum(range(0, 30, 3))


@pytest.mark.integration
def test_a_flushed_script_cache_is_reloaded_and_every_call_runs_once(
    test_settings: Settings, redis_client: Any
) -> None:
    results, _ = asyncio.run(_script_calls(test_settings, 12, flush_scripts=True))
    assert len(results) == 12
    assert sum(int(redis_client.get(f"autopipe:{k}")) for k in range(3)) == sum(range(12))


async def _one_bad_script_call(settings: Settings) -> list[Any]:
    redis = async_redis_client(settings)
    try:
        batcher = ScriptBatcher(redis, _INCR_BY)
        calls = [batcher(["autopipe:0"], [arg]) for arg in (1, "x", 2)]
        return list(await asyncio.gather(*calls, return_exceptions=True))
    finally:
        await redis.aclose()


@pytest.mark.integration
def test_a_failing_script_call_fails_alone(test_settings: Settings, redis_client: Any) -> None:
    first, bad, third = asyncio.run(_one_bad_script_call(test_settings))
    assert (first, third) == (1, 3)
    assert isinstance(bad, ResponseError)


@pytest.mark.unit
def test_idle_poll_doubles_while_empty_and_resets_on_work() -> None:
    poll = IdlePoll(first=0.001, cap=0.004)
    pauses = []
    for _ in range(4):
        asyncio.run(poll.after(False, limit=1.0))
        pauses.append(poll.pause)
    assert pauses == [0.002, 0.004, 0.004, 0.004]  # doubled, then capped
    asyncio.run(poll.after(True, limit=1.0))
    assert poll.pause == 0.001  # a round with entries: poll again at once
