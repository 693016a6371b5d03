"""Group commit: concurrent callers share one pipeline, each gets its own results/errors."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from mta.batching import PipelineBatcher

pytestmark = pytest.mark.unit


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


def test_concurrent_callers_share_one_round_trip_with_their_own_results() -> None:
    redis = FakeRedis()

    async def main() -> list[Any]:
        batcher = PipelineBatcher(redis, transaction=True)

        def build(i: int) -> Any:
            return lambda pipe: (pipe.echo(i), pipe.echo(i * 10))

        return await asyncio.gather(*(batcher.run(build(i)) for i in range(5)))

    assert asyncio.run(main()) == [[i, i * 10] for i in range(5)]
    assert len(redis.executed) == 1


def test_errors_stay_with_their_caller() -> None:
    redis = FakeRedis()

    def broken(pipe: Any) -> None:
        pipe.echo("queued before the crash")
        raise RuntimeError("builder bug")

    async def main() -> list[Any]:
        batcher = PipelineBatcher(redis, transaction=True)
        return await asyncio.gather(
            batcher.run(lambda p: p.echo("ok")),
            batcher.run(broken),
            batcher.run(lambda p: p.echo("bad")),
            return_exceptions=True,
        )

    ok, builder_error, command_error = asyncio.run(main())
    assert ok == ["ok"]
    assert isinstance(builder_error, RuntimeError) and isinstance(command_error, ValueError)
    assert redis.executed == [["ok", "bad"]]  # the broken builder's command was dropped


def test_a_failed_round_trip_fails_every_caller_of_the_batch() -> None:
    redis = FakeRedis()
    redis.down = True

    async def main() -> list[Any]:
        batcher = PipelineBatcher(redis, transaction=True)
        calls = [batcher.run(lambda p, i=i: p.echo(i)) for i in range(3)]
        return await asyncio.gather(*calls, return_exceptions=True)

    assert all(isinstance(r, ConnectionError) for r in asyncio.run(main()))
