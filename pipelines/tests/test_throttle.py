"""Throttle decisions from reputation signals, written to a real Redis."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import orjson
import pytest

from kibamail.contracts import ReputationSignal
from kibamail.redis_keys import RedisKeys
from pipelines.throttle import ThrottlePolicy, apply, decide

pytestmark = pytest.mark.integration

T = datetime(2026, 11, 2, 12, 0, tzinfo=UTC)


def signal(
    window: str = "1m", scope: str = "team", key: str = "t1", **counts: int
) -> ReputationSignal:
    delivered = counts.get("delivered", 0)
    bounced = counts.get("bounced", 0)
    deferred = counts.get("deferred", 0)
    complained = counts.get("complained", 0)
    return ReputationSignal(
        team_id=key if scope == "team" else "_platform",
        scope=scope,
        scope_key=key,
        window=window,
        window_start=T,
        window_end=T + timedelta(minutes=1 if window == "1m" else 60),
        delivered=delivered,
        bounced=bounced,
        deferred=deferred,
        complained=complained,
        bounce_rate=bounced / max(1, delivered + bounced),
        complaint_rate=complained / max(1, delivered),
        defer_rate=deferred / max(1, delivered + deferred + bounced),
    )


def test_decisions_follow_thresholds() -> None:
    policy = ThrottlePolicy()
    assert decide(signal(delivered=900, bounced=100), policy)["action"] == "pause"  # type: ignore[index]
    assert decide(signal(delivered=940, bounced=60), policy)["action"] == "slow"  # type: ignore[index]
    assert decide(signal(delivered=600, deferred=400), policy)["action"] == "slow"  # type: ignore[index]
    assert decide(signal(delivered=990, bounced=10), policy) is None
    assert decide(signal(delivered=20, bounced=20), policy) is None  # too few to judge


def test_most_severe_wins_and_healthy_hour_clears(redis_client: Any) -> None:
    policy = ThrottlePolicy(ttl_seconds=120)
    bad_minute = signal(delivered=900, bounced=100)
    meh_hour = signal("1h", delivered=9400, bounced=600)
    assert apply(redis_client, [bad_minute, meh_hour], policy) == 1
    key = RedisKeys.reputation_throttle("team", "t1")
    assert orjson.loads(redis_client.get(key))["action"] == "pause"
    assert 0 < redis_client.ttl(key) <= 120

    pair = signal(scope="ip_provider", key="192.0.2.1|google", delivered=600, deferred=400)
    apply(redis_client, [pair], policy)
    assert (
        orjson.loads(
            redis_client.get(RedisKeys.reputation_throttle("ip_provider", "192.0.2.1|google"))
        )["action"]
        == "slow"
    )

    apply(redis_client, [signal("1h", delivered=10_000, bounced=10)], policy)
    assert redis_client.get(key) is None
