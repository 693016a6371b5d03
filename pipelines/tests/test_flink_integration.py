"""The Flink SQL reputation jobs against the real broker, bounded by specific offsets.

Bounds come from the producer's delivery reports (the local broker's ListOffsets is
wrong, pipelines/README.md). The signals must parse as the contract's ReputationSignal, carry the
right windowed counts and rates, and drive the throttle decisions in Redis.
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from confluent_kafka import Consumer, TopicPartition

from kibamail.clients import kafka_consumer_config
from kibamail.contracts import (
    MessageStatus,
    MessageStatusEvent,
    ReputationSignal,
    Topic,
    deserialize,
    serialize,
)
from kibamail.redis_keys import RedisKeys
from kibamail.settings import Settings
from pipelines.flink_jobs import FLINK_PROJECT, run_jobs
from pipelines.sinks.clickhouse import ClickHouseSink
from pipelines.tests.conftest import wait_until
from pipelines.throttle import ThrottlePolicy, apply

pytestmark = [
    pytest.mark.integration,
    pytest.mark.skipif(
        not (FLINK_PROJECT / ".venv").exists(), reason="run `uv sync` in pipelines/flink first"
    ),
]

START = datetime(2026, 11, 2, 12, 0, tzinfo=UTC)


def statuses(team: str, ip: str) -> list[bytes]:
    plan = [  # (minute, status, count, domain)
        (0, MessageStatus.DELIVERED, 60, "gmail.com"),
        (0, MessageStatus.DELIVERED, 30, "outlook.com"),
        (0, MessageStatus.BOUNCED, 10, "gmail.com"),
        (1, MessageStatus.DELIVERED, 95, "gmail.com"),
        (1, MessageStatus.DEFERRED, 5, "outlook.com"),
        (1, MessageStatus.COMPLAINED, 2, "gmail.com"),
    ]
    out = []
    for minute, status, count, domain in plan:
        for i in range(count):
            event = MessageStatusEvent(
                team_id=team,
                message_id=f"{team}-{minute}-{status}-{i}",
                status=status,
                occurred_at=START + timedelta(minutes=minute, seconds=i % 60),
                source_ip=ip,
                recipient_domain=domain,
            )
            out.append(serialize(event))
    return out


def read_signals(settings: Settings, keys: set[str]) -> list[ReputationSignal]:
    consumer = Consumer(kafka_consumer_config(f"sig-{uuid.uuid4().hex[:8]}", settings))
    consumer.assign([TopicPartition(Topic.REPUTATION_SIGNALS.value, 0, 0)])
    found = []
    idle = 0
    try:
        while idle < 4:
            batch = consumer.consume(1000, 0.5)
            idle = 0 if batch else idle + 1
            for msg in batch:
                signal = deserialize(ReputationSignal, msg.value() or b"")
                if signal.scope_key.split("|")[0] in keys:
                    found.append(signal)
    finally:
        consumer.close()
    return found


@pytest.mark.timeout(900)
def test_windowed_signals_throttle_and_clickhouse(
    test_settings: Settings, produce: Any, redis_client: Any, warehouse_client: Any
) -> None:
    team = f"team-{uuid.uuid4().hex[:8]}"
    ip = f"198.51.100.{uuid.uuid4().int % 250 + 1}"
    payloads = statuses(team, ip)
    end = produce(Topic.MESSAGE_STATUSES.value, payloads)
    start = end - len(payloads)
    job = run_jobs(
        test_settings, start_offsets=f"0:{start}", end_offsets=f"0:{end}", watermark_seconds=1
    )
    assert job.wait(timeout=600) == 0

    signals = read_signals(test_settings, {team, ip})
    minute = {(s.scope, s.scope_key, s.window_start.minute): s for s in signals if s.window == "1m"}
    first = minute[("team", team, 0)]
    assert (first.delivered, first.bounced, first.deferred, first.complained) == (90, 10, 0, 0)
    assert first.bounce_rate == pytest.approx(0.10)
    second = minute[("team", team, 1)]
    assert (second.delivered, second.deferred, second.complained) == (95, 5, 2)
    assert second.complaint_rate == pytest.approx(2 / 95)
    assert second.defer_rate == pytest.approx(5 / 100)
    assert minute[("ip", ip, 0)].delivered == 90
    assert minute[("ip_provider", f"{ip}|google", 0)].bounced == 10
    assert minute[("ip_provider", f"{ip}|microsoft", 0)].delivered == 30

    hourly = [s for s in signals if s.window == "1h" and s.scope == "team"]
    assert len(hourly) == 12  # 1-hour windows sliding by 5 minutes that cover 12:00-12:01
    assert {(s.delivered, s.bounced, s.deferred, s.complained) for s in hourly} == {(185, 10, 5, 2)}
    assert len({s.event_id for s in signals}) == len(signals)

    throttled = apply(redis_client, signals, ThrottlePolicy())
    assert throttled >= 1
    assert b'"pause"' in redis_client.get(RedisKeys.reputation_throttle("team", team))
    assert b'"pause"' in redis_client.get(
        RedisKeys.reputation_throttle("ip_provider", f"{ip}|google")
    )

    # The ClickHouse sink stores every signal once in raw_reputation_signals.
    group = f"g-{uuid.uuid4().hex[:8]}"
    sink = ClickHouseSink(
        test_settings,
        topics=[Topic.REPUTATION_SIGNALS],
        client_factory=lambda: warehouse_client,
        group_id=group,
        flush_seconds=0.1,
    )
    query = (
        "SELECT count() FROM raw_reputation_signals FINAL "
        "WHERE scope_key IN ({a:String}, {b:String}, {c:String}, {d:String})"
    )
    keys = {"a": team, "b": ip, "c": f"{ip}|google", "d": f"{ip}|microsoft"}

    def stored() -> int:
        return int(warehouse_client.query(query, parameters=keys).result_rows[0][0])

    def sink_step() -> bool:
        sink.poll_once(0.1)
        return stored() >= len(signals)

    try:
        assert wait_until(sink_step, 60, 0.2)
    finally:
        sink.close()
    assert stored() == len(signals)
