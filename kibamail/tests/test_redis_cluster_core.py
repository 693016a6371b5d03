"""The core's Redis pieces on a real 3-master cluster: the clients, the group-commit batcher
(one MULTI per slot group), the auto-pipelined script batcher, the intake, the team budget
and the pause list all run without a CROSSSLOT error."""

from __future__ import annotations

import asyncio
import uuid
from typing import Any

import pytest

from kibamail import team_budget, team_pauses
from kibamail.clients import async_redis_client, is_cluster_client, redis_client
from kibamail.contracts import MessageMapping, OutboundMessage
from kibamail.intake import submit
from kibamail.redis_batching import PipelineBatcher, ScriptBatcher
from kibamail.redis_keys import SLOT_GROUPS, RedisKeys, slot_group
from kibamail.settings import SendingLimits, Settings
from testing.redis_cluster import RedisClusterHandle

pytestmark = pytest.mark.integration


@pytest.fixture
def settings(redis_cluster: RedisClusterHandle) -> Settings:
    redis_cluster.flush()
    return Settings(redis=redis_cluster.settings)


def _teams(count: int) -> list[str]:
    return [str(uuid.uuid4()) for _ in range(count)]


def _one_team_per_group() -> list[str]:
    """A team in each of the 16 slot groups (so every master holds some)."""
    teams: dict[int, str] = {}
    while len(teams) < SLOT_GROUPS:
        team = str(uuid.uuid4())
        teams.setdefault(slot_group(team), team)
    return [teams[g] for g in range(SLOT_GROUPS)]


def test_the_clients_are_cluster_clients(settings: Settings) -> None:
    client = redis_client(settings)
    try:
        assert is_cluster_client(client) and client.ping()
    finally:
        client.close()


def test_group_commit_keeps_each_multi_in_one_slot(settings: Settings) -> None:
    teams = _teams(24)

    async def run() -> tuple[list[list[Any]], int]:
        redis = async_redis_client(settings)
        try:
            batcher = PipelineBatcher(redis, transaction=True)
            with pytest.raises(ValueError):  # a MULTI on a cluster must name its group
                await batcher.run(lambda pipe: pipe.set(RedisKeys.team_paused(teams[0]), "1"))

            def build(team: str) -> Any:
                def queue(pipe: Any) -> None:
                    pipe.sadd(RedisKeys.suppression(team), "x@example.org")
                    pipe.incr(RedisKeys.team_daily_sent(team, "20260101"))

                return queue

            results = await asyncio.gather(
                *(batcher.run(build(team), slot_group(team)) for team in teams)
            )
            return results, batcher.round_trips
        finally:
            await redis.aclose()

    results, round_trips = asyncio.run(run())
    assert results == [[1, 1]] * len(teams)
    assert round_trips <= len({slot_group(t) for t in teams})  # one MULTI per group at most


def test_script_batcher_spreads_over_the_masters(settings: Settings) -> None:
    teams = _teams(16)

    async def run() -> list[Any]:
        redis = async_redis_client(settings)
        try:
            script = ScriptBatcher(redis, "return redis.call('INCR', KEYS[1])")
            return await asyncio.gather(
                *(script([RedisKeys.team_daily_sent(t, "d")], []) for t in teams)
            )
        finally:
            await redis.aclose()

    assert asyncio.run(run()) == [1] * len(teams)


def test_intake_budget_and_pauses_on_the_cluster(
    settings: Settings, redis_cluster: RedisClusterHandle
) -> None:
    client = redis_client(settings)
    try:
        teams = _one_team_per_group()
        for team in teams:
            message = OutboundMessage(
                message_id=f"{uuid.uuid4().hex}@example.com",
                team_id=team,
                mail_from="a@example.com",
                recipients=["b@example.org"],
                data=b"Subject: s\r\n\r\nt",
            )
            submit(client, message, MessageMapping(team_id=team), durability=settings.redis)
            charged = team_budget.charge_sync(client, team, SendingLimits(), 1, check_bulk=True)
            assert charged.status == team_budget.OK
        assert sum(client.xlen(s) for s in RedisKeys.submission_streams()) == len(teams)
        client.set(RedisKeys.team_paused(teams[0]), '{"reason": "test"}')
        client.set(RedisKeys.team_paused(teams[1]), '{"reason": "test"}')
        paused = {p.team_id for p in team_pauses.list_pauses(client)}
        assert paused == {teams[0], teams[1]}  # SCAN visits every master
        assert all(size > 0 for size in redis_cluster.keys_per_master().values())
    finally:
        client.close()
