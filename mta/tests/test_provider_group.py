"""Provider groups in status events: a custom domain whose MX is Google counts as google.

The MTA groups recipients by MX (shaping groups); the Flink reputation job used to guess
the provider from the recipient domain only, so a company domain hosted at Google was
throttled under ``ip|<domain>`` while the MTA also paces it as google. Status events now
carry ``provider_group`` and the Flink job keys the IP x provider windows on it.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from kibamail.contracts import (
    MessageStatus,
    MessageStatusEvent,
    ReputationSignal,
    Topic,
    deserialize,
    serialize,
)
from kibamail.intake import submit
from kibamail.redis_keys import RedisKeys
from kibamail.settings import Settings
from mta.config import load_config
from mta.policies import PolicyContext
from mta.reputation import ReputationThrottle, ip_provider_keys
from testing.testnet import DnsServer, SinkServer, Zone

from .conftest import start_mta
from .helpers import StatusReader, make_message, with_policy, write_policy

pytestmark = pytest.mark.integration

CUSTOM = "custom-corp.example"  # a company domain hosted at Google Workspace
GOOGLE_MX = "aspmx.l.google.com"


@pytest.fixture
def zone() -> Zone:
    zone = Zone()
    zone.add(CUSTOM, "MX", f"10 {GOOGLE_MX}")
    zone.add(GOOGLE_MX, "A", "127.0.0.1")
    return zone


@pytest.fixture
def google_mx_settings(test_settings: Settings, tmp_path: Path) -> Settings:
    """The fast test policy with the shipped google group (by domain and by MX host)."""
    policy = write_policy(tmp_path / "policies.toml")
    text = policy.read_text().replace(
        'google = ["gmail.com"]', 'google = ["gmail.com", ".google.com"]'
    )
    policy.write_text(text)
    return with_policy(test_settings, policy)


@pytest.fixture
def group_mta(
    google_mx_settings: Settings,
    redis_client: Any,
    kafka_service: str,
    sink: SinkServer,
    dns_server: DnsServer,
) -> Iterator[Settings]:
    _thread, stopper = start_mta(google_mx_settings, listeners=False)
    yield google_mx_settings
    stopper()


def delivered_events(settings: Settings, redis: Any, rcpts: list[str]) -> dict[str, Any]:
    """recipient -> its (accepted, delivered) events, after a real delivery through the MTA."""
    redis.set(RedisKeys.domain_ready("team-1", "sender.example"), "1")
    msg = make_message(rcpts)
    submit(redis, msg)
    reader = StatusReader(settings)
    try:
        events = reader.poll_until(
            lambda ev: sum(e.message_id == msg.message_id for e in ev) >= 2 * len(rcpts), 60
        )
    finally:
        reader.close()
    mine = [e for e in events if e.message_id == msg.message_id]
    return {rcpt: {e.status.value: e for e in mine if e.recipient == rcpt} for rcpt in rcpts}


def test_status_events_carry_the_mx_based_provider_group(
    group_mta: Settings, redis_client: Any
) -> None:
    by_rcpt = delivered_events(
        group_mta, redis_client, [f"ceo@{CUSTOM}", "a@gmail.com", "b@example.org"]
    )
    custom = by_rcpt[f"ceo@{CUSTOM}"]
    assert custom["delivered"].mx_host == GOOGLE_MX
    assert custom["delivered"].recipient_domain == CUSTOM
    assert custom["delivered"].provider_group == "google"
    assert custom["accepted"].provider_group == "google"
    assert by_rcpt["a@gmail.com"]["delivered"].provider_group == "google"
    assert by_rcpt["b@example.org"]["delivered"].provider_group == "default"
    # ... and the MTA's own throttle lookup for that recipient starts with ip|google.
    ip = custom["delivered"].source_ip
    keys = ip_provider_keys(ip, "google", CUSTOM)
    assert keys[0] == RedisKeys.reputation_throttle("ip_provider", f"{ip}|google")


def _produce(settings: Settings, payloads: list[bytes]) -> tuple[int, int]:
    """Partition-0 (first, end) offsets of the payloads, from the delivery reports (the
    local broker's ListOffsets is wrong, pipelines/README.md)."""
    from confluent_kafka import Producer

    from kibamail.clients import kafka_producer_config

    producer = Producer(kafka_producer_config(settings))
    offsets: list[int] = []

    def delivered(err: Any, msg: Any) -> None:
        assert err is None, err
        offsets.append(msg.offset())

    for payload in payloads:
        producer.produce(Topic.MESSAGE_STATUSES.value, payload, partition=0, on_delivery=delivered)
        producer.poll(0)
    assert producer.flush(30) == 0
    return min(offsets), max(offsets) + 1


def _signals(settings: Settings, ip: str) -> list[ReputationSignal]:
    from confluent_kafka import Consumer, TopicPartition

    from kibamail.clients import kafka_consumer_config

    consumer = Consumer(kafka_consumer_config(f"pg-{uuid.uuid4().hex[:8]}", settings))
    consumer.assign([TopicPartition(Topic.REPUTATION_SIGNALS.value, 0, 0)])
    found: list[ReputationSignal] = []
    idle = 0
    try:
        while idle < 4:
            batch = consumer.consume(1000, 0.5)
            idle = 0 if batch else idle + 1
            for msg in batch:
                signal = deserialize(ReputationSignal, msg.value() or b"")
                if signal.scope_key.startswith(f"{ip}|"):
                    found.append(signal)
    finally:
        consumer.close()
    return found


@pytest.mark.slow
@pytest.mark.timeout(300)
def test_flink_throttles_a_google_hosted_custom_domain_under_ip_google(
    group_mta: Settings, redis_client: Any
) -> None:
    from pipelines.flink_jobs import FLINK_PROJECT, run_jobs
    from pipelines.throttle import ThrottlePolicy, apply

    if not (FLINK_PROJECT / ".venv").exists():
        pytest.skip("run `uv sync` in pipelines/flink first")
    template: MessageStatusEvent = delivered_events(group_mta, redis_client, [f"ceo@{CUSTOM}"])[
        f"ceo@{CUSTOM}"
    ]["delivered"]
    assert template.provider_group == "google"
    # 100 of the MTA's own events from one (test-unique) IP, 20 % of them bounced.
    ip = f"198.18.{uuid.uuid4().int % 250}.{uuid.uuid4().int % 250 + 1}"
    team = f"team-{uuid.uuid4().hex[:8]}"
    events = [
        template.model_copy(
            update={
                "event_id": uuid.uuid4().hex,
                "message_id": f"{team}-{i}@sender.example",
                "team_id": team,
                "source_ip": ip,
                "status": MessageStatus.BOUNCED if i % 5 == 0 else MessageStatus.DELIVERED,
            }
        )
        for i in range(100)
    ]
    first, end = _produce(group_mta, [serialize(e) for e in events])
    job = run_jobs(
        group_mta, start_offsets=f"0:{first}", end_offsets=f"0:{end}", watermark_seconds=1
    )
    assert job.wait(timeout=240) == 0

    signals = _signals(group_mta, ip)
    pairs = {s.scope_key for s in signals if s.scope == "ip_provider"}
    assert pairs == {f"{ip}|google"}  # not f"{ip}|{CUSTOM}"
    assert sum(s.bounced for s in signals if s.window == "1m" and s.scope == "ip_provider") == 20

    assert apply(redis_client, signals, ThrottlePolicy()) >= 1
    key = RedisKeys.reputation_throttle("ip_provider", f"{ip}|google")
    assert b'"pause"' in redis_client.get(key)
    assert not redis_client.exists(RedisKeys.reputation_throttle("ip_provider", f"{ip}|{CUSTOM}"))

    # The MTA's reputation unit obeys it for the custom domain: its only IP is paused -> held
    # (another team, so only the IP x provider decision applies, not this team's own pause).
    config = load_config(group_mta.mta.policy_file)
    unit = ReputationThrottle(ReputationThrottle.Params(), config)
    ctx = PolicyContext(
        redis=_AsyncRedis(redis_client),
        stage="delivery",
        team_id=f"other-{team}",
        recipient_domain=CUSTOM,
        provider_group="google",
        pool="transactional",
        source_ips=[ip],
        source_ip=ip,
    )
    verdict = asyncio.run(unit.check(ctx))
    assert verdict.action == "hold" and "google" in verdict.text


class _AsyncRedis:
    """The two reads the reputation unit makes, on the test's sync client."""

    def __init__(self, redis: Any) -> None:
        self.redis = redis

    async def mget(self, keys: Any) -> list[Any]:
        return list(self.redis.mget(list(keys)))

    async def get(self, key: str) -> Any:
        return self.redis.get(key)
