"""Reputation throttling end to end: real Redis, a running MTA, the test internet, Kafka."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import orjson
import pytest

from kibamail.contracts import TrafficKind
from kibamail.intake import submit
from kibamail.redis_keys import RedisKeys
from kibamail.settings import Settings
from testing.testnet import SinkServer

from .helpers import StatusReader, make_message, wait_until, with_policy, write_policy

pytestmark = pytest.mark.integration


@pytest.fixture
def mta_settings(test_settings: Settings, tmp_path: Path) -> Settings:
    return with_policy(test_settings, write_policy(tmp_path / "p.toml", team_per_second=4))


def _throttle(redis: Any, scope: str, key: str, action: str, factor: float = 0.0) -> str:
    name = RedisKeys.reputation_throttle(scope, key)
    decision = {"action": action, "factor": factor, "reason": f"test {action}", "event_id": "x"}
    redis.set(name, orjson.dumps(decision), ex=600)
    return name


def _delivered(sink: SinkServer, message_id: str) -> list[str]:
    return [r.peer for r in sink.records if r.message_id == message_id and r.answer_code == 250]


def test_team_pause_holds_then_mail_flows_when_lifted(
    running_mta: Settings, redis_client: Any, sink: SinkServer
) -> None:
    redis_client.set(RedisKeys.domain_ready("team-rep", "sender.example"), "1")
    key = _throttle(redis_client, "team", "team-rep", "pause")
    msg = make_message(["r1@example.org"], team="team-rep")
    submit(redis_client, msg)
    reader = StatusReader(running_mta)
    try:
        held = reader.poll_until(
            lambda ev: any(e.message_id == msg.message_id and e.status == "held" for e in ev)
        )
        first = next(e for e in held if e.message_id == msg.message_id and e.status == "held")
        assert "paused by reputation" in first.reason and "test pause" in first.reason
        assert _delivered(sink, msg.message_id) == []
        redis_client.delete(key)
        assert wait_until(lambda: _delivered(sink, msg.message_id) != [], timeout=20)
        events = reader.poll_until(
            lambda ev: any(e.message_id == msg.message_id and e.status == "delivered" for e in ev)
        )
    finally:
        reader.close()
    statuses = [e.status.value for e in events if e.message_id == msg.message_id]
    assert statuses.count("delivered") == 1 and statuses[-1] == "delivered"


def test_paused_ip_provider_uses_the_other_pool_ip(
    running_mta: Settings, redis_client: Any, sink: SinkServer
) -> None:
    redis_client.set(RedisKeys.domain_ready("team-1", "sender.example"), "1")
    _throttle(redis_client, "ip_provider", "127.0.0.2|example.org", "pause")
    msgs = [make_message([f"m{i}@example.org"], kind=TrafficKind.MARKETING) for i in range(4)]
    for msg in msgs:
        submit(redis_client, msg)
    assert wait_until(lambda: all(_delivered(sink, m.message_id) for m in msgs), timeout=20)
    assert {p for m in msgs for p in _delivered(sink, m.message_id)} == {"127.0.0.3"}


def test_paused_only_ip_holds_until_lifted(
    running_mta: Settings, redis_client: Any, sink: SinkServer
) -> None:
    redis_client.set(RedisKeys.domain_ready("team-1", "sender.example"), "1")
    key = _throttle(redis_client, "ip_provider", "127.0.0.1|example.org", "pause")
    msg = make_message(["only@example.org"])
    submit(redis_client, msg)
    reader = StatusReader(running_mta)
    try:
        held = reader.poll_until(
            lambda ev: any(e.message_id == msg.message_id and e.status == "held" for e in ev)
        )
    finally:
        reader.close()
    reason = next(e.reason for e in held if e.message_id == msg.message_id and e.status == "held")
    assert "127.0.0.1" not in _delivered(sink, msg.message_id) and "paused" in reason
    redis_client.delete(key)
    assert wait_until(lambda: _delivered(sink, msg.message_id) == ["127.0.0.1"], timeout=20)


def test_team_slow_spreads_delivery_and_loses_nothing(
    running_mta: Settings, redis_client: Any, sink: SinkServer
) -> None:
    """team_per_second = 4, factor 0.5: 2 msgs/s, so a burst of 8 is partly held."""
    redis_client.set(RedisKeys.domain_ready("team-slow", "sender.example"), "1")
    _throttle(redis_client, "team", "team-slow", "slow", 0.5)
    msgs = [make_message([f"s{i}@example.org"], team="team-slow") for i in range(8)]
    for msg in msgs:
        submit(redis_client, msg)
    ids = {m.message_id for m in msgs}
    reader = StatusReader(running_mta)
    try:
        events = reader.poll_until(
            lambda ev: {e.message_id for e in ev if e.status == "delivered"} >= ids, timeout=40
        )
    finally:
        reader.close()
    held = [e for e in events if e.message_id in ids and e.status == "held"]
    assert held and all("slowed to 50%" in e.reason for e in held)
    counts = sink.delivered_counts()
    assert {counts.get(i, 0) for i in ids} == {1}  # each exactly once
